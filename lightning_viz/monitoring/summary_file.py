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
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from lightning_viz._io import json_safe

if TYPE_CHECKING:
    from lightning_viz.monitoring.record import MetricHistory, RunSummary

__all__ = ["summary_text"]


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
