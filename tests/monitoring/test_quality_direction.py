"""H53 (mutation round three) pinned these; each test fails on a one-line mutation that the
suite let through. Gaps found in callbacks/_quality.py and monitoring/compare.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import lightning_viz as lv
from lightning_viz.monitoring.compare import compare_summaries
from lightning_viz.monitoring.record import RunSummary, make_record

TAG = "explain/vanilla/deletion_auc"


def _ctx(epoch, summary):
    log = SimpleNamespace(epoch=epoch, step=10 * epoch, scalar=lambda *a, **k: None)
    coordinator = SimpleNamespace(summary=summary, say=lambda trainer, text: None)
    return SimpleNamespace(log=log, coordinator=coordinator, trainer=None)


def test_a_rising_deletion_auc_alerts_and_a_falling_one_does_not():
    cb = lv.SaliencyLogger(methods=("vanilla",), quality=("deletion",), patience=1)
    s = RunSummary()
    assert cb.alert(_ctx(0, s), {TAG: make_record(0, 0, values=[0.2] * 12)}) == []
    better = cb.alert(_ctx(1, s), {TAG: make_record(1, 10, values=[0.1] * 12)})
    assert better == []  # a lower deletion AUC is more faithful
    worse = cb.alert(_ctx(2, s), {TAG: make_record(2, 20, values=[0.5] * 12)})
    assert [a.metric for a in worse] == [TAG]
    assert worse[0].drop == pytest.approx(0.4)


def test_a_threshold_alerts_drop_is_how_far_above_the_threshold():
    cb = lv.GradCAMLogger(quality=("randomization",), randomization_threshold=0.5)
    ctx = SimpleNamespace(log=SimpleNamespace(epoch=3, step=30))
    alert = cb._threshold_alert(ctx, "explain/gradcam/randomization_corr", 0.8, 4)
    assert alert.drop == pytest.approx(0.3)


def test_quality_cost_skips_the_runs_that_keep_scoring_within_it():
    cb = lv.GradCAMLogger(quality=("deletion",), quality_cost=0.5)
    cb._monitors = lambda ctx: []
    ctx = SimpleNamespace(trainer=None)
    assert cb._runs_to_skip(ctx, 1.0, 1.0) == 1  # scoring = maps: every 2nd run -> 0.5
    assert cb._runs_to_skip(ctx, 0.5, 1.0) == 0  # scoring = 0.5 maps: every run
    assert cb._runs_to_skip(ctx, 2.0, 1.0) == 3  # 4x over: 1 of 4 runs


def test_the_direction_is_the_candidates():
    a, b = RunSummary(), RunSummary()
    a.record("m", 0, 0, outcomes="1" * 10, fingerprint="f", higher_is_better=False)
    b.record(
        "m",
        0,
        0,
        outcomes="0" * 10,
        fingerprint="f",
        higher_is_better=True,
        watched=True,
        tolerance=0.05,
    )
    (row,) = compare_summaries(a, b).rows
    assert row.higher_is_better is True and row.drop == pytest.approx(1.0)
    assert compare_summaries(a, b).regressions == ["m"]


def test_a_best_row_when_only_the_candidates_latest_is_its_best():
    a, b = RunSummary(), RunSummary()
    a.record("m", 0, 0, outcomes="1" * 18 + "0" * 2, fingerprint="f", watched=True, tolerance=0.05)
    a.record("m", 1, 10, outcomes="1" * 12 + "0" * 8, fingerprint="f")  # baseline fell
    b.record("m", 0, 0, outcomes="1" * 10 + "0" * 10, fingerprint="f")
    b.record("m", 1, 10, outcomes="1" * 12 + "0" * 8, fingerprint="f")  # candidate's best
    result = compare_summaries(a, b)
    assert [r.at for r in result.rows] == ["latest", "best"]
    best = result.rows[1]
    assert (best.baseline.epoch, best.candidate.epoch) == (0, 1)
    assert best.drop == pytest.approx(0.3)
