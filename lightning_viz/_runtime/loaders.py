"""Where the fit's dataloaders are, found through the datamodule or Lightning's loops,
without building what the fit would not build, and the samples their samplers name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    WeightedRandomSampler,
)

__all__ = [
    "first_loader",
    "has_loader",
    "listed_indices",
    "loader_batch_size",
    "opaque_sampler",
    "sampler_indices",
    "stage_loader",
    "stage_loaders",
]


def _defines(obj: Any, name: str) -> bool:
    """True when ``obj``'s class implements ``name`` itself (not Lightning's default)."""
    fn = getattr(type(obj), name, None)
    qualname = getattr(fn, "__qualname__", "")
    return fn is not None and not qualname.startswith(("DataHooks.", "LightningDataModule."))


def _loop_source(trainer: Any, stage: str) -> Any:
    """Lightning's source of the fit's ``stage`` dataloaders (``None`` when it has none)."""
    loop = trainer.fit_loop.epoch_loop.val_loop if stage == "val" else trainer.fit_loop
    return getattr(loop, "_data_source", None)


def has_loader(trainer: Any, stage: str) -> bool:
    """Whether the fit has a ``"val"`` or ``"train"`` dataloader, without building it
    (``True`` when this Lightning does not say)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and _defines(datamodule, f"{stage}_dataloader"):
        return True
    source = _loop_source(trainer, stage)
    return source is None or bool(source.is_defined())


def first_loader(loaders: Any) -> Any:
    """The first dataloader of what a ``*_dataloader`` hook returned.

    Lightning takes one loader, a list or tuple of them, a dict of them (in its
    order: dataloader index 0 is the first value) or a ``CombinedLoader`` of any of
    these; nested collections are followed to their first leaf.
    """
    while loaders is not None:
        flattened = getattr(loaders, "flattened", None)  # Lightning's CombinedLoader
        if isinstance(flattened, list) and not isinstance(loaders, list | tuple | Mapping):
            loaders = flattened
        elif isinstance(loaders, Mapping):
            loaders = next(iter(loaders.values()), None)
        elif isinstance(loaders, list | tuple):
            loaders = loaders[0] if loaders else None
        else:
            return loaders
    return None


def stage_loader(trainer: Any, stage: str) -> Any:
    """The first ``"val"`` or ``"train"`` dataloader of the fit (``None`` when none).

    "First" is dataloader index 0: the first of a list, the first value of a dict,
    the first loader of a ``CombinedLoader``.
    """
    return first_loader(stage_loaders(trainer, stage))


def stage_loaders(trainer: Any, stage: str) -> Any:
    """What the fit's ``"val"`` or ``"train"`` dataloader hook returns (a loader, a
    collection of them, a ``CombinedLoader``), built anew; ``None`` when none."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and _defines(datamodule, f"{stage}_dataloader"):
        loaders = getattr(datamodule, f"{stage}_dataloader")()
        if first_loader(loaders) is not None:
            return loaders
    source = _loop_source(trainer, stage)
    if source is not None and source.is_defined():
        try:
            return source.dataloader()
        except (NotImplementedError, AttributeError, TypeError):
            return None
    return None


def loader_batch_size(loader: Any) -> int | None:
    """The batch size of a ``DataLoader`` (or of its batch sampler), else ``None``."""
    for owner in (loader, getattr(loader, "batch_sampler", None)):
        size = getattr(owner, "batch_size", None)
        if isinstance(size, int) and size > 0:
            return size
    return None


# ------------------------------------------------------------------ samplers
def sampler_indices(sampler: Any) -> list[int] | None:
    """The sorted dataset indices a sampler draws from when it names them (``indices``:
    ``SubsetRandomSampler``; a list of indices given as the sampler), also inside
    Lightning's distributed wrapper; else ``None`` (the whole dataset)."""
    for _ in range(3):  # the sampler, or the one a DistributedSamplerWrapper holds
        indices = getattr(sampler, "indices", None)
        if indices is not None and not isinstance(indices, str | bytes):
            try:  # a list, a tensor, a numpy array (sklearn's split): data, not code
                return sorted({int(i) for i in indices})
            except (TypeError, ValueError):
                return None
        if (listed := listed_indices(sampler, batched=False)) is not None:
            return listed
        sampler = _wrapped(sampler)
        if sampler is None:
            return None
    return None


def _wrapped(sampler: Any) -> Any:
    """The sampler Lightning's ``DistributedSamplerWrapper`` holds (``None`` otherwise)."""
    return getattr(getattr(sampler, "dataset", None), "_sampler", None)


# samplers over the whole dataset: random draws, or one rank's share of it
_WHOLE_DATASET = (RandomSampler, WeightedRandomSampler, DistributedSampler)


def listed_indices(sampler: Any, *, batched: bool) -> list[int] | None:
    """The sorted indices of a sampler that is a list of them (``batched``: a list of
    index lists), read without iterating any code of the user's; else ``None``."""
    if not isinstance(sampler, list | tuple | range | Tensor):
        return None
    try:
        rows = [r for b in sampler for r in b] if batched else sampler
        return sorted({int(i) for i in rows}) or None
    except (TypeError, ValueError):
        return None


def opaque_sampler(loader: Any) -> str | None:
    """The type of the user's sampler (or batch sampler) of ``loader`` when it does not
    name its indices, so that the whole dataset is scanned (its split unknown: it may
    hold training samples); ``None`` otherwise. It is never iterated: that would run
    the user's code (its RNG draws, its own generator or epoch counter) at setup, and
    under DDP give each rank its own probe."""
    batches = getattr(loader, "batch_sampler", None)
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return None
    if not isinstance(batches, BatchSampler):  # one of the user's (or none)
        named = batches is None or listed_indices(batches, batched=True)
        return None if named else type(batches).__name__
    sampler = _wrapped(batches.sampler) or batches.sampler  # the user's, under DDP
    known = isinstance(sampler, (SequentialSampler, *_WHOLE_DATASET))
    return None if known or sampler_indices(sampler) else type(sampler).__name__
