"""lightning_viz.monitoring.stats against scipy.stats and hand computations."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as ss

from lightning_viz import stats as S

# ------------------------------------------------------------------------ Wilson


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 10), (7, 10), (10, 10), (49, 70), (3, 256), (255, 256)]
)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_interval_matches_scipy(k, n, confidence):
    expected = ss.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    lo, hi = S.wilson_interval(k, n, confidence)
    assert lo == pytest.approx(expected.low, abs=1e-12)
    assert hi == pytest.approx(expected.high, abs=1e-12)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_interval_empty_and_hand_value():
    assert all(math.isnan(v) for v in S.wilson_interval(0, 0))
    # k=5, n=10, z=1.959964: center 0.5, half = z*sqrt(2.5 + z^2/4)/(10 + z^2)
    z = 1.959963984540054
    half = z * math.sqrt(2.5 + z * z / 4) / (10 + z * z)
    assert S.wilson_interval(5, 10) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)


def test_wilson_interval_narrows_with_n():
    w = [hi - lo for lo, hi in (S.wilson_interval(n // 2, n) for n in (10, 100, 1000))]
    assert w[0] > w[1] > w[2]


@pytest.mark.parametrize(
    ("args", "kind", "match"),
    [
        ((3, 2), ValueError, r"`successes` must be an int <= `n` \(2\), got 3"),
        ((-1, 2), ValueError, "`successes` must be an int >= 0 and <= 1e\\+08, got -1"),
        ((1.0, 2), TypeError, "`successes` must be an int"),
        ((1, 2, 1.0), ValueError, r"`confidence` must be a number in \(0, 1\), got 1.0"),
        ((1, 2, 0.0), ValueError, "`confidence` must be a finite number > 0"),
        ((1, 2, "95%"), TypeError, "`confidence`"),
    ],
)
def test_wilson_interval_rejects_bad_arguments(args, kind, match):
    with pytest.raises(kind, match=match):
        S.wilson_interval(*args)


# --------------------------------------------------------------------- sign test


@pytest.mark.parametrize(
    ("worse", "better"),
    [(1, 0), (0, 1), (7, 0), (8, 0), (5, 5), (12, 3), (3, 12), (30, 10), (600, 500)],
)
def test_sign_test_matches_scipy_binomtest(worse, better):
    expected = ss.binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
    assert S.sign_test(worse, better) == pytest.approx(expected, rel=1e-12)


def test_sign_test_log_space_matches_scipy_above_the_exact_limit():
    worse, better = 1100, 1000
    assert worse + better > S.EXACT_LIMIT
    expected = ss.binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
    assert S.sign_test(worse, better) == pytest.approx(expected, rel=1e-8)
    worse, better = 1400, 1000  # a tiny p-value keeps its relative precision
    expected = ss.binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
    assert expected < 1e-15
    assert S.sign_test(worse, better) == pytest.approx(expected, rel=1e-8)


def test_sign_test_hand_values():
    assert S.sign_test(0, 0) == 1.0  # no flips: no evidence
    assert S.sign_test(0, 5) == 1.0
    assert S.sign_test(7, 0) == 1 / 128
    assert S.sign_test(2, 1) == 0.5  # P(X >= 2), X ~ Bin(3, 1/2) = 4/8


def test_sign_test_rejects_bad_counts():
    with pytest.raises(ValueError, match="`worse` must be an int >= 0 and <= 1e\\+08, got -1"):
        S.sign_test(-1, 2)
    with pytest.raises(TypeError, match="`better` must be an int"):
        S.sign_test(1, True)


# ------------------------------------------------------------------- paired test


def test_paired_test_on_a_hand_made_table():
    # reference -> candidate: 1->0 x4, 0->1 x1, 1->1 x3, 0->0 x2, and three dropped pairs
    ref = [1, 1, 1, 1, 0, 1, 1, 1, 0, 0, None, 1, None]
    cand = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, None, None]
    r = S.paired_test(ref, cand)
    assert (r.n_pairs, r.worse, r.better) == (10, 4, 1)
    assert r.pvalue == pytest.approx(ss.binomtest(4, 5, 0.5, alternative="greater").pvalue)
    assert r.pvalue == pytest.approx(6 / 32)


def test_paired_test_accepts_the_summary_string_form_and_bools():
    a = S.paired_test("1110-", "0011-")
    b = S.paired_test([True, True, True, False, None], [0, 0, 1, 1, None])
    assert a == b == S.PairedResult(4, 2, 1, 0.5)


def test_paired_test_random_tables_against_scipy():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 300)
        ref = [rng.choice([1, 1, 0, None]) for _ in range(n)]
        cand = [v if v is None or rng.random() > 0.1 else 1 - v for v in ref]
        cand = [rng.choice([1, 0]) if rng.random() < 0.05 else v for v in cand]
        r = S.paired_test(ref, cand)
        worse = sum(a == 1 and b == 0 for a, b in zip(ref, cand, strict=True))
        better = sum(a == 0 and b == 1 for a, b in zip(ref, cand, strict=True))
        pairs = sum(a is not None and b is not None for a, b in zip(ref, cand, strict=True))
        assert (r.n_pairs, r.worse, r.better) == (pairs, worse, better)
        if worse + better:
            p = ss.binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
            assert r.pvalue == pytest.approx(p, rel=1e-12)
        else:
            assert r.pvalue == 1.0


@pytest.mark.parametrize(
    ("ref", "cand", "kind", "match"),
    [
        ([1, 0], [1], ValueError, r"`candidate` must be as long as `reference` \(2 samples\)"),
        ([1, 2], [1, 0], ValueError, "`reference` must be a sequence of 1, 0 or None per sample, "
         "got <2 at position 1>"),
        ([1, 0], "1x", ValueError, "got <'x' at position 1>"),
        (5, [1], TypeError, "`reference` must be a sequence"),
    ],
)  # fmt: skip
def test_paired_test_rejects_bad_outcomes(ref, cand, kind, match):
    with pytest.raises(kind, match=match):
        S.paired_test(ref, cand)


# ----------------------------------------------------------------- unpaired test


@pytest.mark.parametrize(
    ("k_ref", "n_ref", "k_cand", "n_cand"),
    [(7, 10, 2, 10), (2, 10, 7, 10), (50, 70, 20, 70), (0, 5, 0, 5), (5, 5, 0, 3),
     (128, 256, 100, 200), (30, 40, 35, 60)],
)  # fmt: skip
def test_unpaired_test_matches_scipy_fisher_exact(k_ref, n_ref, k_cand, n_cand):
    table = [[k_cand, n_cand - k_cand], [k_ref, n_ref - k_ref]]
    expected = ss.fisher_exact(table, alternative="less")[1]
    assert S.unpaired_test(k_ref, n_ref, k_cand, n_cand) == pytest.approx(expected, rel=1e-10)
    swapped = [[k_ref, n_ref - k_ref], [k_cand, n_cand - k_cand]]  # the same test, other side
    assert S.unpaired_test(k_ref, n_ref, k_cand, n_cand) == pytest.approx(
        ss.fisher_exact(swapped, alternative="greater")[1], rel=1e-10
    )


def test_unpaired_test_log_space_above_the_exact_limit():
    args = (1300, 2000, 1150, 1900)
    assert args[1] + args[3] > S.EXACT_LIMIT
    table = [[1150, 750], [1300, 700]]
    expected = ss.fisher_exact(table, alternative="less")[1]
    assert 1e-6 < expected < 0.01
    assert S.unpaired_test(*args) == pytest.approx(expected, rel=1e-8)


def test_unpaired_test_edges():
    assert S.unpaired_test(3, 5, 0, 0) == 1.0  # an empty run is no evidence
    assert S.unpaired_test(0, 0, 2, 5) == 1.0
    assert S.unpaired_test(5, 10, 10, 10) == 1.0  # the candidate is at its upper bound
    # all of the reference, none of the candidate, 3 each: 1 / C(6, 3)
    assert S.unpaired_test(3, 3, 0, 3) == pytest.approx(1 / 20)
    with pytest.raises(ValueError, match=r"`k_cand` must be an int <= `n_cand` \(3\), got 4"):
        S.unpaired_test(1, 3, 4, 3)


# -------------------------------------------------------------------------- Holm


def test_holm_by_hand():
    # sorted: 0.001 (x4 = 0.004), 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04)
    p = [0.02, 0.001, 0.04, 0.01]
    assert S.holm_adjusted(p) == pytest.approx([0.04, 0.004, 0.04, 0.03])
    assert S.holm(p, alpha=0.05) == [True, True, True, True]
    assert S.holm(p, alpha=0.035) == [False, True, False, True]
    assert S.holm(p, alpha=0.01) == [False, True, False, False]
    # step-down stops at the first non-rejection even if a later p is small enough alone
    assert S.holm([0.01, 0.03, 0.04], alpha=0.04) == [True, False, False]
    assert S.holm_adjusted([0.01, 0.03, 0.04]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_agrees_with_the_step_down_rule_on_random_pvalues():
    rng = random.Random(1)
    for _ in range(200):
        p = [rng.random() ** 3 for _ in range(rng.randint(1, 6))]
        alpha = rng.choice([0.01, 0.05, 0.1])
        order = sorted(range(len(p)), key=p.__getitem__)
        expected = [False] * len(p)
        for rank, i in enumerate(order):
            if p[i] > alpha / (len(p) - rank):
                break
            expected[i] = True
        assert S.holm(p, alpha) == expected
        assert all(a >= b for a, b in zip(S.holm_adjusted(p), p, strict=True))


def test_holm_single_and_empty():
    assert S.holm([0.008], 0.01) == [True]
    assert S.holm([], 0.01) == []
    assert S.holm_adjusted([0.3, 0.9]) == pytest.approx([0.6, 0.9])


def test_holm_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"`pvalues\[1\]` must be a finite number >= 0 and <= 1"):
        S.holm([0.1, 1.5], 0.05)
    with pytest.raises(ValueError, match=r"`alpha` must be a number in \(0, 1\), got 1.0"):
        S.holm([0.1], 1.0)
    with pytest.raises(TypeError, match="`pvalues` must be a sequence"):
        S.holm_adjusted(0.1)


def test_rank_test_is_scipys_mann_whitney_without_nans():
    from lightning_viz.monitoring.stats import rank_test

    ref, cand = [0.5, 0.7, float("nan"), 0.9, 0.8], [0.1, 0.4, 0.6, float("nan")]
    expected = ss.mannwhitneyu([0.1, 0.4, 0.6], [0.5, 0.7, 0.9, 0.8], alternative="less").pvalue
    assert rank_test(ref, cand) == pytest.approx(expected)
    assert rank_test([], cand) == 1.0 and rank_test(ref, [float("nan")]) == 1.0


def test_counts_beyond_max_count_are_refused_naming_the_argument():
    """SciPy overflowed (a NumPy TypeError naming no argument, or a silent NaN) and
    Fisher's test took time linear in n (about 2 s at 1e9)."""
    from lightning_viz.monitoring.stats import MAX_COUNT, sign_test, unpaired_test, wilson_interval

    for call, name in (
        (lambda: wilson_interval(1, 2**64), "`n`"),
        (lambda: sign_test(MAX_COUNT + 1, 0), "`worse`"),
        (lambda: unpaired_test(1, 2**63, 1, 2**63), "`n_ref`"),
    ):
        with pytest.raises(ValueError, match=f"{name} must be an int >= 0 and <= 1e\\+08"):
            call()
    assert 0.4 < unpaired_test(MAX_COUNT // 2, MAX_COUNT, MAX_COUNT // 2, MAX_COUNT) <= 1
