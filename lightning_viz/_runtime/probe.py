"""Probe images: a fixed, class-balanced pick from the validation data.

The callbacks look at the same few images every epoch. They are picked once, by
scanning the validation loader in its order (a shuffled loader is scanned in its
dataset's order instead), and remembered by their positions and a fingerprint, so a
resumed run rebuilds exactly the same probe from the checkpoint, or says that it
cannot. :func:`stage_loader` finds the fit's validation or training dataloader to scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler

from lightning_viz._checks import check_batch_images
from lightning_viz._io import fingerprint

__all__ = [
    "Probe",
    "balanced_pick",
    "default_batch_to_xy",
    "load_probe",
    "loader_batch_size",
    "split_batch",
    "stage_loader",
]

_IMAGE_KEYS = ("image", "images", "x", "input", "inputs")
_LABEL_KEYS = ("label", "labels", "y", "target", "targets")
_MASK_KEYS = ("mask", "masks")


@dataclass
class Probe:
    """The probe batch, on the CPU until a run moves it.

    Attributes:
        images: ``(N, C, H, W)`` float images in the model's input space.
        labels: ``(N,)`` class indices or ``(N, K)`` label rows, or ``None``; after
            ``setup`` in the form of the task (see ``functional._task``).
        masks: ``(N, 1, H, W)`` bool object masks, or ``None``.
        indices: Positions of the images in the scanned data, or ``None`` for a
            user-given tensor.
        seen: The classes the scanned labels name (sorted), or ``None`` without labels.
    """

    images: Tensor
    labels: Tensor | None
    masks: Tensor | None
    indices: list[int] | None
    seen: list[int] | None = None

    def to(self, device: torch.device) -> Probe:
        """Returns a copy on ``device`` (tensors cloned, never inference tensors)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device).clone()

        return Probe(
            move(self.images), move(self.labels), move(self.masks), self.indices, self.seen
        )

    def select(self, keep: Tensor) -> Probe:
        """The probe restricted to the rows where the bool ``keep`` ``(N,)`` is true."""
        rows = keep.nonzero().flatten().tolist()
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        indices = None if self.indices is None else [self.indices[i] for i in rows]
        return Probe(self.images[rows], pick(self.labels), pick(self.masks), indices, self.seen)

    def fingerprint(self) -> str:
        """A hash of the images, labels and masks: equal only for the same probe."""
        return fingerprint(self.images, self.labels, self.masks, shapes=True)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


def default_batch_to_xy(batch: Any) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Splits a batch into ``(images, labels, masks)``.

    Handles ``(images, labels[, masks])`` tuples/lists, dicts with ``image``,
    ``label`` and ``mask`` keys (plural forms too) and a bare image tensor.

    Raises:
        TypeError: The batch has none of these forms.
    """
    if isinstance(batch, Tensor):
        return batch, None, None
    if isinstance(batch, Mapping):
        images = _first(batch, _IMAGE_KEYS)
        if images is None:
            raise TypeError(
                f"cannot find images in a batch dict with keys {sorted(batch)}; expected one of "
                f"{list(_IMAGE_KEYS)} or pass `batch_to_xy`"
            )
        return images, _first(batch, _LABEL_KEYS), _first(batch, _MASK_KEYS)
    if isinstance(batch, tuple | list) and 1 <= len(batch) <= 3:
        parts = list(batch) + [None] * (3 - len(batch))
        return parts[0], parts[1], parts[2]
    raise TypeError(
        f"cannot split a batch of type {type(batch).__name__} into (images, labels); "
        "pass `batch_to_xy` to the callback"
    )


def split_batch(batch: Any, batch_to_xy: Callable[[Any], Any] | None) -> tuple[Any, Any, Any]:
    """``(images, labels, masks)`` of a batch (``labels``/``masks`` may be ``None``)."""
    out = (batch_to_xy or default_batch_to_xy)(batch)
    if not isinstance(out, tuple | list) or len(out) not in (2, 3):
        raise TypeError(
            "`batch_to_xy` must return (images, labels) or (images, labels, masks), "
            f"got {out!r:.80}"
        )
    images = check_batch_images(out[0])
    labels = out[1]
    if labels is not None:
        labels = _label_tensor(labels)
        if labels.dim() == 0 or labels.shape[0] != images.shape[0] or labels.dim() > 2:
            raise ValueError(
                f"labels of shape {tuple(labels.shape)} do not match {images.shape[0]} images; "
                "labels must be class indices (N,) or label rows (N, K)"
            )
    return images, labels, out[2] if len(out) == 3 else None


def _label_tensor(labels: Any) -> Tensor:
    """The labels of a batch as a tensor of numbers.

    Raises:
        TypeError: Labels that are not numbers (strings, objects).
    """
    if isinstance(labels, Tensor):
        return labels
    try:
        out = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        out = None
    if out is None or not (out.is_floating_point() or out.dtype in _NUMBER_DTYPES):
        first = labels[0] if isinstance(labels, Sequence) and len(labels) else labels
        raise TypeError(
            f"the labels of a batch are {type(labels).__name__} of {type(first).__name__} "
            f"(e.g. {first!r:.40}), not numbers; the callbacks need class indices (N,) or "
            "label rows (N, K): pass `batch_to_xy` mapping a batch to (images, labels) with "
            "labels as class indices (e.g. through your dataset's class_to_idx)"
        )
    return out


_NUMBER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def classes_seen(labels: Sequence[Tensor]) -> list[int]:
    """The sorted classes that ``labels`` name (see :func:`class_of`)."""
    return sorted({class_of(lab) for lab in labels})


def class_of(label: Tensor) -> int:
    """The class a label names: the index, or the top entry of a label row."""
    return int(label) if label.dim() == 0 else int(label.float().argmax())


def balanced_pick(labels: Sequence[int], num_samples: int) -> list[int]:
    """Positions of a class-balanced pick, deterministic.

    Takes the first occurrence of each class (classes in ascending order), then
    the second of each, and so on, until ``num_samples`` positions are chosen.

    Args:
        labels: Class index of each scanned sample, in scan order.
        num_samples: How many to choose (fewer when fewer are available).

    Returns:
        Sorted positions into ``labels``.
    """
    per_class: dict[int, list[int]] = {}
    for pos, lab in enumerate(labels):
        per_class.setdefault(int(lab), []).append(pos)
    chosen: list[int] = []
    rank = 0
    classes = sorted(per_class)
    while len(chosen) < num_samples and any(rank < len(per_class[c]) for c in classes):
        for c in classes:
            if rank < len(per_class[c]) and len(chosen) < num_samples:
                chosen.append(per_class[c][rank])
        rank += 1
    return sorted(chosen)


def _in_order(loader: DataLoader) -> Iterable[Any]:
    """The loader, or for a shuffled map-style loader the same data in dataset order."""
    batches = loader.batch_sampler
    ordered = isinstance(batches, BatchSampler) and isinstance(batches.sampler, SequentialSampler)
    if isinstance(loader.dataset, IterableDataset) or ordered or batches is None:
        return loader
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size or 1,
        shuffle=False,
        collate_fn=loader.collate_fn,
        num_workers=0,
    )


def _scan(
    batches: Iterable[Any],
    batch_to_xy: Callable[[Any], Any] | None,
    limit: int,
) -> tuple[list[Tensor], list[Tensor | None], list[Tensor | None]]:
    """Collects per-sample images, labels and masks from the first ``limit`` samples."""
    images: list[Tensor] = []
    labels: list[Tensor | None] = []
    masks: list[Tensor | None] = []
    if limit <= 0:
        return images, labels, masks
    with torch.inference_mode(False), torch.no_grad():
        for batch in batches:
            x, y, m = split_batch(batch, batch_to_xy)
            for i in range(x.shape[0]):
                images.append(x[i].detach().cpu().clone())
                labels.append(None if y is None else y[i].detach().cpu().clone())
                masks.append(None if m is None else m[i].detach().cpu().bool().clone())
                if len(images) >= limit:
                    return images, labels, masks
    return images, labels, masks


def _stack(items: list[Tensor | None]) -> Tensor | None:
    if not items or any(t is None for t in items):
        return None
    return torch.stack(items)  # type: ignore[arg-type]


def load_probe(
    source: Any,
    num_samples: int,
    batch_to_xy: Callable[[Any], Any] | None = None,
    indices: list[int] | None = None,
    scan_limit: int | None = None,
) -> Probe:
    """Builds the probe from a tensor, ``(images, labels)``, a Dataset or a DataLoader.

    Args:
        source: Probe tensor ``(N, C, H, W)``, a tuple ``(images, labels[, masks])``,
            a ``Dataset`` of samples, or a ``DataLoader`` (scanned in dataset order
            when it shuffles).
        num_samples: How many images to pick (class-balanced when labels exist).
        batch_to_xy: Maps a batch to ``(images, labels[, masks])``.
        indices: Positions chosen by an earlier run (from ``state_dict``); when
            given, exactly these are taken again.
        scan_limit: How many samples to scan at most when picking.

    Returns:
        The probe, on the CPU.
    """
    if isinstance(source, Tensor):
        images = check_batch_images(source)
        return Probe(images[:num_samples].detach().clone(), None, None, None)
    if isinstance(source, tuple | list) and source and isinstance(source[0], Tensor):
        imgs, labs, msks = split_batch(tuple(source), None)
        if indices is not None:  # saved by an earlier run
            sel = list(indices)
        elif labs is not None:
            sel = balanced_pick([class_of(lab) for lab in labs], num_samples)
        else:
            sel = list(range(min(num_samples, imgs.shape[0])))
        lab_t = labs[sel].clone() if labs is not None else None
        mask_t = msks[sel].bool() if msks is not None else None
        seen = None if labs is None else classes_seen(list(labs))
        return Probe(imgs[sel].detach().clone(), lab_t, mask_t, sel, seen)
    if isinstance(source, Dataset) and not isinstance(source, DataLoader):
        source = DataLoader(source, batch_size=256, shuffle=False)
    if isinstance(source, DataLoader):
        source = _in_order(source)
    limit = scan_limit or max(20 * num_samples, 2048)
    if indices is not None:
        limit = max(indices) + 1 if indices else 0
    images, labels, masks = _scan(source, batch_to_xy, limit)
    if not images:
        raise ValueError("the probe data is empty: no images to look at")
    labelled = all(lab is not None for lab in labels)
    if indices is None:
        if labelled:
            indices = balanced_pick([class_of(lab) for lab in labels], num_samples)  # type: ignore[arg-type]
        else:
            indices = list(range(min(num_samples, len(images))))
    if indices and max(indices) >= len(images):
        raise ValueError(
            f"saved probe positions {indices} exceed the {len(images)} samples of the data"
        )
    return Probe(
        torch.stack([images[i] for i in indices]).float(),
        _stack([labels[i] for i in indices]),
        _stack([masks[i] for i in indices]),
        list(indices),
        classes_seen(labels) if labelled else None,  # type: ignore[arg-type]
    )


def _defines(obj: Any, name: str) -> bool:
    """True when ``obj``'s class implements ``name`` itself (not Lightning's default)."""
    fn = getattr(type(obj), name, None)
    qualname = getattr(fn, "__qualname__", "")
    return fn is not None and not qualname.startswith(("DataHooks.", "LightningDataModule."))


def stage_loader(trainer: Any, stage: str) -> Any:
    """The first ``"val"`` or ``"train"`` dataloader of the fit (``None`` when none)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and _defines(datamodule, f"{stage}_dataloader"):
        loader = getattr(datamodule, f"{stage}_dataloader")()
        if loader is not None:
            return loader[0] if isinstance(loader, list | tuple) else loader
    loop = trainer.fit_loop.epoch_loop.val_loop if stage == "val" else trainer.fit_loop
    source = getattr(loop, "_data_source", None)
    if source is not None and source.is_defined():
        try:
            loader = source.dataloader()
        except (NotImplementedError, AttributeError, TypeError):
            return None
        if loader is not None:
            return loader[0] if isinstance(loader, list | tuple) else loader
    return None


def loader_batch_size(loader: Any) -> int | None:
    """The batch size of a ``DataLoader`` (or of its batch sampler), else ``None``."""
    for owner in (loader, getattr(loader, "batch_sampler", None)):
        size = getattr(owner, "batch_size", None)
        if isinstance(size, int) and size > 0:
            return size
    return None
