"""The layout of the images a batch or a probe gives: ``(N, C, H, W)``, or a clear refusal
that names the adapters reading the layout the data has."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_viz._checks import fail

__all__ = ["check_batch_images"]

_CHANNELS_LAST = (
    "`batch_to_xy=lambda b: (b[0].permute(0, 3, 1, 2), b[1])` and "
    "`images_to_input=lambda x: x.permute(0, 2, 3, 1)`"
)
_NO_CHANNEL_AXIS = (
    "`batch_to_xy=lambda b: (b[0].unsqueeze(1), b[1])` and `images_to_input=lambda x: x[:, 0]`"
)


def check_batch_images(images: Any, *, probe: bool = False) -> Tensor:
    """The images of a data batch or (``probe``) of a ``probe=`` argument ``(N, C, H, W)``
    as float32 (the model view casts them).

    Raises:
        TypeError: Not a tensor (a ``collate_fn`` that does not stack the images).
        ValueError: Not 4-D, or channels-last ``(N, H, W, C)``: at most 4 values on the
            last axis and more than 4 in the channel place (``(N, 32, 32, 3)``, which
            would be read as 32 channels of 3-px-wide images). Each message names the
            adapters that read the data's layout.
    """
    if not isinstance(images, Tensor):
        why = (
            " (a collate_fn that does not stack them?)" if isinstance(images, list | tuple) else ""
        )
        got = f"<{type(images).__name__}>{why}; pass `batch_to_xy` giving one tensor, e.g. "
        got += "`batch_to_xy=lambda b: (torch.stack(b[0]), b[1])`"
        fail("images of the data", "a tensor (N, C, H, W)", got, TypeError)
    shape, what = tuple(images.shape), "probe" if probe else "data"
    if probe:  # batch_to_xy is not applied to a probe tensor: it is given so
        adapters = (
            "the probe as `x.permute(0, 3, 1, 2)` and `images_to_input=lambda x: "
            "x.permute(0, 2, 3, 1)`",
            "the probe as `x.unsqueeze(1)` and `images_to_input=lambda x: x[:, 0]`",
        )
        otherwise = "a probe of (N, C, H, W) images"
    else:
        adapters = (_CHANNELS_LAST, _NO_CHANNEL_AXIS)
        otherwise = (
            "`batch_to_xy` to pick the images out of your batch, or `probe=` an image tensor"
        )
    if images.dim() != 4:
        lead = (
            f"If they are grayscale images (N, H, W), pass {adapters[1]}. Otherwise pass"
            if images.dim() == 3
            else "Pass"
        )
        raise ValueError(
            f"lightning-viz callbacks need image inputs of shape (N, C, H, W); the {what} "
            f"gives tensors of shape {shape}. {lead} {otherwise}"
        )
    if shape[1] > 4 and shape[3] <= 4 < shape[2]:
        raise ValueError(
            f"the {what}'s images of shape {shape} look channels-last (N, H, W, C) with "
            f"{shape[3]} channels; lightning-viz callbacks read (N, C, H, W) and would see "
            f"{shape[1]} channels of {shape[3]}-px-wide images. Pass {adapters[0]} (the "
            "model still gets channels-last inputs)"
        )
    return images.float()
