"""MLflow (``MLFlowLogger``); ``mlflow`` is reached only through such a logger.

Scalars are metrics with the step, under MLflow spellings of the tags (see
:mod:`~lightning_viz._runtime.writers._names`); images are ``log_image`` with a key
and a step (MLflow's image slider); figures are PNG artifacts
``lightning_viz/figures/<tag>/<step>.png``; embeddings TSV artifacts
``lightning_viz/embeddings/<tag>/<step>.tsv``; the epoch summary and the configuration
Markdown artifacts (``log_text``); the options also params
``lightning_viz/<callback>/<option>`` (a resumed run keeps each one's first value);
``summary.json`` the artifact ``lightning_viz/summary.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lightning_viz._runtime.compat import rank_zero_warn
from lightning_viz._runtime.writers._base import Backend, Embedding
from lightning_viz._runtime.writers._names import mlflow_name

__all__ = ["MLflowBackend"]


class MLflowBackend(Backend):
    """Writes to an ``MLFlowLogger``'s run (global rank 0).

    Args:
        logger: The logger.
        log_dir: A local folder for the run's ``summary.json`` (uploaded at each write).
    """

    name = "MLflow"

    def __init__(self, logger: Any, log_dir: str) -> None:
        super().__init__(logger, log_dir)
        self.client = logger.experiment
        self.run_id = logger.run_id

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self.logger.log_metrics({mlflow_name(tag): v for tag, v in values.items()}, step)

    def image(self, tag: str, pixels: np.ndarray, step: int, caption: str) -> None:
        self.client.log_image(self.run_id, pixels, key=mlflow_name(tag), step=step)

    def figure(self, tag: str, pixels: np.ndarray, step: int, caption: str) -> None:
        path = f"lightning_viz/figures/{tag}/{step}.png"
        self.client.log_image(self.run_id, pixels, artifact_file=path)

    def embedding(self, tag: str, step: int, embedding: Embedding) -> None:
        path = f"lightning_viz/embeddings/{tag}/{step}.tsv"
        self.client.log_text(self.run_id, embedding.tsv(), path)

    def config(self, options: Mapping[str, Mapping[str, str]], markdown: str, step: int) -> None:
        params = {
            mlflow_name(f"lightning_viz/{cb}/{name}"): str(value)
            for cb, opts in options.items()
            for name, value in opts.items()
        }
        # a resumed run (the same run_id) has them: MLflow refuses to change a logged
        # param, so one logged before keeps its first value; config.md has this fit's
        logged = self.client.get_run(self.run_id).data.params
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
        self.logger.log_hyperparams({k: v for k, v in params.items() if k not in logged})
        self.client.log_text(self.run_id, markdown, "lightning_viz/config.md")
        if changed:
            rank_zero_warn(
                f"lightning-viz: this MLflow run was logged with other values of "
                f"{', '.join(changed)}; MLflow keeps a param's first value, and "
                "lightning_viz/config.md has this fit's options"
            )

    def epoch_summary(self, markdown: str, rows: Sequence[Any], step: int) -> None:
        self.client.log_text(self.run_id, markdown, f"lightning_viz/summary/{step}.md")

    def summary_file(self, path: str) -> None:
        self.client.log_artifact(self.run_id, path, "lightning_viz")
