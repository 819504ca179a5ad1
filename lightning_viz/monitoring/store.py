"""Finding and reading a run's ``summary.json`` (:func:`load_summary`)."""

from __future__ import annotations

import glob
import os

from lightning_viz._checks import fail
from lightning_viz.monitoring.record import (
    SUMMARY_DIR,
    SUMMARY_FILE,
    RunSummary,
    SummaryError,
    read_summary,
    summary_path,
)

__all__ = ["load_summary"]


def load_summary(path: str | os.PathLike[str]) -> RunSummary:
    """Loads the run summary of a run.

    Args:
        path: One of: (a) a run's log directory (the one holding its TensorBoard event
            file, with ``lightning_viz/summary.json`` in it); (b) that
            ``summary.json`` itself, or the folder holding it (its ``lightning_viz/``
            folder, or a copy's); (c) a folder with exactly one such run somewhere below
            it (e.g. ``lightning_logs/`` with a single ``version_0``).

    Returns:
        The :class:`RunSummary`, with ``path`` set to the file read.

    Raises:
        TypeError: ``path`` is not a path.
        SummaryError: Nothing readable there: no such path, no summary (or several
            runs) below a folder, not JSON, another format or a newer version.
    """
    if not isinstance(path, str | os.PathLike):
        fail("path", "a str or os.PathLike", path, TypeError)
    p = os.path.expanduser(os.fspath(path))  # "~/logs" as the loggers read it
    if not os.path.exists(p):
        raise SummaryError(f"{p}: no such file or directory")
    if os.path.isfile(p):
        return read_summary(p)
    for file in (summary_path(p), os.path.join(p, SUMMARY_FILE)):
        if os.path.isfile(file):
            return read_summary(file)
    pattern = os.path.join(glob.escape(p), "**", SUMMARY_DIR, SUMMARY_FILE)
    found = sorted(glob.glob(pattern, recursive=True))
    real: dict[str, str] = {}  # a run seen twice (W&B's latest-run link) counts once,
    for f in found:  # named by its path without links
        key = os.path.realpath(f)
        if key not in real or os.path.abspath(f) == key:
            real[key] = f
    found = sorted(real.values())
    if len(found) == 1:
        return read_summary(found[0])
    if found:
        runs = "\n  ".join(os.path.dirname(os.path.dirname(f)) for f in found)
        raise SummaryError(f"{p} holds {len(found)} runs; pass one of them:\n  {runs}")
    events = glob.glob(os.path.join(glob.escape(p), "**", "events.out.tfevents.*"), recursive=True)
    if events:
        run = os.path.dirname(sorted(events)[0])
        raise SummaryError(
            f"{p}: the run in {run} has no {SUMMARY_DIR}/{SUMMARY_FILE} (every lightning-viz "
            "callback writes it at its first run: a run in which none has run yet (a fit "
            "stopped, or still running, before the first due epoch), made without them, or "
            "by a development version before the run records has none)"
        )
    raise SummaryError(f"{p}: no lightning-viz run found (no {SUMMARY_DIR}/{SUMMARY_FILE} in it)")
