"""Weights & Biases (``WandbLogger``); ``wandb`` is imported only when such a logger is used.

Scalars, images and tables go through the logger's ``log_metrics``, so they share
Lightning's step axis (``trainer/global_step``). Images and figures are
``wandb.Image`` with a caption; each epoch's embedding is a ``wandb.Table`` (features,
label, prediction, correctness, thumbnail) that W&B's 2D projection panel reads; the
epoch summary is a ``wandb.Table``; the callbacks' options go into the run config;
``summary.json`` into the run's files; alerts also through ``wandb.alert`` when the run
is online.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lightning_viz._runtime.writers._base import Backend, Embedding
from lightning_viz._runtime.writers._images import image_pixels

__all__ = ["SUMMARY_COLUMNS", "WandbBackend"]

SUMMARY_COLUMNS = ["metric", "value", "interval_low", "interval_high", "epoch", "watched"]


class WandbBackend(Backend):
    """Writes to a ``WandbLogger``'s run (global rank 0)."""

    name = "Weights & Biases"
    threadsafe = False  # wandb.log from the main thread only

    def __init__(self, logger: Any) -> None:
        self.run = logger.experiment
        super().__init__(logger, str(self.run.dir))
        # run.dir (<dir>/wandb/run-<id>/files) is uploaded and new for every run: the
        # caches go to the wandb folder that holds the runs
        self.cache_dir = os.path.dirname(os.path.dirname(os.path.abspath(self.run.dir)))

    def _log(self, values: Mapping[str, Any], step: int) -> None:
        self.logger.log_metrics(dict(values), step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self._log(values, step)

    def image(self, tag: str, pixels: np.ndarray, step: int, caption: str) -> None:
        import wandb

        self._log({tag: wandb.Image(pixels, caption=caption)}, step)

    def embedding(self, tag: str, step: int, embedding: Embedding) -> None:
        import wandb

        columns = ["features", *embedding.header, "thumbnail"]
        data = [
            [feats, *meta, wandb.Image(image_pixels(thumb))]
            for feats, meta, thumb in zip(
                embedding.features.float().tolist(), embedding.rows, embedding.thumbs, strict=True
            )
        ]
        self._log({tag: wandb.Table(columns=columns, data=data)}, step)

    def config(self, options: Mapping[str, Mapping[str, str]], markdown: str, step: int) -> None:
        self.run.config.update(
            {"lightning_viz": {cb: dict(opts) for cb, opts in options.items()}},
            allow_val_change=True,
        )

    def epoch_summary(self, markdown: str, rows: Sequence[Any], step: int) -> None:
        import wandb

        data = [
            [
                r.tag,
                r.value,
                None if r.interval is None else r.interval[0],
                None if r.interval is None else r.interval[1],
                r.epoch,
                r.watched,
            ]
            for r in rows
        ]
        self._log({"lightning_viz/summary": wandb.Table(columns=SUMMARY_COLUMNS, data=data)}, step)

    def alert(self, title: str, text: str) -> None:
        if getattr(self.run.settings, "mode", None) in ("offline", "disabled"):
            return
        import wandb

        self.run.alert(title=title, text=text, level=wandb.AlertLevel.WARN)
