"""Batches of a Lightning ``CombinedLoader`` that yields one batch of every loader at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lightning_viz._runtime.coordinator import Coordinator

__all__ = ["combined_form", "first_part"]


def first_part(trainer: Any, batch: Any, stage: str = "val") -> Any:
    """The first loader's batch when ``batch`` holds one batch of every ``stage``
    loader (``"val"`` or ``"train"``): a ``CombinedLoader`` in a mode other than
    ``"sequential"`` yields them in the loaders' structure (a dict with the loaders'
    keys, or a list of as many batches); ``batch`` itself otherwise.

    The probe is picked from the first loader's own batches (dataloader index 0), so a
    callback that reads the batches of the loop reads that loader's part too, and a
    ``batch_to_xy`` sees one kind of batch everywhere.
    """
    loaders = getattr(trainer, f"{stage}_dataloaders", None)  # a CombinedLoader's iterables
    if isinstance(loaders, Mapping) and isinstance(batch, Mapping) and loaders:
        if list(batch) == list(loaders) and not _holds_tensors(batch.values()):
            return batch[next(iter(loaders))]
    elif isinstance(loaders, list | tuple) and isinstance(batch, list | tuple) and loaders:
        if len(batch) == len(loaders) and not _holds_tensors(batch):
            return batch[0]
    return batch


def _holds_tensors(values: Any) -> bool:
    """Whether any of ``values`` is a tensor or array: one loader's batch holds them at its
    top level, a batch of every loader holds batches."""
    return any(hasattr(v, "shape") for v in values)


def combined_form(trainer: Any, stage: str = "val") -> Callable[[Any], Any] | None:
    """How the fit's ``stage`` loaders yield batches when they run together (a
    ``CombinedLoader`` in a mode other than ``"sequential"``; several training
    loaders): a function making one loader's batch a batch in the loaders' structure,
    that batch for every loader (what a transfer hook written for those batches
    takes). ``None`` when they do not run together. Builds the loaders once."""
    loaders = Coordinator.of(trainer).stage_loaders(trainer, stage)
    if hasattr(loaders, "iterables") and hasattr(loaders, "flattened"):  # a CombinedLoader
        if getattr(loaders, "_mode", "sequential") == "sequential":
            return None
        loaders = loaders.iterables
    elif stage == "val":  # several validation loaders run one after another
        return None
    if isinstance(loaders, Mapping) and loaders:
        keys = list(loaders)
        return lambda batch: dict.fromkeys(keys, batch)
    if isinstance(loaders, list | tuple) and loaders:
        count = len(loaders)
        return lambda batch: [batch] * count
    return None
