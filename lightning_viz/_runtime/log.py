"""Writing a callback's run: one small object per run, written on global rank 0.

What is written goes to every backend of the trainer (TensorBoard, W&B, MLflow, CSV
and files: :mod:`lightning_viz._runtime.writers`), chosen at ``setup`` from
``trainer.loggers``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.writers import Embedding, figure_pixels, written_by
from lightning_viz.monitoring.record import EpochRecord, make_record

__all__ = ["RunLog", "per_sample", "wilson_bands"]


def per_sample(decisions: Tensor) -> dict[str, list[Any]]:
    """The run summary's per-sample form of a probe's decisions, one sample per image.

    A bool ``(N,)`` mask is the images' outcomes (1/0: paired sign tests and Wilson
    intervals count them). A bool ``(N, L)`` mask (a multilabel model's labels, several
    corruptions) or a float ``(N,)`` one (an image's accuracy over such decisions) is
    each image's mean, as ``values``: the decisions of one image are not independent
    samples (counted as such, a few images flipping on every label read as a tiny
    p-value), and such a mean has no Wilson interval.
    """
    if decisions.is_floating_point() or decisions.dim() > 1:
        return {"values": decisions.reshape(decisions.shape[0], -1).float().mean(1).tolist()}
    return {"outcomes": decisions.long().tolist()}


def wilson_bands(series: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]] | None:
    """Each series' 95 % Wilson intervals, for a figure's bands, from its records.

    Args:
        series: ``{name: [EpochRecord, ...]}``.

    Returns:
        ``{name: [(low, high), ...]}``, or ``None`` when a record has no interval (a
        multilabel model's per-image means, see :func:`per_sample`): then no series
        gets bands, so the figure does not mix counted and averaged accuracies.
    """
    bands = {name: [r.interval for r in recs] for name, recs in series.items()}
    return bands if all(i is not None for by in bands.values() for i in by) else None


class RunLog:
    """What one callback run writes, at one step.

    Scalars go to every backend (global rank 0 only), to ``trainer.callback_metrics``
    on every rank, so ``EarlyStopping``/``ModelCheckpoint`` can monitor them, and to
    the run's summary (``lightning_viz/summary.json``, with per-sample outcomes where
    the callback gives them).

    Work too slow for the epoch end (projector files, a t-SNE figure) goes to the
    trainer's one background worker with :meth:`defer`.

    Args:
        trainer: The trainer.
        step: The step to write at (the epoch's ``global_step``).
        owner: The callback that writes (its ``on_error`` handles deferred failures).
        coordinator: The trainer's coordinator (summary, background worker). Default:
            :meth:`Coordinator.of` the trainer.
    """

    def __init__(
        self, trainer: Any, step: int, owner: Any = None, coordinator: Coordinator | None = None
    ) -> None:
        self.trainer = trainer
        self.coordinator = coordinator if coordinator is not None else Coordinator.of(trainer)
        self.step = int(step)
        self.epoch = int(trainer.current_epoch)
        self.owner = owner
        writers = self.coordinator.writers
        self._writers = writers if writers and trainer.is_global_zero else None
        self.scalars: dict[str, float] = {}

    @property
    def writes(self) -> bool:
        """Whether this process writes (global rank 0, with at least one backend)."""
        return self._writers is not None

    @property
    def writer(self) -> Any | None:
        """The TensorBoard ``SummaryWriter`` when there is one (global rank 0), else ``None``."""
        for backend in self._writers.backends if self._writers is not None else ():
            if backend.name == "TensorBoard":
                return backend.writer  # type: ignore[attr-defined]
        return None

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
        self.coordinator.claim(self.trainer, tag)
        self.trainer.callback_metrics[tag] = torch.tensor(value)
        if self._writers is not None and not math.isnan(value):
            self._writers.scalar(tag, value, self.step)
        run_summary = self.coordinator.summary
        if summary and run_summary is not None and not tag.startswith("viz/"):
            callback = type(self.owner).__name__ if self.owner is not None else None
            run_summary.record(tag, self.epoch, self.step, value, callback=callback, **record)
        return rec

    def _written(self) -> contextlib.AbstractContextManager[None]:
        """Marks writes as the owner's: its ``on_error`` alone decides whether a failing
        backend raises (:func:`~lightning_viz._runtime.writers.written_by`)."""
        if self.owner is None:
            return contextlib.nullcontext()
        return written_by(getattr(self.owner, "on_error", None) == "raise")

    def _caption(self, tag: str, caption: str | None) -> str:
        return caption or f"{tag} (epoch {self.epoch}, step {self.step})"

    def image(self, tag: str, image: Tensor, caption: str | None = None) -> None:
        """Logs a ``(3, H, W)`` uint8 or ``[0, 1]`` float image (``caption`` where the
        backend shows one; default: the tag, epoch and step)."""
        if self._writers is not None:
            with self._written():
                self._writers.image(tag, image, self.step, self._caption(tag, caption))

    def figure(self, tag: str, fig: Any, caption: str | None = None) -> None:
        """Logs a matplotlib figure (drawn once, closed afterwards)."""
        if self._writers is not None:
            pixels = figure_pixels(fig)
            with self._written():
                self._writers.figure_pixels(tag, pixels, self.step, self._caption(tag, caption))
        else:
            import matplotlib.pyplot as plt

            plt.close(fig)

    def defer(self, tag: str, fn: Any, *args: Any, max_pending: int | None = None) -> bool:
        """Runs ``fn(*args)`` on the background worker (rank 0 only).

        When ``fn`` returns a matplotlib figure it is drawn on the worker and written
        under ``tag`` at this run's step once done (the end of ``fit`` waits for it);
        any other result is dropped (``fn`` wrote what it had to). Returns ``False``
        (nothing submitted) when ``max_pending`` jobs for ``tag`` are still running:
        back-pressure, so a slow job never builds an unbounded backlog.
        """

        def work() -> Any:
            result = fn(*args)
            return figure_pixels(result) if hasattr(result, "savefig") else None

        writers, step, caption = self._writers, self.step, self._caption(tag, None)

        def write(pixels: Any) -> None:
            if pixels is not None and writers is not None:
                with self._written():
                    writers.figure_pixels(tag, pixels, step, caption)
                    writers.flush()

        return self._submit(tag, work, write, max_pending)

    def embedding(
        self, tag: str, make: Callable[[], Embedding], max_pending: int | None = None
    ) -> bool:
        """Writes the embedding ``make()`` builds on the background worker to every
        backend (those that are not thread-safe, W&B, on the main thread afterwards).
        Returns ``False`` (nothing submitted) when ``max_pending`` jobs for ``tag`` are
        still running (back-pressure: each holds its run's features and thumbnails)."""
        writers, step = self._writers, self.step

        def work() -> Embedding:
            built = make()
            if writers is not None:
                with self._written():  # on the worker: its own context
                    writers.each(lambda b: b.embedding(tag, step, built), threadsafe=True)
            return built

        def write(built: Embedding) -> None:
            if writers is not None:
                with self._written():
                    writers.each(lambda b: b.embedding(tag, step, built), threadsafe=False)

        return self._submit(tag, work, write, max_pending)

    def _submit(
        self,
        tag: str,
        work: Callable[[], Any],
        then: Callable[[Any], None],
        max_pending: int | None,
    ) -> bool:
        if self._writers is None:
            return True
        coordinator = self.coordinator
        if max_pending is not None and coordinator.pending(tag) >= max_pending:
            return False
        coordinator.defer(self.owner, tag, work, then=then)
        return True

    def flush(self) -> None:
        """Writes the buffered scalars and flushes every backend."""
        if self._writers is not None:
            with self._written():
                self._writers.flush()
