"""The run summary: ``<log_dir>/lightning_viz/summary.json``.

One :class:`RunSummary` per run holds, per metric tag (``robustness/pgd_acc@8/255``,
``bias/shape_bias``, ``embedding/knn_acc``, ...) and per epoch, the value and, for
proportions, the counts, the Wilson interval and the per-sample outcomes that paired
tests need, with the fingerprint of the probe they were measured on; and the alerts
the run raised. ``baseline=`` of the callbacks and ``lightning-viz compare`` read it.

The file's format and text: :mod:`~lightning_viz.monitoring.summary_file`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lightning_viz._checks import check_bool, check_float, check_int, fail, python_scalar
from lightning_viz._io import atomic_write, json_safe
from lightning_viz.monitoring.rule import ALERT_KINDS, oriented
from lightning_viz.monitoring.stats import MAX_COUNT, outcome_list, wilson_interval

__all__ = [
    "CONFIDENCE",
    "FORMAT",
    "SUMMARY_DIR",
    "SUMMARY_FILE",
    "VERSION",
    "EpochRecord",
    "MetricHistory",
    "RunSummary",
    "SummaryError",
    "make_record",
    "read_summary",
    "summary_path",
]

FORMAT = "lightning-viz-summary"
VERSION = 1
SUMMARY_DIR = "lightning_viz"
SUMMARY_FILE = "summary.json"
CONFIDENCE = 0.95
"""Confidence level of the Wilson intervals written to the file."""
VALUE_DECIMALS = 6
"""Decimals a per-sample value keeps (in memory as in ``summary.json``)."""


# ------------------------------------------------------------------- checks
def _check_value(value: Any, name: str) -> float:
    """A metric value: a real number; NaN is allowed (undefined this epoch), infinities not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, "a number (NaN allowed)", value, TypeError)
    value = float(value)
    if math.isinf(value):
        fail(name, "a finite number or NaN", value)
    return value


class SummaryError(ValueError):
    """A run summary cannot be found or read (missing, not JSON, another format/version)."""


def summary_path(log_dir: str | os.PathLike[str]) -> str:
    """``<log_dir>/lightning_viz/summary.json``."""
    return os.path.join(os.fspath(log_dir), SUMMARY_DIR, SUMMARY_FILE)


# ------------------------------------------------------------------------ records
def _encode_outcomes(outcomes: list[int | None]) -> str:
    return "".join("-" if v is None else str(v) for v in outcomes)


@dataclass(frozen=True)
class EpochRecord:
    """One metric at one epoch.

    Build it with :func:`make_record` or :meth:`RunSummary.record` (they check and
    complete the fields).

    Attributes:
        epoch: Epoch of the run.
        step: ``trainer.global_step`` it was logged at.
        value: The value (NaN when undefined, e.g. a shape bias without decisions).
        n: Samples counted (the denominator of a proportion), when known.
        successes: Successes among them, when known.
        outcomes: Per-sample outcomes in the compact form ``"10-1..."``, when known.
        fingerprint: Hex fingerprint of the probe the outcomes belong to, when known.
        values: Per-sample values of a metric that is a mean over the probe (e.g. a
            deletion AUC), when known; NaN for a sample not counted.
    """

    epoch: int
    step: int
    value: float
    n: int | None = None
    successes: int | None = None
    outcomes: str | None = None
    fingerprint: str | None = None
    values: tuple[float, ...] | None = None

    @cached_property  # a record never changes: its interval and text are made once
    def interval(self) -> tuple[float, float] | None:
        """The Wilson interval at :data:`CONFIDENCE`, or ``None`` without counts."""
        if self.n is None or self.successes is None:
            return None
        return wilson_interval(self.successes, self.n, CONFIDENCE)

    @cached_property
    def json_text(self) -> str:
        """:meth:`to_dict` as one line of JSON (the file's line for this record)."""
        return json.dumps(self.to_dict(), allow_nan=False)

    def outcome_list(self) -> list[int | None] | None:
        """The outcomes as a list of ``1``/``0``/``None``, or ``None`` when not stored."""
        return None if self.outcomes is None else outcome_list(self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; optional fields only when known, NaN as ``None``."""
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "value": None if math.isnan(self.value) else self.value,
        }
        if self.n is not None:
            out["n"] = self.n
        if self.successes is not None:
            out["successes"] = self.successes
        interval = self.interval
        if interval is not None and not math.isnan(interval[0]):
            out["interval"] = [interval[0], interval[1]]
        for key in ("outcomes", "fingerprint"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.values is not None:
            out["values"] = [None if math.isnan(v) else v for v in self.values]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochRecord:
        """Inverse of :meth:`to_dict` (``interval`` is recomputed, not read)."""
        if not isinstance(data, Mapping):
            fail("record", "a JSON object", data, TypeError)
        value = data.get("value")
        return make_record(
            data["epoch"],
            data["step"],
            math.nan if value is None else value,
            n=data.get("n"),
            successes=data.get("successes"),
            outcomes=data.get("outcomes"),
            fingerprint=data.get("fingerprint"),
            values=data.get("values"),
        )


def _values(values: Any) -> tuple[float, ...]:
    """Per-sample values as floats (``None`` read as NaN)."""
    if isinstance(values, str | bytes) or not isinstance(values, list | tuple):
        fail(
            "values", "a list of numbers (None or NaN for a sample not counted)", values, TypeError
        )
    out = []
    for v in values:
        v = python_scalar(v)  # np.float32, a 0-d tensor
        if v is None:
            out.append(math.nan)
        elif isinstance(v, bool) or not isinstance(v, int | float):
            fail("values", "a list of numbers (None or NaN for a sample not counted)", v, TypeError)
        elif math.isinf(v):
            fail("values", "finite numbers (None or NaN for a sample not counted)", v)
        else:
            out.append(float(v))
    return tuple(out)


def make_record(
    epoch: int,
    step: int,
    value: float | None = None,
    *,
    n: int | None = None,
    successes: int | None = None,
    outcomes: Any = None,
    fingerprint: str | None = None,
    values: Any = None,
) -> EpochRecord:
    """A checked :class:`EpochRecord`, with counts derived from the outcomes.

    Args:
        epoch: Epoch, ``>= 0``.
        step: Global step, ``>= 0``.
        value: The value; ``None`` means ``successes / n`` (NaN when ``n == 0``).
        n: Samples counted. Default: from ``outcomes`` (those not ``None``).
        successes: Successes, ``<= n``. Default: from ``outcomes`` (the ``1``s).
        outcomes: Per-sample ``1``/``0``/``None`` (a list, tuple or ``"10-"`` string).
        fingerprint: Hex string identifying the probe's samples.
        values: Per-sample values (a list of numbers, ``None``/NaN not counted) of a
            metric that is their mean; ``value=None`` then means their mean (of the
            values as given). They are kept to ``VALUE_DECIMALS`` decimals, as
            ``summary.json`` stores them, so a test on the live record and one on the
            file see the same samples.

    Returns:
        The record.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: A negative count, ``successes > n``, counts that disagree with the
            outcomes, ``successes`` without ``n``, or no value and no counts.
    """
    epoch = check_int(epoch, "epoch", minimum=0)
    step = check_int(step, "step", minimum=0)
    encoded = None
    if outcomes is not None:
        items = outcome_list(outcomes, "outcomes")
        encoded = _encode_outcomes(items)
        counted = sum(v is not None for v in items)
        ones = sum(v == 1 for v in items)
        if n is not None and check_int(n, "n", minimum=0) != counted:
            fail("n", f"the number of counted outcomes ({counted})", n)
        if successes is not None and check_int(successes, "successes", minimum=0) != ones:
            fail("successes", f"the number of 1s in `outcomes` ({ones})", successes)
        n, successes = counted, ones
    if n is not None:
        n = check_int(n, "n", minimum=0, maximum=MAX_COUNT)
    if successes is not None:
        if n is None:
            fail("n", "given with `successes`", None)
        successes = check_int(successes, "successes", minimum=0)
        if successes > n:  # type: ignore[operator]
            fail("successes", f"an int <= `n` ({n})", successes)
    vals = None if values is None else _values(values)
    derived = _derived_value(vals, n, successes)
    if vals is not None:  # as summary.json keeps them: the live rule and `compare` agree
        vals = tuple(round(v, VALUE_DECIMALS) for v in vals)
    if value is None:
        if derived is None:
            fail("value", "a number (or None with `n` and `successes` or `outcomes`)", None)
        value = derived
    value = _check_value(value, "value")
    if derived is not None and not math.isnan(derived) and not math.isnan(value):
        # the drop comes from the value, the test from the samples: they must agree, up
        # to the 6-decimal rounding of the values and a float32 mean's error
        if abs(value - derived) > 1e-6 + 1e-5 * abs(derived):
            fail("value", f"{derived:.6g}, what the counts or per-sample values give", value)
    if fingerprint is not None and not isinstance(fingerprint, str):
        fail("fingerprint", "a str or None", fingerprint, TypeError)
    return EpochRecord(epoch, step, value, n, successes, encoded, fingerprint, vals)


def _derived_value(
    vals: tuple[float, ...] | None, n: int | None, successes: int | None
) -> float | None:
    """The value the per-sample values (their mean) or the counts give, else ``None``."""
    if vals is not None:
        counted = [v for v in vals if not math.isnan(v)]
        return sum(counted) / len(counted) if counted else math.nan
    if n is None or successes is None:
        return None
    return successes / n if n else math.nan


# ---------------------------------------------------------------------- histories
@dataclass
class MetricHistory:
    """One metric over the epochs of a run, with how it is judged.

    Attributes:
        tag: The metric's tag.
        callback: Class name of the callback that writes it.
        watched: Whether its regressions are alerts (and fail ``compare``).
        tolerance: Drop that counts as practically large, or ``None``.
        higher_is_better: Direction of improvement.
        epochs: Epoch -> :class:`EpochRecord`.
    """

    tag: str
    callback: str | None = None
    watched: bool = False
    tolerance: float | None = None
    higher_is_better: bool = True
    epochs: dict[int, EpochRecord] = field(default_factory=dict)

    def records(self, min_epoch: int = 0, max_epoch: int | None = None) -> list[EpochRecord]:
        """Records with ``min_epoch <= epoch <= max_epoch`` and a value, by epoch."""
        return [
            r
            for e, r in sorted(self.epochs.items())
            if e >= min_epoch and (max_epoch is None or e <= max_epoch) and not math.isnan(r.value)
        ]

    def latest(self, max_epoch: int | None = None, min_epoch: int = 0) -> EpochRecord | None:
        """The last record with a value at or before ``max_epoch`` (any epoch if ``None``)."""
        found = self.records(min_epoch, max_epoch)
        return found[-1] if found else None

    def best(self, min_epoch: int = 0, max_epoch: int | None = None) -> EpochRecord | None:
        """The best record in the epoch range (the earliest of equal values)."""
        records = self.records(min_epoch, max_epoch)  # max keeps the first of equal values
        return max(records, key=lambda r: oriented(r.value, self.higher_is_better), default=None)

    def settings(self) -> dict[str, Any]:
        """How the metric is judged: ``callback``, ``watched``, ``tolerance``,
        ``higher_is_better``."""
        return {
            "callback": self.callback,
            "watched": self.watched,
            "tolerance": self.tolerance,
            "higher_is_better": self.higher_is_better,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.settings(),
            "epochs": [r.to_dict() for _, r in sorted(self.epochs.items())],
        }


# ------------------------------------------------------------------------ summary
class RunSummary:
    """Every lightning-viz metric of one run, per epoch, and the alerts it raised.

    The per-trainer coordinator owns one and writes it after every callback run
    (global rank 0). A resumed run (same log dir) continues the file with
    :meth:`load_or_new`; recording the same ``(tag, epoch)`` again replaces it.

    Attributes:
        metrics: Tag -> :class:`MetricHistory`.
        alerts: The alerts, as plain dicts (see :meth:`add_alert`), in order.
        path: The file it was loaded from or last written to, else ``None``.

    Examples:
        >>> s = RunSummary()
        >>> r = s.record("bias/shape_bias", 0, 10, outcomes=[1, 1, 0, None],
        ...              callback="TextureShapeBias", watched=True, tolerance=0.05)
        >>> (r.n, r.successes, round(r.value, 3))
        (3, 2, 0.667)
    """

    def __init__(self) -> None:
        self.metrics: dict[str, MetricHistory] = {}
        self.alerts: list[dict[str, Any]] = []
        self.path: str | None = None

    # ---------------------------------------------------------------- access
    def __contains__(self, tag: object) -> bool:
        return tag in self.metrics

    def __getitem__(self, tag: str) -> MetricHistory:
        return self.metrics[tag]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __repr__(self) -> str:
        return (
            f"RunSummary({len(self.metrics)} metrics, {len(self.alerts)} alerts, "
            f"path={self.path!r})"
        )

    # ------------------------------------------------------------- recording
    def record(
        self,
        tag: str,
        epoch: int,
        step: int,
        value: float | None = None,
        *,
        n: int | None = None,
        successes: int | None = None,
        outcomes: Any = None,
        fingerprint: str | None = None,
        values: Any = None,
        callback: str | None = None,
        watched: bool | None = None,
        tolerance: float | None = None,
        higher_is_better: bool | None = None,
    ) -> EpochRecord:
        """Records one metric at one epoch (replacing an earlier record of that epoch).

        Args:
            tag: The metric's tag, e.g. ``"robustness/pgd_acc@8/255"``.
            epoch: Epoch, ``>= 0``.
            step: ``trainer.global_step``, ``>= 0``.
            value: The value; ``None`` means ``successes / n``.
            n: Samples counted. Default: from ``outcomes``.
            successes: Successes among them. Default: from ``outcomes``.
            outcomes: Per-sample ``1``/``0``/``None`` on the probe (list, tuple or string).
            fingerprint: Hex fingerprint of the probe.
            values: Per-sample values of a metric that is their mean.
            callback: Class name of the writing callback.
            watched: Whether regressions of this metric are alerts.
            tolerance: Practically large drop, ``>= 0``.
            higher_is_better: Direction of improvement. ``callback``, ``watched``,
                ``tolerance`` and ``higher_is_better`` describe the metric, not the
                epoch: ``None`` keeps what the metric has (a new metric: ``None``,
                ``False``, ``None``, ``True``).

        Returns:
            The stored :class:`EpochRecord`.

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: A bad value (see :func:`make_record`), an empty ``tag``, a
                negative ``tolerance``.
        """
        if not isinstance(tag, str):
            fail("tag", "a non-empty str", tag, TypeError)
        if not tag:
            fail("tag", "a non-empty str", tag)
        if callback is not None and not isinstance(callback, str):
            fail("callback", "a str or None", callback, TypeError)
        if watched is not None:
            check_bool(watched, "watched")
        if tolerance is not None:
            tolerance = check_float(tolerance, "tolerance", minimum=0.0)
        if higher_is_better is not None:
            check_bool(higher_is_better, "higher_is_better")
        rec = make_record(
            epoch,
            step,
            value,
            n=n,
            successes=successes,
            outcomes=outcomes,
            fingerprint=fingerprint,
            values=values,
        )
        hist = self.metrics.setdefault(tag, MetricHistory(tag))
        if callback is not None:
            hist.callback = callback
        if watched is not None:
            hist.watched = watched
        if tolerance is not None:
            hist.tolerance = tolerance
        if higher_is_better is not None:
            hist.higher_is_better = higher_is_better
        hist.epochs[rec.epoch] = rec
        return rec

    def add_alert(self, alert: Any) -> dict[str, Any]:
        """Stores an alert (replacing one with the same epoch, metric and kind).

        Args:
            alert: A mapping, or an object with ``to_dict()`` (the ``Alert`` of
                :mod:`lightning_viz.monitoring.regression`), with at least ``epoch``
                (int), ``metric`` (str) and ``kind`` (``"best"`` or ``"baseline"``);
                other keys (values, p-value, message, ...) are kept as given and must
                be JSON types.

        Returns:
            The stored dict.

        Raises:
            TypeError: Not a mapping, or a key of the wrong type.
            ValueError: A missing key or an unknown kind.
        """
        data = alert.to_dict() if hasattr(alert, "to_dict") else alert
        if not isinstance(data, Mapping):
            fail("alert", "a mapping or an object with to_dict()", alert, TypeError)
        data = dict(data)
        for key in ("epoch", "metric", "kind"):
            if key not in data:
                fail("alert", f"a mapping with the key {key!r}", sorted(data))
        check_int(data["epoch"], "alert['epoch']", minimum=0)
        if not isinstance(data["metric"], str):
            fail("alert['metric']", "a str", data["metric"], TypeError)
        if data["kind"] not in ALERT_KINDS:
            fail("alert['kind']", f"one of {list(ALERT_KINDS)}", data["kind"])
        key = (data["epoch"], data["metric"], data["kind"])
        self.alerts = [a for a in self.alerts if (a["epoch"], a["metric"], a["kind"]) != key]
        self.alerts.append(data)
        return data

    def drop_after(self, epoch: int) -> None:
        """Forgets records and alerts of epochs after ``epoch`` (and metrics left with none).

        For a run resumed from a checkpoint older than the summary: the epochs after
        the checkpoint will run again, and alerts raised in them before may not recur.

        Args:
            epoch: The last epoch to keep (``-1`` forgets everything).
        """
        epoch = check_int(epoch, "epoch", minimum=-1)
        for hist in self.metrics.values():
            hist.epochs = {e: r for e, r in hist.epochs.items() if e <= epoch}
        self.metrics = {tag: hist for tag, hist in self.metrics.items() if hist.epochs}
        self.alerts = [a for a in self.alerts if a["epoch"] <= epoch]

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        """The file's content as plain JSON types (its format:
        :mod:`~lightning_viz.monitoring.summary_file`)."""
        return {
            **self.head(),
            "metrics": {tag: hist.to_dict() for tag, hist in self.metrics.items()},
            "alerts": [json_safe(a) for a in self.alerts],
        }

    @staticmethod
    def head() -> dict[str, Any]:
        """The file's first keys: its format, version, writer and confidence level."""
        from lightning_viz import __version__

        return {
            "format": FORMAT,
            "version": VERSION,
            "lightning_viz": __version__,
            "confidence": CONFIDENCE,
        }

    def to_json(self) -> str:
        """The file's text (:func:`~lightning_viz.monitoring.summary_file.summary_text`)."""
        from lightning_viz.monitoring.summary_file import summary_text

        return summary_text(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> RunSummary:
        """Reads :meth:`to_dict`'s form (checked: see
        :func:`~lightning_viz.monitoring.summary_file.summary_from_dict`).

        Args:
            data: The decoded JSON.
            source: Where it came from, for error messages.

        Raises:
            SummaryError: Another format, a newer version, or a malformed content.
        """
        from lightning_viz.monitoring.summary_file import summary_from_dict

        return summary_from_dict(data, source)

    def write(self, log_dir: str | os.PathLike[str]) -> str:
        """Writes ``<log_dir>/lightning_viz/summary.json`` atomically; returns its path.

        The content goes to a temporary file in the same folder, which then replaces
        the summary (``os.replace``), so a reader never sees half a file. The folder
        is created when missing.
        """
        path = summary_path(log_dir)
        atomic_write(path, self.to_json())
        self.path = path
        return path

    @classmethod
    def load_or_new(cls, log_dir: str | os.PathLike[str]) -> RunSummary:
        """The summary of ``log_dir`` when it has one (a resumed run), else a new one.

        Raises:
            SummaryError: The existing file cannot be read.
        """
        path = summary_path(log_dir)
        if os.path.isfile(path):
            return read_summary(path)
        return cls()


# ------------------------------------------------------------------------ loading
def read_summary(path: str) -> RunSummary:
    """Reads one ``summary.json`` (see :func:`~lightning_viz.monitoring.store.load_summary`
    to find a run's).

    Raises:
        SummaryError: Not readable, not JSON, another format, a newer version or a
            malformed content (the error names the file and where in it).
    """
    from lightning_viz.monitoring.summary_file import read_summary_file

    return read_summary_file(path)
