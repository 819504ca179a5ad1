"""What a person reads in TensorBoard besides the raw tags: the custom-scalars layout
and the per-epoch summary table.

Pure functions on tags and the run summary; the per-trainer coordinator writes what
they build (once per run, or at each epoch a probe ran).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightning_viz.monitoring.record import MetricHistory, RunSummary
from lightning_viz.monitoring.regression import alert_sentence
from lightning_viz.monitoring.tables import markdown_table, text_table

__all__ = [
    "CATEGORIES",
    "SummaryRow",
    "console_table",
    "custom_scalars_layout",
    "latest_rows",
    "summary_markdown",
    "summary_rows",
]

# categories of the layout, in the order TensorBoard shows them
CATEGORIES = {
    "robustness": "lightning-viz: robustness",
    "bias": "lightning-viz: bias",
    "explanations": "lightning-viz: explanations",
    "embeddings": "lightning-viz: embeddings",
    "filters": "lightning-viz: filters",
    "cost": "lightning-viz: cost",
}
_NOT_PROBE = ("viz/", "filters/")  # cost and weight norms: not in the summary table

Charts = dict[str, dict[str, list[str]]]  # category key -> chart title -> scalar tags


# ----------------------------------------------------------------------- layout
def _pattern(tag: str) -> str:
    """The custom-scalars regex that matches exactly ``tag``."""
    return f"^{re.escape(tag)}$"


def custom_scalars_layout(charts: Iterable[Charts]) -> dict[str, dict[str, list[Any]]]:
    """Merges the callbacks' charts into one layout for ``SummaryWriter.add_custom_scalars``.

    Args:
        charts: Each callback's ``{category key: {chart title: [tags]}}``; category keys
            are those of :data:`CATEGORIES` (another key becomes its own category).
            A tag listed twice is kept at its first place only.

    Returns:
        ``{category: {chart: ["Multiline", [regex, ...]]}}``: one line per tag, each
        regex matching exactly one tag (``^tag$``, escaped), categories in the order of
        :data:`CATEGORIES`, charts without tags left out.
    """
    merged: dict[str, dict[str, list[str]]] = {}
    seen: set[str] = set()
    for part in charts:
        for category, by_chart in part.items():
            for chart, tags in by_chart.items():
                fresh = [t for t in dict.fromkeys(tags) if t not in seen]
                seen.update(fresh)
                if fresh:
                    merged.setdefault(category, {}).setdefault(chart, []).extend(fresh)
    order = [*[c for c in CATEGORIES if c in merged], *[c for c in merged if c not in CATEGORIES]]
    return {
        CATEGORIES.get(c, c): {
            chart: ["Multiline", [_pattern(t) for t in tags]] for chart, tags in merged[c].items()
        }
        for c in order
    }


# ---------------------------------------------------------------- summary table
@dataclass(frozen=True)
class SummaryRow:
    """One metric at one epoch, with where it stands."""

    tag: str
    value: float
    interval: tuple[float, float] | None
    previous: tuple[int, float] | None  # (epoch, value) of the run before
    best: tuple[int, float] | None  # (epoch, value) of the best run up to this epoch
    watched: bool = False
    epoch: int | None = None  # the epoch of ``value``

    @property
    def since_previous(self) -> float | None:
        return None if self.previous is None else self.value - self.previous[1]

    @property
    def since_best(self) -> float | None:
        return None if self.best is None else self.value - self.best[1]


def _is_probe_metric(tag: str) -> bool:
    return not tag.startswith(_NOT_PROBE)


def _row(hist: MetricHistory, epoch: int) -> SummaryRow | None:
    rec = hist.epochs.get(epoch)
    if rec is None or rec.value is None:
        return None
    before = hist.latest(max_epoch=epoch - 1) if epoch > 0 else None
    best = hist.best(max_epoch=epoch)
    return SummaryRow(
        tag=hist.tag,
        value=float(rec.value),
        interval=rec.interval,
        previous=None if before is None else (before.epoch, float(before.value)),
        best=None if best is None else (best.epoch, float(best.value)),
        watched=hist.watched,
        epoch=epoch,
    )


def summary_rows(summary: RunSummary, epoch: int) -> list[SummaryRow]:
    """Every probe metric recorded at ``epoch`` (cost and weight norms left out).

    ``previous`` is the metric's latest earlier run; ``best`` its best run up to and
    including ``epoch`` (in its direction of improvement).
    """
    rows = (_row(summary[tag], epoch) for tag in summary if _is_probe_metric(tag))
    return [r for r in rows if r is not None]


def latest_rows(summary: RunSummary) -> list[SummaryRow]:
    """Every probe metric at its own latest run (the metrics of callbacks that run at
    different epochs come from different epochs; ``SummaryRow.epoch`` says which)."""
    rows = []
    for tag in summary:
        latest = summary[tag].latest()
        if latest is not None and _is_probe_metric(tag):
            row = _row(summary[tag], latest.epoch)
            if row is not None:
                rows.append(row)
    return rows


def _num(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def _change(delta: float | None) -> str:
    if delta is None:
        return "—"
    return "±0" if abs(delta) < 5e-4 else f"{delta:+.3f}"


def _cells(row: SummaryRow) -> list[str]:
    interval = "—" if row.interval is None else f"{row.interval[0]:.2f}–{row.interval[1]:.2f}"
    previous = _change(row.since_previous)
    if row.previous is not None:
        previous += f" (epoch {row.previous[0]})"
    best = _change(row.since_best)
    if row.best is not None:
        best += f" (best {_num(row.best[1])}, epoch {row.best[0]})"
    name = f"**{row.tag}**" if row.watched else row.tag
    return [name, _num(row.value), interval, previous, best]


_HEADER = ["metric", "value", "95 % interval", "since the previous run", "since the best"]


def summary_markdown(
    rows: Sequence[SummaryRow], epoch: int, step: int, alerts: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The Markdown text of one epoch: the table of :func:`summary_rows` and its alerts."""
    lines = [
        f"**Epoch {epoch}** (step {step}) — watched metrics in bold; intervals are 95 % "
        "Wilson intervals over the probe samples",
        "",
        *markdown_table(_HEADER, [_cells(r) for r in rows], align="lrlll"),
        "",
    ]
    if alerts:
        lines += [f"**{len(alerts)} alert{'s' if len(alerts) > 1 else ''}:**", ""]
        lines += [f"- {alert_sentence(a)}" for a in alerts]
    else:
        lines.append("No new alert at this epoch (a regression alerts once, when it starts).")
    return "\n".join(lines)


def console_table(rows: Sequence[SummaryRow], epoch: int | None = None) -> str:
    """The same table as plain aligned text, for the console at the end of ``fit``.

    With rows of one epoch the title names it (``epoch`` when given, else the rows');
    rows of several epochs get an ``epoch`` column after the value instead.
    """
    epochs = {r.epoch for r in rows if r.epoch is not None}
    per_row = len(epochs) > 1
    header = list(_HEADER)
    if per_row:
        header.insert(2, "epoch")
    body = []
    for r in rows:
        cells = _cells(r)
        cells[0] = f"{r.tag} *" if r.watched else r.tag  # bold does not print
        if per_row:
            cells.insert(2, "—" if r.epoch is None else str(r.epoch))
        body.append(cells)
    if per_row:
        title = "lightning-viz, each probe metric at its latest run"
    else:
        shown = epoch if epoch is not None else next(iter(epochs), None)
        title = f"lightning-viz, epoch {shown}"
    title += " (* watched):" if any(r.watched for r in rows) else ":"
    return "\n".join([title, *text_table(header, body, rule=True)])
