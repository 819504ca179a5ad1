"""Figures: line, bar and scatter plots built on ``matplotlib.figure.Figure`` (no pyplot).

Figures are built with ``matplotlib.figure.Figure`` directly and drawn with the Agg
canvas, so no pyplot state is created and the global backend is never changed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib.text
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from lightning_viz._checks import check_labels, check_str_list, check_tensor, fail

__all__ = ["bar_figure", "line_figure", "scatter_figure"]

_DPI = 80  # figures: 480 px wide at 6 in, enough for a TensorBoard card
_LEGEND_WIDTH = 22  # characters a line of a legend entry beside the axes
_MAX_FIGURE_WIDTH = 12.5  # in: 1000 px at _DPI (a bar figure grows with its categories)


def _fitted(text: str, inches: float, points: float = 7.0) -> str:
    """``text`` in lines that fit ``inches`` (about ``points`` a character: a 12-pt
    title; a long one, "... (none by shape or texture yet: no shape bias)", ran past both
    sides of the figure and was cut)."""
    width = max(int(inches * 72 / points), 16)
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n")) if text else text


def _plain_text(fig: Figure) -> Figure:
    """``fig`` with TeX and mathtext off for every text it draws (title, labels, legend,
    tick labels and their formatters), whatever the user's ``text.usetex`` and
    ``axes.formatter.use_mathtext``: LaTeX may be missing, it reads our tags'
    underscores as markup, and a class name with two ``$`` ("cost $5-$10") is no
    formula (an invalid one failed the draw). The global rcParams are never touched
    (the background worker draws while the user's thread may plot); the tick labels made
    at the draw copy the first tick's text properties."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for formatter in (axis.get_major_formatter(), axis.get_minor_formatter()):
                if hasattr(formatter, "set_usetex"):
                    formatter.set_usetex(False)
                elif hasattr(formatter, "_usetex"):  # matplotlib < 3.8: no setter
                    formatter._usetex = False
                if hasattr(formatter, "set_useMathText"):
                    formatter.set_useMathText(False)
            for tick in [*axis.majorTicks[:1], *axis.minorTicks[:1]]:
                for label in (tick.label1, tick.label2):
                    label.set_usetex(False)
                    label.set_parse_math(False)
    for text in fig.findobj(matplotlib.text.Text):
        text.set_usetex(False)
        text.set_parse_math(False)
    return fig


# ------------------------------------------------------------------- checks
def check_numbers(values: Any, name: str, *, length: int | None = None) -> list[float]:
    """A non-empty list of numbers (``length`` of them when given), returned as floats."""
    what = "a non-empty list of numbers" + (f" ({length} of them)" if length is not None else "")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        out = None
    if out is None:
        fail(name, what, values, TypeError)
    if not out or (length is not None and len(out) != length):
        fail(name, what, values)
    return out


def check_series(series: Any, name: str, length: int) -> dict[str, list[float]]:
    """A non-empty dict ``{label: numbers}`` with ``length`` numbers per label."""
    if not isinstance(series, dict) or not all(isinstance(k, str) for k in series):
        fail(name, "a dict of name -> list of numbers", series, TypeError)
    if not series:
        fail(name, "a non-empty dict of name -> list of numbers", series)
    return {k: check_numbers(v, f"{name}[{k!r}]", length=length) for k, v in series.items()}


def check_intervals(
    intervals: Any, lengths: dict[str, int]
) -> dict[str, tuple[list[float], list[float]]]:
    """``None`` or ``{name: [(low, high), ...]}`` for series named in ``lengths``, one pair
    per value; returned as ``{name: ([low, ...], [high, ...])}``."""
    if intervals is None:
        return {}
    if not isinstance(intervals, dict) or any(k not in lengths for k in intervals):
        fail("intervals", f"None or a dict with keys among {sorted(lengths)}", intervals, TypeError)
    out = {}
    for name, pairs in intervals.items():
        pairs = list(pairs)
        if len(pairs) != lengths[name] or any(len(p) != 2 for p in pairs):
            fail("intervals", f"(low, high) pairs, one per value of {name!r}", pairs)
        out[name] = ([float(p[0]) for p in pairs], [float(p[1]) for p in pairs])
    return out


def line_figure(
    x: Sequence[float],
    series: dict[str, list[float]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    xticklabels: list[str] | None = None,
    intervals: dict[str, list[tuple[float, float]]] | None = None,
    styles: dict[str, dict[str, Any]] | None = None,
) -> Figure:
    """One line (with markers) per series over shared ``x`` values, with a legend
    beside the axes (inside, it covered the right end of the curves).

    Args:
        x: The x values.
        series: ``{name: y values}``, each as long as ``x``.
        intervals: ``{name: [(low, high), ...]}`` confidence intervals drawn as
            shaded bands (for some or all series). Default: ``None``.
        xlabel: Label of the x axis. Default: ``""``.
        ylabel: Label of the y axis. Default: ``""``.
        title: Figure title. Default: ``""``.
        xticklabels: Tick labels at the ``x`` values (e.g. ``"2/255"``), or
            ``None`` for numeric ticks. Where two neighbouring values are closer than
            their labels are wide (2.2 % of the range a character of the longest
            label: ``1/255`` and ``2/255`` of a sweep to ``12/255``), the values are
            placed evenly instead, each at its label, and the x label says "(evenly
            spaced)". Default: ``None``.
        styles: ``{name: matplotlib line options}`` for some series (e.g. a dashed
            envelope drawn over the lines it summarizes, which must not hide them).
            Default: ``None``.

    Returns:
        A :class:`matplotlib.figure.Figure` with one axes.

    Raises:
        TypeError: Non-numeric values or wrong container types.
        ValueError: Empty ``x``/``series`` or mismatched lengths.
    """
    xs = check_numbers(x, "x")
    data = check_series(series, "series", len(xs))
    xticklabels = check_str_list(xticklabels, "xticklabels", length=len(xs))
    bands = check_intervals(intervals, {k: len(v) for k, v in data.items()})
    if styles is not None and (
        not isinstance(styles, dict) or not all(isinstance(v, dict) for v in styles.values())
    ):
        fail("styles", "None or a dict {series name: dict of line options}", styles, TypeError)
    if xticklabels is not None and len(xs) > 2:
        gaps = np.diff(np.sort(np.asarray(xs, dtype=float)))
        # a label takes about 2.2 % of the axes' width a character (10-pt text, legend
        # beside): neighbours closer than the longest label would overlap
        room = 0.022 * max(len(label) for label in xticklabels) * (max(xs) - min(xs))
        even = np.allclose(gaps, gaps.mean(), rtol=1e-6, atol=0.0)  # then: as they are
        if float(gaps.min()) < room and not even:
            xs = [float(i) for i in np.argsort(np.argsort(np.asarray(xs, dtype=float)))]
            xlabel = f"{xlabel} (evenly spaced)".strip()  # the slopes are not to scale
    fig = Figure(figsize=(6.0, 4.0), dpi=_DPI, layout="tight")  # not the rc's engine
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in data.items():
        label = textwrap.fill(name, _LEGEND_WIDTH)  # a long name would squeeze the axes
        (line,) = ax.plot(xs, ys, **{"marker": "o", "label": label, **(styles or {}).get(name, {})})
        if name in bands:
            lo, hi = bands[name]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    if xticklabels is not None:
        ax.set_xticks(xs)
        # still wider than their slots when placed evenly (many values): tilted
        crowded = len(xs) * max(len(t) for t in xticklabels) * 6.5 > 300
        ax.set_xticklabels(
            xticklabels, rotation=45 if crowded else 0, ha="right" if crowded else "center"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_fitted(ylabel, 3.0, 6.0))
    ax.set_title(_fitted(title, 6.0 - 1.6))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    _plain_text(fig)  # before the draw's tight layout measures the texts
    return fig


def bar_figure(
    categories: list[str],
    series: dict[str, list[float]],
    *,
    ylabel: str = "",
    title: str = "",
    intervals: dict[str, list[tuple[float, float]]] | None = None,
) -> Figure:
    """Grouped bars: one group per category, one bar per series, with a legend.

    The figure is 6 in wide, 0.3 in per bar when there are more than 20 bars, and
    at most 12.5 in (1000 px at the 80 dpi of every figure here).

    Args:
        categories: Category names on the x axis.
        series: ``{name: values}``, each with one value per category.
        intervals: ``{name: [(low, high), ...]}`` confidence intervals drawn as
            error bars (for some or all series). Default: ``None``.
        ylabel: Label of the y axis. Default: ``""``.
        title: Figure title. Default: ``""``.

    Returns:
        A :class:`matplotlib.figure.Figure` with one axes holding
        ``len(categories) * len(series)`` bars.

    Raises:
        TypeError: Wrong container types or non-numeric values.
        ValueError: Empty ``categories``/``series`` or mismatched lengths.
    """
    cats = check_str_list(categories, "categories", optional=False)
    if not cats:
        fail("categories", "a non-empty list of strings", cats)
    data = check_series(series, "series", len(cats))
    bands = check_intervals(intervals, {k: len(v) for k, v in data.items()})
    fig_width = min(max(6.0, 0.3 * len(cats) * len(data)), _MAX_FIGURE_WIDTH)
    fig = Figure(figsize=(fig_width, 4.0), dpi=_DPI, layout="tight")  # not the rc's engine
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(data)
    pos = np.arange(len(cats))
    for j, (name, vals) in enumerate(data.items()):
        err = None
        if name in bands:
            lo, hi = (np.asarray(b, dtype=float) for b in bands[name])
            v = np.asarray(vals, dtype=float)
            err = np.nan_to_num(np.stack([v - lo, hi - v]).clip(min=0))
        label = textwrap.fill(name, _LEGEND_WIDTH)  # as line_figure's: narrow beside the axes
        ax.bar(pos - 0.4 + width * (j + 0.5), vals, width=width, label=label, yerr=err, capsize=2)
    ax.set_xticks(pos)
    # tilted when there are many, or when a name is wider than its slot (about 6.5 pt a
    # character of 10-pt text; the axes are about 1.6 in narrower than the figure, the
    # legend beside them)
    slot = (fig_width - 1.6) * 72 / len(cats)
    tilt = len(cats) > 6 or max(len(c) for c in cats) * 6.5 > slot
    ax.set_xticklabels(cats, rotation=45 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylabel(_fitted(ylabel, 2.8, 6.0))  # tilted names below take some of the 4 in
    ax.set_title(_fitted(title, fig_width - 1.6))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # not over bars
    _plain_text(fig)  # before the draw's tight layout measures the texts
    return fig


_LEGEND_CLASSES = 20  # more classes: no legend (it would cover the figure)


def _legend_label(name: str) -> str:
    """``name`` as matplotlib's legend shows it: a label that is empty or starts with
    ``_`` (``"_background"``) is left out of the legend, so it gets a leading space."""
    return f" {name}" if not name or name.startswith("_") else name


def scatter_figure(
    points: Tensor,
    labels: Tensor,
    *,
    class_names: list[str] | None = None,
    title: str = "",
) -> Figure:
    """A 2-D scatter plot of an embedding, one color and legend entry per class (over
    20 classes: colors along ``turbo`` and no legend, which would cover the points).

    Args:
        points: ``(N, 2)`` coordinates (e.g. from ``tsne``/``pca``).
        labels: ``(N,)`` integer class indices.
        class_names: Names for the class indices (legend), or ``None`` to show the
            indices. Default: ``None``.
        title: Figure title. Default: ``""``.

    Returns:
        A :class:`matplotlib.figure.Figure` with one axes holding one collection
        per class present in ``labels``, in increasing class order.

    Raises:
        TypeError: Non-tensor inputs, float labels, bad ``class_names``.
        ValueError: Wrong shapes, mismatched lengths, a label without a name.
    """
    points = check_tensor(
        points, "points", "(N, 2)", dim=2, channels=(2,), floating=True, allow_nan=False
    )
    labels = check_labels(labels, "labels", points.shape[0], allow_negative=True)
    pts = points.detach().float().cpu().numpy()
    lab = labels.detach().cpu().numpy()
    classes = sorted(int(c) for c in np.unique(lab))
    if class_names is not None:
        class_names = check_str_list(class_names, "class_names")
        if classes[0] < 0 or classes[-1] >= len(class_names):
            fail("class_names", f"a name for each label in {classes}", class_names)
    many = len(classes) > _LEGEND_CLASSES  # distinct colors along a colormap, no legend
    cmap = matplotlib.colormaps["turbo" if many else "tab10" if len(classes) <= 10 else "tab20"]
    fig = Figure(figsize=(6.0, 5.0), dpi=_DPI, layout="tight")  # not the rc's engine
    ax = fig.add_subplot(1, 1, 1)
    for j, c in enumerate(classes):
        sel = lab == c
        name = class_names[c] if class_names is not None else str(c)
        color = cmap(j / (len(classes) - 1)) if many else cmap(j % cmap.N)
        ax.scatter(pts[sel, 0], pts[sel, 1], s=8, color=color, label=_legend_label(name))
    ax.set_title(_fitted(f"{title} ({len(classes)} classes, colors only)" if many else title, 4.4))
    ax.set_xticks([])
    ax.set_yticks([])
    if not many:  # beside the points, not over them
        ax.legend(markerscale=2, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    _plain_text(fig)  # before the draw's tight layout measures the texts
    return fig
