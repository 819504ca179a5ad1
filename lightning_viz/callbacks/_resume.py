"""A fit resumed from a checkpoint saved at the last training batch of an epoch.

``ModelCheckpoint(every_n_train_steps=k)`` can save at the last training batch of epoch
``e``, before that epoch's validation and epoch end. A fit resumed from it counts epoch
``e`` as done and starts at ``e + 1``: Lightning runs neither ``e``'s validation nor its
``on_train_epoch_end``, where the callbacks measure. The weights (and buffers such as
BatchNorm's running statistics, which a validation in eval mode leaves alone) are
those that ``e``'s end would have measured, so the callbacks measure epoch ``e`` at the
training start, at its step, as its end would have (every run is inside the state guard:
RNG streams, train/eval modes and gradients are put back, so training goes on as
without them). What ``e``'s end cannot give then is said once instead: the features of
a validation loop (``EmbeddingProjector``) and averaged weights that only validation
swaps in (``WeightAveraging`` with the callbacks after validation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lightning_viz._runtime.compat import WEIGHT_AVERAGING

__all__ = ["measure_skipped_epoch", "restart_at", "skipped_epoch"]


def skipped_epoch(trainer: Any) -> int | None:
    """The epoch whose end this resumed fit skips, or ``None``. Lightning's own test, at
    ``on_train_start`` (``FitLoop.reset`` has run): restarted inside an epoch, from a
    save at a training batch end, that batch the epoch's last (the epoch then counts as
    done). A checkpoint saved at the validation end has completed its last batch, one at
    the epoch end has processed the epoch: neither is this. A Lightning without these
    restart stages (2.6 is tested): ``None``, as before."""
    loop = getattr(trainer, "fit_loop", None)
    epoch_loop = getattr(loop, "epoch_loop", None)
    progress = getattr(epoch_loop, "batch_progress", None)
    if (
        getattr(loop, "restarted_mid_epoch", False) is True
        and getattr(epoch_loop, "restarted_on_train_batch_end", False) is True
        and getattr(progress, "is_last_batch", False) is True
        and int(trainer.current_epoch) > 0
    ):
        return int(trainer.current_epoch) - 1
    return None


def restart_at(callback: Any, trainer: Any) -> None:
    """At the training start: the first epoch end this fit runs is the current epoch's,
    or the skipped one's. From there the run summary continues (a fit again from an
    earlier epoch forgets the later runs) and the callback runs again."""
    skipped = skipped_epoch(trainer)
    start = int(trainer.current_epoch) if skipped is None else skipped
    if (callback._last_epoch or 0) >= start:  # fit again from an earlier epoch
        callback._last_epoch = None
    callback._shared(trainer).continue_summary(start)


def measure_skipped_epoch(callback: Any, trainer: Any, pl_module: Any) -> None:
    """At the training start, in the last registered callback (after every callback's
    ``on_train_start`` continued the summary): each callback due at the skipped epoch
    measures it, in their order, then the epoch's summary is written, as at its end
    (outside the overhead budget: :func:`_outside_budget`)."""
    epoch = skipped_epoch(trainer)
    if epoch is None or not callback._is_last(trainer):
        return
    coordinator = callback._shared(trainer)
    averaged = any(isinstance(cb, WEIGHT_AVERAGING) for cb in trainer.callbacks)
    with _at_epoch(trainer, epoch), _outside_budget(coordinator):
        for cb in list(coordinator.callbacks):
            if averaged and cb._after_validation or getattr(cb, "validated_epochs_only", False):
                if cb.scheduled(trainer):
                    _say_unmeasured(cb, epoch)
                continue
            cb._maybe_run(trainer, pl_module)
        with coordinator.together(trainer):  # no viz/overhead: no training time of epoch
            coordinator.write_summary(trainer)
            coordinator.write_epoch_summary(trainer)


@contextlib.contextmanager
def _outside_budget(coordinator: Any) -> Iterator[None]:
    """The skipped epoch's runs, outside the overhead budget: this fit holds none of
    that epoch's training time, so they are neither planned (every callback due by its
    own schedule runs) nor charged (``viz/<Callback>/seconds`` still says their time).
    Planned and charged against this fit's first epoch, they read as a thousandfold
    overhead and spaced the callbacks out for the rest of the fit."""
    coordinator.budget.suspended = True
    try:
        yield
    finally:
        coordinator.budget.suspended = False


def _say_unmeasured(callback: Any, epoch: int) -> None:
    needs = (
        "embeds the features seen during that validation loop"
        if getattr(callback, "validated_epochs_only", False)
        else "measures the averaged weights, which WeightAveraging swaps in for validation only"
    )
    callback.warn_once(
        "skipped epoch",
        f"this fit resumed from a checkpoint saved at the last training batch of epoch "
        f"{epoch}, so Lightning skips that epoch's validation and epoch end; it {needs}, "
        f"so it has nothing for epoch {epoch} (a checkpoint saved at the "
        "validation end, ModelCheckpoint's default, keeps every epoch)",
    )


@contextlib.contextmanager
def _at_epoch(trainer: Any, epoch: int) -> Iterator[None]:
    """``trainer.current_epoch`` is ``epoch`` inside (the runs, the summary and the alerts
    are of that epoch), and the step the callbacks write at (``log_step``) that of its
    end: under manual optimization the batches that stepped, the last one counted (its
    increment comes after the training batch end where the checkpoint was saved)."""
    progress = trainer.fit_loop.epoch_progress.current
    epoch_loop = trainer.fit_loop.epoch_loop
    completed, stepped = progress.completed, getattr(epoch_loop, "_batches_that_stepped", None)
    progress.completed = epoch
    if isinstance(stepped, int):
        epoch_loop._batches_that_stepped = stepped + 1
    try:
        yield
    finally:
        progress.completed = completed
        if isinstance(stepped, int):
            epoch_loop._batches_that_stepped = stepped
