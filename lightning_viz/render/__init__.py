"""Tensors to pictures: normalize, colormap, overlay, grids with captions, figures.

By topic: ``maps`` (normalize, colormap, overlay), ``grids`` (grids with captions),
``weights`` (filters, templates, feature maps) and ``figures``. Every function takes
tensors and returns tensors (float images in ``[0, 1]`` or ``uint8`` grids for
``SummaryWriter.add_image(..., dataformats="CHW")``) or a matplotlib ``Figure`` (no
pyplot state); inputs are validated first and never mutated.

Example:
    >>> import torch
    >>> from lightning_viz import render
    >>> images = torch.rand(4, 3, 32, 32)
    >>> maps = render.normalize_maps(torch.rand(4, 1, 32, 32))
    >>> grid = render.rows_grid([images, maps, render.overlay(images, maps)],
    ...                         captions=["a", "b", "c", "d"], scale=2)
    >>> grid.shape[0], grid.dtype
    (3, torch.uint8)
"""

from __future__ import annotations

import importlib
from typing import Any

from lightning_viz.render.figures import bar_figure, line_figure, scatter_figure
from lightning_viz.render.grids import (
    MAX_TILE,
    display_scale,
    feature_map_grid,
    image_grid,
    rows_grid,
    to_uint8,
)
from lightning_viz.render.maps import colorize, normalize_maps, overlay, to_rgb
from lightning_viz.render.weights import feature_maps, filter_tiles, linear_templates

__all__ = [
    "MAX_TILE",
    "bar_figure",
    "colorize",
    "display_scale",
    "feature_map_grid",
    "feature_maps",
    "filter_tiles",
    "image_grid",
    "line_figure",
    "linear_templates",
    "normalize_maps",
    "overlay",
    "rows_grid",
    "scatter_figure",
    "to_rgb",
    "to_uint8",
]

_MOVED = ("sprite_images", "sprite_png", "sprite_thumb_size")  # now beside the projector writer


def __getattr__(name: str) -> Any:
    """The sprite helpers' old names (``render.sprite_png``, ...), kept as aliases."""
    if name in _MOVED:
        return getattr(importlib.import_module("lightning_viz._runtime.projector"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
