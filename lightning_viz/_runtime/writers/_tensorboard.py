"""TensorBoard (the reference): images, figures, scalars, projector, layout, texts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lightning_viz._runtime.projector import write_embedding
from lightning_viz._runtime.writers._base import Backend, Embedding

__all__ = ["TensorBoardBackend"]


class TensorBoardBackend(Backend):
    """Writes to a ``TensorBoardLogger``'s ``SummaryWriter`` (either Lightning flavour)."""

    name = "TensorBoard"

    def __init__(self, logger: Any, log_dir: str | None = None) -> None:
        super().__init__(logger, str(logger.log_dir) if log_dir is None else log_dir)
        self.writer = logger.experiment

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, pixels: np.ndarray, step: int, caption: str) -> None:
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def embedding(self, tag: str, step: int, embedding: Embedding) -> None:
        write_embedding(
            self.log_dir,
            tag,
            step,
            embedding.features,
            embedding.rows,
            embedding.header,
            embedding.thumbs,
        )

    def layout(self, layout: Mapping[str, Any]) -> None:
        self.writer.add_custom_scalars(dict(layout))

    def config(self, options: Mapping[str, Mapping[str, str]], markdown: str, step: int) -> None:
        self.writer.add_text("lightning_viz/config", markdown, step)

    def epoch_summary(self, markdown: str, rows: Sequence[Any], step: int) -> None:
        self.writer.add_text("lightning_viz/summary", markdown, step)

    def flush(self) -> None:
        self.writer.flush()
