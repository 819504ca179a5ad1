"""Images as every backend takes them: ``(H, W, 3)`` uint8 arrays, made once per image."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["figure_pixels", "image_pixels", "png_bytes"]


def image_pixels(image: Tensor | np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image (uint8, or float in ``[0, 1]``) as ``(H, W, 3)`` uint8.

    Floats are scaled as TensorBoard's ``add_image`` scales them (``x * 255``,
    clipped, truncated), so every backend shows the bytes TensorBoard shows.
    One channel is repeated to three; a fourth (alpha) is dropped.
    """
    if isinstance(image, Tensor):
        image = image.detach().cpu()
        array = image.numpy() if image.dtype != torch.bfloat16 else image.float().numpy()
    else:
        array = np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"an image is (C, H, W), got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        array = (array.astype(np.float32) * 255).clip(0, 255).astype(np.uint8)
    hwc = np.moveaxis(array, 0, -1)
    if hwc.shape[-1] == 1:
        hwc = np.repeat(hwc, 3, axis=-1)
    return np.ascontiguousarray(hwc[..., :3])


def figure_pixels(fig: Any) -> np.ndarray:
    """A matplotlib figure drawn (Agg) as ``(H, W, 3)`` uint8, then closed (what
    TensorBoard's ``add_figure`` draws)."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    width, height = fig.canvas.get_width_height()
    data = np.frombuffer(canvas.buffer_rgba(), dtype=np.uint8).reshape(height, width, 4)
    plt.close(fig)
    return np.ascontiguousarray(data[..., :3])


def png_bytes(pixels: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
