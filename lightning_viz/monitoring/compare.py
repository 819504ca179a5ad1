"""``lightning-viz compare BASELINE CANDIDATE``: is this run worse than an earlier one?

Reads both runs' ``lightning_viz/summary.json`` (from a log dir, a W&B run folder or an
MLflow run ``mlflow:<run_id>``, see :mod:`~lightning_viz.monitoring.sources`) and
tabulates every lightning-viz metric present in both: at the latest epoch both measured,
and at each run's best, with Wilson intervals, the difference and a one-sided exact
p-value that the candidate is worse — the paired sign test when both runs measured the
same probe (same fingerprint), otherwise Fisher's exact test on the two proportions
("unpaired (probes differ)"); at the best, times the baseline runs its best was chosen
from (:func:`~lightning_viz.monitoring.rule.chosen_from`). A *watched* metric regressed
when its drop is larger than its own stored tolerance (or ``--tolerance``) and its
Holm-adjusted p-value (Holm across the table's watched comparisons) is ``<= alpha``.

Exit status: 1 when a watched metric regressed, 0 when none did, 2 when a run cannot
be read or nothing could be compared (the reason on stderr). ``--format json`` gates CI.

Examples:
    >>> from lightning_viz.monitoring.record import RunSummary
    >>> a, b = RunSummary(), RunSummary()
    >>> _ = a.record("m", 0, 9, outcomes="1" * 30, fingerprint="f", watched=True, tolerance=0.05)
    >>> _ = b.record("m", 0, 9, outcomes="0" * 30, fingerprint="f")
    >>> result = compare_summaries(a, b)
    >>> (result.regressions, result.exit_code, result.rows[0].test)
    (['m'], 1, 'paired')
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

from lightning_viz._checks import check_float, check_level, fail
from lightning_viz._io import json_safe
from lightning_viz.monitoring.record import EpochRecord, MetricHistory, RunSummary
from lightning_viz.monitoring.rule import chosen_from, compare_records, exceeds, regressed
from lightning_viz.monitoring.stats import holm_adjusted
from lightning_viz.monitoring.tables import format_p, markdown_table, text_table

__all__ = [
    "FORMATS",
    "CompareResult",
    "CompareRow",
    "Side",
    "add_compare_parser",
    "compare_summaries",
    "render",
    "render_json",
    "render_markdown",
    "render_text",
    "run_compare",
]

FORMATS = ("text", "markdown", "json")


@dataclass(frozen=True)
class Side:
    """One run's measurement in a row.

    Attributes:
        epoch: The epoch compared.
        value: The value.
        interval: The 95 % Wilson interval, or ``None`` without counts.
        n: Samples counted, when known.
        successes: Successes, when known.
        fingerprint: Probe fingerprint, when known.
        last_epoch: The run's own last epoch with a value of the metric.
    """

    epoch: int
    value: float
    interval: tuple[float, float] | None
    n: int | None
    successes: int | None
    fingerprint: str | None
    last_epoch: int | None = None

    @classmethod
    def of(cls, rec: EpochRecord, last_epoch: int | None = None) -> Side:
        return cls(
            rec.epoch, rec.value, rec.interval, rec.n, rec.successes, rec.fingerprint, last_epoch
        )


@dataclass
class CompareRow:
    """One comparison of one metric.

    Attributes:
        metric: The tag.
        at: ``"latest"`` (the latest epoch both runs measured), ``"best"`` (each run's
            best epoch) or ``"latest = best"`` (the two coincide).
        watched: Whether the metric is watched in either run.
        tolerance: The practically large drop used (``--tolerance``, else the
            candidate's stored tolerance, else the baseline's, else 0).
        higher_is_better: Direction of the metric (the candidate's).
        baseline: The baseline's :class:`Side`.
        candidate: The candidate's :class:`Side`.
        delta: ``candidate.value - baseline.value``.
        drop: How much worse the candidate is (``-delta`` when higher is better).
        test: ``"paired"``, ``"unpaired (probes differ)"``, ``"unpaired (probes
            unknown)"``, ``"unpaired (no per-sample outcomes)"`` or ``"none (no counts)"``.
        pvalue: One-sided p-value that the candidate is worse; NaN without a test.
        pvalue_holm: Holm-adjusted p-value (watched rows with a test), else ``None``.
        n: Pairs (paired) or candidate samples (unpaired).
        worse: Samples that flipped to worse (paired).
        better: Samples that flipped to better (paired).
        regressed: Watched, ``drop > tolerance`` and ``pvalue_holm <= alpha``.
    """

    metric: str
    at: str
    watched: bool
    tolerance: float
    higher_is_better: bool
    baseline: Side
    candidate: Side
    delta: float
    drop: float
    test: str
    pvalue: float
    pvalue_holm: float | None = None
    n: int | None = None
    worse: int | None = None
    better: int | None = None
    regressed: bool = False


@dataclass
class CompareResult:
    """The table of :func:`compare_summaries`.

    Attributes:
        baseline: Path of the baseline's summary (``None`` if not from a file).
        candidate: Path of the candidate's summary.
        alpha: Significance level.
        tolerance: ``--tolerance`` when given (else each metric's own).
        rows: The comparisons, by metric, latest before best.
        only_in_baseline: Metrics the candidate lacks.
        only_in_candidate: Metrics the baseline lacks.
        unmeasured: Watched metrics of the baseline the candidate lacks or has no value
            of (a probe removed or changed: named in the verdict, not a regression).
    """

    baseline: str | None
    candidate: str | None
    alpha: float
    tolerance: float | None
    rows: list[CompareRow] = field(default_factory=list)
    only_in_baseline: list[str] = field(default_factory=list)
    only_in_candidate: list[str] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)

    @property
    def watched(self) -> list[str]:
        """Watched metrics in the table."""
        return sorted({r.metric for r in self.rows if r.watched})

    @property
    def regressions(self) -> list[str]:
        """Watched metrics that regressed (in any of their rows)."""
        return sorted({r.metric for r in self.rows if r.regressed})

    @property
    def untested(self) -> list[str]:
        """Watched metrics that dropped by more than their tolerance in a row with no
        test (records of two forms: an older version's per-decision outcomes against
        per-image values): whether they regressed cannot be said."""
        return sorted(
            {
                r.metric
                for r in self.rows
                if r.watched and r.test == "none (forms differ)" and exceeds(r.drop, r.tolerance)
            }
        )

    @property
    def exit_code(self) -> int:
        """``1`` when a watched metric regressed, ``2`` when nothing was compared (no
        row: no metric both runs measured) or a watched drop could not be tested
        (:attr:`untested`), else ``0``."""
        return 1 if self.regressions else 2 if self.untested or not self.rows else 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (NaN as ``None``): the ``--format json`` output."""
        return json_safe(
            {
                "format": "lightning-viz-compare",
                "version": 1,
                "baseline": self.baseline,
                "candidate": self.candidate,
                "alpha": self.alpha,
                "tolerance": self.tolerance,
                "regressed": bool(self.regressions),
                "exit_code": self.exit_code,
                "regressions": self.regressions,
                "watched": self.watched,
                "rows": [asdict(r) for r in self.rows],
                "only_in_baseline": self.only_in_baseline,
                "only_in_candidate": self.only_in_candidate,
                "unmeasured": self.unmeasured,
                "untested": self.untested,
            }
        )


# ------------------------------------------------------------------- comparing
def _latest_pair(hb: MetricHistory, hc: MetricHistory) -> tuple[EpochRecord, EpochRecord] | None:
    """The shorter run's latest record and the other run's nearest that epoch (the
    earlier of two as near): their latest common epoch when both measured it there; a
    metric the budget spaced out differently is compared near the ends, not at an early
    common epoch (epoch 0 would compare the untrained models)."""
    rb, rc = hb.latest(), hc.latest()
    if rb is None or rc is None:
        return None
    end = min(rb.epoch, rc.epoch)

    def nearest(h: MetricHistory) -> EpochRecord:
        return min(h.records(), key=lambda r: (abs(r.epoch - end), r.epoch))

    return nearest(hb), nearest(hc)


def _best_within_both(hb: MetricHistory, hc: MetricHistory) -> tuple[EpochRecord, EpochRecord, int]:
    """Each run's best up to the last epoch both reached (as the live ``baseline=`` rule:
    a candidate stopped early is not held to a best the baseline reached later; each
    run's overall best when their epochs do not overlap), and the baseline runs its best
    was chosen from (its p-value counts them, as the live rule's)."""
    end = min(hb.latest().epoch, hc.latest().epoch)  # type: ignore[union-attr]
    rb, rc = hb.best(max_epoch=end), hc.best(max_epoch=end)
    if rb is None or rc is None:
        return hb.best(), hc.best(), len(hb.records())  # type: ignore[return-value]
    return rb, rc, len(hb.records(max_epoch=end))


def _row(
    tag: str,
    at: str,
    rb: EpochRecord,
    rc: EpochRecord,
    hists: tuple[MetricHistory, MetricHistory],
    watched: bool,
    tol: float,
    chosen_among: int = 1,
) -> CompareRow:
    hib = hists[1].higher_is_better
    c = chosen_from(compare_records(rb, rc, higher_is_better=hib), chosen_among)
    last = [h.latest() for h in hists]
    return CompareRow(
        metric=tag,
        at=at,
        watched=watched,
        tolerance=tol,
        higher_is_better=hib,
        baseline=Side.of(rb, None if last[0] is None else last[0].epoch),
        candidate=Side.of(rc, None if last[1] is None else last[1].epoch),
        delta=rc.value - rb.value,
        drop=c.drop,
        test=c.label,
        pvalue=c.pvalue,
        n=c.n,
        worse=c.worse,
        better=c.better,
    )


def compare_summaries(
    baseline: RunSummary,
    candidate: RunSummary,
    tolerance: float | None = None,
    alpha: float = 0.01,
) -> CompareResult:
    """Compares every metric the two runs share.

    Args:
        baseline: The earlier (reference) run.
        candidate: The run under test.
        tolerance: Practically large drop for every metric (``>= 0``); ``None`` uses
            each metric's stored tolerance (candidate's, else baseline's, else 0).
        alpha: Family-wise significance level in ``(0, 1)``, Holm across the watched
            comparisons. Default: ``0.01``.

    Returns:
        A :class:`CompareResult`; ``exit_code`` is 1 when a watched metric regressed.

    Raises:
        TypeError: A run is not a :class:`RunSummary`, or a number of the wrong type.
        ValueError: ``tolerance < 0`` or ``alpha`` outside ``(0, 1)``.
    """
    for name, s in (("baseline", baseline), ("candidate", candidate)):
        if not isinstance(s, RunSummary):
            fail(name, "a RunSummary", s, TypeError)
    if tolerance is not None:
        tolerance = check_float(tolerance, "tolerance", minimum=0.0)
    alpha = check_level(alpha, "alpha")
    result = CompareResult(baseline.path, candidate.path, alpha, tolerance)
    result.only_in_baseline = sorted(t for t in baseline if t not in candidate)
    result.only_in_candidate = sorted(t for t in candidate if t not in baseline)
    result.unmeasured = [t for t in result.only_in_baseline if baseline[t].watched]
    for tag in sorted(t for t in candidate if t in baseline):
        hb, hc = baseline[tag], candidate[tag]
        watched = hb.watched or hc.watched
        tol = tolerance
        if tol is None:
            tol = next((t for t in (hc.tolerance, hb.tolerance) if t is not None), 0.0)
        latest = _latest_pair(hb, hc)
        if latest is None:  # a metric that never had a value in one of the runs
            if hb.watched and hb.latest() is not None:
                result.unmeasured.append(tag)  # the candidate has it, never with a value
            continue
        *best, among = _best_within_both(hb, hc)
        same = (best[0].epoch, best[1].epoch) == (latest[0].epoch, latest[1].epoch)
        result.rows.append(
            _row(tag, "latest = best" if same else "latest", *latest, (hb, hc), watched, tol)
        )
        if not same:
            result.rows.append(_row(tag, "best", *best, (hb, hc), watched, tol, among))
    result.unmeasured.sort()
    family = [r for r in result.rows if r.watched and not math.isnan(r.pvalue)]
    for row, adjusted in zip(family, holm_adjusted([r.pvalue for r in family]), strict=True):
        row.pvalue_holm = adjusted
        row.regressed = regressed(row.drop, row.tolerance, adjusted, alpha)
    return result


# ------------------------------------------------------------------- rendering
def _num(v: float | None, digits: int = 3, sign: bool = False) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _side(s: Side, interval: bool) -> str:
    text = _num(s.value)
    if interval and s.interval is not None and not math.isnan(s.interval[0]):
        text += f" [{s.interval[0]:.2f}, {s.interval[1]:.2f}]"
    return text


def _epochs(r: CompareRow) -> str:
    """The epoch compared, and why: ``5``; ``5 (11/5)`` when a run measured the metric
    later than the common epoch (each run's last); ``98 / 97`` when each run is at its
    own epoch."""
    b, c = r.baseline, r.candidate
    if b.epoch != c.epoch:
        return f"{b.epoch} / {c.epoch}"
    if r.at != "best" and (b.last_epoch, c.last_epoch) != (b.epoch, b.epoch):
        return f"{b.epoch} ({b.last_epoch}/{c.last_epoch})"
    return str(b.epoch)


def _test(r: CompareRow, wide: bool) -> str:
    if not wide:
        return r.test.split(" ")[0]
    if r.worse is not None:
        return f"{r.test}, {r.worse} worse / {r.better} better"
    return r.test


WIDTH = 100  # columns of the default text
CHANCE_SUFFIX = "_random"  # a faithfulness score's random-map baseline
_WIDE = ["metric", "at", "epoch", "baseline", "candidate", "delta", "p", "Holm p", "test",
         "tolerance", ""]  # fmt: skip
_NARROW = ["metric", "at", "epoch", "base", "cand", "delta", "Holm p", "test", ""]  # <= 100


def _cells(r: CompareRow, wide: bool) -> list[str]:
    base, cand = _side(r.baseline, wide), _side(r.candidate, wide)
    delta, holm = _num(r.delta, sign=True), format_p(r.pvalue_holm)
    flag = "REGRESSED" if r.regressed else ""
    if not wide:
        at = r.at.split(" ")[0]  # "latest = best" shows as "latest" (a note says why)
        return [r.metric, at, _epochs(r), base, cand, delta, holm, _test(r, False), flag]
    tol = f"{r.tolerance:g}" if r.watched else "not watched"
    p = format_p(r.pvalue)
    return [r.metric, r.at, _epochs(r), base, cand, delta, p, holm, _test(r, True), tol, flag]


def _verdict(result: CompareResult) -> str:
    watched = result.watched
    if result.regressions:
        verdict = (
            f"REGRESSED: {', '.join(result.regressions)} ({len(result.regressions)} of "
            f"{len(watched)} watched metrics)"
        )
    else:
        verdict = f"no watched metric regressed ({len(watched)} watched)"
    if result.untested:
        verdict += (
            f"; UNTESTED drop larger than its tolerance: {', '.join(result.untested)} (records "
            "of two forms, e.g. a baseline from an older lightning-viz: re-run it)"
        )
    if result.unmeasured:
        n = len(result.unmeasured)
        verdict += (
            f"; NOT MEASURED by the candidate: {n} watched metric{'s' if n > 1 else ''} of "
            f"the baseline ({', '.join(result.unmeasured)})"
        )
    return verdict


def _preamble(result: CompareResult, code: bool = False) -> list[str]:
    """The header lines; ``code``: the runs' paths as Markdown code (`_base_` is no italics)."""
    tol = "each metric's own" if result.tolerance is None else f"{result.tolerance:g} for all"
    family = sum(1 for r in result.rows if r.pvalue_holm is not None)
    best = "a `best` row's p counts the baseline runs its best was chosen from"
    fence = "``" if code else ""
    baseline, candidate = (
        f"{fence} {path} {fence}" if path and code else path or "<in memory>"
        for path in (result.baseline, result.candidate)
    )
    return [
        f"baseline:  {baseline}",
        f"candidate: {candidate}",
        f"one-sided tests that the candidate is worse, Holm-adjusted across the {family} tests",
        f"of {len(result.watched)} watched metrics; alpha {result.alpha:g}; tolerance {tol}",
        *([best] if any(r.at == "best" for r in result.rows) else []),
    ]


_TESTS = {
    "paired": "paired: sign test on the probe samples that flipped (the same probe in both runs)",
    "unpaired": "Fisher's exact test on the two proportions",
    "ranks": "Mann-Whitney U test on the per-sample values (no pairs: other or unknown probes)",
    "none": "no test (the metric has no counts)",
}


def _notes(result: CompareResult, wide: bool) -> list[str]:
    out = []
    if any("(" in _epochs(r) for r in result.rows):
        out.append("epoch N (B/C): the last epoch both runs measured; each run's own last: B, C")
    if any(r.baseline.epoch != r.candidate.epoch for r in result.rows):
        out.append(
            "epoch B / C: each run's own epoch (best: each one's best; latest: nearest the "
            "shorter run's end)"
        )
    if not wide and any(r.at == "latest = best" for r in result.rows):
        out.append("latest without a best row: the latest epochs are also each run's best")
    if not wide:
        for label in sorted({r.test for r in result.rows}):
            kind = label.split(" ")[0]
            out.append(f"{label}: {_TESTS.get(kind, kind)}" if kind != "paired" else _TESTS[kind])
        wide_note = "--wide: intervals (Wilson 95 %), raw p, flips, tolerances"
        chance = sum(1 for r in result.rows if _is_chance(r))
        if chance:
            wide_note += f"; the {chance} rows of the random-map baselines (*{CHANCE_SUFFIX})"
        out += _wrapped(wide_note)
    if result.only_in_baseline:
        out += _wrapped(f"only in baseline: {', '.join(result.only_in_baseline)}")
    if result.only_in_candidate:
        out += _wrapped(f"only in candidate: {', '.join(result.only_in_candidate)}")
    return out


def _wrapped(line: str) -> list[str]:
    """``line`` wrapped at :data:`WIDTH` columns, the rest indented (a long list of tags)."""
    return textwrap.wrap(line, WIDTH, subsequent_indent="  ", break_on_hyphens=False) or [line]


def _is_chance(r: CompareRow) -> bool:
    """A faithfulness score's random-map baseline (``explain/.../deletion_auc_random``):
    the chance level a run reads its score against, not a result to compare."""
    return not r.watched and r.metric.endswith(CHANCE_SUFFIX)


def _fitted(cells: list[list[str]]) -> list[str]:
    """The narrow table in :data:`WIDTH` columns: a metric name longer than the metric
    column can be is on a line of its own, its rows below it with that cell blank."""
    rest = [max(len(r[i]) for r in [_NARROW, *cells]) for i in range(1, len(_NARROW))]
    room = max(len(_NARROW[0]), WIDTH - sum(rest) - 2 * len(rest))
    names = [r[0] for r in cells]
    lines = text_table(
        _NARROW, [[n if len(n) <= room else "", *r[1:]] for n, r in zip(names, cells, strict=True)]
    )
    out = lines[:1]
    for i, (name, line) in enumerate(zip(names, lines[1:], strict=True)):
        if len(name) > room and (i == 0 or names[i - 1] != name):
            out.append(name)
        out.append(line)
    return out


def render_text(result: CompareResult, wide: bool = False) -> str:
    """Aligned plain text; regressions marked ``REGRESSED``.

    Args:
        result: What :func:`compare_summaries` returned.
        wide: Every column (intervals, raw p, flips, tolerance) and every row. Default:
            the columns that fit :data:`WIDTH` (100) characters (a longer metric name on
            a line of its own), without the faithfulness scores' random-map baselines.
    """
    if wide:
        table = text_table(_WIDE, [_cells(r, True) for r in result.rows])
    else:
        table = _fitted([_cells(r, False) for r in result.rows if not _is_chance(r)])
    notes = _notes(result, wide)
    verdict = _wrapped(_verdict(result))
    return "\n".join([*_preamble(result), "", *table, "", *verdict, *notes])


def render_markdown(result: CompareResult) -> str:
    """A Markdown table with every column (for a pull-request comment); regressions bold."""
    head = [h or "regressed" for h in _WIDE]
    rows = []
    for r in result.rows:
        cells = _cells(r, wide=True)
        if r.regressed:
            cells[0] = f"**{cells[0]}**"
        rows.append([*cells[:-1], "**yes**" if r.regressed else ""])
    lines = markdown_table(head, rows, align="lllrrrrrlrl")
    pre = [f"{line}  " for line in _preamble(result, code=True)]
    verdict = _verdict(result)
    verdict = f"**{verdict}**" if result.regressions else verdict
    notes = [f"- {n}" for n in _notes(result, wide=True)]
    return "\n".join([*pre, "", *lines, "", verdict, *([""] + notes if notes else [])])


def render_json(result: CompareResult) -> str:
    """:meth:`CompareResult.to_dict` as indented strict JSON."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False)


def render(result: CompareResult, fmt: str = "text", wide: bool = False) -> str:
    """The result in one of :data:`FORMATS` (``wide`` only changes ``"text"``)."""
    if fmt not in FORMATS:
        fail("format", f"one of {list(FORMATS)}", fmt)
    if fmt == "text":
        return render_text(result, wide)
    return {"markdown": render_markdown, "json": render_json}[fmt](result)


# the console command, kept importable from here
from lightning_viz.monitoring.compare_command import add_compare_parser, run_compare  # noqa: E402
