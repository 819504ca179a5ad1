"""Exact small-sample statistics for the regression alerts and ``lightning-viz compare``.

Every test is one-sided and asks *is the candidate worse than the reference?* The
distributions are SciPy's (exact at every sample size); this module adds the
per-sample pairing of two probe runs, which no library does for us, and the checks.

- :func:`wilson_interval`: the Wilson score interval of a proportion (Wilson 1927),
  ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``.
- :func:`sign_test`: the exact sign test on the samples that flipped between two runs
  (``scipy.stats.binomtest``).
- :func:`paired_test`: the sign test on two per-sample outcome sequences of one probe.
- :func:`unpaired_test`: Fisher's exact test on two proportions (two different probes,
  ``scipy.stats.fisher_exact``).
- :func:`holm`, :func:`holm_adjusted`: the Holm–Bonferroni step-down correction
  (Holm 1979) across the metrics tested together.

Examples:
    >>> r = paired_test([1, 1, 1, 0, 1, None], [0, 0, 1, 0, 1, 1])
    >>> (r.n_pairs, r.worse, r.better, r.pvalue)
    (5, 2, 0, 0.25)
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from lightning_viz._checks import check_float, check_int, check_level, fail, python_scalar

__all__ = [
    "EXACT_LIMIT",
    "MAX_COUNT",
    "PairedResult",
    "holm",
    "holm_adjusted",
    "outcome_list",
    "paired_test",
    "rank_test",
    "sign_test",
    "unpaired_test",
    "wilson_interval",
]

EXACT_LIMIT = 2000
"""Kept for compatibility: the tests are SciPy's now, exact at every sample size."""
MAX_COUNT = 10**8
"""The largest count the tests take: SciPy's overflow near 2**63, and Fisher's exact
test takes time linear in the samples (about 0.2 s at this count)."""

Outcome = int | None


# ------------------------------------------------------------------- checks
def _check_count(value: Any, name: str, n: int | None = None, n_name: str = "n") -> int:
    """A count: an int ``>= 0`` and ``<= MAX_COUNT`` (and ``<= n`` when given)."""
    value = check_int(value, name, minimum=0, maximum=MAX_COUNT)
    if n is not None and value > n:
        fail(name, f"an int <= `{n_name}` ({n})", value)
    return value


def _check_pvalues(pvalues: Any) -> list[float]:
    """A sequence of p-values in ``[0, 1]``."""
    if isinstance(pvalues, str | bytes) or not isinstance(pvalues, Iterable):
        fail("pvalues", "a sequence of p-values in [0, 1]", pvalues, TypeError)
    return [
        check_float(p, f"pvalues[{i}]", minimum=0.0, maximum=1.0) for i, p in enumerate(pvalues)
    ]


def _outcome(value: Any) -> Outcome:
    """One sample's outcome: ``1``, ``0`` or ``None`` (also ``True``/``False``, '1'/'0'/'-',
    and NumPy or 0-d tensor scalars of those)."""
    value = python_scalar(value)  # np.bool_, np.int64, a 0-d tensor
    if value is None or value == "-":
        return None
    if value in ("1", "0"):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, str) and value in (0, 1):
        return int(value)
    raise ValueError(value)


def outcome_list(outcomes: Any, name: str = "outcomes") -> list[Outcome]:
    """Per-sample outcomes as a list of ``1``/``0``/``None``.

    Args:
        outcomes: A list or tuple of ``1``/``0``/``None`` (``True``/``False`` too), or the
            compact string form of ``summary.json``: one character per sample, ``'1'``,
            ``'0'`` or ``'-'`` (not counted).
        name: The option named in error messages.

    Returns:
        A new list of ``1``, ``0`` and ``None``.

    Raises:
        TypeError: ``outcomes`` is not a sequence or a string.
        ValueError: An item is not one of the outcomes above.
    """
    if isinstance(outcomes, bytes) or not isinstance(outcomes, Iterable):
        fail(name, "a sequence of 1, 0 or None per sample", outcomes, TypeError)
    out: list[Outcome] = []
    for i, value in enumerate(outcomes):
        try:
            out.append(_outcome(value))
        except (ValueError, TypeError):
            fail(name, "a sequence of 1, 0 or None per sample", f"<{value!r} at position {i}>")
    return out


# ------------------------------------------------------------------------- interval
def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``successes / n``.

    Wilson, *Probable inference, the law of succession, and statistical inference*,
    JASA 1927. Unlike the normal (Wald) interval it stays inside ``[0, 1]`` and keeps
    its coverage for small ``n`` and proportions near 0 or 1.

    Args:
        successes: Number of successes, ``0 <= successes <= n``.
        n: Number of trials, ``>= 0``.
        confidence: Two-sided confidence level in ``(0, 1)``. Default: ``0.95``.

    Returns:
        ``(lo, hi)`` with ``0 <= lo <= successes / n <= hi <= 1``; ``(nan, nan)`` when
        ``n == 0``.

    Raises:
        TypeError: A count is not an int or ``confidence`` not a number.
        ValueError: A count out of range, ``confidence`` outside ``(0, 1)``.

    Examples:
        >>> tuple(round(v, 4) for v in wilson_interval(7, 10))
        (0.3968, 0.8922)
    """
    n = _check_count(n, "n")
    successes = _check_count(successes, "successes", n)
    confidence = check_level(confidence, "confidence")
    if n == 0:
        return (math.nan, math.nan)
    return _wilson(successes, n, confidence)


@functools.lru_cache(maxsize=8192)
def _wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """SciPy's Wilson interval, computed once per count: a run summary holds the same
    few counts (a probe's size) epoch after epoch and asks for them at every write."""
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def _binomial_upper_tail(k: int, m: int) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(m, 1/2)`` (``1.0`` when ``m == 0``)."""
    if m == 0:
        return 1.0
    return float(stats.binomtest(k, m, 0.5, alternative="greater").pvalue)


# -------------------------------------------------------------------------- tests
@dataclass(frozen=True)
class PairedResult:
    """The paired comparison of two runs of one probe.

    Attributes:
        n_pairs: Samples counted in both runs.
        worse: Samples that went from 1 (reference) to 0 (candidate).
        better: Samples that went from 0 to 1.
        pvalue: Exact one-sided sign-test p-value that the candidate is worse.
    """

    n_pairs: int
    worse: int
    better: int
    pvalue: float


def sign_test(worse: int, better: int) -> float:
    """Exact one-sided sign test that the candidate is worse than the reference.

    Under the null hypothesis a sample that changed its outcome is as likely to have
    got worse as better, so ``worse ~ Binomial(worse + better, 1/2)``; samples that did
    not change carry no information (McNemar's exact test, one-sided).

    Args:
        worse: Samples that went from success to failure, ``>= 0``.
        better: Samples that went from failure to success, ``>= 0``.

    Returns:
        ``P(X >= worse)`` for ``X ~ Binomial(worse + better, 1/2)``; ``1.0`` when no
        sample flipped.

    Raises:
        TypeError: A count is not an int.
        ValueError: A count is negative.

    Examples:
        >>> sign_test(7, 0)
        0.0078125
    """
    worse = _check_count(worse, "worse")
    better = _check_count(better, "better")
    return _binomial_upper_tail(worse, worse + better)


def paired_test(reference: Any, candidate: Any) -> PairedResult:
    """The sign test on two runs of the same probe, sample by sample.

    Args:
        reference: Per-sample outcomes of the reference run: ``1`` (success), ``0``
            (failure) or ``None`` (not counted in that run, e.g. a cue-conflict image
            that was neither a shape nor a texture decision); or the string form
            ``"10-1..."`` of ``summary.json``.
        candidate: The candidate run's outcomes on the same samples, same length.

    Returns:
        A :class:`PairedResult`; pairs where either outcome is ``None`` are dropped.

    Raises:
        TypeError: An argument is not a sequence.
        ValueError: An item is not an outcome, or the lengths differ.
    """
    ref = outcome_list(reference, "reference")
    cand = outcome_list(candidate, "candidate")
    if len(ref) != len(cand):
        fail("candidate", f"as long as `reference` ({len(ref)} samples)", f"<{len(cand)} samples>")
    n_pairs = worse = better = 0
    for r, c in zip(ref, cand, strict=True):
        if r is None or c is None:
            continue
        n_pairs += 1
        worse += r == 1 and c == 0
        better += r == 0 and c == 1
    return PairedResult(n_pairs, worse, better, _binomial_upper_tail(worse, worse + better))


def unpaired_test(k_ref: int, n_ref: int, k_cand: int, n_cand: int) -> float:
    """Fisher's exact one-sided test that the candidate proportion is lower.

    For two runs on different samples (probes that differ): conditional on the total
    number of successes, the candidate's successes are hypergeometric under the null
    hypothesis of equal proportions.

    Args:
        k_ref: Successes of the reference run, ``0 <= k_ref <= n_ref``.
        n_ref: Samples of the reference run.
        k_cand: Successes of the candidate run, ``0 <= k_cand <= n_cand``.
        n_cand: Samples of the candidate run.

    Returns:
        ``P(X <= k_cand)`` for ``X ~ Hypergeometric(n_ref + n_cand, k_ref + k_cand,
        n_cand)``, the same as ``scipy.stats.fisher_exact([[k_cand, n_cand - k_cand],
        [k_ref, n_ref - k_ref]], alternative="less")``; ``1.0`` when a run has no sample.

    Raises:
        TypeError: A count is not an int.
        ValueError: A count is negative or successes exceed samples.
    """
    n_ref = _check_count(n_ref, "n_ref")
    k_ref = _check_count(k_ref, "k_ref", n_ref, "n_ref")
    n_cand = _check_count(n_cand, "n_cand")
    k_cand = _check_count(k_cand, "k_cand", n_cand, "n_cand")
    if n_ref == 0 or n_cand == 0:
        return 1.0
    table = [[k_cand, n_cand - k_cand], [k_ref, n_ref - k_ref]]
    return float(stats.fisher_exact(table, alternative="less")[1])


def rank_test(reference: Sequence[float], candidate: Sequence[float]) -> float:
    """The one-sided Mann-Whitney U test that the candidate's values are lower.

    For per-sample values (a faithfulness score per probe image) of two runs on
    different samples, where no pair can be formed. NaN values are left out.

    Args:
        reference: Values of the reference run.
        candidate: Values of the candidate run.

    Returns:
        ``scipy.stats.mannwhitneyu(candidate, reference, alternative="less").pvalue``;
        ``1.0`` when a run has no value.
    """
    ref = [float(v) for v in reference if not math.isnan(float(v))]
    cand = [float(v) for v in candidate if not math.isnan(float(v))]
    if not ref or not cand:
        return 1.0
    return float(stats.mannwhitneyu(cand, ref, alternative="less").pvalue)


# --------------------------------------------------------------------------- Holm
def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given.

    The ``i``-th smallest of ``m`` p-values becomes ``max_{j <= i} min(1, (m - j + 1)
    p_(j))``; a hypothesis is rejected by :func:`holm` at level ``alpha`` exactly when
    its adjusted p-value is ``<= alpha``.

    Args:
        pvalues: p-values in ``[0, 1]``.

    Returns:
        The adjusted p-values, each ``>=`` its raw p-value.

    Raises:
        TypeError: ``pvalues`` is not a sequence of numbers.
        ValueError: A p-value outside ``[0, 1]``.

    Examples:
        >>> holm_adjusted([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    ps = _check_pvalues(pvalues)
    m = len(ps)
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: ps[j])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm–Bonferroni step-down rejections at family-wise error rate ``alpha``.

    Holm, *A simple sequentially rejective multiple test procedure*, Scand. J.
    Statist. 1979. Sort the ``m`` p-values; reject the smallest while
    ``p_(i) <= alpha / (m - i + 1)``, and stop at the first that is not.

    Args:
        pvalues: p-values in ``[0, 1]``.
        alpha: Family-wise error rate in ``(0, 1)``.

    Returns:
        One bool per p-value, in the order given: ``True`` where rejected.

    Raises:
        TypeError: ``pvalues`` is not a sequence of numbers, ``alpha`` not a number.
        ValueError: A p-value outside ``[0, 1]``, ``alpha`` outside ``(0, 1)``.

    Examples:
        >>> holm([0.004, 0.02, 0.5], alpha=0.05)
        [True, True, False]
    """
    alpha = check_level(alpha)
    return [p <= alpha for p in holm_adjusted(pvalues)]  # the same as the step-down rule
