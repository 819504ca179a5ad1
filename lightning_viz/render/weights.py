"""Weights and feature maps as images: filter tiles, class templates of a Linear layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_viz._checks import check_bool, check_int, check_tensor, fail

__all__ = ["feature_maps", "filter_tiles", "linear_templates"]


def _symmetric(w: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Maps 0 -> 0.5 and +-max|w| (over ``dims``) -> 1 / 0; an all-zero block -> 0.5."""
    scale = w.abs().amax(dim=dims, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (0.5 + 0.5 * w / scale).clamp(0.0, 1.0)


def filter_tiles(
    weight: Tensor, *, max_filters: int = 64, per_input_channel: bool | None = None
) -> Tensor:
    """Convolution filters as image tiles, 0 shown as mid-gray.

    Every filter is normalized symmetrically, ``0.5 + 0.5 * w / max|w|``, so a zero
    weight is 0.5, the largest positive weight 1 and its negative 0 (an all-zero
    filter is uniformly 0.5).

    * ``per_input_channel=False`` (the default for ``I`` in ``(1, 3)``, i.e. a first
      layer): one tile per output filter, RGB for ``I == 3``, gray for ``I == 1``,
      normalized by the filter's max ``|w|`` over all its channels. Returns
      ``(min(O, max_filters), I, kh, kw)``.
    * ``per_input_channel=True`` (the default for any other ``I``, a deeper conv):
      one gray tile per ``(output, input)`` channel pair, output-major — pairs
      ``(0, 0), (0, 1), ..., (0, I-1), (1, 0), ...`` — the first ``max_filters``
      of them. Each pair is normalized by its *output filter's* max ``|w|`` over
      all input channels, so the tiles of one filter are comparable. Shown with
      ``image_grid(tiles, nrow=I)`` each grid row is one output filter. Returns
      ``(min(O * I, max_filters), 1, kh, kw)``.

    Args:
        weight: Conv weight ``(O, I, kh, kw)``, any float dtype (not modified).
        max_filters: Most tiles returned. Default: ``64``.
        per_input_channel: See above; ``None`` picks from ``I``. Default: ``None``.

    Returns:
        Float32 tiles ``(M, C, kh, kw)`` in ``[0, 1]`` on the weight's device.

    Raises:
        TypeError: ``weight`` is not a float tensor; bad argument types.
        ValueError: ``weight`` not 4-D; ``max_filters < 1``;
            ``per_input_channel=False`` with ``I`` not 1 or 3.
    """
    weight = check_tensor(weight, "weight", "(O, I, kh, kw)", dim=4, floating=True, allow_nan=False)
    max_filters = check_int(max_filters, "max_filters", minimum=1)
    if per_input_channel is not None:
        check_bool(per_input_channel, "per_input_channel")
    o, i = weight.shape[:2]
    if per_input_channel is None:
        per_input_channel = i not in (1, 3)
    w = weight.detach().float()
    if not per_input_channel:
        if i not in (1, 3):
            what = f"True or None for a weight {tuple(weight.shape)} (False needs 1 or 3 inputs)"
            fail("per_input_channel", what, per_input_channel)
        w = w[:max_filters]
        return _symmetric(w, (1, 2, 3))
    n_filters = min(o, math.ceil(max_filters / i))
    tiles = _symmetric(w[:n_filters], (1, 2, 3))  # (n_filters, I, kh, kw)
    return tiles.reshape(-1, 1, *w.shape[-2:])[:max_filters].clone()


def linear_templates(weight: Tensor, image_shape: Sequence[int]) -> Tensor:
    """Rows of a ``Linear`` on flattened images, shown as class templates.

    Each class's row is reshaped to ``image_shape`` and normalized symmetrically,
    ``0.5 + 0.5 * w / max|w|`` (0 -> mid-gray).

    Args:
        weight: ``(K, C*H*W)`` weight of a ``Linear`` whose input is the flattened image.
        image_shape: ``(C, H, W)``.

    Returns:
        Float32 templates ``(K, C, H, W)`` in ``[0, 1]`` on the weight's device.

    Raises:
        TypeError: ``weight`` is not a float tensor or ``image_shape`` not ints.
        ValueError: ``weight`` not 2-D, or ``C*H*W`` differs from its ``in_features``.
    """
    weight = check_tensor(weight, "weight", "(K, C*H*W)", dim=2, floating=True, allow_nan=False)
    if (
        not isinstance(image_shape, (list, tuple, torch.Size))
        or len(image_shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in image_shape)
    ):
        fail("image_shape", "a (C, H, W) tuple of ints", image_shape, TypeError)
    c, h, w_ = image_shape
    if c * h * w_ != weight.shape[1]:
        fail("image_shape", f"(C, H, W) with C*H*W = {weight.shape[1]}", tuple(image_shape))
    w = weight.detach().float().reshape(weight.shape[0], c, h, w_)
    return _symmetric(w, (1, 2, 3))


def feature_maps(activation: Tensor, *, max_channels: int = 32) -> Tensor:
    """The channels of one sample's activation as gray maps, each min-max normalized.

    Args:
        activation: ``(C, H, W)`` feature maps of one image.
        max_channels: Most channels returned (the first ones). Default: ``32``.

    Returns:
        Float32 maps ``(min(C, max_channels), 1, H, W)`` in ``[0, 1]``; a constant
        channel becomes all zero.

    Raises:
        TypeError: ``activation`` is not a float tensor.
        ValueError: ``activation`` not 3-D or ``max_channels < 1``.
    """
    activation = check_tensor(
        activation, "activation", "(C, H, W)", dim=3, floating=True, allow_nan=False
    )
    max_channels = check_int(max_channels, "max_channels", minimum=1)
    a = activation.detach()[:max_channels].float()  # (M, H, W)
    lo = a.amin(dim=(1, 2), keepdim=True)
    rng = a.amax(dim=(1, 2), keepdim=True) - lo
    out = torch.where(
        rng > 0, (a - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(a)
    )
    return out.clamp(0.0, 1.0).unsqueeze(1)
