"""Old import path of the run record, kept as an alias.

Its content now lives in :mod:`lightning_viz.monitoring.record` (the record and its
file), :mod:`lightning_viz.monitoring.rule` (comparing two records) and
:mod:`lightning_viz.monitoring.store` (finding a run's file).
"""

from lightning_viz.monitoring.record import *  # noqa: F403
from lightning_viz.monitoring.record import __all__ as _record_names
from lightning_viz.monitoring.rule import RecordComparison, compare_records
from lightning_viz.monitoring.store import load_summary

__all__ = [*_record_names, "RecordComparison", "compare_records", "load_summary"]
