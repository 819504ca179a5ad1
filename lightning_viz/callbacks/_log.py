"""Writing to TensorBoard: one small object per run, rank-0 only."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lightning_viz.callbacks._compat import TENSORBOARD_LOGGERS

__all__ = ["RunLog", "find_tensorboard"]


def find_tensorboard(trainer: Any) -> Any | None:
    """The first TensorBoard logger among ``trainer.loggers`` (either Lightning flavour)."""
    for logger in getattr(trainer, "loggers", []) or []:
        if isinstance(logger, TENSORBOARD_LOGGERS):
            return logger
    return None


class RunLog:
    """What one callback run writes, at one step.

    Scalars go to TensorBoard (global rank 0 only) and to ``trainer.callback_metrics``
    on every rank, so ``EarlyStopping``/``ModelCheckpoint`` can monitor them.

    Args:
        trainer: The trainer.
        logger: Its TensorBoard logger.
        step: The step to write at (the epoch's ``global_step``).
    """

    def __init__(self, trainer: Any, logger: Any, step: int) -> None:
        self.trainer = trainer
        self.step = int(step)
        self._rank_zero = bool(trainer.is_global_zero)
        self._writer = logger.experiment if self._rank_zero else None
        self.scalars: dict[str, float] = {}

    @property
    def writer(self) -> Any | None:
        """The ``SummaryWriter`` on global rank 0, ``None`` elsewhere."""
        return self._writer

    def scalar(self, tag: str, value: float) -> None:
        """Logs a scalar and exposes it in ``trainer.callback_metrics``."""
        value = float(value)
        self.scalars[tag] = value
        self.trainer.callback_metrics[tag] = torch.tensor(value)
        if self._writer is not None and not math.isnan(value):
            self._writer.add_scalar(tag, value, self.step)

    def image(self, tag: str, image: Tensor) -> None:
        """Logs a ``(3, H, W)`` uint8 or ``[0, 1]`` float image."""
        if self._writer is not None:
            self._writer.add_image(tag, image.detach().cpu(), self.step, dataformats="CHW")

    def figure(self, tag: str, fig: Any) -> None:
        """Logs a matplotlib figure (closed afterwards)."""
        if self._writer is not None:
            self._writer.add_figure(tag, fig, self.step, close=True)

    def flush(self) -> None:
        """Flushes the event file."""
        if self._writer is not None:
            self._writer.flush()
