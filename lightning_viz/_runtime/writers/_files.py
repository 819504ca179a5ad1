"""Plain files: a ``CSVLogger``'s folder, or ``save_dir=`` without any logger.

Scalars go to the logger's ``metrics.csv``; images and figures to
``<log_dir>/lightning_viz/images/<tag>/<step>.png``; embeddings to
``<log_dir>/lightning_viz/embeddings/<tag>/<step>.tsv``; the epoch summary and the
configuration to Markdown under ``<log_dir>/lightning_viz/text/<name>/<step>.md``.
Nothing here imports TensorBoard.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lightning_viz._io import atomic_write
from lightning_viz._runtime.writers._base import Backend, Embedding
from lightning_viz._runtime.writers._images import png_bytes

__all__ = ["FilesBackend"]


class FilesBackend(Backend):
    """Writes PNG, TSV and Markdown files into a folder, scalars into a CSV logger.

    Args:
        logger: A ``CSVLogger`` (either Lightning flavour); ``None`` makes one in
            ``save_dir`` (its ``metrics.csv`` at ``<save_dir>/metrics.csv``).
        save_dir: The folder when there is no logger; with one, the local folder of
            its files (default: its ``log_dir``).
    """

    name = "CSV and files"

    def __init__(self, logger: Any = None, save_dir: str | None = None) -> None:
        if logger is None:
            from lightning_fabric.loggers import CSVLogger

            self._csv = CSVLogger(str(save_dir), name="", version="")
            _ = self._csv.experiment  # made now: it warns when save_dir is not empty
            log_dir = str(save_dir)
        else:
            self._csv = logger
            log_dir = str(logger.log_dir) if save_dir is None else str(save_dir)
        super().__init__(logger, log_dir)

    def path(self, kind: str, tag: str, step: int, ext: str) -> str:
        """``<log_dir>/lightning_viz/<kind>/<tag>/<step>.<ext>``."""
        return os.path.join(
            str(self.log_dir), "lightning_viz", kind, *tag.split("/"), f"{step}.{ext}"
        )

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self._csv.log_metrics(dict(values), step)

    def image(self, tag: str, pixels: np.ndarray, step: int, caption: str) -> None:
        atomic_write(self.path("images", tag, step, "png"), png_bytes(pixels))

    def embedding(self, tag: str, step: int, embedding: Embedding) -> None:
        atomic_write(self.path("embeddings", tag, step, "tsv"), embedding.tsv().encode())

    def config(self, options: Mapping[str, Mapping[str, str]], markdown: str, step: int) -> None:
        atomic_write(self.path("text", "config", step, "md"), markdown.encode())

    def epoch_summary(self, markdown: str, rows: Sequence[Any], step: int) -> None:
        atomic_write(self.path("text", "summary", step, "md"), markdown.encode())

    def flush(self) -> None:
        self._csv.save()
