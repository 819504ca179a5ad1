"""What every backend writes: one class, a method per kind of artifact.

A backend writes to one of the trainer's loggers (or, without one, to files). The
callbacks never talk to a backend: they write through ``RunLog`` and the
coordinator, which give every artifact to every backend of the trainer
(:class:`~lightning_viz._runtime.writers.Writers`). Images arrive made once, as
``(H, W, 3)`` uint8 arrays; scalars arrive in batches, one per step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from lightning_viz._io import atomic_write

__all__ = ["Backend", "Embedding"]


@dataclass
class Embedding:
    """One epoch's embedding of the validation samples.

    Attributes:
        features: ``(N, D)`` float features.
        header: The metadata columns (``label``, ``predicted``, ``correct``).
        rows: One row of strings per sample (columns of ``header``).
        thumbs: ``(N, C, s, s)`` uint8 square thumbnails.
    """

    features: Tensor
    header: list[str]
    rows: list[list[str]]
    thumbs: Tensor

    def tsv(self) -> str:
        """The metadata columns then ``f0 ... f{D-1}`` (3 significant digits), tab-separated."""
        dims = int(self.features.shape[1])
        lines = ["\t".join([*self.header, *(f"f{i}" for i in range(dims))])]
        for meta, row in zip(self.rows, self.features.float().tolist(), strict=True):
            lines.append("\t".join([*meta, *(f"{v:.3g}" for v in row)]))
        return "\n".join(lines) + "\n"


class Backend:
    """A place the run's artifacts go. Every method is a no-op unless overridden.

    Attributes:
        name: The name a person knows the backend by (``"TensorBoard"``...).
        logger: The Lightning logger written to (``None`` for plain files).
        log_dir: A local folder of the run (where ``lightning_viz/summary.json`` lives
            when this is the first backend), or ``None``.
        cache_dir: A local folder for caches kept between runs (``log_dir`` unless
            that folder is uploaded).
        threadsafe: Whether embeddings may be written from the background worker.
    """

    name = "backend"
    threadsafe = True

    def __init__(self, logger: Any = None, log_dir: str | None = None) -> None:
        self.logger = logger
        self.log_dir = log_dir
        self.cache_dir = log_dir

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Finite scalar values by tag, at ``step``."""

    def image(self, tag: str, pixels: np.ndarray, step: int, caption: str) -> None:
        """An ``(H, W, 3)`` uint8 image."""

    def figure(self, tag: str, pixels: np.ndarray, step: int, caption: str) -> None:
        """A drawn matplotlib figure, ``(H, W, 3)`` uint8 (default: as an image)."""
        self.image(tag, pixels, step, caption)

    def embedding(self, tag: str, step: int, embedding: Embedding) -> None:
        """One epoch's embedding."""

    def layout(self, layout: Mapping[str, Any]) -> None:
        """The custom-scalars layout (TensorBoard's dashboard of charts)."""

    def config(self, options: Mapping[str, Mapping[str, str]], markdown: str, step: int) -> None:
        """The callbacks' options (``{callback: {option: value}}``) and their Markdown."""

    def epoch_summary(self, markdown: str, rows: Sequence[Any], step: int) -> None:
        """The epoch's summary: Markdown and its ``SummaryRow``s."""

    def summary_file(self, path: str) -> None:
        """The run's ``summary.json`` was (re)written at ``path``: keep a copy (default:
        at ``<log_dir>/lightning_viz/``, unless it is that file)."""
        if self.log_dir is None:
            return
        target = os.path.join(self.log_dir, "lightning_viz", os.path.basename(path))
        if os.path.abspath(target) != os.path.abspath(path):
            with open(path, "rb") as f:
                atomic_write(target, f.read())

    def alert(self, title: str, text: str) -> None:
        """A regression alert."""

    def flush(self) -> None:
        """Pushes what is buffered."""
