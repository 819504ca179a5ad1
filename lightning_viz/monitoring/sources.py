"""Where a run's ``summary.json`` is, whichever logger stored it.

Every backend stores the run record: TensorBoard and CSV loggers in the run's log dir,
W&B in the run's files (``<offline-run>/files/lightning_viz/summary.json``), MLflow as
the artifact ``lightning_viz/summary.json``. :func:`resolve_source` turns what a person
passes to ``lightning-viz compare`` into a local path that
:func:`~lightning_viz.monitoring.record.load_summary` reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from lightning_viz.monitoring.record import SummaryError

__all__ = ["MLFLOW_PREFIX", "resolve_source"]

MLFLOW_PREFIX = "mlflow:"
_ARTIFACT = "lightning_viz/summary.json"


def resolve_source(
    source: str | os.PathLike[str],
    tracking_uri: str | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> str:
    """A local path to a run's summary (or a folder holding one).

    Args:
        source: ``mlflow:<run_id>`` (an MLflow run; its ``lightning_viz/summary.json``
            artifact is downloaded to ``folder``), or a path: a log dir (TensorBoard,
            CSV), a W&B run folder (``wandb/offline-run-...``), a folder with one run
            below it, or a ``summary.json``.
        tracking_uri: The MLflow tracking server for ``mlflow:`` sources. Default:
            ``None`` (MLflow's own default, ``MLFLOW_TRACKING_URI``).
        folder: An existing folder to download an MLflow artifact into. Default:
            ``None``, a new temporary folder that the caller removes once the summary is
            read (it is removed here if the download fails). ``lightning-viz compare``
            passes a temporary folder it removes itself.

    Returns:
        The path (a path source is returned as it is).

    Raises:
        SummaryError: The MLflow run cannot be read (no ``mlflow`` installed, no such
            run, no summary artifact, the server unreachable).
    """
    text = os.fspath(source)
    if not text.startswith(MLFLOW_PREFIX):
        return text
    run_id = text[len(MLFLOW_PREFIX) :].strip()
    if not run_id:
        raise SummaryError(f"{text!r}: give the run id after 'mlflow:' (mlflow:<run_id>)")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise SummaryError(
            f"{text}: reading an MLflow run needs mlflow (pip install 'lightning-viz[mlflow]')"
        ) from err
    where = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "MLflow's default"
    own = folder is None
    target = tempfile.mkdtemp(prefix="lightning-viz-mlflow-") if own else os.fspath(folder)
    try:
        return MlflowClient(tracking_uri=tracking_uri).download_artifacts(run_id, _ARTIFACT, target)
    except Exception as err:  # noqa: BLE001 - any failure of the client is "cannot read"
        if own:
            shutil.rmtree(target, ignore_errors=True)
        raise SummaryError(
            f"{text}: cannot read the artifact {_ARTIFACT} of MLflow run {run_id!r} at "
            f"{where} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
