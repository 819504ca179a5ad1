"""Tensors to pictures: normalize, colormap, overlay, grids with captions, figures.

This is the only module of the package that uses numpy, PIL and matplotlib. Every
function takes tensors and returns tensors (float images in ``[0, 1]`` or ``uint8``
grids ready for ``SummaryWriter.add_image(..., dataformats="CHW")``) or a
:class:`matplotlib.figure.Figure`. Inputs are validated first (``TypeError``, then
``ValueError``, with the received value in the message) and never mutated.

Figures are built with ``matplotlib.figure.Figure`` directly and drawn with the Agg
canvas, so no pyplot state is created and the global backend is never changed.

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

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = [
    "bar_figure",
    "display_scale",
    "colorize",
    "feature_maps",
    "figure_to_image",
    "filter_tiles",
    "image_grid",
    "line_figure",
    "linear_templates",
    "normalize_maps",
    "overlay",
    "rows_grid",
    "scatter_figure",
    "sprite_images",
    "sprite_thumb_size",
    "to_rgb",
    "to_uint8",
]

_CAPTION_MARGIN = 2  # px of white space around caption lines


# --------------------------------------------------------------------------- checks
def _check_tensor(x: object, name: str, dim: int, shape: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor {shape}, got {type(x).__name__}")
    if x.dim() != dim:
        raise ValueError(f"`{name}` must have shape {shape}, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"`{name}` is empty, shape {tuple(x.shape)}")
    return x


def _check_float(x: Tensor, name: str) -> Tensor:
    if not x.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {x.dtype}")
    if bool(torch.isnan(x).any()):
        raise ValueError(f"`{name}` contains NaN")
    return x


def _check_unit_range(x: Tensor, name: str, tol: float = 1e-4) -> Tensor:
    lo, hi = float(x.min()), float(x.max())
    if lo < -tol or hi > 1 + tol:
        raise ValueError(f"`{name}` must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x


def _check_maps(maps: object, name: str = "maps") -> Tensor:
    maps = _check_tensor(maps, name, 4, "(N, 1, H, W)")
    if maps.shape[1] != 1:
        raise ValueError(
            f"`{name}` must have one channel (N, 1, H, W), got shape {tuple(maps.shape)}"
        )
    return _check_float(maps, name)


def _check_images(images: object, name: str = "images", allow_uint8: bool = False) -> Tensor:
    images = _check_tensor(images, name, 4, "(N, C, H, W)")
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"`{name}` must have 1 or 3 channels (N, C, H, W), got shape {tuple(images.shape)}"
        )
    if allow_uint8 and images.dtype == torch.uint8:
        return images
    _check_float(images, name)
    return _check_unit_range(images, name)


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value


def _check_str_list(values: object, name: str, length: int) -> list[str]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"`{name}` must be a list of str, got {values!r}")
    if len(values) != length:
        raise ValueError(f"`{name}` must have {length} entries, got {len(values)}: {values!r}")
    return list(values)


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
    maps = _check_maps(maps)
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise TypeError(f"`percentile` must be a number, got {percentile!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"`percentile` must lie in (0, 100], got {percentile}")
    if float(maps.min()) < 0:
        raise ValueError(f"`maps` must be non-negative, got minimum {float(maps.min()):.4g}")
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
        raise TypeError(f"`cmap` must be a matplotlib colormap name, got {cmap!r}")
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown matplotlib colormap {cmap!r}") from None
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
    maps = _check_maps(maps)
    _check_unit_range(maps, "maps")
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
    images = _check_tensor(images, "images", 4, "(N, C, H, W)")
    if images.shape[1] == 3:
        return images
    if images.shape[1] == 1:
        return images.repeat(1, 3, 1, 1)
    raise ValueError(
        f"`images` must have 1 or 3 channels (N, C, H, W), got shape {tuple(images.shape)}"
    )


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
    images = _check_images(images)
    maps = _check_maps(maps)
    _check_unit_range(maps, "maps")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"`alpha` must be a number, got {alpha!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` must lie in [0, 1], got {alpha}")
    if maps.shape[0] != images.shape[0]:
        raise ValueError(
            f"`maps` and `images` must have the same batch size, got {maps.shape[0]} and "
            f"{images.shape[0]}"
        )
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
    images = _check_images(images, allow_uint8=True)
    if images.dtype == torch.uint8:
        return images
    return (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    left, top, right, bottom = font.getbbox("Ag|")
    return int(bottom) + 1


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """Clips ``text`` with a trailing ``..`` so it fits ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "..") > width:
        text = text[:-1]
    return text + ".." if text else ""


def _compose(
    cells: list[list[np.ndarray | None]],
    cell_captions: list[list[str]] | None,
    row_labels: list[str] | None,
    tile_hw: tuple[int, int],
    padding: int,
    pad_value: float,
) -> Tensor:
    """Lays out HWC uint8 tiles row by row, with caption bands and a label column.

    ``cell_captions[r]`` is the list of captions under the row ``r`` (an empty list
    means: no caption band under that row).
    """
    font = _font()
    line_h = _line_height(font)
    th, tw = tile_hw
    n_rows = len(cells)
    n_cols = max(len(r) for r in cells)
    band = []  # caption band height under each row
    for r in range(n_rows):
        caps = cell_captions[r] if cell_captions is not None else []
        lines = max((len(c.split("\n")) for c in caps), default=0)
        band.append(lines * line_h + 2 * _CAPTION_MARGIN if caps else 0)
    label_w = 0
    if row_labels is not None:
        label_w = int(max(font.getlength(s) for s in row_labels)) + 2 * _CAPTION_MARGIN
        label_w = min(label_w, 4 * tw)  # very long labels are clipped
    width = padding + label_w + n_cols * (tw + padding)
    height = padding + sum(th + b + padding for b in band)
    fill = int(round(min(max(pad_value, 0.0), 1.0) * 255))
    canvas = np.full((height, width, 3), fill, dtype=np.uint8)
    texts: list[tuple[int, int, str, int]] = []  # (x, y, text, max_width)
    y = padding
    for r in range(n_rows):
        if row_labels is not None:
            canvas[y : y + th, padding : padding + label_w] = 255
            y_text = y + max((th - line_h) // 2, 0)
            texts.append(
                (padding + _CAPTION_MARGIN, y_text, row_labels[r], label_w - 2 * _CAPTION_MARGIN)
            )
        for c, tile in enumerate(cells[r]):
            x = padding + label_w + c * (tw + padding)
            if tile is not None:
                canvas[y : y + th, x : x + tw] = tile
            if band[r]:
                canvas[y + th : y + th + band[r], x : x + tw] = 255
                caps = cell_captions[r] if cell_captions is not None else []
                if c < len(caps):
                    for i, line in enumerate(caps[c].split("\n")):
                        texts.append((x + 1, y + th + _CAPTION_MARGIN + i * line_h, line, tw - 2))
        y += th + band[r] + padding
    if any(t[2] for t in texts):
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        for x, yy, text, max_w in texts:
            text = _fit(text, font, max_w)
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


def image_grid(
    images: Tensor,
    *,
    nrow: int = 8,
    captions: list[str] | None = None,
    scale: int = 1,
    padding: int = 2,
    pad_value: float = 1.0,
) -> Tensor:
    """Tiles images into one picture, each with an optional caption under it.

    Tile ``i`` (upscaled by nearest-neighbour ``scale``) sits at row ``i // nrow``,
    column ``i % nrow``; its top-left pixel is at
    ``(padding + row * (H*scale + band + padding), padding + col * (W*scale + padding))``
    where ``band`` is the caption band height (0 without captions). Captions are
    drawn in black on a white band with PIL's default font; ``"\\n"`` starts a new
    line and a line wider than the tile is clipped with ``..``.

    Args:
        images: ``(N, C, H, W)``, ``C`` 1 or 3, float in ``[0, 1]`` or ``uint8``.
        nrow: Tiles per row. Default: ``8``.
        captions: One caption per image, or ``None`` for no caption band.
            Default: ``None``.
        scale: Integer nearest-neighbour upscaling, so that 32-px images are
            readable (callbacks use 3). Default: ``1``.
        padding: Pixels between and around the tiles. Default: ``2``.
        pad_value: Gray level of the padding in ``[0, 1]``. Default: ``1.0`` (white).

    Returns:
        ``uint8`` tensor ``(3, H', W')`` on the CPU, ready for
        ``SummaryWriter.add_image(tag, grid, dataformats="CHW")``.

    Raises:
        TypeError: Wrong argument types.
        ValueError: Wrong shapes, float values outside ``[0, 1]``, a caption count
            that does not match, non-positive ``nrow``/``scale``.
    """
    images = _check_images(images, allow_uint8=True)
    nrow = _check_positive_int(nrow, "nrow")
    scale = _check_positive_int(scale, "scale")
    padding = _check_positive_int(padding, "padding", minimum=0)
    if isinstance(pad_value, bool) or not isinstance(pad_value, (int, float)):
        raise TypeError(f"`pad_value` must be a number, got {pad_value!r}")
    n = images.shape[0]
    if captions is not None:
        captions = _check_str_list(captions, "captions", n)
    tiles = _tiles(images, scale)
    cells: list[list[np.ndarray | None]] = []
    caps: list[list[str]] | None = [] if captions is not None else None
    for start in range(0, n, nrow):
        cells.append(list(tiles[start : start + nrow]))
        if caps is not None and captions is not None:
            caps.append(captions[start : start + nrow])
    # the caption band exists under every row, also for empty captions, so tile
    # offsets only depend on whether captions were given
    th, tw = tiles.shape[1:3]
    return _compose(cells, caps, None, (th, tw), padding, float(pad_value))


def rows_grid(
    rows: Sequence[Tensor],
    *,
    captions: list[str] | None = None,
    row_labels: list[str] | None = None,
    scale: int = 1,
    padding: int = 2,
    pad_value: float = 1.0,
) -> Tensor:
    """A table of images: each row one kind (image, map, overlay), each column one sample.

    Rows may mix gray and RGB, float ``[0, 1]`` and ``uint8`` tensors; rows whose
    ``(H, W)`` differs from the first row's are resized to it (bilinear). Column
    captions are drawn once, under the last row; row labels in a column on the left.

    Args:
        rows: A non-empty list of ``(N, C, H, W)`` tensors with the same ``N``.
        captions: One caption per column (``"\\n"`` for several lines), or ``None``.
            Default: ``None``.
        row_labels: One label per row, or ``None``. Default: ``None``.
        scale: Integer nearest-neighbour upscaling. Default: ``1``.
        padding: Pixels between and around the tiles. Default: ``2``.
        pad_value: Gray level of the padding in ``[0, 1]``. Default: ``1.0``.

    Returns:
        ``uint8`` tensor ``(3, H', W')`` on the CPU.

    Raises:
        TypeError: ``rows`` is not a list of tensors, wrong caption types.
        ValueError: Empty ``rows``, batch sizes differ, wrong caption/label counts,
            or an invalid image tensor.
    """
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, Tensor) for r in rows):
        raise TypeError(f"`rows` must be a list of (N, C, H, W) tensors, got {type(rows).__name__}")
    if len(rows) == 0:
        raise ValueError("`rows` is an empty list")
    scale = _check_positive_int(scale, "scale")
    padding = _check_positive_int(padding, "padding", minimum=0)
    checked = [_check_images(r, f"rows[{i}]", allow_uint8=True) for i, r in enumerate(rows)]
    n = checked[0].shape[0]
    sizes = [r.shape[0] for r in checked]
    if any(s != n for s in sizes):
        raise ValueError(f"every row must have the same number of images, got {sizes}")
    if captions is not None:
        captions = _check_str_list(captions, "captions", n)
    if row_labels is not None:
        row_labels = _check_str_list(row_labels, "row_labels", len(checked))
    hw = checked[0].shape[-2:]
    cells: list[list[np.ndarray | None]] = []
    for r in checked:
        if r.shape[-2:] != hw:
            r = to_uint8(r).float() / 255.0
            r = F.interpolate(r, size=hw, mode="bilinear", align_corners=False).clamp(0, 1)
        cells.append(list(_tiles(r, scale)))
    th, tw = hw[0] * scale, hw[1] * scale
    caps: list[list[str]] | None = None
    if captions is not None:
        caps = [[] for _ in cells]
        caps[-1] = captions
    return _compose(cells, caps, row_labels, (th, tw), padding, float(pad_value))


def display_scale(images: Tensor | int, target: int = 96) -> int:
    """Integer upscaling that shows an image (or a width in pixels) about ``target`` px wide.

    Callbacks use it for every grid, so small images (32 px) stay readable.

    Example:
        >>> display_scale(32), display_scale(224)
        (3, 1)
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
    weight = _check_float(_check_tensor(weight, "weight", 4, "(O, I, kh, kw)"), "weight")
    max_filters = _check_positive_int(max_filters, "max_filters")
    if per_input_channel is not None and not isinstance(per_input_channel, bool):
        raise TypeError(f"`per_input_channel` must be a bool or None, got {per_input_channel!r}")
    o, i = weight.shape[:2]
    if per_input_channel is None:
        per_input_channel = i not in (1, 3)
    w = weight.detach().float()
    if not per_input_channel:
        if i not in (1, 3):
            raise ValueError(
                f"per_input_channel=False needs 1 or 3 input channels, got weight shape "
                f"{tuple(weight.shape)}"
            )
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
    weight = _check_float(_check_tensor(weight, "weight", 2, "(K, C*H*W)"), "weight")
    if (
        not isinstance(image_shape, (list, tuple, torch.Size))
        or len(image_shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in image_shape)
    ):
        raise TypeError(f"`image_shape` must be a (C, H, W) tuple of ints, got {image_shape!r}")
    c, h, w_ = image_shape
    if c * h * w_ != weight.shape[1]:
        raise ValueError(
            f"`image_shape` {tuple(image_shape)} has {c * h * w_} elements but the weight has "
            f"{weight.shape[1]} input features"
        )
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
    activation = _check_float(_check_tensor(activation, "activation", 3, "(C, H, W)"), "activation")
    max_channels = _check_positive_int(max_channels, "max_channels")
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
    n = _check_positive_int(n, "n")
    max_sprite_px = _check_positive_int(max_sprite_px, "max_sprite_px")
    max_thumb = _check_positive_int(max_thumb, "max_thumb")
    h, w = int(image_hw[0]), int(image_hw[1])
    per_side = math.ceil(math.sqrt(n))
    side = min(max(h, w), max_thumb, max_sprite_px // per_side)
    if side < 1:
        raise ValueError(
            f"{n} thumbnails do not fit a {max_sprite_px}-px sprite ({per_side} per side)"
        )
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
    images = _check_images(images)
    h, w = sprite_thumb_size(
        images.shape[0], tuple(images.shape[-2:]), max_sprite_px=max_sprite_px, max_thumb=max_thumb
    )
    if (h, w) == tuple(images.shape[-2:]):
        return images.detach().clone()
    out = F.interpolate(
        images.detach().float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True
    )
    return out.clamp(0.0, 1.0).to(images.dtype)


# --------------------------------------------------------------------------- figures
def _check_labels_list(values: object, name: str) -> list[str]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"`{name}` must be a list of str, got {values!r}")
    return list(values)


def _check_series(series: object, length: int, what: str) -> dict[str, list[float]]:
    if not isinstance(series, dict) or not all(isinstance(k, str) for k in series):
        raise TypeError(f"`series` must be a dict of name -> list of numbers, got {series!r}")
    if not series:
        raise ValueError("`series` is empty")
    out = {}
    for name, values in series.items():
        try:
            vals = [float(v) for v in values]
        except (TypeError, ValueError):
            raise TypeError(f"series {name!r} must be a list of numbers, got {values!r}") from None
        if len(vals) != length:
            raise ValueError(
                f"series {name!r} has {len(vals)} values for {length} {what}: {values!r}"
            )
        out[name] = vals
    return out


def line_figure(
    x: Sequence[float],
    series: dict[str, list[float]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    xticklabels: list[str] | None = None,
) -> Figure:
    """One line (with markers) per series over shared ``x`` values, with a legend.

    Args:
        x: The x values.
        series: ``{name: y values}``, each as long as ``x``.
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
    try:
        xs = [float(v) for v in x]
    except (TypeError, ValueError):
        raise TypeError(f"`x` must be a list of numbers, got {x!r}") from None
    if not xs:
        raise ValueError("`x` is empty")
    data = _check_series(series, len(xs), "x values")
    if xticklabels is not None:
        xticklabels = _check_labels_list(xticklabels, "xticklabels")
        if len(xticklabels) != len(xs):
            raise ValueError(f"`xticklabels` has {len(xticklabels)} entries for {len(xs)} x values")
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in data.items():
        ax.plot(xs, ys, marker="o", label=name)
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
) -> Figure:
    """Grouped bars: one group per category, one bar per series, with a legend.

    Args:
        categories: Category names on the x axis.
        series: ``{name: values}``, each with one value per category.
        ylabel: Label of the y axis. Default: ``""``.
        title: Figure title. Default: ``""``.

    Returns:
        A :class:`matplotlib.figure.Figure` with one axes holding
        ``len(categories) * len(series)`` bars.

    Raises:
        TypeError: Wrong container types or non-numeric values.
        ValueError: Empty ``categories``/``series`` or mismatched lengths.
    """
    cats = _check_labels_list(categories, "categories")
    if not cats:
        raise ValueError("`categories` is empty")
    data = _check_series(series, len(cats), "categories")
    fig = Figure(figsize=(max(6.0, 0.6 * len(cats) * max(1, len(data)) / 2), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(data)
    pos = np.arange(len(cats))
    for j, (name, vals) in enumerate(data.items()):
        ax.bar(pos - 0.4 + width * (j + 0.5), vals, width=width, label=name)
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
    points = _check_float(_check_tensor(points, "points", 2, "(N, 2)"), "points")
    if points.shape[1] != 2:
        raise ValueError(f"`points` must have shape (N, 2), got shape {tuple(points.shape)}")
    labels = _check_tensor(labels, "labels", 1, "(N,)")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"`labels` must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape[0] != points.shape[0]:
        raise ValueError(f"`labels` has {labels.shape[0]} entries for {points.shape[0]} points")
    pts = points.detach().float().cpu().numpy()
    lab = labels.detach().cpu().numpy()
    classes = sorted(int(c) for c in np.unique(lab))
    if class_names is not None:
        class_names = _check_labels_list(class_names, "class_names")
        if classes[0] < 0 or classes[-1] >= len(class_names):
            raise ValueError(
                f"labels {classes} need a name each but `class_names` has "
                f"{len(class_names)} entries"
            )
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    fig = Figure(figsize=(6.0, 5.0))
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
        raise TypeError(f"`fig` must be a matplotlib.figure.Figure, got {type(fig).__name__}")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # (H, W, 4)
    return torch.from_numpy(np.ascontiguousarray(rgba[..., :3])).permute(2, 0, 1).contiguous()
