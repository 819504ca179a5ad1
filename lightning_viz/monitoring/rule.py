"""The one rule of "regressed", used by the live alerts and by ``lightning-viz compare``.

A candidate measurement *regressed* against a reference when it is worse by more
than the tolerance (a practically large drop) **and** the one-sided exact test that
it is worse, Holm-adjusted across the comparisons judged together, has ``p <=
alpha``: :func:`regressed`. :func:`compare_records` picks and runs the test (paired
sign test on the same probe, else Fisher's exact test on two proportions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lightning_viz._checks import check_level, fail
from lightning_viz.monitoring.stats import paired_test, rank_test, sign_test, unpaired_test

if TYPE_CHECKING:
    from lightning_viz.monitoring.record import EpochRecord

__all__ = [
    "ALERT_KINDS",
    "RecordComparison",
    "chosen_from",
    "compare_records",
    "exceeds",
    "oriented",
    "regressed",
    "same_form",
]

ALERT_KINDS = ("best", "baseline")
"""What an alert compares with: this run's best, or the baseline run."""

_EPS = 1e-12  # a drop equal to the tolerance up to float rounding is not larger


def oriented(value: float, higher_is_better: bool) -> float:
    """``value``, negated when lower is better (so larger is always better)."""
    return value if higher_is_better else -value


def exceeds(drop: float, tolerance: float) -> bool:
    """Whether ``drop`` is practically large: larger than ``tolerance``."""
    return drop > tolerance + _EPS


def regressed(drop: float, tolerance: float, pvalue: float, alpha: float) -> bool:
    """The rule: the drop exceeds the tolerance and the (Holm-adjusted) p-value is ``<= alpha``.

    Examples:
        >>> regressed(0.10, 0.05, 0.001, 0.01), regressed(0.05, 0.05, 0.001, 0.01)
        (True, False)
    """
    check_level(alpha)  # a NaN p-value (no test) never regresses
    return exceeds(drop, tolerance) and pvalue <= alpha


@dataclass(frozen=True)
class RecordComparison:
    """A one-sided test that a candidate record is worse than a reference record.

    Attributes:
        test: ``"paired"`` (sign test on the samples that flipped), ``"unpaired"``
            (Fisher's exact test on the two proportions), ``"ranks"`` (Mann-Whitney U
            test on per-sample values of different probes) or ``"none"`` (no counts).
        reason: Why the test is not paired (``"probes differ"``, ``"probes unknown"``,
            ``"no per-sample outcomes"``, ``"no counts"``, ``"forms differ"``: per-image
            values against per-decision outcomes), else ``None``.
        pvalue: One-sided p-value (not corrected for multiple tests); NaN when
            ``test == "none"``.
        drop: How much worse the candidate is (reference − candidate for a metric
            where higher is better); negative when it is better.
        n: Pairs counted (paired) or the candidate's samples (unpaired), else ``None``.
        worse: Samples that flipped to worse (paired only).
        better: Samples that flipped to better (paired only).
    """

    test: str
    reason: str | None
    pvalue: float
    drop: float
    n: int | None = None
    worse: int | None = None
    better: int | None = None

    @property
    def label(self) -> str:
        """``"paired"``, ``"unpaired (probes differ)"``, ..."""
        return self.test if self.reason is None else f"{self.test} ({self.reason})"


def chosen_from(result: RecordComparison, runs: int) -> RecordComparison:
    """``result`` of a comparison with a reference chosen as the best of ``runs`` runs:
    its p-value times ``runs`` (Bonferroni for the choice, at most 1).

    The best of many noisy runs is a lucky one: tested as if it had been fixed in
    advance, a converged model "regressed" against it in about half of the 150-epoch
    fits (70-128 decisions, 5 % of them flipping each epoch). Over every run it could
    have been chosen from, the test keeps its level.

    Examples:
        >>> r = RecordComparison("paired", None, 0.004, 0.1)
        >>> chosen_from(r, 5).pvalue, chosen_from(r, 1000).pvalue
        (0.02, 1.0)
    """
    if math.isnan(result.pvalue) or runs <= 1:
        return result
    return replace(result, pvalue=min(1.0, result.pvalue * runs))


def same_form(a: EpochRecord, b: EpochRecord) -> bool:
    """Whether two records can be tested against each other: both per-sample values,
    or neither (a multilabel or corruption accuracy written before the per-image form
    kept one outcome per decision: no valid test pairs it with per-image values)."""
    return (a.values is None) == (b.values is None)


def _flip(outcomes: list[int | None]) -> list[int | None]:
    return [None if v is None else 1 - v for v in outcomes]


def _paired_values(
    ref: tuple[float, ...], cand: tuple[float, ...], drop: float, higher_is_better: bool
) -> RecordComparison:
    """The exact sign test on per-sample values: samples that got worse vs better
    (ties and samples not counted in either run carry no information). Where some
    samples are left out of a run (NaN: a map not scored), the drop is the mean change
    over the samples both runs scored, not the difference of means over different
    samples (every image could rise and the means still fall)."""
    pairs = [(r, c) for r, c in zip(ref, cand, strict=True) if not (math.isnan(r) or math.isnan(c))]
    diffs = [(c - r) if higher_is_better else (r - c) for r, c in pairs]
    worse, better = sum(d < 0 for d in diffs), sum(d > 0 for d in diffs)
    if pairs and len(pairs) < len(ref):
        drop = -sum(diffs) / len(diffs)
    return RecordComparison(
        "paired", None, sign_test(worse, better), drop, len(pairs), worse, better
    )


def compare_records(
    reference: EpochRecord,
    candidate: EpochRecord,
    *,
    higher_is_better: bool = True,
    same_probe_if_unknown: bool = False,
) -> RecordComparison:
    """Tests whether ``candidate`` is worse than ``reference``.

    Paired (exact sign test) when both records have per-sample outcomes (or per-sample
    values: the samples whose value got worse against those that got better) of the
    same length and the same probe fingerprint; two missing fingerprints count as the same
    probe only with ``same_probe_if_unknown`` (two runs of one probe within one fit).
    Per-sample values of different probes: the Mann-Whitney U test (``"ranks"``).
    Otherwise unpaired (Fisher's exact test) when both have counts, else no test.

    Args:
        reference: The reference run of the metric.
        candidate: The run under test.
        higher_is_better: Direction of the metric; when ``False`` a success is the
            *bad* outcome (e.g. an error rate) and the test runs on failures.
        same_probe_if_unknown: Pair records that both lack a fingerprint.

    Returns:
        A :class:`RecordComparison`.
    """
    from lightning_viz.monitoring.record import EpochRecord  # the record imports this module

    for name, record in (("reference", reference), ("candidate", candidate)):
        if not isinstance(record, EpochRecord):
            fail(name, "an EpochRecord", record, TypeError)
    drop = oriented(reference.value, higher_is_better) - oriented(candidate.value, higher_is_better)
    if reference.fingerprint is None and candidate.fingerprint is None:
        same, reason = same_probe_if_unknown, "probes unknown"
    else:
        same, reason = reference.fingerprint == candidate.fingerprint, "probes differ"
    if reference.values is not None and candidate.values is not None:
        if same and len(reference.values) == len(candidate.values):
            return _paired_values(reference.values, candidate.values, drop, higher_is_better)
        sign = 1.0 if higher_is_better else -1.0  # the test is that the candidate is lower
        p = rank_test([sign * v for v in reference.values], [sign * v for v in candidate.values])
        why = "probes differ" if same else reason  # (same probe, other lengths: differ)
        return RecordComparison("ranks", why, p, drop, len(candidate.values))
    if not same_form(reference, candidate):  # per-decision outcomes, per-image values
        return RecordComparison("none", "forms differ", math.nan, drop)
    ref_out, cand_out = reference.outcome_list(), candidate.outcome_list()
    if ref_out is None or cand_out is None:
        reason = "no per-sample outcomes"
    elif same and len(ref_out) != len(cand_out):
        same, reason = False, "probes differ"
    if same and ref_out is not None and cand_out is not None:
        if not higher_is_better:
            ref_out, cand_out = _flip(ref_out), _flip(cand_out)
        r = paired_test(ref_out, cand_out)
        return RecordComparison("paired", None, r.pvalue, drop, r.n_pairs, r.worse, r.better)
    counts = (reference.n, reference.successes, candidate.n, candidate.successes)
    if any(c is None for c in counts):
        return RecordComparison("none", "no counts", math.nan, drop)
    n_ref, k_ref, n_cand, k_cand = counts  # type: ignore[misc]
    if not higher_is_better:
        k_ref, k_cand = n_ref - k_ref, n_cand - k_cand
    p = unpaired_test(k_ref, n_ref, k_cand, n_cand)
    return RecordComparison("unpaired", reason, p, drop, n_cand)
