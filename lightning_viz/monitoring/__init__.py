"""Monitoring: run records, the regression rule, statistics, tables and ``compare``.

It imports neither Lightning nor TensorBoard, so a CI job or a notebook can read and
compare runs without a trainer (see ``docs/monitoring.md``).

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
    RunSummary,
    SummaryError,
    make_record,
    summary_path,
)
from lightning_viz.monitoring.regression import Alert, RegressionMonitor, format_alerts
from lightning_viz.monitoring.rule import ALERT_KINDS, RecordComparison, compare_records, regressed
from lightning_viz.monitoring.stats import (
    holm,
    holm_adjusted,
    paired_test,
    sign_test,
    unpaired_test,
    wilson_interval,
)
from lightning_viz.monitoring.store import load_summary

__all__ = [
    "ALERT_KINDS",
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
    "regressed",
    "sign_test",
    "summary_path",
    "unpaired_test",
    "wilson_interval",
]
