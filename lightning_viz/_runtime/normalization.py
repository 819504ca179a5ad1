"""The probe data's normalization, read from its torchvision transform, and its
class names, read from the dataset's ``classes``.

A torchvision ``Normalize`` (``transforms`` or ``transforms.v2``) has ``mean`` and
``std`` attributes; it sits in a dataset's ``transform`` (``VisionDataset``,
``ImageFolder``), alone or inside a ``Compose`` (nested ``Compose``,
``RandomApply`` and the like hold a ``transforms`` list too). The dataset may be
wrapped: a ``Subset`` or any wrapper that keeps the wrapped one as ``dataset``,
``datasets`` (``ConcatDataset``: the first), ``base`` or ``_dataset``; a
``DataLoader`` holds it as ``dataset``. Nothing here is imported from torchvision:
a transform is recognised by its class name and attributes. The class names are
a ``classes`` list of strings (``ImageFolder``, torchvision's datasets), unless a
``target_transform`` on the way may have changed what the labels index.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import Tensor

__all__ = [
    "Normalization",
    "affine_normalization",
    "compose",
    "find_classes",
    "find_normalize",
    "value_range",
]

_WRAPPED = ("dataset", "datasets", "base", "_dataset")  # where wrappers keep the data
_TRANSFORMS = ("transform", "transforms")  # where datasets keep their transform
_DEPTH = 8  # wrappers and nested transforms looked through at most

Normalization = tuple[list[float], list[float]]


def _as_floats(values: Any) -> list[float] | None:
    try:
        return [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]
    except (TypeError, ValueError):
        try:
            return [float(values)]
        except (TypeError, ValueError):
            return None


def _in_transform(transform: Any, depth: int) -> Normalization | None:
    """The first ``Normalize`` in ``transform`` (depth first, in order)."""
    if transform is None or depth > _DEPTH:
        return None
    if type(transform).__name__ == "Normalize" and hasattr(transform, "std"):
        mean, std = _as_floats(transform.mean), _as_floats(transform.std)
        if mean and std:
            return mean, std
    if isinstance(transform, list | tuple):
        children: Any = transform
    else:
        children = [getattr(transform, name, None) for name in _TRANSFORMS]
    for child in children:
        if child is transform or isinstance(child, str | bytes):
            continue
        if callable(child) or isinstance(child, list | tuple):
            found = _in_transform(child, depth + 1)
            if found is not None:
                return found
    return None


def _datasets_within(source: Any, depth: int = 0) -> Iterator[Any]:
    """``source`` and the datasets it wraps, outermost first (depth first)."""
    if source is None or depth > _DEPTH or isinstance(source, str | bytes):
        return
    yield source
    for name in _WRAPPED:
        inner = getattr(source, name, None)
        if isinstance(inner, list | tuple):
            inner = inner[0] if inner else None
        if inner is not None and inner is not source:
            yield from _datasets_within(inner, depth + 1)


def find_normalize(source: Any) -> Normalization | None:
    """``(mean, std)`` of the first ``Normalize`` in the transform of ``source``'s data.

    Args:
        source: A ``DataLoader``, a ``Dataset`` (wrapped or not) or anything else
            (which has none).

    Returns:
        Per-channel ``(mean, std)`` lists, or ``None`` when no ``Normalize`` is found.
    """
    for dataset in _datasets_within(source):
        for name in _TRANSFORMS:
            transform = getattr(dataset, name, None)
            if transform is not None and not isinstance(transform, str | bytes):
                found = _in_transform(transform, 0)
                if found is not None:
                    return found
    return None


def find_classes(source: Any) -> list[str] | None:
    """The class names of ``source``'s data: the first ``classes`` list of strings.

    Args:
        source: A ``DataLoader``, a ``Dataset`` (wrapped or not) or anything else.

    Returns:
        One name per class index, or ``None`` when no wrapper on the way has a
        ``classes`` list of strings, or one has a ``target_transform`` (the labels may
        then index something else).
    """
    for dataset in _datasets_within(source):
        if getattr(dataset, "target_transform", None) is not None:
            return None
        classes = getattr(dataset, "classes", None)
        if isinstance(classes, list | tuple) and classes:
            if all(isinstance(name, str) for name in classes):
                return list(classes)
            return None
    return None


def value_range(images: Any) -> tuple[float, float]:
    """``(min, max)`` of a float tensor."""
    return float(images.min()), float(images.max())


_AFFINE_TOLERANCE = 1e-4  # pixels: what float rounding of a normalization leaves


def affine_normalization(pixels: Tensor, inputs: Tensor) -> Normalization | None:
    """The per-channel ``(mean, std)`` with ``inputs == (pixels - mean) / std``, if any.

    Args:
        pixels: ``(N, C, H, W)`` images as the data gives them.
        inputs: ``(N, C, H, W)``: the same images as the model receives them (after a
            LightningModule's ``on_after_batch_transfer``, say).

    Returns:
        Per-channel ``(mean, std)`` lists (``std > 0``) when every channel of
        ``inputs`` is an affine function of that of ``pixels`` up to float rounding;
        ``None`` otherwise (different shapes, a nonlinear or random transform, a flat
        channel that leaves the map undetermined).
    """
    if not isinstance(pixels, Tensor) or not isinstance(inputs, Tensor):
        return None
    if pixels.shape != inputs.shape or pixels.dim() != 4:
        return None
    p = pixels.detach().double().transpose(0, 1).flatten(1)  # (C, N*H*W)
    x = inputs.detach().double().transpose(0, 1).flatten(1)
    means, stds = [], []
    for pc, xc in zip(p, x, strict=True):
        spread = xc - xc.mean()
        denom = float((spread * spread).sum())
        if denom <= 0.0:
            return None
        std = float((spread * (pc - pc.mean())).sum()) / denom  # pixels = std * x + mean
        mean = float(pc.mean() - std * xc.mean())
        if std <= 0.0 or float((pc - (std * xc + mean)).abs().max()) > _AFFINE_TOLERANCE:
            return None
        means.append(mean)
        stds.append(std)
    return means, stds


def compose(inner: Normalization | None, outer: Normalization) -> Normalization:
    """The normalization of ``inputs = (data - outer_mean) / outer_std`` on data that is
    itself ``(pixels - inner_mean) / inner_std``: one ``(mean, std)`` from pixels."""
    if inner is None:
        return outer
    channels = max(len(inner[0]), len(outer[0]))
    pick = lambda v, c: v[c] if len(v) > 1 else v[0]  # noqa: E731
    means = [pick(outer[0], c) * pick(inner[1], c) + pick(inner[0], c) for c in range(channels)]
    stds = [pick(outer[1], c) * pick(inner[1], c) for c in range(channels)]
    return means, stds
