"""Monitoring: run records, the regression rule, statistics, tables and ``compare``.

Lightning-free (it imports neither Lightning nor TensorBoard), so a CI job or a
notebook can read and compare runs without a trainer:

- :mod:`~lightning_viz.monitoring.record`: :class:`RunSummary` (a run's
  ``summary.json``), its records, :func:`load_summary` (find and read a run).
- :mod:`~lightning_viz.monitoring.regression`: :class:`RegressionMonitor`, the live
  alert rule, and :class:`Alert`.
- :mod:`~lightning_viz.monitoring.stats`: the exact tests, the Wilson interval, Holm.
- :mod:`~lightning_viz.monitoring.compare`: :func:`compare_summaries`, what
  ``lightning-viz compare`` prints.
- :mod:`~lightning_viz.monitoring.dashboard`: the TensorBoard custom-scalars layout
  and the per-epoch summary tables.

Example:
    >>> from lightning_viz.monitoring import RunSummary, compare_summaries
    >>> a, b = RunSummary(), RunSummary()
    >>> _ = a.record("m", 0, 9, outcomes="1" * 30, fingerprint="f", watched=True, tolerance=0.05)
    >>> _ = b.record("m", 0, 9, outcomes="0" * 30, fingerprint="f")
    >>> compare_summaries(a, b).regressions
    ['m']
"""

from lightning_viz.monitoring.compare import CompareResult, CompareRow, compare_summaries
from lightning_viz.monitoring.record import (
    EpochRecord,
    MetricHistory,
    RecordComparison,
    RunSummary,
    SummaryError,
    compare_records,
    load_summary,
    make_record,
    summary_path,
)
from lightning_viz.monitoring.regression import Alert, RegressionMonitor, format_alerts
from lightning_viz.monitoring.stats import (
    holm,
    holm_adjusted,
    paired_test,
    sign_test,
    unpaired_test,
    wilson_interval,
)

__all__ = [
    "Alert",
    "CompareResult",
    "CompareRow",
    "EpochRecord",
    "MetricHistory",
    "RecordComparison",
    "RegressionMonitor",
    "RunSummary",
    "SummaryError",
    "compare_records",
    "compare_summaries",
    "format_alerts",
    "holm",
    "holm_adjusted",
    "load_summary",
    "make_record",
    "paired_test",
    "sign_test",
    "summary_path",
    "unpaired_test",
    "wilson_interval",
]
