"""Tests for gaps found by mutation testing: stats.holm, rule.regressed at alpha, unpaired
n."""

from __future__ import annotations

import json

from lightning_viz.monitoring.compare import compare_summaries, render
from lightning_viz.monitoring.record import RunSummary, make_record
from lightning_viz.monitoring.rule import compare_records
from lightning_viz.monitoring.stats import holm


def test_holm_rejects_an_adjusted_p_equal_to_alpha():
    # documented: rejected exactly when its adjusted p-value is <= alpha
    assert holm([0.01], alpha=0.01) == [True]
    assert holm([0.005, 0.02], alpha=0.01) == [True, False]  # 2 * 0.005 == 0.01


def test_compare_regresses_when_the_holm_p_equals_alpha_exactly():
    # 7 of 7 flips to worse: sign-test p = 2**-7 exactly; alpha = 2**-7: "p <= alpha"
    a, b = RunSummary(), RunSummary()
    a.record("m", 0, 9, outcomes="1" * 7 + "0" * 13, fingerprint="f", watched=True, tolerance=0.05)
    b.record("m", 0, 9, outcomes="0" * 20, fingerprint="f")
    result = compare_summaries(a, b, alpha=2**-7)
    (row,) = result.rows
    assert row.pvalue_holm == 2**-7
    assert result.regressions == ["m"] and result.exit_code == 1


def test_unpaired_n_is_the_candidates_samples():
    ref = make_record(0, 0, n=100, successes=90, fingerprint="f")
    cand = make_record(1, 1, n=40, successes=20, fingerprint="g")
    r = compare_records(ref, cand)
    assert r.test == "unpaired" and r.n == 40
    a, b = RunSummary(), RunSummary()
    a.record("m", 0, 9, outcomes="1" * 90 + "0" * 10, fingerprint="f", watched=True, tolerance=0.05)
    b.record("m", 0, 9, outcomes="1" * 20 + "0" * 20, fingerprint="g")
    result = compare_summaries(a, b)
    assert result.rows[0].n == 40
    assert json.loads(render(result, "json"))["rows"][0]["n"] == 40
