"""Figures to pixels, for the tests (the callbacks hand figures to the writer as they are)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from lightning_viz._checks import fail


def figure_to_image(fig: Figure) -> Tensor:
    """Renders a figure with the Agg canvas (no pyplot) to ``uint8`` ``(3, H, W)``.

    Raises:
        TypeError: ``fig`` is not a :class:`matplotlib.figure.Figure`.
    """
    if not isinstance(fig, Figure):
        fail("fig", "a matplotlib.figure.Figure", f"<{type(fig).__name__}>", TypeError)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # (H, W, 4)
    return torch.from_numpy(np.ascontiguousarray(rgba[..., :3])).permute(2, 0, 1).contiguous()
