"""When the callbacks run: what the trainer says about its validation and steps, and
where the callbacks sit among the trainer's other callbacks."""

from __future__ import annotations

from typing import Any

from lightning_viz._runtime.compat import WEIGHT_AVERAGING

__all__ = [
    "before_weight_averaging",
    "ended_before_last_batch",
    "log_step",
    "max_steps_reached",
    "no_validation_batches",
    "validates_every_epoch",
]


def validates_every_epoch(trainer: Any) -> bool:
    """Whether a validation loop ends every training epoch, decided once at ``setup``
    (as Lightning's ``EarlyStopping`` decides where it checks): then a callback runs at
    the validation epoch end, so ``EarlyStopping``/``ModelCheckpoint`` see its values at
    once; otherwise (no validation, or validation every n-th epoch or several times an
    epoch) at the training epoch end, after any validation of that epoch. An int
    ``val_check_interval`` counts training batches (``1``: after every batch), so only
    the float ``1.0`` is "once an epoch"."""
    interval = trainer.val_check_interval
    return bool(
        getattr(trainer, "enable_validation", False)
        and trainer.check_val_every_n_epoch == 1
        and isinstance(interval, float)
        and interval == 1.0
    )


def log_step(trainer: Any) -> int:
    """The step the callbacks write at: ``trainer.global_step``, the optimizer steps so
    far. Under manual optimization ``global_step`` counts every optimizer's steps (two a
    batch for a GAN-style module) while Lightning logs the module's own metrics by
    batches: there, the batches that stepped so far, the current one included (a
    validation inside it has not counted it yet), so both stay on one axis."""
    module = getattr(trainer, "lightning_module", None)
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    stepped = getattr(loop, "_batches_that_stepped", None)
    if getattr(module, "automatic_optimization", True) or not isinstance(stepped, int):
        return int(trainer.global_step)
    return stepped + (1 if getattr(trainer, "validating", False) else 0)


def max_steps_reached(trainer: Any) -> bool:
    """Whether ``Trainer(max_steps=...)`` ended training (the same on every rank)."""
    max_steps = getattr(trainer, "max_steps", -1)
    return max_steps is not None and max_steps != -1 and trainer.global_step >= max_steps


def ended_before_last_batch(trainer: Any) -> bool:
    """Whether the training epoch that just ended stopped before its last batch
    (``max_steps`` reached inside it, or ``on_train_batch_start`` returned -1): Lightning
    then runs no validation at its end but still calls ``on_train_epoch_end``. Read from
    Lightning's batch counters, the same on every rank; a fit resumed after the epoch's
    last batch (its validation ran before the checkpoint) does not count."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    progress = getattr(loop, "batch_progress", None)
    if progress is None:
        return False
    total = getattr(trainer, "num_training_batches", float("inf"))
    if total == float("inf"):  # an iterable without length: only its end is known
        return not progress.is_last_batch
    return progress.current.ready < total


def no_validation_batches(trainer: Any) -> bool:
    """Whether the fit's validation dataloaders, once set up, hold no batches (a dataset
    of length 0, or ``drop_last=True`` with a batch larger than the dataset): Lightning
    then skips every validation loop, though validation is enabled."""
    try:
        batches = trainer.num_val_batches
    except Exception:  # noqa: BLE001 - not set up yet, or not this Lightning's
        return False
    return isinstance(batches, list) and len(batches) > 0 and sum(batches) == 0


def before_weight_averaging(
    trainer: Any, caller: Any, kind: type, after_validation: bool = True
) -> str | None:
    """Moves the callbacks of ``kind`` listed after the trainer's first
    ``WeightAveraging`` (``EMAWeightAveraging``) to just before it, in their order.

    It swaps the averaged weights in for the validation loop and out again in its own
    ``on_validation_epoch_end``; listed before our callbacks it would swap them out
    before they run, so they would measure other weights than validation did. Only the
    last callback of ``kind`` moves them, from its ``setup``: Lightning's loop over the
    list has called every one of them then, so each ``setup`` still runs once.

    Args:
        trainer: The ``Trainer`` (its ``callbacks`` list is changed in place).
        caller: The callback calling, of ``kind``.
        kind: The class of the callbacks to move.
        after_validation: The callbacks run after each epoch's validation; ``False``
            (a trainer that does not validate once at each epoch's end): they run at the
            training epoch end, on the training weights, and the sentence says so.

    Returns:
        ``None``, or a sentence saying which callbacks moved before which.
    """
    callbacks = getattr(trainer, "callbacks", None)
    if not isinstance(callbacks, list) or not WEIGHT_AVERAGING:
        return None
    ours = [cb for cb in callbacks if isinstance(cb, kind)]
    if not ours or ours[-1] is not caller:
        return None
    averaging = [i for i, cb in enumerate(callbacks) if isinstance(cb, WEIGHT_AVERAGING)]
    first = averaging[0] if averaging else len(callbacks)
    late = [cb for cb in callbacks[first:] if isinstance(cb, kind)]
    if not late:  # every one is listed before it (or there is none)
        return None
    rest = [cb for cb in callbacks[first:] if not isinstance(cb, kind)]
    callbacks[first:] = [*late, *rest]
    moved = f"the callbacks {[type(cb).__name__ for cb in late]} now run before "
    if not after_validation:  # they run at the training epoch end, outside the swap
        return (
            f"{moved}{type(rest[0]).__name__}; this trainer does not validate once at each "
            "epoch's end (no validation, every n-th epoch, or several times an epoch), so "
            "they run at the training epoch end and measure the training weights (the "
            "averaged ones are swapped in for validation only)"
        )
    return (
        f"{moved}{type(rest[0]).__name__}, so they measure the averaged weights that "
        "validation measures (it swaps them out at the validation epoch end)"
    )
