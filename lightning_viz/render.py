"""Tensors to pictures: normalize, colormap, overlay, grids with captions, figures.

This is the only module of the package that uses numpy, PIL and matplotlib. Every
function takes tensors and returns tensors (float images in ``[0, 1]`` or ``uint8``
grids ready for ``SummaryWriter.add_image(..., dataformats="CHW")``) or a
:class:`matplotlib.figure.Figure`. Inputs are validated first (``TypeError``, then
``ValueError``, with the received value in the message) and never mutated.

Figures are built with ``matplotlib.figure.Figure`` directly and drawn with the Agg
canvas, so no pyplot state is created and the global backend is never changed.

Examples:
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

import functools
import io
import math
import os
import re
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from lightning_viz._checks import (
    check_bool,
    check_float,
    check_images,
    check_int,
    check_intervals,
    check_labels,
    check_maps,
    check_numbers,
    check_series,
    check_str_list,
    check_tensor,
    check_unit_range,
    fail,
)

__all__ = [
    "bar_figure",
    "display_scale",
    "colorize",
    "feature_map_grid",
    "feature_maps",
    "figure_to_image",
    "filter_tiles",
    "image_grid",
    "line_figure",
    "linear_templates",
    "MAX_TILE",
    "normalize_maps",
    "overlay",
    "rows_grid",
    "scatter_figure",
    "sprite_images",
    "sprite_png",
    "sprite_thumb_size",
    "to_rgb",
    "to_uint8",
]

_CAPTION_MARGIN = 2  # px of white space around caption lines
_MIN_FONT, _MAX_FONT = 10, 48  # caption font sizes in px (a fifth of the tile width)
_MAX_CAPTION_LINES = 6  # a longer caption is clipped with ".."
_Font = ImageFont.ImageFont | ImageFont.FreeTypeFont
_DPI = 80  # figures: 480 px wide at 6 in, enough for a TensorBoard card
_MAX_FIGURE_WIDTH = 12.5  # in: 1000 px at _DPI (a bar figure grows with its categories)
_PICTURE = {"channels": (1, 3), "unit_range": True, "allow_nan": False}  # what can be drawn
MAX_TILE = 128  # px: wider tiles are shrunk (a TensorBoard card is about 500 px wide)


def _symmetric(w: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Maps 0 -> 0.5 and +-max|w| (over ``dims``) -> 1 / 0; an all-zero block -> 0.5."""
    scale = w.abs().amax(dim=dims, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (0.5 + 0.5 * w / scale).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- maps
def normalize_maps(maps: Tensor, *, percentile: float = 99.5) -> Tensor:
    """Scales every map by its own robust maximum, so one hot pixel cannot wash it out.

    Each map is divided by the ``percentile``-th percentile of its values and
    clipped to ``[0, 1]``. If that percentile is 0 while the map is not all zero
    (a very sparse map), the map's maximum is used instead. An all-zero map stays
    all zero.

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
    robust = torch.where(robust > 0, robust, flat.amax(dim=1))
    robust = torch.where(robust > 0, robust, torch.ones_like(robust))
    out = (flat / robust[:, None]).clamp(0.0, 1.0)
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
    """Gray images are replicated to three channels; RGB images are returned as is.

    Args:
        images: ``(N, C, H, W)`` with ``C`` 1 or 3, any dtype.

    Returns:
        ``(N, 3, H, W)``, same dtype and device (a new tensor for gray inputs, the
        input itself for RGB inputs).

    Raises:
        TypeError: ``images`` is not a tensor.
        ValueError: Not 4-D, or ``C`` not 1 or 3.
    """
    images = check_tensor(images, "images", "(N, C, H, W)", dim=4, channels=(1, 3))
    return images if images.shape[1] == 3 else images.repeat(1, 3, 1, 1)


def overlay(images: Tensor, maps: Tensor, *, alpha: float = 0.5, cmap: str = "jet") -> Tensor:
    """Blends colorized maps over images: ``(1 - alpha) * image + alpha * colormap(map)``.

    Args:
        images: Float images ``(N, C, H, W)`` in ``[0, 1]``, ``C`` 1 or 3.
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
    images = check_images(images, "images", **_PICTURE)
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


# --------------------------------------------------------------------------- grids
def to_uint8(images: Tensor) -> Tensor:
    """Float images in ``[0, 1]`` (or ``uint8``) -> ``uint8`` ``(N, C, H, W)`` (rounded)."""
    images = check_images(images, "images", allow_uint8=True, **_PICTURE)
    if images.dtype == torch.uint8:
        return images
    return (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def _font_size(tile_width: int) -> int:
    """Caption and label font size in px: a fifth of the tile width, within
    ``[_MIN_FONT, _MAX_FONT]``, so text keeps its size relative to the pictures when
    TensorBoard scales a grid down to its card."""
    return int(min(max(round(tile_width / 5), _MIN_FONT), _MAX_FONT))


@functools.lru_cache(maxsize=16)
def _font(size: int) -> _Font:
    """DejaVu Sans Bold (shipped with matplotlib) at ``size`` px: TensorBoard shrinks
    pictures without smoothing, and bold strokes survive that. PIL's default font
    where the file cannot be read."""
    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans-Bold.ttf")
    try:
        return ImageFont.truetype(path, size)
    except (ImportError, OSError):
        try:
            return ImageFont.load_default(size=size)
        except (TypeError, ImportError, OSError):  # no FreeType, or Pillow < 10.1
            return ImageFont.load_default()


def _line_height(font: _Font) -> int:
    left, top, right, bottom = font.getbbox("Ag|", mode="1")
    return int(bottom) + 1


def _text_width(font: _Font, text: str) -> float:
    """Advance width of ``text`` in px as drawn here (not antialiased: ``mode="1"``)."""
    return font.getlength(text, mode="1")


def _fit(text: str, font: _Font, width: int, *, more: bool = False) -> str:
    """Clips ``text`` with a trailing ``..`` so it fits ``width`` pixels (``more``:
    always end with ``..``, as the last line of a text that goes on)."""
    if not more and _text_width(font, text) <= width:
        return text
    while text and _text_width(font, text + "..") > width:
        text = text[:-1]
    return text + ".." if text else ""


def _words(paragraph: str) -> list[tuple[str, str]]:
    """The pieces a line may break between, each with what joins it to the one before:
    a space between words, nothing around ``->`` or after a ``.`` or ``_`` that a
    letter follows (so ``"square->star"``, ``"model.block3.conv"`` and
    ``"guided_gradcam"`` can wrap, and ``"0.93"`` stays whole)."""
    pieces = []
    for word in paragraph.split():
        parts = [p for p in re.split(r"(?=->)|(?<=->)|(?<=[._])(?=[^\W\d])", word) if p]
        pieces += [(p, " " if i == 0 else "") for i, p in enumerate(parts)]
    return pieces


def _wrap(text: str, font: _Font, width: int, max_lines: int) -> list[str]:
    """``text`` as lines no wider than ``width`` px.

    ``"\\n"`` starts a new line; a word that does not fit on the line moves to the
    next one; a word wider than ``width`` is clipped with ``..``, and so is the last
    of ``max_lines`` lines when more text follows.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for piece, joiner in _words(paragraph):
            candidate = line + joiner + piece if line else piece
            if line and _text_width(font, candidate) > width:
                lines.append(line)
                line = piece
            else:
                line = candidate
        lines.append(line)
    cut = len(lines) > max_lines
    lines = lines[:max_lines]
    shown = [_fit(line, font, width) for line in lines]
    if cut:
        shown[-1] = _fit(lines[-1], font, width, more=True)
    return shown


def _label_width(row_labels: list[str] | None, font: _Font, tile_width: int) -> int:
    """Width of the row-label column: the widest label, at most ``max(2.5 * tile
    width, 8 * font size)`` (longer labels wrap); 0 without labels."""
    if row_labels is None:
        return 0
    widest = max(_text_width(font, line) for label in row_labels for line in label.split("\n"))
    cap = max(5 * tile_width // 2, 8 * _font_size(tile_width))
    return min(int(math.ceil(widest)) + 2 * _CAPTION_MARGIN, cap)


def _columns(tile_width: int, padding: int, used: int, max_width: int | None, most: int) -> int:
    """How many tiles fit side by side in ``max_width`` px next to ``used`` px (at least
    one, at most ``most``)."""
    if max_width is None:
        return most
    return max(1, min(most, (max_width - padding - used) // (tile_width + padding)))


def _block_gap(tile_height: int) -> int:
    """Extra space above a block of rows after the first (a wrapped table, a probe image)."""
    return tile_height // 4


def _compose(
    cells: list[list[np.ndarray | None]],
    cell_captions: list[list[str]] | None,
    row_labels: list[str] | None,
    tile_hw: tuple[int, int],
    padding: int,
    pad_value: float,
    gaps: list[int] | None = None,
) -> Tensor:
    """Lays out HWC uint8 tiles row by row, with caption bands and a label column.

    ``cell_captions[r]`` is the list of captions under row ``r``: an empty list
    means no caption band under that row; every band is as tall as the grid's
    tallest (wrapped) caption. ``row_labels[r]`` is drawn left of row ``r``, wrapped
    to the label column. ``gaps[r]`` is extra space above row ``r``. Text is drawn
    in bold, with a font proportional to the tile width (:func:`_font_size`).
    """
    th, tw = tile_hw
    font = _font(_font_size(tw))
    line_h = _line_height(font)
    n_rows = len(cells)
    n_cols = max(len(r) for r in cells)
    caps = cell_captions if cell_captions is not None else [[] for _ in cells]
    wrapped = [[_wrap(c, font, tw - 2, _MAX_CAPTION_LINES) for c in row] for row in caps]
    lines = max((len(w) for row in wrapped for w in row), default=0)
    band = [lines * line_h + 2 * _CAPTION_MARGIN if row else 0 for row in caps]
    gaps = gaps if gaps is not None else [0] * n_rows
    label_w = _label_width(row_labels, font, tw)
    width = padding + label_w + n_cols * (tw + padding)
    height = padding + sum(g + th + b + padding for g, b in zip(gaps, band, strict=True))
    fill = int(round(min(max(pad_value, 0.0), 1.0) * 255))
    canvas = np.full((height, width, 3), fill, dtype=np.uint8)
    texts: list[tuple[int, int, str]] = []  # (x, y, text), fitted already
    y = padding
    for r in range(n_rows):
        y += gaps[r]
        if row_labels is not None:
            canvas[y : y + th, padding : padding + label_w] = 255
            label = _wrap(row_labels[r], font, label_w - 2 * _CAPTION_MARGIN, max(1, th // line_h))
            y_text = y + max((th - len(label) * line_h) // 2, 0)
            for i, line in enumerate(label):
                texts.append((padding + _CAPTION_MARGIN, y_text + i * line_h, line))
        for c, tile in enumerate(cells[r]):
            x = padding + label_w + c * (tw + padding)
            if tile is not None:
                canvas[y : y + th, x : x + tw] = tile
            if band[r]:
                canvas[y + th : y + th + band[r], x : x + tw] = 255
                if c < len(wrapped[r]):
                    for i, line in enumerate(wrapped[r][c]):
                        texts.append((x + 1, y + th + _CAPTION_MARGIN + i * line_h, line))
        y += th + band[r] + padding
    if any(t[2] for t in texts):
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        draw.fontmode = "1"  # no antialiasing: crisp, and the PNG stays small
        for x, yy, text in texts:
            if text:
                draw.text((x, yy), text, fill=(0, 0, 0), font=font)
        canvas = np.array(pil)
    return torch.from_numpy(np.ascontiguousarray(canvas)).permute(2, 0, 1).contiguous()


def _tiles(images: Tensor, scale: int) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, H*scale, W*scale, 3)`` uint8 numpy, nearest upscaling."""
    rgb = to_rgb(to_uint8(images)).detach().cpu()
    if scale > 1:
        rgb = rgb.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return rgb.permute(0, 2, 3, 1).numpy()


def _check_max_width(max_width: int | None, name: str = "max_width") -> int | None:
    return None if max_width is None else check_int(max_width, name, minimum=1)


def _tile_size(hw: Sequence[int], scale: int, max_tile: int | None) -> tuple[int, int, int]:
    """``(tile height, tile width, scale)``: ``hw`` upscaled by ``scale``, or, when that
    is wider than ``max_tile``, shrunk to ``max_tile`` px wide (aspect kept, scale 1)."""
    h, w = int(hw[0]), int(hw[1])
    if max_tile is None or w * scale <= max_tile:
        return h * scale, w * scale, scale
    return max(1, round(h * max_tile / w)), max_tile, 1


def _resized(images: Tensor, size: tuple[int, int]) -> Tensor:
    """``images`` resized to ``size`` (bilinear, antialiased, as floats in ``[0, 1]``);
    already of that size, as they are."""
    if tuple(images.shape[-2:]) == size:
        return images
    images = to_uint8(images).float() / 255.0
    return F.interpolate(
        images, size=size, mode="bilinear", align_corners=False, antialias=True
    ).clamp(0, 1)


def _grid_options(
    scale: int, padding: int, pad_value: float, max_width: int | None, max_tile: int | None
) -> tuple[int, int, float, int | None, int | None]:
    """The checked ``scale, padding, pad_value, max_width, max_tile`` of every grid."""
    return (
        check_int(scale, "scale", minimum=1),
        check_int(padding, "padding", minimum=0),
        float(check_float(pad_value, "pad_value")),
        _check_max_width(max_width),
        _check_max_width(max_tile, "max_tile"),
    )


def image_grid(
    images: Tensor,
    *,
    nrow: int = 8,
    captions: list[str] | None = None,
    scale: int = 1,
    padding: int = 2,
    pad_value: float = 1.0,
    max_width: int | None = 1000,
    max_tile: int | None = MAX_TILE,
) -> Tensor:
    """Tiles images into one picture, each with an optional caption under it.

    The grid has ``cols = min(nrow, N)`` columns, fewer when ``cols`` tiles would be
    wider than ``max_width``: as many as fit (at least one). Tile ``i`` (upscaled
    by nearest-neighbour ``scale``) sits at row ``i // cols``, column ``i % cols``;
    its top-left pixel is at
    ``(padding + row * (H*scale + band + padding), padding + col * (W*scale + padding))``
    where ``band`` is the caption band height (0 without captions), the same under
    every row. Captions are drawn in black on a white band in DejaVu Sans Bold (not
    antialiased) at a fifth of the tile width (at least 10 px), so they keep their
    size relative to the tiles when TensorBoard scales the picture down;
    ``"\\n"`` starts a new line, a caption wider than the tile wraps at spaces (also
    around ``->``, and after a ``.`` or ``_`` before a letter), and what still does
    not fit (a long word, a seventh line) is clipped with ``..``.

    Args:
        images: ``(N, C, H, W)``, ``C`` 1 or 3, float in ``[0, 1]`` or ``uint8``.
        nrow: Most tiles per row. Default: ``8``.
        captions: One caption per image, or ``None`` for no caption band.
            Default: ``None``.
        scale: Integer nearest-neighbour upscaling, so that 32-px images are
            readable (callbacks use :func:`display_scale`). Default: ``1``.
        padding: Pixels between and around the tiles. Default: ``2``.
        pad_value: Gray level of the padding in ``[0, 1]``. Default: ``1.0`` (white).
        max_width: Widest grid in pixels (wider rows wrap), or ``None`` for
            ``nrow`` tiles a row whatever their width. A single tile wider than
            this is not shrunk. Default: ``1000`` (TensorBoard shows a card about
            500 px wide and scales wider pictures down).
        max_tile: Widest tile in pixels: images wider than this after ``scale``
            (a 224-px photo) are shrunk to it, antialiased, aspect kept, and
            ``scale`` is ignored; ``None`` keeps them. Default: ``128``.

    Returns:
        ``uint8`` tensor ``(3, H', W')`` on the CPU, ready for
        ``SummaryWriter.add_image(tag, grid, dataformats="CHW")``.

    Raises:
        TypeError: Wrong argument types.
        ValueError: Wrong shapes, float values outside ``[0, 1]``, a caption count
            that does not match, non-positive ``nrow``/``scale``/``max_width``.
    """
    images = check_images(images, "images", allow_uint8=True, **_PICTURE)
    nrow = check_int(nrow, "nrow", minimum=1)
    scale, padding, pad_value, max_width, max_tile = _grid_options(
        scale, padding, pad_value, max_width, max_tile
    )
    n = images.shape[0]
    captions = check_str_list(captions, "captions", length=n)
    th, tw, scale = _tile_size(images.shape[-2:], scale, max_tile)
    tiles = _tiles(_resized(images, (th // scale, tw // scale)), scale)
    cols = _columns(tw, padding, 0, max_width, min(nrow, n))
    cells: list[list[np.ndarray | None]] = []
    caps: list[list[str]] | None = [] if captions is not None else None
    for start in range(0, n, cols):
        cells.append(list(tiles[start : start + cols]))
        if caps is not None and captions is not None:
            caps.append(captions[start : start + cols])
    # the caption band exists under every row, also for empty captions, so tile
    # offsets only depend on whether captions were given
    return _compose(cells, caps, None, (th, tw), padding, pad_value)


def rows_grid(
    rows: Sequence[Tensor],
    *,
    captions: list[str] | None = None,
    row_labels: list[str] | None = None,
    scale: int = 1,
    padding: int = 2,
    pad_value: float = 1.0,
    max_width: int | None = 1000,
    max_tile: int | None = MAX_TILE,
) -> Tensor:
    """A table of images: each row one kind (image, map, overlay), each column one sample.

    Rows may mix gray and RGB, float ``[0, 1]`` and ``uint8`` tensors; rows whose
    ``(H, W)`` differs from the first row's are resized to it (bilinear). Column
    captions are drawn once, under the last row; row labels in a column on the left
    (as wide as the widest label, at most 2.5 tile widths; longer labels wrap).

    When the table is wider than ``max_width`` its columns are split into ``B``
    blocks of ``ceil(N / B)`` samples (``B`` as small as fits), stacked top to
    bottom, each block with all the rows, their labels and its captions, and a gap
    of a quarter tile height above every block after the first.

    Args:
        rows: A non-empty list of ``(N, C, H, W)`` tensors with the same ``N``.
        captions: One caption per column (``"\\n"`` for several lines), or ``None``.
            Default: ``None``.
        row_labels: One label per row, or ``None``. Default: ``None``.
        scale: Integer nearest-neighbour upscaling. Default: ``1``.
        padding: Pixels between and around the tiles. Default: ``2``.
        pad_value: Gray level of the padding in ``[0, 1]``. Default: ``1.0``.
        max_width: Widest table in pixels, or ``None`` for one block. Default: ``1000``.
        max_tile: Widest tile in pixels: wider rows are shrunk to it, as in
            :func:`image_grid`; ``None`` keeps them. Default: ``128``.

    Returns:
        ``uint8`` tensor ``(3, H', W')`` on the CPU.

    Raises:
        TypeError: ``rows`` is not a list of tensors, wrong caption types.
        ValueError: Empty ``rows``, batch sizes differ, wrong caption/label counts,
            an invalid image tensor, or ``max_width < 1``.
    """
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, Tensor) for r in rows):
        fail("rows", "a list of (N, C, H, W) tensors", f"<{type(rows).__name__}>", TypeError)
    if len(rows) == 0:
        fail("rows", "a non-empty list of (N, C, H, W) tensors", rows)
    scale, padding, pad_value, max_width, max_tile = _grid_options(
        scale, padding, pad_value, max_width, max_tile
    )
    checked = [
        check_images(r, f"rows[{i}]", allow_uint8=True, **_PICTURE) for i, r in enumerate(rows)
    ]
    n = checked[0].shape[0]
    sizes = [r.shape[0] for r in checked]
    if any(s != n for s in sizes):
        fail("rows", "tensors with the same number of images", f"<{sizes} images>")
    captions = check_str_list(captions, "captions", length=n)
    row_labels = check_str_list(row_labels, "row_labels", length=len(checked))
    th, tw, scale = _tile_size(checked[0].shape[-2:], scale, max_tile)
    hw = (th // scale, tw // scale)
    tiles = [_tiles(_resized(r, hw), scale) for r in checked]
    label_w = _label_width(row_labels, _font(_font_size(tw)), tw)
    blocks = math.ceil(n / _columns(tw, padding, label_w, max_width, n))
    per_block = math.ceil(n / blocks)
    cells: list[list[np.ndarray | None]] = []
    caps: list[list[str]] = []
    labels: list[str] = []
    gaps: list[int] = []
    for b in range(blocks):
        cols = slice(b * per_block, (b + 1) * per_block)
        for k, kind in enumerate(tiles):
            cells.append(list(kind[cols]))
            last = k == len(tiles) - 1
            caps.append(captions[cols] if captions is not None and last else [])
            labels.append(row_labels[k] if row_labels is not None else "")
            gaps.append(_block_gap(th) if b > 0 and k == 0 else 0)
    return _compose(
        cells,
        caps if captions is not None else None,
        labels if row_labels is not None else None,
        (th, tw),
        padding,
        pad_value,
        gaps,
    )


def feature_map_grid(
    images: Tensor,
    maps: Tensor,
    *,
    ncol: int = 8,
    captions: list[str] | None = None,
    scale: int = 1,
    padding: int = 2,
    pad_value: float = 1.0,
    max_width: int | None = 1000,
    max_tile: int | None = MAX_TILE,
) -> Tensor:
    """Feature maps of several images: one block per image, the image first.

    Block ``n`` starts with ``images[n]`` in its first column, resized to the tile
    size (nearest-neighbour when the tile is an integer multiple of it, else
    bilinear); its ``M`` maps follow in ``ncol`` columns, row after row (map
    ``j`` at block row ``j // ncol``, column ``1 + j % ncol``; column 0 stays empty
    below the image). With captions, the image's caption is drawn under it and
    ``"ch<j>"`` under map ``j``. Blocks are stacked top to bottom with a gap of a
    quarter tile height. ``ncol`` shrinks to what fits in ``max_width``.

    Args:
        images: ``(N, C, h, w)``, ``C`` 1 or 3, float in ``[0, 1]`` or ``uint8``.
        maps: Float maps ``(N, M, H, W)`` in ``[0, 1]`` (e.g. each ``images[n]``'s
            :func:`feature_maps`), shown gray.
        ncol: Most maps per row. Default: ``8``.
        captions: One caption per image (e.g. its label), or ``None`` for no
            caption band. Default: ``None``.
        scale: Integer nearest-neighbour upscaling of the maps; tiles are
            ``(H*scale, W*scale)``. Default: ``1``.
        padding: Pixels between and around the tiles. Default: ``2``.
        pad_value: Gray level of the padding in ``[0, 1]``. Default: ``1.0``.
        max_width: Widest grid in pixels, or ``None`` for ``ncol`` maps a row
            whatever their width. Default: ``1000``.
        max_tile: Widest tile in pixels: wider maps are shrunk to it, as in
            :func:`image_grid`; ``None`` keeps them. Default: ``128``.

    Returns:
        ``uint8`` tensor ``(3, H', W')`` on the CPU, ``padding + (1 + c) *
        (W*scale + padding)`` wide with ``c = min(ncol, M)`` maps a row (fewer when
        that exceeds ``max_width``).

    Raises:
        TypeError: Wrong argument types.
        ValueError: Wrong shapes, values outside ``[0, 1]``, ``maps`` and
            ``images`` of different lengths, a caption count that does not match,
            non-positive ``ncol``/``scale``/``max_width``.
    """
    images = check_images(images, "images", allow_uint8=True, **_PICTURE)
    maps = check_tensor(maps, "maps", "(N, M, H, W)", dim=4, floating=True, allow_nan=False)
    maps = check_unit_range(maps, "maps")
    if maps.shape[0] != images.shape[0]:
        fail("maps", f"maps of {images.shape[0]} images", f"<shape {tuple(maps.shape)}>")
    ncol = check_int(ncol, "ncol", minimum=1)
    scale, padding, pad_value, max_width, max_tile = _grid_options(
        scale, padding, pad_value, max_width, max_tile
    )
    n, m = maps.shape[:2]
    captions = check_str_list(captions, "captions", length=n)
    th, tw, scale = _tile_size(maps.shape[-2:], scale, max_tile)
    maps = _resized(maps.flatten(0, 1).unsqueeze(1), (th // scale, tw // scale))
    maps = maps.reshape(n, m, th // scale, tw // scale)
    h, w = images.shape[-2:]
    if (th, tw) == (h * (th // h), w * (tw // w)) and th // h == tw // w:
        pictures = _tiles(images, th // h)  # (N, th, tw, 3), an integer upscaling
    else:
        pictures = _tiles(_resized(images, (th, tw)), 1)
    cols = _columns(tw, padding, tw + padding, max_width, min(ncol, m))
    cells: list[list[np.ndarray | None]] = []
    caps: list[list[str]] = []
    gaps: list[int] = []
    for i in range(n):
        tiles = _tiles(maps[i].unsqueeze(1), scale)  # (M, th, tw, 3)
        for start in range(0, m, cols):
            first = start == 0
            cells.append([pictures[i] if first else None, *tiles[start : start + cols]])
            names = [f"ch{j}" for j in range(start, min(start + cols, m))]
            caps.append([captions[i] if first else "", *names] if captions is not None else [])
            gaps.append(_block_gap(th) if first and i > 0 else 0)
    return _compose(
        cells, caps if captions is not None else None, None, (th, tw), padding, pad_value, gaps
    )


def display_scale(images: Tensor | int, target: int = 64) -> int:
    """Integer upscaling that shows an image (or a width in pixels) about ``target`` px wide.

    Callbacks use it for every grid, so small images (32 px) stay readable while a
    grid of a few of them stays narrow enough for a TensorBoard card (and its PNG
    small).

    Examples:
        >>> display_scale(32), display_scale(224)
        (2, 1)
    """
    width = images if isinstance(images, int) else int(images.shape[-1])
    return max(1, target // max(width, 1))


# --------------------------------------------------------------------------- weights
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


# --------------------------------------------------------------------------- projector
def sprite_thumb_size(
    n: int, image_hw: tuple[int, int], *, max_sprite_px: int = 8192, max_thumb: int = 64
) -> tuple[int, int]:
    """Thumbnail ``(h, w)`` so that a square sprite of ``n`` thumbnails fits the limit.

    The projector lays ``n`` thumbnails out in a ``ceil(sqrt(n))`` square; the
    thumbnail's longer side is ``min(max(H, W), max_thumb, max_sprite_px //
    ceil(sqrt(n)))`` and the aspect ratio is kept (never upscaled).

    Raises:
        ValueError: ``n < 1`` or the sprite limit leaves less than one pixel.
    """
    n = check_int(n, "n", minimum=1)
    max_sprite_px = check_int(max_sprite_px, "max_sprite_px", minimum=1)
    max_thumb = check_int(max_thumb, "max_thumb", minimum=1)
    h, w = int(image_hw[0]), int(image_hw[1])
    per_side = math.ceil(math.sqrt(n))
    side = min(max(h, w), max_thumb, max_sprite_px // per_side)
    if side < 1:
        fail("max_sprite_px", f">= {per_side} to fit {n} thumbnails", max_sprite_px)
    ratio = side / max(h, w)
    return max(1, math.floor(h * ratio + 1e-9)), max(1, math.floor(w * ratio + 1e-9))


def sprite_images(images: Tensor, *, max_sprite_px: int = 8192, max_thumb: int = 64) -> Tensor:
    """Thumbnails for TensorBoard's embedding projector (its sprite is at most 8192 px).

    Args:
        images: Float images ``(N, C, H, W)`` in ``[0, 1]``, ``C`` 1 or 3.
        max_sprite_px: Side of the square sprite that must hold all thumbnails.
            Default: ``8192`` (TensorBoard's limit).
        max_thumb: Longest thumbnail side. Default: ``64``.

    Returns:
        Float thumbnails ``(N, C, h, w)`` in ``[0, 1]`` (antialiased resize, aspect
        kept, never upscaled) with ``ceil(sqrt(N)) * max(h, w) <= max_sprite_px``.

    Raises:
        TypeError: ``images`` is not a float tensor; bad argument types.
        ValueError: Wrong shape, values outside ``[0, 1]``, too many images for the
            sprite.
    """
    images = check_images(images, "images", **_PICTURE)
    h, w = sprite_thumb_size(
        images.shape[0], tuple(images.shape[-2:]), max_sprite_px=max_sprite_px, max_thumb=max_thumb
    )
    if (h, w) == tuple(images.shape[-2:]):
        return images.detach().clone()
    out = F.interpolate(
        images.detach().float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True
    )
    return out.clamp(0.0, 1.0).to(images.dtype)


def sprite_png(thumbs: Tensor) -> bytes:
    """The projector's sprite: ``ceil(sqrt(N))`` square thumbnails a row, as a PNG file.

    Args:
        thumbs: ``(N, C, s, s)`` uint8 (or ``[0, 1]`` float) square thumbnails, ``C`` 1
            or 3; the sprite is ``ceil(sqrt(N)) * s`` pixels square, black where empty.

    Returns:
        The PNG bytes.
    """
    thumbs = to_rgb(to_uint8(check_images(thumbs, "thumbs", **_PICTURE, allow_uint8=True)))
    n, _, s, _ = thumbs.shape
    per_side = math.ceil(math.sqrt(n))
    canvas = torch.zeros((per_side * per_side, 3, s, s), dtype=torch.uint8)
    canvas[:n] = thumbs.cpu()
    grid = canvas.view(per_side, per_side, 3, s, s).permute(0, 3, 1, 4, 2)
    out = io.BytesIO()
    Image.fromarray(grid.reshape(per_side * s, per_side * s, 3).numpy()).save(
        out, format="PNG", compress_level=9
    )
    return out.getvalue()


# --------------------------------------------------------------------------- figures
def line_figure(
    x: Sequence[float],
    series: dict[str, list[float]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    xticklabels: list[str] | None = None,
    intervals: dict[str, list[tuple[float, float]]] | None = None,
) -> Figure:
    """One line (with markers) per series over shared ``x`` values, with a legend.

    Args:
        x: The x values.
        series: ``{name: y values}``, each as long as ``x``.
        intervals: ``{name: [(low, high), ...]}`` confidence intervals drawn as
            shaded bands (for some or all series). Default: ``None``.
        xlabel: Label of the x axis. Default: ``""``.
        ylabel: Label of the y axis. Default: ``""``.
        title: Figure title. Default: ``""``.
        xticklabels: Tick labels at the ``x`` values (e.g. ``"2/255"``), or
            ``None`` for numeric ticks. Default: ``None``.

    Returns:
        A :class:`matplotlib.figure.Figure` with one axes.

    Raises:
        TypeError: Non-numeric values or wrong container types.
        ValueError: Empty ``x``/``series`` or mismatched lengths.
    """
    xs = check_numbers(x, "x")
    data = check_series(series, "series", len(xs))
    xticklabels = check_str_list(xticklabels, "xticklabels", length=len(xs))
    bands = check_intervals(intervals, {k: len(v) for k, v in data.items()})
    fig = Figure(figsize=(6.0, 4.0), dpi=_DPI)
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in data.items():
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        if name in bands:
            lo, hi = bands[name]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    if xticklabels is not None:
        ax.set_xticks(xs)
        ax.set_xticklabels(xticklabels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def bar_figure(
    categories: list[str],
    series: dict[str, list[float]],
    *,
    ylabel: str = "",
    title: str = "",
    intervals: dict[str, list[tuple[float, float]]] | None = None,
) -> Figure:
    """Grouped bars: one group per category, one bar per series, with a legend.

    The figure is 6 in wide, 0.3 in per bar when there are more than 20 bars, and
    at most 12.5 in (1000 px at the 80 dpi of every figure here).

    Args:
        categories: Category names on the x axis.
        series: ``{name: values}``, each with one value per category.
        intervals: ``{name: [(low, high), ...]}`` confidence intervals drawn as
            error bars (for some or all series). Default: ``None``.
        ylabel: Label of the y axis. Default: ``""``.
        title: Figure title. Default: ``""``.

    Returns:
        A :class:`matplotlib.figure.Figure` with one axes holding
        ``len(categories) * len(series)`` bars.

    Raises:
        TypeError: Wrong container types or non-numeric values.
        ValueError: Empty ``categories``/``series`` or mismatched lengths.
    """
    cats = check_str_list(categories, "categories", optional=False)
    if not cats:
        fail("categories", "a non-empty list of strings", cats)
    data = check_series(series, "series", len(cats))
    bands = check_intervals(intervals, {k: len(v) for k, v in data.items()})
    fig_width = min(max(6.0, 0.3 * len(cats) * len(data)), _MAX_FIGURE_WIDTH)
    fig = Figure(figsize=(fig_width, 4.0), dpi=_DPI)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(data)
    pos = np.arange(len(cats))
    for j, (name, vals) in enumerate(data.items()):
        err = None
        if name in bands:
            lo, hi = (np.asarray(b, dtype=float) for b in bands[name])
            v = np.asarray(vals, dtype=float)
            err = np.nan_to_num(np.stack([v - lo, hi - v]).clip(min=0))
        ax.bar(pos - 0.4 + width * (j + 0.5), vals, width=width, label=name, yerr=err, capsize=2)
    ax.set_xticks(pos)
    ax.set_xticklabels(
        cats, rotation=45 if len(cats) > 6 else 0, ha="right" if len(cats) > 6 else "center"
    )
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def scatter_figure(
    points: Tensor,
    labels: Tensor,
    *,
    class_names: list[str] | None = None,
    title: str = "",
) -> Figure:
    """A 2-D scatter plot of an embedding, one color and legend entry per class.

    Args:
        points: ``(N, 2)`` coordinates (e.g. from ``tsne``/``pca``).
        labels: ``(N,)`` integer class indices.
        class_names: Names for the class indices (legend), or ``None`` to show the
            indices. Default: ``None``.
        title: Figure title. Default: ``""``.

    Returns:
        A :class:`matplotlib.figure.Figure` with one axes holding one collection
        per class present in ``labels``, in increasing class order.

    Raises:
        TypeError: Non-tensor inputs, float labels, bad ``class_names``.
        ValueError: Wrong shapes, mismatched lengths, a label without a name.
    """
    points = check_tensor(
        points, "points", "(N, 2)", dim=2, channels=(2,), floating=True, allow_nan=False
    )
    labels = check_labels(labels, "labels", points.shape[0], allow_negative=True)
    pts = points.detach().float().cpu().numpy()
    lab = labels.detach().cpu().numpy()
    classes = sorted(int(c) for c in np.unique(lab))
    if class_names is not None:
        class_names = check_str_list(class_names, "class_names")
        if classes[0] < 0 or classes[-1] >= len(class_names):
            fail("class_names", f"a name for each label in {classes}", class_names)
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    fig = Figure(figsize=(6.0, 5.0), dpi=_DPI)
    ax = fig.add_subplot(1, 1, 1)
    for j, c in enumerate(classes):
        sel = lab == c
        name = class_names[c] if class_names is not None else str(c)
        ax.scatter(pts[sel, 0], pts[sel, 1], s=8, color=cmap(j % cmap.N), label=name)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2, fontsize="small", loc="best")
    fig.tight_layout()
    return fig


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
