"""The text of ``summary.json``: its format, with one line per epoch record.

The file (format ``"lightning-viz-summary"``, version 1)::

    {
      "format": "lightning-viz-summary",
      "version": 1,
      "lightning_viz": "0.1.0",
      "confidence": 0.95,
      "metrics": {
        "bias/shape_bias": {
          "callback": "TextureShapeBias", "watched": true, "tolerance": 0.05,
          "higher_is_better": true,
          "epochs": [
            {"epoch": 0, "step": 63, "value": 0.7, "n": 70, "successes": 49,
             "interval": [0.585, 0.795], "outcomes": "1101-0...", "fingerprint": "9f2c..."}
          ]
        },
        "embedding/knn_acc": {"callback": "EmbeddingProjector", "watched": false,
                              "tolerance": null, "higher_is_better": true,
                              "epochs": [{"epoch": 0, "step": 63, "value": 0.81}]}
      },
      "alerts": [
        {"epoch": 6, "step": 441, "metric": "bias/shape_bias", "kind": "best", ...}
      ]
    }

``epochs`` is sorted by epoch; ``n``, ``successes``, ``interval`` (Wilson, at
``confidence``), ``outcomes`` (one character per probe sample: ``'1'`` success, ``'0'``
failure, ``'-'`` not counted) and ``fingerprint`` are present only when known. A value
that is not a number (NaN) is written as ``null``: the file is strict JSON.

In the file each epoch record and each alert is one line. A record's line is made
once (``EpochRecord.json_text``), so writing the summary at every epoch end stays
linear in the epochs.

Reading checks what writing guarantees: each key once, each epoch once per metric,
settings of their JSON type, a ``value`` that agrees with the record's counts or
per-sample values. A file that breaks one (hand-edited, merged, truncated) is a
``SummaryError`` naming the file and the place, never a silently other comparison.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightning_viz._checks import check_float, fail
from lightning_viz._io import json_safe

if TYPE_CHECKING:
    from lightning_viz.monitoring.record import MetricHistory, RunSummary

__all__ = ["read_summary_file", "summary_from_dict", "summary_text"]


def summary_text(summary: RunSummary) -> str:
    """The file's text: ``summary.to_dict()``'s content, one line per record and alert."""
    metrics = [f"{json.dumps(tag)}: {_history_text(h)}" for tag, h in summary.metrics.items()]
    alerts = [json.dumps(json_safe(a), allow_nan=False) for a in summary.alerts]
    return (
        f"{{\n {json.dumps(summary.head())[1:-1]},\n"
        f' "metrics": {{{_lines(metrics, "  ")}}},\n'
        f' "alerts": [{_lines(alerts, "  ")}]\n}}\n'
    )


def _history_text(history: MetricHistory) -> str:
    """One metric's settings and its epochs, one record a line."""
    settings = json.dumps(history.settings(), allow_nan=False)[:-1]
    lines = _lines([r.json_text for _, r in sorted(history.epochs.items())], "   ")
    return f'{settings}, "epochs": [{lines}]}}'


def _lines(items: list[str], indent: str) -> str:
    """JSON items one per line at ``indent`` (nothing between the brackets when empty)."""
    if not items:
        return ""
    return f"\n{indent}" + f",\n{indent}".join(items) + f"\n{indent[:-1]}"


# ------------------------------------------------------------------------ reading
def read_summary_file(path: str) -> RunSummary:
    """Reads one ``summary.json``; see ``monitoring.record.read_summary``."""
    from lightning_viz.monitoring.record import SummaryError

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, object_pairs_hook=_unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SummaryError(f"{path} is not valid JSON ({err})") from None
    except OSError as err:
        raise SummaryError(f"cannot read {path}: {err.strerror or err}") from None
    except (ValueError, RecursionError) as err:  # a duplicate key, a 5000-digit int, depth
        raise SummaryError(f"{path} is not a readable run summary: {err}") from None
    summary = summary_from_dict(data, source=path)
    summary.path = path
    return summary


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each there once (``json`` keeps the last)."""
    out = dict(pairs)
    if len(out) < len(pairs):
        twice = next(k for k, times in Counter(k for k, _ in pairs).items() if times > 1)
        raise ValueError(f"the key {twice!r} is there twice in one object")
    return out


def _reason(err: Exception) -> str:
    """What a reading error says (a ``KeyError`` is a missing key)."""
    return f"missing key {err}" if isinstance(err, KeyError) else str(err)


def summary_from_dict(data: Any, source: str = "<dict>") -> RunSummary:
    """``RunSummary.to_dict()``'s form, checked, as a ``RunSummary``.

    Raises:
        SummaryError: Another format, a newer version, or a malformed content, named
            with its place (``metrics['bias/shape_bias'].epochs[3]: ...``).
    """
    from lightning_viz.monitoring.record import FORMAT, VERSION, RunSummary, SummaryError

    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise SummaryError(
            f"{source} is not a lightning-viz run summary (format {got!r}, expected {FORMAT!r})"
        )
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SummaryError(f"{source}: bad format version {version!r}")
    if version > VERSION:
        raise SummaryError(
            f"{source} was written by a newer lightning-viz (summary format version "
            f"{version}; this version reads up to {VERSION}): upgrade lightning-viz"
        )
    out = RunSummary()
    where = "metrics"
    try:
        metrics = data.get("metrics", {})
        if not isinstance(metrics, Mapping):
            fail("metrics", "a JSON object", metrics, TypeError)
        for tag, m in metrics.items():
            where = f"metrics[{tag!r}]"
            _read_history(out, tag, m, where)
        where = "alerts"
        alerts = data.get("alerts", [])
        if not isinstance(alerts, list):
            fail("alerts", "a JSON list", alerts, TypeError)
        for i, alert in enumerate(alerts):
            where = f"alerts[{i}]"
            out.add_alert(alert)
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise SummaryError(
            f"{source}: malformed lightning-viz run summary: {where}: {_reason(err)}"
        ) from None
    for hist in out.metrics.values():  # a summary written before the deletion margin was
        if hist.callback in _MAPS and hist.tag.endswith("/deletion_auc"):  # the watched
            hist.watched = False  # score: the raw AUC, which follows the model's confidence
    return out


_MAPS = ("SaliencyLogger", "GradCAMLogger")


def _read_history(out: RunSummary, tag: Any, m: Any, where: str) -> None:
    """Adds the metric ``tag`` of the file to ``out``, checking its settings' types."""
    from lightning_viz.monitoring.record import EpochRecord, MetricHistory

    if not isinstance(tag, str) or not tag:
        fail("tag", "a non-empty str", tag, TypeError)
    if not isinstance(m, Mapping):
        fail(where, "a JSON object", m, TypeError)
    hist = out.metrics.setdefault(tag, MetricHistory(tag))
    for key, default in (("watched", False), ("higher_is_better", True)):
        flag = m.get(key, default)
        if not isinstance(flag, bool):
            fail(key, "true or false", flag, TypeError)
        setattr(hist, key, flag)
    callback = m.get("callback")
    if callback is not None and not isinstance(callback, str):
        fail("callback", "a str or null", callback, TypeError)
    hist.callback = callback
    tol = m.get("tolerance")
    hist.tolerance = None if tol is None else check_float(tol, "tolerance", minimum=0)
    epochs = m.get("epochs", [])
    if not isinstance(epochs, list):
        fail("epochs", "a JSON list", epochs, TypeError)
    for i, item in enumerate(epochs):
        try:
            rec = EpochRecord.from_dict(item)
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"epochs[{i}]: {_reason(err)}") from None
        if rec.epoch in hist.epochs:
            raise ValueError(f"epochs[{i}]: a second record of epoch {rec.epoch}")
        hist.epochs[rec.epoch] = rec
