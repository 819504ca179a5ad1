"""Lightning flavours: ``pytorch_lightning`` and the unified ``lightning.pytorch``.

Our callbacks subclass the ``Callback`` of every flavour that is installed, so
either ``Trainer`` (and LightningCLI's type checks) accepts them, and they find a
TensorBoard logger of either flavour.
"""

from __future__ import annotations

import sys
from typing import Any

import pytorch_lightning as _pl
from pytorch_lightning.loggers import TensorBoardLogger as _PLTensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from lightning_viz._warning import warn_at


@rank_zero_only
def rank_zero_warn(message: str) -> None:
    """Warns ``message`` on global rank 0, every time it is called: the callers say
    each message once per trainer or run themselves, and Python's once-per-place
    filter would silence it for every later trainer of the process (a sweep's
    trials). The user's filters (``ignore``, ``error``) still apply."""
    warn_at(message, sys._getframe(2))  # noqa: SLF001 - past rank_zero_only's wrapper


def any_rank_warn(message: str) -> None:
    """Warns ``message`` on every rank, naming the rank on the others (``[rank 1] ...``):
    a failure on one rank alone would go unsaid by :func:`rank_zero_warn`."""
    rank = int(getattr(rank_zero_only, "rank", 0) or 0)
    warn_at(message if rank == 0 else f"[rank {rank}] {message}", sys._getframe(1))  # noqa: SLF001


CALLBACK_BASES: tuple[type, ...] = (_pl.Callback,)
TENSORBOARD_LOGGERS: tuple[type, ...] = (_PLTensorBoardLogger,)
MONITORS: tuple[type, ...] = (_pl.callbacks.EarlyStopping, _pl.callbacks.ModelCheckpoint)
"""Callbacks that watch a logged metric (``monitor=``), subclasses included."""
WEIGHT_AVERAGING: tuple[type, ...] = tuple(
    c for c in [getattr(_pl.callbacks, "WeightAveraging", None)] if c is not None
)
"""Lightning's ``WeightAveraging`` (``EMAWeightAveraging``; Lightning 2.5 and later):
the averaged weights are swapped in for the validation loop only."""

try:  # the unified package is optional
    import lightning.pytorch as _lpt
    from lightning.pytorch.loggers import TensorBoardLogger as _LTensorBoardLogger
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    CALLBACK_BASES = (*CALLBACK_BASES, _lpt.Callback)
    TENSORBOARD_LOGGERS = (*TENSORBOARD_LOGGERS, _LTensorBoardLogger)
    MONITORS = (*MONITORS, _lpt.callbacks.EarlyStopping, _lpt.callbacks.ModelCheckpoint)
    _averaging = getattr(_lpt.callbacks, "WeightAveraging", None)
    if _averaging is not None:
        WEIGHT_AVERAGING = (*WEIGHT_AVERAGING, _averaging)


class PlateauMonitor:
    """A ``ReduceLROnPlateau`` that ``configure_optimizers`` set to watch a metric
    (``"monitor"``, epoch interval): Lightning reads the metric at the end of every
    ``frequency``-th training epoch and, when ``strict``, stops the fit without it."""

    def __init__(self, config: Any) -> None:
        self.monitor = str(config.monitor)
        self.strict = bool(getattr(config, "strict", True))
        self.frequency = max(int(getattr(config, "frequency", 1) or 1), 1)
        self.name = type(config.scheduler).__name__


def monitor_name(monitor: Any) -> str:
    """``EarlyStopping``, ``ModelCheckpoint``, ``ReduceLROnPlateau``, ... (for messages)."""
    return monitor.name if isinstance(monitor, PlateauMonitor) else type(monitor).__name__


def plateau_monitors(trainer: Any) -> list[PlateauMonitor]:
    """The trainer's metric-watching LR schedulers (known from ``on_fit_start``: the
    optimizers are configured after the callbacks' ``setup``)."""
    try:
        configs = list(trainer.lr_scheduler_configs or [])
    except (AttributeError, RuntimeError, TypeError):  # no strategy set up yet
        return []
    return [
        PlateauMonitor(c)
        for c in configs
        if getattr(c, "reduce_on_plateau", False)
        and getattr(c, "monitor", None)
        and getattr(c, "interval", "epoch") == "epoch"
    ]


__all__ = [
    "CALLBACK_BASES",
    "MONITORS",
    "PlateauMonitor",
    "TENSORBOARD_LOGGERS",
    "WEIGHT_AVERAGING",
    "any_rank_warn",
    "monitor_name",
    "plateau_monitors",
    "rank_zero_info",
    "rank_zero_warn",
]
