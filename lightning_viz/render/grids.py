"""Image grids with captions and row labels (the text engine: fonts, wrapping, clipping)."""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from lightning_viz._checks import (
    check_float,
    check_int,
    check_str_list,
    check_tensor,
    check_unit_range,
    fail,
)
from lightning_viz.render.maps import picture, to_rgb

__all__ = ["MAX_TILE", "display_scale", "feature_map_grid", "image_grid", "rows_grid", "to_uint8"]

_CAPTION_MARGIN = 2  # px of white space around caption lines
_MIN_FONT, _MAX_FONT = 10, 48  # caption font sizes in px (a fifth of the tile width)
_MAX_CAPTION_LINES = 9  # a longer caption keeps each paragraph's start, clipped with ".."
_Font = ImageFont.ImageFont | ImageFont.FreeTypeFont
MAX_TILE = 128  # px: wider tiles are shrunk (a TensorBoard card is about 500 px wide)


def to_uint8(images: Tensor) -> Tensor:
    """Float images in ``[0, 1]`` (or ``uint8``) -> ``uint8`` ``(N, C, H, W)`` (rounded)."""
    images = picture(images, allow_uint8=True)
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
    a space between words, nothing around ``->``, after a ``.`` that a letter follows,
    after a ``_`` or a ``+`` (so ``"square->star"``, ``"model.block3.conv"``,
    ``"guided_gradcam"``, ``"class_000_aaa"`` and the labels ``"cat+dog"`` of a
    multilabel image can wrap, and ``"0.93"`` stays whole)."""
    pieces = []
    for word in paragraph.split():
        parts = [
            p for p in re.split(r"(?=->)|(?<=->)|(?<=\.)(?=[^\W\d])|(?<=[_+])(?=\w)", word) if p
        ]
        pieces += [(p, " " if i == 0 else "") for i, p in enumerate(parts)]
    return pieces


def _chunks(piece: str, font: _Font, width: int) -> list[str]:
    """``piece`` (wider than ``width`` px) in as few chunks of about equal length as fit
    (``"golden_retriever"`` -> ``"golden_"``, ``"retriever"``; a long word in halves or
    thirds, never a lone last letter)."""
    k = max(math.ceil(_text_width(font, piece) / width), 1)
    while True:
        q, r = divmod(len(piece), k)  # k chunks: the first r one character longer
        ends = [i * q + min(i, r) for i in range(k + 1)]
        chunks = [piece[a:b] for a, b in zip(ends, ends[1:], strict=False)]
        if k >= len(piece) or all(_text_width(font, c) <= width for c in chunks):
            return chunks
        k += 1


def _broken(paragraph: str, font: _Font, width: int) -> list[tuple[str, str]]:
    """:func:`_words`, with each piece wider than ``width`` px broken into chunks of
    about equal length that fit (:func:`_chunks`): a long class name continues on the
    next line instead of losing its end. A tile narrower than a letter of the
    paragraph keeps all its pieces whole (clipped with ``..``): broken, they would be a
    letter a line with the wide letters' lines empty."""
    pieces: list[tuple[str, str]] = []
    tiny = any(_text_width(font, ch) > width for ch in set(paragraph) if not ch.isspace())
    for piece, joiner in _words(paragraph):
        if tiny or _text_width(font, piece) <= width:
            pieces.append((piece, joiner))
            continue
        first, *rest = _chunks(piece, font, width)
        pieces += [(first, joiner), *((c, "") for c in rest)]
    return pieces


def _wrap(text: str, font: _Font, width: int, max_lines: int) -> list[str]:
    """``text`` as at most ``max_lines`` lines no wider than ``width`` px.

    ``"\\n"`` starts a new paragraph; a word that does not fit on the line moves to the
    next one, and a word wider than ``width`` is broken across lines. When the lines
    are more than ``max_lines``, the longest paragraphs give up their last lines first
    (every paragraph keeps its start, so the last field of a caption, such as the
    adversarial prediction, still shows) and the last line a paragraph keeps ends with
    ``..``.
    """
    paragraphs: list[list[str]] = []
    for paragraph in text.split("\n"):
        lines, line = [], ""
        for piece, joiner in _broken(paragraph, font, width):
            candidate = line + joiner + piece if line else piece
            if line and _text_width(font, candidate) > width:
                lines.append(line)
                line = piece
            else:
                line = candidate
        paragraphs.append(lines + [line])
    cut = [False] * len(paragraphs)
    if len(paragraphs) > max_lines:  # not even a line each: the first ones
        paragraphs, cut = paragraphs[:max_lines], cut[:max_lines]
        cut[-1] = True
    while sum(len(p) for p in paragraphs) > max_lines:
        longest = max(range(len(paragraphs)), key=lambda i: len(paragraphs[i]))
        paragraphs[longest] = paragraphs[longest][:-1]
        cut[longest] = True
    shown = []
    for lines, more in zip(paragraphs, cut, strict=True):
        shown += [_fit(line, font, width) for line in lines[:-1]]
        shown.append(_fit(lines[-1], font, width, more=more))
    return shown


def _label_width(row_labels: list[str] | None, font: _Font, tile_width: int) -> int:
    """Width of the row-label column: the widest label, at most ``max(min(2.5 * tile
    width, 200), 8 * font size)`` px (longer labels wrap; 200: a 224-px image's labels
    took 320 px and pushed half its samples into a second block); 0 without labels."""
    if row_labels is None:
        return 0
    widest = max(_text_width(font, line) for label in row_labels for line in label.split("\n"))
    cap = max(min(5 * tile_width // 2, 200), 8 * _font_size(tile_width))
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
    uniform_bands: bool = True,
) -> Tensor:
    """Lays out HWC uint8 tiles row by row, with caption bands and a label column.

    ``cell_captions[r]`` is the list of captions under row ``r``: an empty list
    means no caption band under that row; every band is as tall as the grid's
    tallest (wrapped) caption, or with ``uniform_bands=False`` as its row's.
    ``row_labels[r]`` is drawn left of row ``r``, wrapped to the label column.
    ``gaps[r]`` is extra space above row ``r``. Text is drawn in bold, with a font
    proportional to the tile width (:func:`_font_size`); with row labels, a row is at
    least one text line tall (tiles of a very wide, short image would otherwise be
    shorter than their label). Captions wrap a space's width short of their tile, so
    that two neighbours do not read as one word.
    """
    th, tw = tile_hw
    font = _font(_font_size(tw))
    line_h = _line_height(font)
    rh = max(th, line_h) if row_labels is not None else th  # a label's line fits its row
    n_rows = len(cells)
    n_cols = max(len(r) for r in cells)
    caps = cell_captions if cell_captions is not None else [[] for _ in cells]
    # a space's width between two neighbouring captions, so that they do not read as one
    room = tw - 2 - max(0, math.ceil(_text_width(font, " ")) - padding - 2)
    wrapped = [[_wrap(c, font, room, _MAX_CAPTION_LINES) for c in row] for row in caps]
    most = max((len(w) for row in wrapped for w in row), default=0)
    band = [
        (most if uniform_bands else max((len(w) for w in wr), default=0)) * line_h
        + 2 * _CAPTION_MARGIN
        if row
        else 0
        for row, wr in zip(caps, wrapped, strict=True)
    ]
    gaps = gaps if gaps is not None else [0] * n_rows
    label_w = _label_width(row_labels, font, tw)
    width = padding + label_w + n_cols * (tw + padding)
    height = padding + sum(g + rh + b + padding for g, b in zip(gaps, band, strict=True))
    fill = int(round(min(max(pad_value, 0.0), 1.0) * 255))
    canvas = np.full((height, width, 3), fill, dtype=np.uint8)
    texts: list[tuple[int, int, str]] = []  # (x, y, text), fitted already
    y = padding
    for r in range(n_rows):
        y += gaps[r]
        if row_labels is not None:
            canvas[y : y + rh, padding : padding + label_w] = 255
            label = _wrap(row_labels[r], font, label_w - 2 * _CAPTION_MARGIN, rh // line_h)
            y_text = y + max((rh - len(label) * line_h) // 2, 0)
            for i, line in enumerate(label):
                texts.append((padding + _CAPTION_MARGIN, y_text + i * line_h, line))
        for c, tile in enumerate(cells[r]):
            x = padding + label_w + c * (tw + padding)
            if tile is not None:
                canvas[y : y + th, x : x + tw] = tile
            if band[r]:
                canvas[y + rh : y + rh + band[r], x : x + tw] = 255
                if c < len(wrapped[r]):
                    for i, line in enumerate(wrapped[r][c]):
                        texts.append((x + 1, y + rh + _CAPTION_MARGIN + i * line_h, line))
        y += rh + band[r] + padding
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
    around ``->``, and after a ``.``, ``_`` or ``+`` before a letter), and what still
    does not fit (a long word, a tenth line) is clipped with ``..``.

    Args:
        images: ``(N, C, H, W)``, float in ``[0, 1]`` or ``uint8`` (``C`` other than 1 or 3
            as :func:`~lightning_viz.render.maps.shown_channels`).
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
    images = picture(images, allow_uint8=True)
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
    (as wide as the widest label, at most 2.5 tile widths and 200 px, but never
    narrower than 8 characters of the caption font; longer labels wrap).

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
    checked = [picture(r, f"rows[{i}]", allow_uint8=True) for i, r in enumerate(rows)]
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
        images: ``(N, C, h, w)``, float in ``[0, 1]`` or ``uint8`` (any ``C``, as
            :func:`~lightning_viz.render.maps.shown_channels`).
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
    images = picture(images, allow_uint8=True)
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
    return _compose(  # a row of maps' band as tall as its own names, not the image caption's
        cells,
        caps if captions is not None else None,
        None,
        (th, tw),
        padding,
        pad_value,
        gaps,
        uniform_bands=False,
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
