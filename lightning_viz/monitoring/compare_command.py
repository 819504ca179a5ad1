"""The ``lightning-viz compare`` command: arguments, reading both runs, the exit status.

A thin layer over :func:`~lightning_viz.monitoring.compare.compare_summaries` and
:func:`~lightning_viz.monitoring.compare.render`. A run that cannot be read, bad
options, nothing compared, or an error of our own exit 2 with the reason on stderr:
exit 1 means only that a watched metric regressed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import traceback
from typing import Any

from lightning_viz.monitoring.record import SummaryError
from lightning_viz.monitoring.sources import MLFLOW_PREFIX, resolve_source
from lightning_viz.monitoring.store import load_summary

__all__ = ["add_compare_parser", "run_compare"]

_HELP = """Reads both runs' lightning_viz/summary.json (from a log dir, a W&B run folder or an
MLflow run mlflow:<run_id>) and tabulates every lightning-viz metric present in both:
at the latest epoch both measured and at each run's best, with the difference and a
one-sided p-value that the candidate is worse (the paired sign test when both measured
the same probe, otherwise Fisher's exact test or the Mann-Whitney U test). A watched
metric regressed when its drop is larger than its tolerance (or --tolerance) and its
Holm-adjusted p-value is <= alpha.

Exit status: 1 when a watched metric regressed, 0 when none did, 2 when a run cannot
be read or nothing could be compared (the reason on stderr). --format json gates CI."""


def _nothing_compared(shared: list[str]) -> str:
    if not shared:
        return "have no lightning-viz metric in common"
    return f"share {', '.join(shared)}, but no epoch where both measured a value"


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the ``compare`` subcommand to the console script's subparsers."""
    from lightning_viz.monitoring.compare import FORMATS  # (it imports this module)

    parser = subparsers.add_parser(
        "compare",
        help="compare a run with a baseline run; exit 1 when a watched metric regressed",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    where = (
        "a run's log dir (TensorBoard or CSV logger), a W&B run folder, a folder with one run, "
        "its summary.json, or mlflow:<run_id> (with --tracking-uri)"
    )
    parser.add_argument("baseline", help=f"the earlier run: {where}")
    parser.add_argument("candidate", help="the run under test (same forms)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="practically large drop for every metric (default: each metric's own)",
    )
    parser.add_argument(
        "--alpha", type=float, default=0.01, help="significance level after Holm (default 0.01)"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="text", help="text (default), markdown or json"
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="text: every column (intervals, raw p, flips, tolerance); default: 100 columns",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking server of mlflow:<run_id> runs (default: MLFLOW_TRACKING_URI)",
    )
    return parser


def run_compare(args: argparse.Namespace) -> int:
    """Runs ``compare`` on parsed arguments; returns the exit status (0, 1 or 2)."""
    try:
        return _run(args)
    except Exception:  # noqa: BLE001 - a bug of ours is no regression (exit 1): say it, exit 2
        traceback.print_exc()
        print("lightning-viz compare: failed (the error above); nothing compared", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from lightning_viz.monitoring.compare import compare_summaries, render

    def error(message: str) -> int:
        print(f"lightning-viz compare: {message}", file=sys.stderr)
        return 2

    if args.tolerance is not None and not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        return error(f"--tolerance must be a number >= 0, got {args.tolerance}")
    if not (0 < args.alpha < 1):
        return error(f"--alpha must lie in (0, 1), got {args.alpha}")
    runs = []
    for name in ("baseline", "candidate"):
        # an MLflow run's summary is downloaded here and read before the folder goes
        with tempfile.TemporaryDirectory(prefix="lightning-viz-mlflow-") as folder:
            try:
                source = resolve_source(
                    getattr(args, name), getattr(args, "tracking_uri", None), folder
                )
                runs.append(load_summary(source))
            except SummaryError as err:
                return error(f"cannot read the {name}: {err}")
    result = compare_summaries(*runs, tolerance=args.tolerance, alpha=args.alpha)
    for name in ("baseline", "candidate"):  # an MLflow run by its id, not the removed copy
        if str(getattr(args, name)).startswith(MLFLOW_PREFIX):
            setattr(result, name, str(getattr(args, name)))
    if not result.rows and set(result.unmeasured) <= set(result.only_in_baseline):
        shared = sorted(set(runs[0].metrics) & set(runs[1].metrics))  # none with a value
        return error(f"the two runs {_nothing_compared(shared)}")
    text = render(result, args.format, wide=getattr(args, "wide", False))
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"  # a latin-1 console and a
    text = text.encode(encoding, "replace").decode(encoding)  # 実験 folder: "??", not a crash
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `| head`: the reader left; the verdict still is the status
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if not result.rows:  # the table names what the candidate did not measure
        return error("nothing compared: no metric has a value in both runs")
    if result.exit_code == 2:  # the verdict names them
        return error(f"watched drops that could not be tested: {', '.join(result.untested)}")
    return result.exit_code
