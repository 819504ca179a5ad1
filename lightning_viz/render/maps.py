"""Maps to pictures: normalize, colormap, gray to RGB, overlay on images."""

from __future__ import annotations

import math
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_viz._checks import (
    check_float,
    check_images,
    check_maps,
    check_tensor,
    check_unit_range,
    fail,
)

__all__ = ["colorize", "normalize_maps", "overlay", "to_rgb"]


def shown_channels(images: Tensor) -> Tensor:
    """The channels of ``(N, C, H, W)`` images that a picture shows: ``C`` 1 or 3 as they
    are, the first three for ``C > 3`` (RGBA, RGB + depth, multispectral), the mean for
    ``C = 2``. Same dtype (``uint8`` stays ``uint8``)."""
    c = images.shape[1]
    if c > 3:
        return images[:, :3]
    if c == 2:
        mean = images.float().mean(dim=1, keepdim=True)
        return mean.round().to(images.dtype) if not images.is_floating_point() else mean
    return images


def picture(images: Any, name: str = "images", *, allow_uint8: bool = False) -> Tensor:
    """A batch that can be drawn: ``(N, C, H, W)`` without empty axes, in ``[0, 1]``
    without NaN (or ``uint8`` when ``allow_uint8``), as :func:`shown_channels`."""
    check_tensor(images, name, "(N, C, H, W)", dim=4)
    images = check_images(images, name, allow_uint8=allow_uint8, unit_range=True, allow_nan=False)
    return shown_channels(images)


def normalize_maps(maps: Tensor, *, percentile: float = 99.5) -> Tensor:
    """Scales every map by its own robust maximum, so one hot pixel cannot wash it out.

    Each map is divided by the ``percentile``-th percentile of its values and
    clipped to ``[0, 1]``. If that percentile is 0 while the map is not all zero
    (a very sparse map), the map's maximum is used instead. An all-zero map stays
    all zero, and so does a constant one: no pixel stands out (scaled by its maximum
    it was all 1, drawn as "everything matters"; pytorch-grad-cam's min-max scaling
    also draws it as zeros).

    Args:
        maps: Non-negative float maps ``(N, 1, H, W)``, e.g. saliency or CAM maps.
        percentile: The robust maximum, in ``(0, 100]``; ``100`` is the plain
            maximum. Default: ``99.5``.

    Returns:
        Float maps ``(N, 1, H, W)`` in ``[0, 1]``, same dtype and device.

    Raises:
        TypeError: ``maps`` is not a floating-point tensor, or ``percentile`` is
            not a number.
        ValueError: Wrong shape, NaN or negative values, or ``percentile``
            outside ``(0, 100]``.
    """
    maps = check_maps(maps, allow_nan=False)
    percentile = check_float(percentile, "percentile", maximum=100, positive=True)
    if float(maps.min()) < 0:
        fail("maps", "non-negative", f"<minimum {float(maps.min()):.4g}>")
    flat = maps.flatten(1).float()  # (N, H*W)
    if percentile == 100:
        robust = flat.amax(dim=1)
    else:
        # linear-interpolation percentile (as torch.quantile, without its size limit)
        srt = flat.sort(dim=1).values
        pos = (percentile / 100.0) * (srt.shape[1] - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        robust = srt[:, lo] + (srt[:, hi] - srt[:, lo]) * (pos - lo)  # (N,)
    top = flat.amax(dim=1)
    robust = torch.where(robust > 0, robust, top)
    robust = torch.where(robust > 0, robust, torch.ones_like(robust))
    out = (flat / robust[:, None]).clamp(0.0, 1.0)
    constant = top - flat.amin(dim=1) <= 1e-6 * top  # no pixel stands out
    out = torch.where(constant[:, None], torch.zeros_like(out), out)
    return out.view_as(maps).to(maps.dtype)


def _lut(cmap: str, device: torch.device) -> Tensor:
    if not isinstance(cmap, str):
        fail("cmap", "a matplotlib colormap name", cmap, TypeError)
    if cmap not in matplotlib.colormaps:
        fail("cmap", "a matplotlib colormap name", cmap)
    colormap = matplotlib.colormaps[cmap]
    rgba = colormap(np.arange(colormap.N))  # (N, 4) float64 in [0, 1]
    return torch.as_tensor(rgba[:, :3], dtype=torch.float32, device=device)


def colorize(maps: Tensor, cmap: str = "jet") -> Tensor:
    """Maps ``[0, 1]`` values to RGB through a matplotlib colormap.

    The lookup is the same as ``matplotlib.colormaps[cmap](value)``: 0 gives the
    colormap's first color, 1 its last.

    Args:
        maps: Float maps ``(N, 1, H, W)`` in ``[0, 1]`` (e.g. from
            :func:`normalize_maps`).
        cmap: A matplotlib colormap name. Default: ``"jet"``.

    Returns:
        Float RGB images ``(N, 3, H, W)`` in ``[0, 1]`` on the maps' device.

    Raises:
        TypeError: ``maps`` is not a floating-point tensor or ``cmap`` not a str.
        ValueError: Wrong shape, values outside ``[0, 1]`` or an unknown colormap.
    """
    maps = check_unit_range(check_maps(maps, allow_nan=False), "maps")
    lut = _lut(cmap, maps.device)  # (K, 3)
    k = lut.shape[0]
    # matplotlib: index = floor(x * K), with x == 1 mapped to K - 1
    idx = (maps[:, 0].float() * k).floor().long().clamp_(0, k - 1)  # (N, H, W)
    return lut[idx].permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)


def to_rgb(images: Tensor) -> Tensor:
    """Gray images are replicated to three channels; RGB images are returned as is
    (other channel counts as :func:`shown_channels` first).

    Args:
        images: ``(N, C, H, W)``, any dtype.

    Returns:
        ``(N, 3, H, W)``, same dtype and device (a new tensor for gray inputs, the
        input itself for RGB inputs).

    Raises:
        TypeError: ``images`` is not a tensor.
        ValueError: Not 4-D, or an axis of size 0.
    """
    images = shown_channels(check_tensor(images, "images", "(N, C, H, W)", dim=4))
    return images if images.shape[1] == 3 else images.repeat(1, 3, 1, 1)


def overlay(images: Tensor, maps: Tensor, *, alpha: float = 0.5, cmap: str = "jet") -> Tensor:
    """Blends colorized maps over images: ``(1 - alpha) * image + alpha * colormap(map)``.

    Args:
        images: Float images ``(N, C, H, W)`` in ``[0, 1]`` (any ``C``, as
            :func:`shown_channels`).
        maps: Float maps ``(N, 1, h, w)`` in ``[0, 1]``; resized (bilinear) to the
            images' ``(H, W)`` if they differ.
        alpha: Weight of the colored map, in ``[0, 1]``. Default: ``0.5``.
        cmap: A matplotlib colormap name. Default: ``"jet"``.

    Returns:
        Float RGB images ``(N, 3, H, W)`` in ``[0, 1]``.

    Raises:
        TypeError: Non-tensor or non-float inputs, ``alpha`` not a number.
        ValueError: Wrong shapes, batch sizes differ, values outside ``[0, 1]``.
    """
    images = picture(images)
    maps = check_unit_range(check_maps(maps, allow_nan=False), "maps")
    alpha = check_float(alpha, "alpha", minimum=0, maximum=1)
    if maps.shape[0] != images.shape[0]:
        fail("maps", f"one map per image ({images.shape[0]})", f"<shape {tuple(maps.shape)}>")
    maps = maps.to(images.device)
    if maps.shape[-2:] != images.shape[-2:]:
        maps = F.interpolate(
            maps.float(), size=images.shape[-2:], mode="bilinear", align_corners=False
        ).clamp(0.0, 1.0)
    rgb = to_rgb(images).float()
    out = (1.0 - alpha) * rgb + alpha * colorize(maps, cmap)
    return out.clamp(0.0, 1.0)
