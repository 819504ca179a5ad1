"""Probe images: a fixed, class-balanced pick from the validation data.

The callbacks look at the same few images every epoch. They are picked once, by
scanning the validation loader in its order (a shuffled loader is scanned in its
dataset's order instead), and remembered by their positions and a fingerprint, so a
resumed run rebuilds exactly the same probe from the checkpoint, or says that it
cannot. :func:`stage_loader` finds the fit's validation or training dataloader to scan.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    Subset,
)

from lightning_viz._checks import call_adapter, fail
from lightning_viz._io import fingerprint
from lightning_viz._runtime.layout import check_batch_images
from lightning_viz._runtime.loaders import (
    listed_indices,
    loader_batch_size,
    sampler_indices,
    stage_loader,
)
from lightning_viz._runtime.memory import release_heap

__all__ = [
    "Probe",
    "Scan",
    "balanced_pick",
    "check_probe_source",
    "default_batch_to_xy",
    "first_batch",
    "fits_as_masks",
    "in_order",
    "is_tensor_tuple",
    "load_probe",
    "loader_batch_size",
    "scan",
    "scan_limit",
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
    ``label`` and ``mask`` keys (plural forms too) and a bare image tensor. A third
    tuple element is taken as masks only when it is a tensor ``(N, 1, H, W)`` or
    ``(N, H, W)`` of the images' ``N``, ``H`` and ``W`` holding a mask's values (bool,
    0/1, or 0/255 integers); anything else there (file names, indices, weights, a
    depth map) is left out.

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
        # a third element that is not a mask of the images (file names, indices, sample
        # weights, metadata) is the user's extra data: left out
        masks = parts[2] if fits_as_masks(parts[2], parts[0]) else None
        return parts[0], parts[1], masks
    raise TypeError(
        f"cannot split a batch of type {type(batch).__name__} into (images, labels); "
        "pass `batch_to_xy` to the callback"
    )


def fits_as_masks(masks: Any, images: Any) -> bool:
    """Whether ``masks`` are masks of ``images``: ``(N, 1, H, W)`` or ``(N, H, W)`` of
    bool, 0/1 or 0/255 integer values."""
    return _is_mask_of(masks, images) and _mask_values(masks)


def _is_mask_of(masks: Any, images: Any) -> bool:
    """Whether ``masks`` is ``(N, 1, H, W)`` or ``(N, H, W)`` for images ``(N, C, H, W)``."""
    if not isinstance(masks, Tensor) or not isinstance(images, Tensor) or images.dim() != 4:
        return False
    n, _, h, w = images.shape
    return tuple(masks.shape) in ((n, 1, h, w), (n, h, w))


def _mask_values(masks: Tensor) -> bool:
    """Whether a tensor holds a mask's values: bool, 0/1, or 0/255 integers."""
    if masks.dtype == torch.bool:
        return True
    binary = (masks == 0) | (masks == 1)
    if not masks.is_floating_point():
        binary |= masks == 255
    return bool(binary.all())


def split_batch(batch: Any, batch_to_xy: Callable[[Any], Any] | None) -> tuple[Any, Any, Any]:
    """``(images, labels, masks)`` of a batch (``labels``/``masks`` may be ``None``)."""
    split = batch_to_xy or default_batch_to_xy  # the user's: its errors name it
    out = call_adapter("batch_to_xy", split, batch) if batch_to_xy else split(batch)
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
    masks = out[2] if len(out) == 3 else None
    if masks is not None:
        if not _is_mask_of(masks, images):
            shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
            n, _, h, w = images.shape
            raise ValueError(
                f"the batch's masks ({shape}) do not match its images: masks must be a tensor "
                f"(N, 1, H, W) or (N, H, W) = ({n}, 1, {h}, {w}); pass `batch_to_xy` returning "
                "(images, labels) to leave them out"
            )
        masks = masks if masks.dim() == 4 else masks.unsqueeze(1)
    return images, labels, masks


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
    """The sorted classes that ``labels`` name (see :func:`class_of`); a negative index
    (an ``ignore_index`` such as -100) names none, unless no label names one."""
    seen = {class_of(lab) for lab in labels}
    return sorted({c for c in seen if c >= 0} or seen)


def class_of(label: Tensor) -> int:
    """The class a label names: the index, or the top entry of a label row. A label of
    one element (``(1,)``: a dataset's ``tensor([c])``, a binary ``tensor([1.0])``) is its
    value, a soft binary target its side of 0.5 (as one entry, its argmax was always 0)."""
    if label.numel() == 1:
        value = float(label.reshape(()))
        if not math.isfinite(value):
            return -1  # no class (the label checks name it)
        return int(value) if value == round(value) else int(value > 0.5)
    if bool(label.float().isnan().any()):
        return -1  # no class (argmax ranks a NaN first; the label checks name it)
    return int(label) if label.dim() == 0 else int(label.float().argmax())


def balanced_pick(labels: Sequence[int], num_samples: int) -> list[int]:
    """Positions of a class-balanced pick, deterministic.

    Takes the first occurrence of each class (classes in ascending order), then
    the second of each, and so on, until ``num_samples`` positions are chosen. A
    negative index (an ``ignore_index`` such as -100: no class) is not picked, unless
    no label names a class.

    Args:
        labels: Class index of each scanned sample, in scan order.
        num_samples: How many to choose (fewer when fewer are available).

    Returns:
        Sorted positions into ``labels``.
    """
    per_class: dict[int, list[int]] = {}
    for pos, lab in enumerate(labels):
        per_class.setdefault(int(lab), []).append(pos)
    if any(c >= 0 for c in per_class):
        per_class = {c: pos for c, pos in per_class.items() if c >= 0}
    chosen: list[int] = []
    rank = 0
    classes = sorted(per_class)
    while len(chosen) < num_samples and any(rank < len(per_class[c]) for c in classes):
        for c in classes:
            if rank < len(per_class[c]) and len(chosen) < num_samples:
                chosen.append(per_class[c][rank])
        rank += 1
    return sorted(chosen)


def in_order(loader: DataLoader) -> Iterable[Any]:
    """The loader, or for a shuffled map-style loader the same data in dataset order:
    the samples its sampler draws from when it names them (a ``SubsetRandomSampler``'s
    indices, a list of indices as the sampler or batch sampler, sorted: a validation
    split of a dataset shared with training), else the whole dataset (see
    :func:`~lightning_viz._runtime.loaders.opaque_sampler`)."""
    batches = loader.batch_sampler
    ordered = isinstance(batches, BatchSampler) and isinstance(batches.sampler, SequentialSampler)
    if isinstance(loader.dataset, IterableDataset) or ordered or batches is None:
        return _unshared(loader)
    if isinstance(batches, BatchSampler):
        subset = sampler_indices(batches.sampler)
    else:  # a batch sampler of the user's: named when it is a list of index lists
        subset = listed_indices(batches, batched=True)
    return DataLoader(
        loader.dataset if subset is None else Subset(loader.dataset, subset),
        batch_size=loader.batch_size or 1,
        shuffle=False,
        collate_fn=loader.collate_fn,
        num_workers=0,
    )


def _unshared(loader: DataLoader) -> DataLoader:
    """``loader``, or a copy of it that leaves the user's alone: one whose workers do not
    persist (the user's loader would keep the scan's worker iterator, the fit reuse it
    and skip the seed draw of a new one: every later random number of the run shifted),
    and that draws its iterator's seed from a copy of the loader's ``generator=`` (the
    draw would advance the user's generator: one shared with the training loader, as
    PyTorch's reproducibility recipe has it, reshuffled the training data)."""
    generator = getattr(loader, "generator", None)
    if not getattr(loader, "persistent_workers", False) and generator is None:
        return loader
    twin = copy.copy(loader)
    object.__setattr__(twin, "persistent_workers", False)  # past DataLoader's set-once guard
    object.__setattr__(twin, "_iterator", None)
    if isinstance(generator, torch.Generator):
        clone = torch.Generator(device=generator.device)
        clone.set_state(generator.get_state())
        object.__setattr__(twin, "generator", clone)
    return twin


def first_batch(loader: DataLoader) -> Any:
    """The loader's first batch in dataset order (``None`` when it is empty); the
    iterator's seed draw is taken from a fork, so the global RNG is left alone."""
    with torch.random.fork_rng(devices=[]):
        return next(iter(in_order(loader)), None)


def _scan(
    batches: Iterable[Any],
    batch_to_xy: Callable[[Any], Any] | None,
    limit: int,
    num_samples: int,
    indices: list[int] | None = None,
    transfer: Callable[[Any], Any] | None = None,
) -> tuple[list[Tensor | None], list[Tensor | None], list[Tensor | None]]:
    """Collects per-sample images, labels and masks from the first ``limit`` samples.

    Memory stays bounded by about ``2 * num_samples`` images plus one batch, whatever
    ``limit`` is (2,048 ImageNet images would be 1.2 GB): an image is copied only when
    it can be picked and kept only while it still can. With ``indices`` those are the
    positions kept; otherwise, with labels, the class-balanced pick of the labels
    scanned so far (a position left out of it is never picked later: more samples
    only fill lower ranks) and the first ``num_samples`` (the pick should labels stop);
    without labels the first ``num_samples`` (the scan stops there). Evicted images
    and masks are ``None``; every label is kept (small, and the classes seen need them
    all).
    """
    images: list[Tensor | None] = []
    labels: list[Tensor | None] = []
    masks: list[Tensor | None] = []
    if limit <= 0:
        return images, labels, masks
    wanted = None if indices is None else set(indices)
    live: set[int] = set()
    classes: list[int] = []
    unlabelled = False  # a batch without labels was seen: no class balancing from then on
    with torch.inference_mode(False), torch.no_grad():
        for batch in batches:
            x, y, m = split_batch(batch if transfer is None else transfer(batch), batch_to_xy)
            first = len(labels)
            take = min(int(x.shape[0]), limit - first)
            labels += [None if y is None else y[i].detach().cpu().clone() for i in range(take)]
            if y is not None and not unlabelled:  # each label's class, computed once
                classes += [class_of(lab) for lab in labels[first:]]  # type: ignore[arg-type]
            else:
                unlabelled = True
            if wanted is not None:
                keep = wanted
            elif unlabelled:
                keep = set(range(num_samples))
            else:  # the pick so far (a position left out now is never picked later)
                picked = balanced_pick(classes, num_samples)
                keep = set(picked) | set(range(num_samples))  # the first: if labels stop
            for pos in live - keep:
                images[pos] = masks[pos] = None
            live &= keep
            for i in range(take):  # only images that can be picked are copied
                pos = first + i
                kept = pos in keep
                images.append(x[i].detach().cpu().clone() if kept else None)
                masks.append(m[i].detach().cpu().bool().clone() if kept and m is not None else None)
                if kept:
                    live.add(pos)
            if len(labels) >= limit:
                break
            if wanted is None and unlabelled and len(labels) >= num_samples:
                break
    return images, labels, masks


def _stack(items: list[Tensor | None]) -> Tensor | None:
    if not items or any(t is None for t in items):
        return None
    return torch.stack(items)  # type: ignore[arg-type]


def scan_limit(num_samples: int) -> int:
    """How many samples a scan reads at most to pick ``num_samples`` (class-balanced)."""
    return max(2 * num_samples, 2048)


@dataclass
class Scan:
    """The samples a scan read: every label, and the images and masks that a pick of
    up to ``keep`` samples can take (``None`` for the rest).

    Attributes:
        images: Per scanned sample, ``(C, H, W)`` or ``None`` when evicted.
        labels: Per scanned sample, the label or ``None`` when the data has none.
        masks: Per scanned sample, the ``(1, H, W)`` bool mask or ``None``.
        keep: The largest pick whose images were kept.
    """

    images: list[Tensor | None]
    labels: list[Tensor | None]
    masks: list[Tensor | None]
    keep: int
    cut: bool = False  # it stopped at its limit: the data has more samples

    def sorted_by_class(self) -> tuple[int, int] | None:
        """``(first, last)`` class when a cut scan read class labels in ascending order
        (data ordered by class, such as an ``ImageFolder``: classes after ``last`` may
        not have been read), else ``None``."""
        if not self.cut or not self.labels or any(lab is None or lab.dim() for lab in self.labels):
            return None
        classes = [class_of(lab) for lab in self.labels]  # type: ignore[arg-type]
        ordered = all(a <= b for a, b in zip(classes, classes[1:], strict=False))
        return (classes[0], classes[-1]) if ordered else None

    def probe(self, num_samples: int, indices: list[int] | None = None) -> Probe:
        """The class-balanced pick of ``num_samples`` (or exactly ``indices``).

        Raises:
            ValueError: The scan is empty.
            IndexError: ``indices`` exceed the scanned data (a ``LookupError``).
            LookupError: An image of ``indices`` was not kept by this scan.
        """
        if not self.images:
            raise ValueError("the probe data is empty: no images to look at")
        labelled = all(lab is not None for lab in self.labels)
        if indices is None:
            if labelled:
                indices = balanced_pick([class_of(lab) for lab in self.labels], num_samples)  # type: ignore[arg-type]
            else:
                indices = list(range(min(num_samples, len(self.images))))
        if indices and max(indices) >= len(self.images):
            raise IndexError(
                f"saved probe positions {indices} exceed the {len(self.images)} samples of the data"
            )
        if any(self.images[i] is None for i in indices):
            raise LookupError(f"positions {indices} were not all kept by this scan")
        return Probe(
            torch.stack([self.images[i] for i in indices]).float(),  # type: ignore[misc]
            _stack([self.labels[i] for i in indices]),
            _stack([self.masks[i] for i in indices]),
            list(indices),
            classes_seen(self.labels) if labelled else None,  # type: ignore[arg-type]
        )


def scan(
    source: Any,
    num_samples: int,
    batch_to_xy: Callable[[Any], Any] | None = None,
    indices: list[int] | None = None,
    limit: int | None = None,
    transfer: Callable[[Any], Any] | None = None,
) -> Scan:
    """Reads a Dataset or DataLoader once for picks of up to ``num_samples``.

    Args:
        source: A ``Dataset`` of samples or a ``DataLoader`` (read in dataset order
            when it shuffles).
        num_samples: The largest pick the scan must serve.
        batch_to_xy: Maps a batch to ``(images, labels[, masks])``.
        indices: Positions chosen by an earlier run: only these are kept, and the scan
            stops after the last.
        limit: How many samples to read at most (default :func:`scan_limit`).
        transfer: Applied to each batch before ``batch_to_xy`` (the fit's batch
            transfer hooks, see :func:`~lightning_viz._runtime.transfer.batch_transfer`).

    Returns:
        The scan, on the CPU.
    """
    if isinstance(source, Dataset) and not isinstance(source, DataLoader):
        source = DataLoader(source, batch_size=256, shuffle=False)
    if isinstance(source, DataLoader):
        source = in_order(source)
    limit = limit or scan_limit(num_samples)
    if indices is not None:
        limit = max(indices) + 1 if indices else 0
    images, labels, masks = _scan(source, batch_to_xy, limit, num_samples, indices, transfer)
    release_heap()  # the decoded batches the scan let go
    cut = indices is None and len(images) >= limit and _has_more(source, limit)
    return Scan(images, labels, masks, num_samples, cut)


def _has_more(source: Any, read: int) -> bool:
    """Whether ``source`` holds more than ``read`` samples (unknown length: assumed)."""
    try:
        return len(getattr(source, "dataset", source)) > read
    except TypeError:
        return True


def load_probe(
    source: Any,
    num_samples: int,
    batch_to_xy: Callable[[Any], Any] | None = None,
    indices: list[int] | None = None,
    scan_limit: int | None = None,
    transfer: Callable[[Any], Any] | None = None,
) -> Probe:
    """Builds the probe from a tensor, ``(images, labels)``, a Dataset or a DataLoader.

    Args:
        source: Probe tensor ``(N, C, H, W)``, a tuple ``(images, labels[, masks])``,
            a ``Dataset`` of samples, or a ``DataLoader`` (scanned in dataset order
            when it shuffles).
        num_samples: How many images to pick (class-balanced when labels exist).
        batch_to_xy, indices: As for :func:`scan` (``indices`` from ``state_dict``:
            exactly these are taken again).
        scan_limit: ``limit`` of :func:`scan`.
        transfer: As for :func:`scan` (data sources only).

    Returns:
        The probe, on the CPU.
    """
    if isinstance(source, Tensor):
        images = check_batch_images(source, probe=True)
        return Probe(images[:num_samples].detach().clone(), None, None, None)
    if is_tensor_tuple(source):
        check_batch_images(source[0], probe=True)  # its own hint: no batch_to_xy applies
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
    found = scan(source, num_samples, batch_to_xy, indices, scan_limit, transfer)
    return found.probe(num_samples, indices)


def is_tensor_tuple(source: Any) -> bool:
    """Whether ``source`` is ``(images, labels[, masks])`` tensors (not data to scan)."""
    return isinstance(source, tuple | list) and bool(source) and isinstance(source[0], Tensor)


def check_probe_source(probe: Any) -> Any:
    """``None``, a tensor, ``(images, labels[, masks])``, a ``Dataset`` or a ``DataLoader``."""
    if probe is None or isinstance(probe, Dataset | DataLoader):
        return probe
    if isinstance(probe, Tensor) or is_tensor_tuple(probe):
        images = probe if isinstance(probe, Tensor) else probe[0]
        if images.dim() != 4 or images.shape[0] == 0:
            what = "images" if isinstance(probe, Tensor) else "the images of (images, labels)"
            fail(
                "probe",
                f"{what} as a non-empty batch (N, C, H, W)",
                f"<shape {tuple(images.shape)}>",
            )
        masks = None if isinstance(probe, Tensor) or len(probe) < 3 else probe[2]
        if masks is not None and not fits_as_masks(masks, images):  # else left out unsaid
            got = masks
            if isinstance(masks, Tensor):
                values = ""
                if masks.numel():  # an empty placeholder has no range
                    values = f" of {masks.dtype} values in [{masks.min():.3g}, {masks.max():.3g}]"
                got = f"<masks {tuple(masks.shape)}{values}>"
            n, _, h, w = images.shape
            fail("probe", f"(images, labels, masks) with 0/1 masks ({n}, 1, {h}, {w})", got)
        return probe
    allowed = "a tensor (N, C, H, W), a tuple (images, labels[, masks]), a Dataset or None"
    if isinstance(probe, str):
        allowed += (
            "; for images in a folder pass a Dataset such as "
            "torchvision.datasets.ImageFolder(path, transform=...)"
        )
    fail("probe", allowed, probe, TypeError)
    return None  # unreachable
