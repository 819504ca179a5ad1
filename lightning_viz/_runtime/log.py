"""Writing to TensorBoard: one small object per run, rank-0 only."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lightning_viz._runtime.compat import TENSORBOARD_LOGGERS
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz.monitoring.record import EpochRecord, make_record

__all__ = ["RunLog", "find_tensorboard"]


def find_tensorboard(trainer: Any) -> Any | None:
    """The first TensorBoard logger among ``trainer.loggers`` (either Lightning flavour)."""
    for logger in getattr(trainer, "loggers", []) or []:
        if isinstance(logger, TENSORBOARD_LOGGERS):
            return logger
    return None


class RunLog:
    """What one callback run writes, at one step.

    Scalars go to TensorBoard (global rank 0 only), to ``trainer.callback_metrics``
    on every rank, so ``EarlyStopping``/``ModelCheckpoint`` can monitor them, and to
    the run's summary (``lightning_viz/summary.json``, with per-sample outcomes where
    the callback gives them).

    Work too slow for the epoch end (projector files, a t-SNE figure) goes to the
    trainer's one background worker with :meth:`defer`.

    Args:
        trainer: The trainer.
        logger: Its TensorBoard logger.
        step: The step to write at (the epoch's ``global_step``).
        owner: The callback that writes (its ``on_error`` handles deferred failures).
        coordinator: The trainer's coordinator (summary, background worker). Default:
            :meth:`Coordinator.of` the trainer.
    """

    def __init__(
        self,
        trainer: Any,
        logger: Any,
        step: int,
        owner: Any = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.trainer = trainer
        self.coordinator = coordinator if coordinator is not None else Coordinator.of(trainer)
        self.step = int(step)
        self.epoch = int(trainer.current_epoch)
        self.owner = owner
        self._rank_zero = bool(trainer.is_global_zero)
        self._writer = logger.experiment if self._rank_zero else None
        self.scalars: dict[str, float] = {}

    @property
    def writer(self) -> Any | None:
        """The ``SummaryWriter`` on global rank 0, ``None`` elsewhere."""
        return self._writer

    def scalar(
        self, tag: str, value: float | None = None, *, summary: bool = True, **record: Any
    ) -> EpochRecord:
        """Logs a scalar, exposes it in ``trainer.callback_metrics`` and records it.

        Args:
            tag: The tag.
            value: The value; ``None`` computes it from ``record["outcomes"]``.
            summary: Keep it in the run summary (``False`` for derived values such
                as ``<family>/regression``). Default: ``True``.
            **record: What the run summary keeps besides the value (see
                ``RunSummary.record``): ``outcomes`` (per-sample 1/0/None), ``values``
                (per-sample values of a mean),
                ``fingerprint``, ``watched``, ``tolerance``.

        Returns:
            The record (for the regression monitor).
        """
        rec = make_record(
            self.epoch,
            self.step,
            value,
            **{
                k: record[k]
                for k in ("outcomes", "fingerprint", "n", "successes", "values")
                if k in record
            },
        )
        value = float(rec.value) if rec.value is not None else math.nan
        self.scalars[tag] = value
        self.trainer.callback_metrics[tag] = torch.tensor(value)
        if self._writer is not None and not math.isnan(value):
            self._writer.add_scalar(tag, value, self.step)
        run_summary = self.coordinator.summary
        if summary and run_summary is not None and not tag.startswith("viz/"):
            callback = type(self.owner).__name__ if self.owner is not None else None
            run_summary.record(tag, self.epoch, self.step, value, callback=callback, **record)
        return rec

    def image(self, tag: str, image: Tensor) -> None:
        """Logs a ``(3, H, W)`` uint8 or ``[0, 1]`` float image."""
        if self._writer is not None:
            self._writer.add_image(tag, image.detach().cpu(), self.step, dataformats="CHW")

    def figure(self, tag: str, fig: Any) -> None:
        """Logs a matplotlib figure (closed afterwards)."""
        if self._writer is not None:
            self._writer.add_figure(tag, fig, self.step, close=True)

    def defer(self, tag: str, fn: Any, *args: Any, max_pending: int | None = None) -> bool:
        """Runs ``fn(*args)`` on the background worker (rank 0 only).

        When ``fn`` returns a matplotlib figure it is written under ``tag`` at this
        run's step once done (the end of ``fit`` waits for it); any other result is
        dropped (``fn`` wrote what it had to). Returns ``False`` (nothing submitted)
        when ``max_pending`` jobs for ``tag`` are still running: back-pressure, so a
        slow job never builds an unbounded backlog.
        """
        if self._writer is None:
            return True
        coordinator = self.coordinator
        if max_pending is not None and coordinator.pending(tag) >= max_pending:
            return False
        writer, step = self._writer, self.step

        def write(result: Any) -> None:
            if hasattr(result, "savefig"):  # a matplotlib figure
                writer.add_figure(tag, result, step, close=True)
                writer.flush()

        coordinator.defer(self.owner, tag, fn, *args, then=write)
        return True

    def flush(self) -> None:
        """Flushes the event file."""
        if self._writer is not None:
            self._writer.flush()
