"""H53 (mutation round three) pinned these; each test fails on a one-line mutation that the
suite let through. Gaps found in monitoring/compare.py and callbacks/_quality.py."""

from __future__ import annotations

import warnings

import lightning_viz as lv
from lightning_viz.monitoring.compare import compare_summaries, render
from lightning_viz.monitoring.record import RunSummary


def test_the_verdict_uses_the_holm_adjusted_p_not_the_raw_one():
    a, b = RunSummary(), RunSummary()
    for tag in ("x", "y"):
        a.record(
            tag, 0, 0, outcomes="1" * 7 + "0" * 13, fingerprint="f", watched=True, tolerance=0.05
        )
    b.record("x", 0, 0, outcomes="0" * 20, fingerprint="f")  # 7 of 7 worse: p = 1/128
    b.record("y", 0, 0, outcomes="1" * 7 + "0" * 13, fingerprint="f")  # unchanged
    result = compare_summaries(a, b, alpha=0.01)
    x = next(r for r in result.rows if r.metric == "x")
    assert x.pvalue == 2**-7 and x.pvalue_holm == 2 * 2**-7  # 0.0156 > 0.01
    assert result.regressions == [] and result.exit_code == 0


def test_a_watched_metric_named_random_is_in_the_default_table():
    a, b = RunSummary(), RunSummary()
    a.record(
        "bias/flip_random", 0, 0, outcomes="1" * 20, fingerprint="f", watched=True, tolerance=0.05
    )
    b.record("bias/flip_random", 0, 0, outcomes="0" * 20, fingerprint="f")
    text = render(compare_summaries(a, b), "text")
    assert any(
        line.startswith("bias/flip_random") and "REGRESSED" in line for line in text.splitlines()
    ), text


def test_the_deletion_margin_is_recorded_with_its_tolerance(tmp_path):
    from tests.conftest import fit

    cb = lv.SaliencyLogger(
        methods=("vanilla",),
        num_samples=4,
        quality=("deletion",),
        tolerance=0.07,
        quality_cost=None,
        on_error="raise",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [cb], epochs=1)
    hist = cb._coordinator.summary["explain/vanilla/deletion_margin"]
    assert hist.watched is True and hist.tolerance == 0.07
    assert cb._coordinator.summary["explain/vanilla/deletion_auc"].watched is False
