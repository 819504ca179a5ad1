"""A lightning-viz metric that ``EarlyStopping``, ``ModelCheckpoint`` or a
``ReduceLROnPlateau`` (``configure_optimizers``'s ``"monitor"``) watches.

Lightning stops the fit when a monitored metric is missing at a check (``EarlyStopping``
with ``strict=True``; ``ModelCheckpoint`` once validation has run), and a stale value
would decide early stopping or the best checkpoint. So a callback whose metric is
monitored must write it at every check: its schedule is checked before training, and
what would turn it off at setup stops the fit there instead of one epoch later.
"""

from __future__ import annotations

import math
from typing import Any

from lightning_viz._runtime.compat import PlateauMonitor, monitor_name
from lightning_viz._runtime.coordinator import Coordinator

__all__ = [
    "check_monitored_schedule",
    "check_step_validation",
    "forget_unmeasured",
    "frozen_note",
    "monitor_words",
    "monitored_setup_error",
    "recheck_without_writers",
    "stepped_in_dry_run",
    "without_writers",
]


def monitor_words(monitor: Any) -> str:
    """``EarlyStopping(monitor='robustness/pgd_acc@8/255')``."""
    return f"{monitor_name(monitor)}(monitor={str(monitor.monitor)!r})"


def _kind(monitor: Any) -> str:
    """``"plateau"`` (a ``ReduceLROnPlateau``), ``"checkpoint"`` (a ``ModelCheckpoint``,
    of either Lightning flavour) or ``"stopping"`` (an ``EarlyStopping``)."""
    if isinstance(monitor, PlateauMonitor):
        return "plateau"
    return "checkpoint" if hasattr(monitor, "_every_n_epochs") else "stopping"


def _checks_every(monitor: Any) -> int | None:
    """Every how many epochs ``monitor`` needs the metric (``None``: whenever it is
    there, i.e. ``EarlyStopping(strict=False)``)."""
    if _kind(monitor) == "checkpoint":
        return int(monitor._every_n_epochs or 0) or None  # noqa: SLF001 - read only
    every = monitor.frequency if _kind(monitor) == "plateau" else 1
    return None if _lenient(monitor) else every


def _at_validation_end(monitor: Any, trainer: Any) -> bool:
    """Whether ``monitor`` checks at each validation end: ``EarlyStopping`` decides it
    in its ``setup``; ``ModelCheckpoint`` at each check, by its rule
    (``_should_save_on_train_epoch_end``) followed here: that rule asked before the
    validation batches are counted would read "no validation" (train epoch end). A
    ``ReduceLROnPlateau`` reads after the training epoch end."""
    if _kind(monitor) == "plateau":
        return False
    if _kind(monitor) == "stopping":
        return monitor._check_on_train_epoch_end is False  # noqa: SLF001 - read only
    given = getattr(monitor, "_save_on_train_epoch_end", None)
    if given is not None:
        return not given
    if trainer.check_val_every_n_epoch != 1:
        return True
    if not getattr(trainer, "enable_validation", False) or trainer.limit_val_batches == 0:
        return False
    return trainer.val_check_interval != 1.0


def _validation_words(trainer: Any) -> str:
    """``validation every 50 steps``, ``validation every 2 epochs``, ..."""
    every, interval = trainer.check_val_every_n_epoch, trainer.val_check_interval
    if every is None:
        return f"validation every {interval} steps"
    if isinstance(interval, int):
        return f"validation every {interval} training batches"
    if interval != 1.0:
        return f"validation at {interval} of each epoch"
    return f"validation every {every} epochs"


def check_monitored_schedule(callback: Any, trainer: Any) -> None:
    """Raises ``ValueError`` when a monitor checks a metric of ``callback`` where
    ``callback`` has not written it: at epochs it does not run (``every_n_epochs`` > 1),
    or at each validation end while it runs at the training epoch end (validation by
    steps or every n-th epoch). Lightning would stop the fit at the first check without
    it, and later read a stale value."""
    monitors = Coordinator.monitors_of(trainer, callback)
    for monitor in monitors:
        steps = getattr(monitor, "_every_n_train_steps", 0) or 0
        if steps > 0 or getattr(monitor, "_train_time_interval", None) is not None:
            every = f"every_n_train_steps={steps}" if steps else "train_time_interval"
            Coordinator.of(trainer).warn_once(
                f"step checkpoint {monitor.monitor}",
                f"lightning-viz: {monitor_words(monitor)[:-1]}, {every}) saves between epoch "
                "ends, and the lightning-viz metrics are measured at epoch ends: a checkpoint "
                "gets the value the weights of the last epoch end had. Save on epochs "
                "(every_n_epochs) to rank checkpoints by their own values",
            )
    if not callback._after_validation and getattr(trainer, "enable_validation", False):  # noqa: SLF001
        for monitor in monitors:
            if _at_validation_end(monitor, trainer):
                flag = "check" if _kind(monitor) == "stopping" else "save"
                raise ValueError(
                    f"{monitor_words(monitor)} checks at the end of each validation, but "
                    f"with {_validation_words(trainer)} {type(callback).__name__} writes "
                    "its metric at the training epoch end: the monitor would not find "
                    f"it, or read last epoch's. Pass {type(monitor).__name__}("
                    f"{flag}_on_train_epoch_end=True), listed after the lightning-viz callbacks"
                )
    n, why = callback.every_n_epochs, f"every_n_epochs={callback.every_n_epochs}"
    fix = "Pass every_n_epochs=1"
    validated = getattr(trainer, "check_val_every_n_epoch", 1)
    if getattr(callback, "validated_epochs_only", False) and isinstance(validated, int):
        if validated > 1:  # it embeds the features of the validation loop
            n = math.lcm(n, validated)
            why += f", at the epochs validated with check_val_every_n_epoch={validated}"
            fix = "Validate every epoch (check_val_every_n_epoch=1)"
    if n == 1:
        return
    for monitor in monitors:
        every = _checks_every(monitor)
        if every is not None and every % n:
            raise ValueError(
                f"{monitor_words(monitor)} checks its metric every "
                f"{'epoch' if every == 1 else f'{every} epochs'}, but "
                f"{type(callback).__name__} writes it every {n} epochs ({why}): Lightning "
                f"would stop the fit at the first epoch without it, or read a stale value. "
                f"{fix}, or {_same_epochs(monitor, n)}"
            )


def check_step_validation(callback: Any, trainer: Any) -> None:
    """At the training start (the epoch's batches are known): raises ``ValueError`` when
    validation every N training batches leaves epochs without one and a monitor needs
    the metric of a callback that only validation feeds (``validated_epochs_only``)."""
    interval = getattr(trainer, "val_check_interval", 1.0)
    batches = getattr(trainer, "num_training_batches", None)
    if (
        not getattr(callback, "validated_epochs_only", False)
        or getattr(trainer, "check_val_every_n_epoch", 1) is not None
        or not isinstance(interval, int)
        or not isinstance(batches, int)
        or interval <= batches  # every epoch holds a validation
    ):
        return

    def validated(epoch: int) -> bool:  # Lightning counts the batches across epochs
        return (epoch + 1) * batches // interval > epoch * batches // interval

    cycle = interval // math.gcd(interval, batches)  # epochs until the pattern repeats
    for monitor in Coordinator.monitors_of(trainer, callback):
        every = _checks_every(monitor)
        if every is None or all(map(validated, range(every - 1, math.lcm(cycle, every), every))):
            continue  # a lenient monitor, or one that checks only validated epochs
        skip = _skip_option(monitor)
        if interval % batches == 0:  # every m-th epoch holds one (and the callback runs)
            skip = _same_epochs(monitor, math.lcm(interval // batches, callback.every_n_epochs))
        elif skip:
            skip = f"check only where it is written ({skip})"
        raise ValueError(
            f"{monitor_words(monitor)} needs its metric at each check, but with "
            f"validation every {interval} training batches and {batches} an epoch, some "
            f"epochs hold no validation, whose features {type(callback).__name__} "
            f"embeds. Validate at most every {batches} batches" + (f", or {skip}" if skip else "")
        )


def _skip_option(monitor: Any) -> str:
    """The option by which ``monitor`` skips a check without its metric, or ``""`` (a
    ``ModelCheckpoint`` has none)."""
    return {
        "plateau": '"strict": False in its "lr_scheduler" dict',
        "checkpoint": "",
        "stopping": "EarlyStopping(strict=False)",
    }[_kind(monitor)]


def _same_epochs(monitor: Any, n: int) -> str:
    """How ``monitor`` checks only the epochs a callback writes, every ``n``-th."""
    if _kind(monitor) == "plateau":
        return (
            f'"frequency": {n} (or "strict": False) in the "lr_scheduler" dict that '
            "configure_optimizers returns"
        )
    if _kind(monitor) == "checkpoint":
        return f"save on the same epochs (ModelCheckpoint(every_n_epochs={n}))"
    return "skip the checks without it (EarlyStopping(strict=False))"


def _lenient(monitor: Any) -> bool:
    """An ``EarlyStopping(strict=False)`` (or a ``ReduceLROnPlateau`` with ``"strict":
    False``): it skips a check without its metric."""
    return _kind(monitor) != "checkpoint" and not getattr(monitor, "strict", True)


def stepped_in_dry_run(callback: Any, trainer: Any) -> bool:
    """Whether a strict ``ReduceLROnPlateau`` watches a metric of ``callback``: Lightning
    turns the other monitors off for ``fast_dev_run`` but steps the schedulers, so
    the dry run must measure the metric too (it writes it nowhere else)."""
    monitors = Coordinator.monitors_of(trainer, callback)
    return any(_kind(m) == "plateau" and not _lenient(m) for m in monitors)


def _reads_now(monitor: Any, trainer: Any) -> bool:
    """Whether ``monitor`` reads its metric at the end of this epoch: a strict
    ``EarlyStopping`` always, a lenient one never needs it, a ``ModelCheckpoint`` at
    its ``every_n_epochs`` (by steps or time: whenever it saves, so always)."""
    if _kind(monitor) == "checkpoint":  # by steps or time (every_n_epochs=0): always
        every = int(monitor._every_n_epochs or 0)  # noqa: SLF001 - read only
        return every < 1 or (trainer.current_epoch + 1) % every == 0
    every = _checks_every(monitor)
    return every is not None and (trainer.current_epoch + 1) % every == 0


def forget_unmeasured(callback: Any, trainer: Any, fresh: set[str] | None = None) -> None:
    """At an epoch ``callback`` does not run (``every_n_epochs``, a NaN model, after a
    failure), its metrics leave ``trainer.callback_metrics`` unless a monitor reads them
    at this epoch (a strict ``EarlyStopping``, a due ``ModelCheckpoint``): an
    ``EarlyStopping(strict=False)`` then skips the check, as it does for a metric not
    logged, instead of counting the last run's value again as no improvement (its
    patience would run out twice as fast as the measurements came). ``fresh``: at the
    epoch its run failed, the tags that run wrote before failing (kept)."""
    if fresh is None and callback._last_epoch == trainer.current_epoch:  # noqa: SLF001 - ran
        return
    monitors = Coordinator.monitors_of(trainer, callback)
    for key in {str(m.monitor) for m in monitors} - (fresh or set()):
        if not any(_reads_now(m, trainer) for m in monitors if str(m.monitor) == key):
            trainer.callback_metrics.pop(key, None)


def monitored_setup_error(callback: Any, trainer: Any, err: Exception) -> Exception | None:
    """The error to stop the fit with when ``callback`` cannot run (``err``) but writes a
    monitored metric (the monitor would stop the fit after the first epoch), else ``None``."""
    monitors = [m for m in Coordinator.monitors_of(trainer, callback) if not _lenient(m)]
    if not monitors:  # a lenient one skips its checks without the metric
        return None
    said = (
        f"{err}; {monitor_words(monitors[0])} monitors a metric of "
        f"{type(callback).__name__}, so the fit cannot go on without it"
    )
    try:
        return type(err)(said)
    except Exception:  # noqa: BLE001 - an error type built from other arguments
        return RuntimeError(f"{type(err).__name__}: {said}")


def without_writers(callback: Any, trainer: Any, coordinator: Any) -> None:
    """Says once that the callbacks have nowhere to write and turn themselves off.

    Raises:
        ValueError: A monitor watches a metric of ``callback``, which it would never
            get (the fit would stop after its first epoch).
    """
    names = [type(lg).__name__ for lg in getattr(trainer, "loggers", []) or []]
    needs = (
        "lightning-viz: the callbacks need a logger they can write to (TensorBoardLogger, "
        "WandbLogger, MLFlowLogger or CSVLogger) among the trainer's loggers, or save_dir=; "
        f"found {names or 'no logger'}"
    )
    if (stop := monitored_setup_error(callback, trainer, ValueError(needs))) is not None:
        raise stop
    coordinator.warn_once("no logger", f"{needs}. They turn themselves off for this run")
    callback._writerless = True  # noqa: SLF001 - asked again at on_fit_start


def recheck_without_writers(callback: Any, trainer: Any) -> None:
    """At ``on_fit_start``, for a callback that found nowhere to write at ``setup``: a
    ``ReduceLROnPlateau`` monitor is known only now (the optimizers are configured after
    the callbacks' ``setup``), and stops the fit here as :func:`without_writers` does."""
    if getattr(callback, "_writerless", False):
        without_writers(callback, trainer, Coordinator.of(trainer))
        callback._writerless = False  # noqa: SLF001 - said once a fit


def frozen_note(callback: Any, trainer: Any) -> str:
    """What a failure of ``callback`` during the fit means for the monitors of its
    metrics, or ``""``: a lenient ``EarlyStopping`` alone on a metric skips its checks
    from now on (see :func:`forget_unmeasured`); the others read the last value."""
    monitors = Coordinator.monitors_of(trainer, callback)
    if not monitors:
        return ""
    skipping = [
        m
        for m in monitors
        if all(_lenient(o) for o in monitors if str(o.monitor) == str(m.monitor))
    ]
    frozen = [m for m in monitors if m not in skipping]
    said = []
    if frozen:
        said.append(
            f"{', '.join(monitor_words(m) for m in frozen)} now reads the value of the last "
            "run that did not fail, frozen"
        )
    if skipping:
        said.append(
            f"{', '.join(monitor_words(m) for m in skipping)} skips its checks from now on "
            "(the metric is no longer written)"
        )
    return f"; {' and '.join(said)} (pass on_error='raise' so that a failure stops the fit instead)"
