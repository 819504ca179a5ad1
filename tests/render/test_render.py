"""Tests for lightning_viz.render: values checked against hand-computed results."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from lightning_viz import render as R
from lightning_viz._runtime import projector as P
from lightning_viz.render import grids as G
from tests.render._figures import figure_to_image

# --------------------------------------------------------------------------- normalize_maps


def test_normalize_maps_percentile_100_is_max():
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]], [[[0.0, 0.5], [0.25, 0.0]]]])
    out = R.normalize_maps(maps, percentile=100)
    expected = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]], [[[0.0, 1.0], [0.5, 0.0]]]])
    torch.testing.assert_close(out, expected)


def test_normalize_maps_robust_max_clips():
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    # median of 0,1,2,3 (linear interpolation) is 1.5
    out = R.normalize_maps(maps, percentile=50)
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 2 / 3], [1.0, 1.0]]]]))


@pytest.mark.parametrize("percentile", [99.5, 90.0, 37.3])
def test_normalize_maps_matches_torch_quantile(percentile):
    maps = torch.rand(3, 1, 17, 13, generator=torch.Generator().manual_seed(2)) * 4
    robust = torch.quantile(maps.flatten(1), percentile / 100, dim=1)
    expected = (maps / robust.view(3, 1, 1, 1)).clamp(0, 1)
    torch.testing.assert_close(R.normalize_maps(maps, percentile=percentile), expected)


def test_normalize_maps_default_percentile_ignores_one_outlier():
    maps = torch.ones(1, 1, 20, 20)
    maps[0, 0, 0, 0] = 1000.0
    out = R.normalize_maps(maps)
    assert out[0, 0, 0, 0] == 1.0
    # the robust max is ~1 (not 1000), so the other pixels stay near 1
    assert float(out[0, 0, 5:, 5:].min()) == pytest.approx(1.0)


def test_normalize_maps_zero_and_sparse_maps():
    maps = torch.zeros(2, 1, 20, 20)
    maps[1, 0, 3, 4] = 0.2  # 1 of 400 pixels: the 99.5th percentile is 0 -> falls back to max
    out = R.normalize_maps(maps)
    assert torch.equal(out[0], torch.zeros(1, 20, 20))
    assert out[1, 0, 3, 4] == 1.0
    assert float(out[1].sum()) == 1.0


def test_normalize_maps_does_not_mutate():
    maps = torch.rand(3, 1, 8, 8) * 5
    before = maps.clone()
    R.normalize_maps(maps)
    assert torch.equal(maps, before)


@pytest.mark.parametrize(
    ("maps", "kwargs", "err", "match"),
    [
        ([[0.0]], {}, TypeError, r"`maps` must be a torch.Tensor \(N, 1, H, W\), got <list>"),
        (
            torch.ones(2, 8, 8),
            {},
            ValueError,
            r"`maps` must be .*\(N, 1, H, W\), got <shape \(2, 8, 8\)>",
        ),
        (
            torch.ones(2, 3, 8, 8),
            {},
            ValueError,
            r"`maps` must be .*\(N, 1, H, W\), got <shape \(2, 3, 8, 8\)>",
        ),
        (
            torch.ones(1, 1, 0, 8),
            {},
            ValueError,
            r"`maps` must be a non-empty .*got <shape \(1, 1, 0, 8\)>",
        ),
        (
            torch.ones(2, 1, 8, 8, dtype=torch.long),
            {},
            TypeError,
            "`maps` must be a floating-point tensor, got <dtype torch.int64>",
        ),
        (-torch.ones(1, 1, 4, 4), {}, ValueError, "`maps` must be non-negative, got <minimum -1>"),
        (
            torch.full((1, 1, 2, 2), float("nan")),
            {},
            ValueError,
            "`maps` must be free of NaN, got <4 NaN values>",
        ),
        (
            torch.ones(1, 1, 4, 4),
            {"percentile": 0},
            ValueError,
            "`percentile` must be a finite number > 0 and <= 100, got 0",
        ),
        (torch.ones(1, 1, 4, 4), {"percentile": 101.0}, ValueError, "`percentile` .* got 101.0"),
        (torch.ones(1, 1, 4, 4), {"percentile": "99"}, TypeError, "`percentile` .* got '99'"),
    ],
)
def test_normalize_maps_validation(maps, kwargs, err, match):
    with pytest.raises(err, match=match):
        R.normalize_maps(maps, **kwargs)


# --------------------------------------------------------------------------- colorize


@pytest.mark.parametrize("cmap", ["jet", "viridis", "gray"])
def test_colorize_matches_matplotlib(cmap):
    cm = matplotlib.colormaps[cmap]
    maps = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    maps[0, 0, 0, 0], maps[0, 0, 0, 1] = 0.0, 1.0
    out = R.colorize(maps, cmap)
    assert out.shape == (2, 3, 5, 7)
    expected = torch.as_tensor(cm(maps[:, 0].numpy())[..., :3], dtype=torch.float32)
    torch.testing.assert_close(out.permute(0, 2, 3, 1), expected)
    # endpoints are the colormap's ends
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(cm(0.0)[:3], dtype=torch.float32))
    torch.testing.assert_close(out[0, :, 0, 1], torch.tensor(cm(1.0)[:3], dtype=torch.float32))


def test_colorize_validation():
    with pytest.raises(ValueError, match="`cmap` must be a matplotlib colormap name, got 'nope'"):
        R.colorize(torch.zeros(1, 1, 2, 2), "nope")
    with pytest.raises(TypeError, match="`cmap` must be a matplotlib colormap name, got 3"):
        R.colorize(torch.zeros(1, 1, 2, 2), 3)
    with pytest.raises(
        ValueError, match=r"`maps` must be in \[0, 1\], got <values in \[1.5, 1.5\]>"
    ):
        R.colorize(torch.full((1, 1, 2, 2), 1.5))


# --------------------------------------------------------------------------- overlay / to_rgb


def test_to_rgb():
    gray = torch.rand(2, 1, 4, 4)
    rgb = R.to_rgb(gray)
    assert rgb.shape == (2, 3, 4, 4)
    for c in range(3):
        assert torch.equal(rgb[:, c], gray[:, 0])
    color = torch.rand(2, 3, 4, 4)
    assert torch.equal(R.to_rgb(color), color)
    two = torch.rand(2, 2, 4, 4)  # two channels: their mean, as gray
    assert torch.equal(R.to_rgb(two), two.mean(1, keepdim=True).repeat(1, 3, 1, 1))
    four = torch.rand(2, 4, 4, 4)  # RGBA, RGB + depth: the first three
    assert torch.equal(R.to_rgb(four), four[:, :3])
    with pytest.raises(ValueError, match=r"`images` must be a non-empty .*<shape \(2, 3, 0, 4\)>"):
        R.to_rgb(torch.rand(2, 3, 0, 4))
    with pytest.raises(TypeError, match="`images` must be a torch.Tensor .* got <ndarray>"):
        R.to_rgb(np.zeros((1, 1, 2, 2)))


def test_overlay_alpha_endpoints():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 1, 6, 6, generator=g)
    maps = torch.rand(3, 1, 6, 6, generator=g)
    torch.testing.assert_close(R.overlay(images, maps, alpha=0.0), images.repeat(1, 3, 1, 1))
    torch.testing.assert_close(R.overlay(images, maps, alpha=1.0), R.colorize(maps, "jet"))
    half = R.overlay(images, maps, alpha=0.5, cmap="viridis")
    torch.testing.assert_close(
        half, 0.5 * images.repeat(1, 3, 1, 1) + 0.5 * R.colorize(maps, "viridis")
    )


def test_overlay_resizes_maps():
    images = torch.zeros(2, 3, 16, 16)
    maps = torch.full((2, 1, 4, 4), 0.5)
    out = R.overlay(images, maps, alpha=1.0)
    assert out.shape == (2, 3, 16, 16)
    color = torch.tensor(matplotlib.colormaps["jet"](0.5)[:3], dtype=torch.float32)
    torch.testing.assert_close(out, color.view(1, 3, 1, 1).expand(2, 3, 16, 16))


def test_overlay_validation():
    im, m = torch.rand(2, 3, 4, 4), torch.rand(2, 1, 4, 4)
    with pytest.raises(
        ValueError, match=r"`maps` must be one map per image \(2\), got <shape \(1, 1, 4, 4\)>"
    ):
        R.overlay(im, m[:1])
    with pytest.raises(ValueError, match="`alpha` must be a finite number >= 0 and <= 1, got 2"):
        R.overlay(im, m, alpha=2)
    with pytest.raises(TypeError, match="`alpha` .* got None"):
        R.overlay(im, m, alpha=None)
    with pytest.raises(ValueError, match=r"`images` must be in \[0, 1\], got <values in"):
        R.overlay(im * 3, m)


# --------------------------------------------------------------------------- image_grid


def _grid_images(n=5, c=3, h=8, w=6, seed=0):
    return torch.randint(
        0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def _up(tile: torch.Tensor, s: int) -> torch.Tensor:
    return tile.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)


def test_image_grid_tile_offsets_nearest_upscaling():
    images = _grid_images()
    s, p = 3, 2
    grid = R.image_grid(images, nrow=3, scale=s, padding=p, pad_value=0.0)
    th, tw = 8 * s, 6 * s
    assert grid.dtype == torch.uint8
    assert grid.shape == (3, p + 2 * (th + p), p + 3 * (tw + p))
    for i in range(5):
        r, c = divmod(i, 3)
        y, x = p + r * (th + p), p + c * (tw + p)
        assert torch.equal(grid[:, y : y + th, x : x + tw], _up(images[i], s))
    # padding and the empty 6th cell are pad_value
    assert int(grid[:, 0, :].max()) == 0
    y, x = p + (th + p), p + 2 * (tw + p)
    assert int(grid[:, y : y + th, x : x + tw].max()) == 0


def test_image_grid_float_and_gray():
    images = torch.rand(2, 1, 4, 4)
    grid = R.image_grid(images, nrow=2, padding=0)
    expected = (images * 255).round().to(torch.uint8)
    assert torch.equal(grid[0, :, :4], expected[0, 0])
    assert torch.equal(grid[1, :, 4:], expected[1, 0])
    assert torch.equal(grid[0], grid[2])  # gray replicated
    assert images.dtype == torch.float32  # input untouched


def test_image_grid_captions():
    images = torch.full((3, 3, 32, 32), 0.5)
    s, p = 1, 2
    plain = R.image_grid(images, nrow=3, padding=p, pad_value=0.5)
    empty = R.image_grid(images, nrow=3, padding=p, pad_value=0.5, captions=["", "", ""])
    text = R.image_grid(
        images,
        nrow=3,
        padding=p,
        pad_value=0.5,
        captions=["cat", "", "a much longer caption than the tile"],
    )
    one_line = empty.shape[1] - plain.shape[1]
    band = text.shape[1] - plain.shape[1]
    assert one_line > 0 and band > one_line  # the long caption wraps onto more lines
    assert text.shape[2] == empty.shape[2] == plain.shape[2]
    y0 = p + 32 * s
    for c in range(3):
        x = p + c * (32 + p)
        # tiles unchanged by captions
        assert torch.equal(text[:, p : p + 32, x : x + 32], plain[:, p : p + 32, x : x + 32])
        cap_text = text[:, y0 : y0 + band, x : x + 32]
        assert int(empty[:, y0 : y0 + one_line, x : x + 32].min()) == 255  # white, no text
        if c == 1:
            assert int(cap_text.min()) == 255
        else:
            assert int(cap_text.min()) < 100  # dark text pixels
    # text stays inside its tile's column: the padding columns beside the tiles stay pad gray
    for c in range(1, 3):
        x = p + c * (32 + p) - p
        assert torch.equal(
            text[:, y0 : y0 + band, x : x + p], torch.full((3, band, p), 128, dtype=torch.uint8)
        )
    assert int(text[:, y0 : y0 + band, -p:].min()) == 128


def test_image_grid_multiline_caption_is_taller():
    images = torch.rand(2, 3, 16, 16)
    one = R.image_grid(images, captions=["a", "b"])
    two = R.image_grid(images, captions=["a\nb", "c"])
    assert two.shape[1] > one.shape[1]


@pytest.mark.parametrize(
    ("images", "kwargs", "err", "match"),
    [
        ("x", {}, TypeError, "`images` must be a torch.Tensor .* got <str>"),
        (
            torch.rand(3, 4, 4),
            {},
            ValueError,
            r"`images` .*\(N, C, H, W\), got <shape \(3, 4, 4\)>",
        ),
        (
            torch.rand(2, 3, 0, 4),
            {},
            ValueError,
            r"`images` must be a non-empty .*got <shape \(2, 3, 0, 4\)>",
        ),
        (
            torch.rand(2, 3, 4, 4) + 1.5,
            {},
            ValueError,
            r"`images` must be in \[0, 1\], got <values in \[1.5",
        ),
        (
            torch.full((1, 3, 2, 2), float("nan")),
            {},
            ValueError,
            "`images` must be free of NaN, got <12 NaN values>",
        ),
        (
            torch.ones(2, 3, 4, 4, dtype=torch.int32),
            {},
            TypeError,
            "`images` must be a floating-point or uint8 tensor, got <dtype torch.int32>",
        ),
        (
            torch.rand(2, 3, 4, 4),
            {"captions": ["a"]},
            ValueError,
            r"`captions` must be a list of strings \(2 of them\), got <1 strings: \['a'\]>",
        ),
        (
            torch.rand(2, 3, 4, 4),
            {"captions": "ab"},
            TypeError,
            "`captions` must be a list of strings .* got 'ab'",
        ),
        (torch.rand(2, 3, 4, 4), {"nrow": 0}, ValueError, "`nrow` must be an int >= 1, got 0"),
        (torch.rand(2, 3, 4, 4), {"scale": 1.5}, TypeError, "`scale` must be an int >= 1, got 1.5"),
        (
            torch.rand(2, 3, 4, 4),
            {"padding": -1},
            ValueError,
            "`padding` must be an int >= 0, got -1",
        ),
        (
            torch.rand(2, 3, 4, 4),
            {"pad_value": "w"},
            TypeError,
            "`pad_value` must be a finite number, got 'w'",
        ),
    ],
)
def test_image_grid_validation(images, kwargs, err, match):
    with pytest.raises(err, match=match):
        R.image_grid(images, **kwargs)


# --------------------------------------------------------------------------- rows_grid


def test_rows_grid_layout_and_captions():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(4, 3, 8, 8, generator=g)
    maps = torch.rand(4, 1, 8, 8, generator=g)
    rows = [images, maps, R.overlay(images, maps)]
    s, p = 2, 2
    plain = R.rows_grid(rows, scale=s, padding=p)
    t = 8 * s
    assert plain.shape == (3, p + 3 * (t + p), p + 4 * (t + p))
    for r, row in enumerate(rows):
        for c in range(4):
            y, x = p + r * (t + p), p + c * (t + p)
            expected = _up(R.to_rgb(R.to_uint8(row[c : c + 1]))[0], s)
            assert torch.equal(plain[:, y : y + t, x : x + t], expected)
    cap = R.rows_grid(rows, scale=s, padding=p, captions=["a", "b", "c", "d"])
    band = cap.shape[1] - plain.shape[1]
    assert band > 0
    # tiles unchanged, captions only under the last row
    assert torch.equal(cap[:, : plain.shape[1] - p], plain[:, : plain.shape[1] - p])
    y0 = p + 3 * (t + p) - p
    assert int(cap[:, y0 : y0 + band, p : p + t].min()) < 100


def test_rows_grid_row_labels_and_resize():
    images = torch.rand(2, 3, 16, 16)  # rows at least a label's line tall (see below)
    small = torch.full((2, 1, 8, 8), 0.4)
    plain = R.rows_grid([images, small], padding=1)
    labeled = R.rows_grid([images, small], padding=1, row_labels=["image", "map"])
    extra = labeled.shape[2] - plain.shape[2]
    assert extra > 0 and labeled.shape[1] == plain.shape[1]
    # label column has dark text, tiles are shifted right by the label width
    assert int(labeled[:, 1:17, 1 : 1 + extra].min()) < 100
    assert torch.equal(labeled[:, :, extra:], plain)
    # the 8x8 constant row was resized to 16x16
    assert torch.equal(plain[:, 18:34, 1:17], torch.full((3, 16, 16), 102, dtype=torch.uint8))
    # 8-px rows are shorter than a line: labelled, they grow to one line; the tiles do not
    short = R.rows_grid([images[:, :, :8], images[:, :, :8]], padding=1, row_labels=["a", "b"])
    unlabeled = R.rows_grid([images[:, :, :8], images[:, :, :8]], padding=1)
    assert short.shape[1] > unlabeled.shape[1]


def test_rows_grid_validation():
    a = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"`rows` must be a non-empty list .* got \[\]"):
        R.rows_grid([])
    with pytest.raises(
        TypeError, match=r"`rows` must be a list of \(N, C, H, W\) tensors, got <Tensor>"
    ):
        R.rows_grid(a)
    with pytest.raises(
        ValueError, match=r"`rows` must be .* same number of images, got <\[2, 1\] images>"
    ):
        R.rows_grid([a, a[:1]])
    with pytest.raises(ValueError, match=r"`captions` .*\(2 of them\), got <3 strings"):
        R.rows_grid([a, a], captions=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"`row_labels` .*\(2 of them\), got <1 strings"):
        R.rows_grid([a, a], row_labels=["a"])
    with pytest.raises(ValueError, match=r"`rows\[1\]` must be in \[0, 1\], got <values in"):
        R.rows_grid([a, a + 2])


# --------------------------------------------------------------------------- wrapping


def test_image_grid_wraps_to_max_width():
    images = _grid_images(n=10, h=8, w=8)
    s, p, t = 4, 2, 32  # 32-px tiles, 34 px a column
    wide = R.image_grid(images, nrow=8, scale=s, padding=p, max_width=None)
    assert wide.shape == (3, p + 2 * (t + p), p + 8 * (t + p))  # 274 px: 8 + 2 tiles
    grid = R.image_grid(images, nrow=8, scale=s, padding=p, max_width=150)
    # (150 - 2) // 34 = 4 columns: 2 + 4 * 34 = 138 px wide, 3 rows (4 + 4 + 2 tiles)
    assert grid.shape == (3, p + 3 * (t + p), p + 4 * (t + p)) == (3, 104, 138)
    for i in range(10):
        r, c = divmod(i, 4)
        y, x = p + r * (t + p), p + c * (t + p)
        assert torch.equal(grid[:, y : y + t, x : x + t], _up(images[i], s))
    # one tile wider than max_width: one a row, not shrunk
    assert R.image_grid(images[:3], scale=s, max_width=10).shape == (3, 2 + 3 * 34, 2 + 34)


def test_rows_grid_wraps_into_balanced_blocks():
    g = torch.Generator().manual_seed(4)
    images = torch.rand(8, 3, 8, 8, generator=g)
    maps = torch.rand(8, 1, 8, 8, generator=g)
    s, p, t, gap = 4, 2, 32, 8  # gap above a block: a quarter of the 32-px tile
    one = R.rows_grid([images, maps], scale=s, padding=p, max_width=None)
    assert one.shape == (3, p + 2 * (t + p), p + 8 * (t + p))  # (70, 274)
    # 6 columns fit in 220 px ((220 - 2) // 34), so 2 blocks of 4 (not 6 + 2)
    grid = R.rows_grid([images, maps], scale=s, padding=p, max_width=220)
    assert grid.shape == (3, p + 4 * (t + p) + gap, p + 4 * (t + p)) == (3, 146, 138)
    for i in range(8):
        block, c = divmod(i, 4)
        y0 = p + block * (2 * (t + p) + gap)
        x = p + c * (t + p)
        for k, row in enumerate([images, maps]):
            y = y0 + k * (t + p)
            expected = _up(R.to_rgb(R.to_uint8(row[i : i + 1]))[0], s)
            assert torch.equal(grid[:, y : y + t, x : x + t], expected)
    # 7 samples with 3 columns a block: blocks of 3, 3, 1
    seven = R.rows_grid([images[:7], maps[:7]], scale=s, padding=p, max_width=120)
    assert seven.shape == (3, p + 6 * (t + p) + 2 * gap, p + 3 * (t + p))


def test_rows_grid_wraps_with_labels_and_captions_in_every_block():
    images = torch.full((6, 3, 8, 8), 0.5)
    kwargs = {"scale": 4, "padding": 2, "row_labels": ["image", "map"]}
    caps = [f"c{i}" for i in range(6)]
    one = R.rows_grid([images, images], captions=caps, max_width=None, **kwargs)
    label_w = one.shape[2] - (2 + 6 * 34)
    assert label_w > 0
    grid = R.rows_grid([images, images], captions=caps, max_width=label_w + 2 + 3 * 34, **kwargs)
    assert grid.shape[2] == label_w + 2 + 3 * 34  # 2 blocks of 3 samples
    band = one.shape[1] - (2 + 2 * 34)
    assert grid.shape[1] == 2 + 2 * (2 * 34 + band) + 8
    # the second block repeats the row labels: dark text in the label column
    y = 2 + 2 * 34 + band + 8
    assert int(grid[:, y : y + 32, 2 : 2 + label_w].min()) < 100
    # and has its own caption band under its last row
    y_band = y + 2 * 34 - 2
    assert int(grid[:, y_band : y_band + band, 2 + label_w : 2 + label_w + 32].min()) < 100


def test_caption_font_grows_with_the_tile():
    def text_height(scale: int) -> int:
        grid = R.image_grid(
            torch.zeros(1, 3, 8, 8), captions=["Ag"], scale=scale, padding=0, max_tile=None
        )
        band = grid[0, 8 * scale :]  # the caption band under the tile
        dark = (band < 128).any(dim=1).nonzero()
        return int(dark.max() - dark.min()) + 1

    small, large = text_height(4), text_height(20)  # 32-px tiles: 10 px font; 160 px: 32 px
    assert large >= 2.5 * small
    assert G._font_size(32) == 10 and G._font_size(64) == 13 and G._font_size(160) == 32
    assert G._font_size(8) == 10 and G._font_size(1000) == 48


def test_captions_wrap_at_spaces_and_arrows():
    font = G._font(16)
    width = int(G._text_width(font, "square")) + 4
    assert G._wrap("circle / square->star", font, width, 6) == ["circle /", "square", "->star"]
    wide = int(G._text_width(font, "circle / square->star")) + 1
    assert G._wrap("circle / square->star", font, wide, 6) == ["circle / square->star"]
    assert G._wrap("a\n\nb", font, wide, 6) == ["a", "", "b"]
    # an arrow stays at the end of a line when it fits there
    assert G._wrap("circle->square", font, width + 8, 6) == ["circle->", "square"]
    # a layer or method name breaks after its dots and underscores
    assert G._wrap("model.block3.conv", font, width + 20, 6) == ["model.", "block3.", "conv"]
    assert G._wrap("guided_gradcam", font, width + 20, 6) == ["guided_", "gradcam"]
    # also before digits: "class_000_aaa" read "class_0.." for every class
    assert G._wrap("class_000_aaa", font, width + 20, 6) == ["class_", "000_aaa"]
    # a number stays whole
    assert G._wrap("star 0.93", font, width, 6) == ["star", "0.93"]
    # more lines than allowed: the last one ends with ".."
    lines = G._wrap("one two three", font, int(G._text_width(font, "three")) + 2, 2)
    assert lines == ["one", "two.."]
    # a word wider than the line continues on the next lines (it was clipped: "autom..")
    broken = G._wrap("supercalifragilistic", font, width, 6)
    assert broken == ["super", "calif", "ragil", "istic"]  # chunks of about equal length
    assert all(G._text_width(font, line) <= width for line in broken)
    # ... an arrow before it stays at the end of a line when it fits there
    assert G._wrap("a->supercalifragilistic", font, width, 6)[:2] == ["a->", "super"]
    # ... and no lone last letter: "golden_retriever" read "golden_ / retrieve / r"
    retriever = int(G._text_width(font, "retriever")) - 1
    assert G._wrap("golden_retriever", font, retriever, 6) == ["golden_", "retri", "ever"]
    # the labels of a multilabel image break after their "+"
    plus = int(G._text_width(font, "square+")) + 2
    assert G._wrap("square+star", font, plus, 6) == ["square+", "star"]


@pytest.mark.parametrize("size", [8, 11, 13, 19])
def test_a_long_word_breaks_into_the_fewest_chunks_of_equal_length_that_fit(size):
    """H50: the chunks were cut with one step, ``ceil(len / k)``: "Madagascar" read
    "Mad / aga / sca / r" (a lone last letter where 3 + 3 + 2 + 2 fit), and a count of
    chunks that fits was skipped ("hippopotamus" in 6 where 5 fit)."""
    font = G._font(size)
    for word in ["Madagascar", "hippopotamus", "anemone", "confectionery", "retriever"]:
        for width in range(int(G._text_width(font, "mm")) + 1, int(G._text_width(font, word))):
            chunks = G._chunks(word, font, width)
            assert "".join(chunks) == word
            lengths = [len(c) for c in chunks]
            assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
            assert all(G._text_width(font, c) <= width for c in chunks)
            fewer = len(chunks) - 1  # the same split into one chunk less does not fit
            q, r = divmod(len(word), fewer)
            ends = [i * q + min(i, r) for i in range(fewer + 1)]
            pairs = zip(ends, ends[1:], strict=False)
            assert any(G._text_width(font, word[a:b]) > width for a, b in pairs)


def test_a_tile_narrower_than_a_letter_keeps_every_piece_of_a_caption_whole():
    """H50: the test was made per piece, so the pieces without a wide letter were broken
    a letter a line and those with one clipped to nothing: "model.block3.conv" on a
    10-px tile read "", "b", "l", "o", "c", "k", "3", ".", "" (its start and end gone)."""
    font = G._font(G._font_size(10))
    room = 8
    assert G._text_width(font, "m") > room >= G._text_width(font, "l")
    for caption in ["model.block3.conv", "cat+dog+bird", "American_Staffordshire_terrier"]:
        assert G._broken(caption, font, room) == G._words(caption)
    lines = G._wrap("model.block3.conv", font, room, 9)
    assert len(lines) == 3 and all(line.endswith("..") or line == "" for line in lines)
    grid = R.image_grid(torch.full((4, 3, 10, 10), 0.5), captions=["model.block3.conv"] * 4)
    assert grid.shape[1] < 60  # three caption lines, not nine


def test_a_caption_cut_to_its_lines_keeps_the_start_of_every_paragraph():
    """A long true class used the 6 lines, and the adversarial prediction (the last
    field) was never shown."""
    font = G._font(16)
    width = int(G._text_width(font, "square")) + 4
    lines = G._wrap("one two three four five\n->star", font, width, 4)
    assert lines == ["one", "two", "three..", "->star"]  # the longest paragraph gave up lines
    wide = int(G._text_width(font, "texture")) + 4
    text = "shape a b c d\ntexture e f g\npred h"
    assert G._wrap(text, font, wide, 5) == ["shape", "a b c d", "texture", "e f g", "pred h"]
    assert G._wrap(text, font, wide, 4) == ["shape..", "texture", "e f g", "pred h"]
    assert G._wrap("a\nb\nc", font, width, 2) == ["a", "b.."]  # more paragraphs than lines


def test_wrapping_validation():
    a = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="`max_width` must be an int >= 1, got 0"):
        R.image_grid(a, max_width=0)
    with pytest.raises(TypeError, match="`max_width` must be an int >= 1, got 99.5"):
        R.rows_grid([a], max_width=99.5)
    with pytest.raises(ValueError, match="`max_width` must be an int >= 1, got -1"):
        R.feature_map_grid(a, torch.rand(2, 5, 4, 4), max_width=-1)


def test_bar_figure_is_at_most_1000_px_wide():
    cats = [f"class {i}" for i in range(40)]
    few = R.bar_figure(cats[:3], {"a": [0.1] * 3, "b": [0.2] * 3, "c": [0.3] * 3})
    assert figure_to_image(few).shape[-1] == 480  # 6 in at 80 dpi
    many = R.bar_figure(cats[:30], {"a": [0.1] * 30})
    assert figure_to_image(many).shape[-1] == 720  # 0.3 in a bar: 9 in
    most = R.bar_figure(cats, {"a": [0.1] * 40, "b": [0.2] * 40, "c": [0.3] * 40})
    assert figure_to_image(most).shape[-1] == 1000  # 36 in, capped at 12.5 in


# --------------------------------------------------------------------------- filter_tiles


def test_filter_tiles_rgb_symmetric_normalization():
    w = torch.zeros(3, 3, 3, 3)
    w[0, 0, 0, 0], w[0, 1, 1, 1] = 2.0, -2.0
    w[1, 2, 2, 2], w[1, 0, 1, 0] = 1.0, -0.5
    # filter 2 is all zero
    before = w.clone()
    tiles = R.filter_tiles(w)
    assert torch.equal(w, before)
    assert tiles.shape == (3, 3, 3, 3)
    assert tiles[0, 0, 0, 0] == 1.0 and tiles[0, 1, 1, 1] == 0.0
    assert tiles[1, 2, 2, 2] == 1.0 and tiles[1, 0, 1, 0] == 0.25
    mask = w == 0
    assert torch.all(tiles[mask] == 0.5)  # zeros -> mid-gray
    assert torch.all(tiles[2] == 0.5)


def test_filter_tiles_gray_first_layer_and_max_filters():
    conv = torch.nn.Conv2d(1, 100, 5)
    tiles = R.filter_tiles(conv.weight)
    assert tiles.shape == (64, 1, 5, 5)
    w = conv.weight.detach()[:64]
    expected = 0.5 + 0.5 * w / w.abs().amax(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(tiles, expected)
    assert conv.weight.grad is None and conv.weight.requires_grad
    assert R.filter_tiles(conv.weight, max_filters=7).shape == (7, 1, 5, 5)


def test_filter_tiles_deeper_conv_per_input_channel():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 16, 3, 3, generator=g)
    tiles = R.filter_tiles(w, max_filters=20)
    assert tiles.shape == (20, 1, 3, 3)
    for j in range(20):
        o, i = divmod(j, 16)
        scale = w[o].abs().max()  # normalized per output filter
        torch.testing.assert_close(tiles[j, 0], 0.5 + 0.5 * w[o, i] / scale)
    assert float(tiles.min()) >= 0 and float(tiles.max()) <= 1
    # all pairs when max_filters is large
    assert R.filter_tiles(w, max_filters=1000).shape == (128, 1, 3, 3)
    # forcing per input channel on an RGB first layer
    assert R.filter_tiles(torch.randn(4, 3, 3, 3), per_input_channel=True).shape == (12, 1, 3, 3)


def test_filter_tiles_validation():
    with pytest.raises(ValueError, match=r"`per_input_channel` .*\(4, 16, 3, 3\).* got False"):
        R.filter_tiles(torch.randn(4, 16, 3, 3), per_input_channel=False)
    with pytest.raises(ValueError, match=r"`weight` .*\(O, I, kh, kw\), got <shape \(4, 16\)>"):
        R.filter_tiles(torch.randn(4, 16))
    with pytest.raises(ValueError, match="`max_filters` must be an int >= 1, got 0"):
        R.filter_tiles(torch.randn(4, 3, 3, 3), max_filters=0)
    with pytest.raises(TypeError, match="`per_input_channel` must be a bool, got 'yes'"):
        R.filter_tiles(torch.randn(4, 3, 3, 3), per_input_channel="yes")
    with pytest.raises(
        TypeError, match="`weight` must be a floating-point tensor, got <dtype torch.int64>"
    ):
        R.filter_tiles(torch.ones(4, 3, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="`weight` must be free of NaN, got <1 NaN values>"):
        R.filter_tiles(torch.tensor([float("nan"), 0.0, 0.0]).view(1, 1, 1, 3))


# --------------------------------------------------------------------------- templates / maps


def test_linear_templates():
    w = torch.zeros(2, 1 * 2 * 2)
    w[0] = torch.tensor([4.0, -2.0, 0.0, 1.0])
    w[1] = torch.tensor([-1.0, -1.0, 0.0, 0.5])
    out = R.linear_templates(w, (1, 2, 2))
    assert out.shape == (2, 1, 2, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.0, 0.25], [0.5, 0.625]]))
    torch.testing.assert_close(out[1, 0], torch.tensor([[0.0, 0.0], [0.5, 0.75]]))
    # channel-major reshape (C, H, W), as torch.flatten does
    lin = torch.nn.Linear(3 * 4 * 5, 10)
    t = R.linear_templates(lin.weight, (3, 4, 5))
    assert t.shape == (10, 3, 4, 5)
    k = 7
    wk = lin.weight.detach()[k]
    torch.testing.assert_close(t[k].flatten(), 0.5 + 0.5 * wk / wk.abs().max())


def test_linear_templates_validation():
    with pytest.raises(ValueError, match=r"`image_shape` .* C\*H\*W = 5, got \(1, 2, 2\)"):
        R.linear_templates(torch.randn(3, 5), (1, 2, 2))
    with pytest.raises(
        TypeError, match=r"`image_shape` must be a \(C, H, W\) tuple of ints, got 'a'"
    ):
        R.linear_templates(torch.randn(3, 4), "a")
    with pytest.raises(ValueError, match=r"`weight` .*\(K, C\*H\*W\), got <shape \(3, 4, 1\)>"):
        R.linear_templates(torch.randn(3, 4, 1), (1, 2, 2))


def test_feature_maps():
    a = torch.zeros(3, 2, 2)
    a[0] = torch.tensor([[1.0, 3.0], [5.0, 9.0]])
    a[1] = 7.0  # constant -> 0
    a[2] = torch.tensor([[-2.0, 0.0], [0.0, 2.0]])
    out = R.feature_maps(a)
    assert out.shape == (3, 1, 2, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(out[1, 0], torch.zeros(2, 2))
    torch.testing.assert_close(out[2, 0], torch.tensor([[0.0, 0.5], [0.5, 1.0]]))
    assert R.feature_maps(torch.rand(40, 3, 3)).shape == (32, 1, 3, 3)
    assert R.feature_maps(torch.rand(40, 3, 3), max_channels=5).shape == (5, 1, 3, 3)
    with pytest.raises(
        ValueError, match=r"`activation` .*\(C, H, W\), got <shape \(1, 40, 3, 3\)>"
    ):
        R.feature_maps(torch.rand(1, 40, 3, 3))
    with pytest.raises(ValueError, match="`max_channels` must be an int >= 1, got 0"):
        R.feature_maps(torch.rand(4, 3, 3), max_channels=0)


def test_feature_map_grid_layout():
    g = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 16, 16, generator=g)  # already the tile size: shown as is
    maps = torch.rand(2, 20, 8, 8, generator=g)
    s, p, t, gap = 2, 2, 16, 4
    grid = R.feature_map_grid(images, maps, ncol=8, scale=s, padding=p)
    # per image: the image and 8 maps a row, 3 rows (8 + 8 + 4 maps)
    assert grid.shape == (3, p + 6 * (t + p) + gap, p + 9 * (t + p)) == (3, 114, 164)
    for n in range(2):
        y0 = p + n * (3 * (t + p) + gap)
        expected = R.to_uint8(images[n : n + 1])[0]
        assert torch.equal(grid[:, y0 : y0 + t, p : p + t], expected)
        for j in range(20):
            r, c = divmod(j, 8)
            y, x = y0 + r * (t + p), p + (1 + c) * (t + p)
            gray = _up(R.to_uint8(maps[n, j : j + 1][None])[0], s)
            assert torch.equal(grid[:, y : y + t, x : x + t], gray.expand(3, t, t))
        # the cells below the image and after the last map are empty (white)
        assert int(grid[:, y0 + t + p : y0 + 3 * (t + p), p : p + t].min()) == 255
        y = y0 + 2 * (t + p)
        assert int(grid[:, y : y + t, p + 5 * (t + p) :].min()) == 255
    # ncol shrinks to fit max_width: (100 - 2 - 18) // 18 = 4 maps a row, 5 rows an image
    narrow = R.feature_map_grid(images, maps, ncol=8, scale=s, padding=p, max_width=100)
    assert narrow.shape == (3, p + 10 * (t + p) + gap, p + 5 * (t + p)) == (3, 186, 92)
    # fewer maps than ncol: one row
    assert R.feature_map_grid(images, maps[:, :3], scale=s).shape == (3, 2 + 36 + 4, 2 + 4 * 18)


def test_feature_map_grid_demo_activation_size_and_captions():
    # the demo's last conv: 32 of 64 channels of 8x8 maps, shown 6x (48-px tiles)
    images = torch.rand(2, 3, 32, 32)
    maps = torch.rand(2, 32, 8, 8)
    plain = R.feature_map_grid(images, maps, scale=6)
    assert plain.shape == (3, 2 + 8 * 50 + 12, 2 + 9 * 50) == (3, 414, 452)
    assert plain.shape[2] < 1652  # the old layout: 33 tiles side by side
    images_resized = plain[:, 2:50, 2:50]
    assert images_resized.float().std() > 10  # the 32-px image, resized to 48 px
    caps = R.feature_map_grid(images, maps, scale=6, captions=["circle", "star"])
    band = (caps.shape[1] - plain.shape[1]) // 8  # a caption band under each of the 8 rows
    assert band > 0 and caps.shape[1] == plain.shape[1] + 8 * band
    assert caps.shape[2] == plain.shape[2]
    assert int(caps[:, 50 : 50 + band, 2:50].min()) < 100  # "circle" under the image
    assert int(caps[:, 50 : 50 + band, 52:100].min()) < 100  # "ch0" under the first map


def test_feature_map_grid_validation():
    a = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"`maps` must be maps of 2 images, got <shape \(3,"):
        R.feature_map_grid(a, torch.rand(3, 5, 4, 4))
    with pytest.raises(ValueError, match=r"`maps` .*\(N, M, H, W\), got <shape \(2, 4, 4\)>"):
        R.feature_map_grid(a, torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match=r"`maps` must be in \[0, 1\]"):
        R.feature_map_grid(a, torch.rand(2, 5, 4, 4) + 2)
    with pytest.raises(ValueError, match="`ncol` must be an int >= 1, got 0"):
        R.feature_map_grid(a, torch.rand(2, 5, 4, 4), ncol=0)
    with pytest.raises(ValueError, match=r"`captions` .*\(2 of them\), got <1 strings"):
        R.feature_map_grid(a, torch.rand(2, 5, 4, 4), captions=["a"])


# --------------------------------------------------------------------------- sprites


@pytest.mark.parametrize(
    ("n", "hw", "kwargs", "expected"),
    [
        (1000, (32, 32), {}, (32, 32)),  # small images are never upscaled
        (1000, (512, 512), {"max_thumb": 512}, (256, 256)),  # 32 per side * 256 = 8192
        (10000, (512, 512), {"max_thumb": 512}, (81, 81)),  # 100 per side * 81 = 8100
        (10000, (64, 128), {"max_thumb": 128}, (40, 81)),  # aspect kept
        (1000, (512, 512), {}, (64, 64)),  # max_thumb
    ],
)
def test_sprite_thumb_size(n, hw, kwargs, expected):
    h, w = P.sprite_thumb_size(n, hw, **kwargs)
    assert (h, w) == expected
    assert math.ceil(math.sqrt(n)) * max(h, w) <= 8192


@pytest.mark.parametrize("n", [1000, 10000])
def test_sprite_images_limit(n):
    images = torch.full((1, 1, 32, 32), 0.25).expand(n, 1, 32, 32)
    out = P.sprite_images(images)
    assert out.shape == (n, 1, 32, 32)
    small = P.sprite_images(images, max_sprite_px=1600)
    side = 1600 // math.ceil(math.sqrt(n))
    assert small.shape == (n, 1, min(side, 32), min(side, 32))
    assert math.ceil(math.sqrt(n)) * small.shape[-1] <= 1600
    torch.testing.assert_close(small, torch.full_like(small, 0.25))  # constant stays constant


def test_sprite_images_validation():
    with pytest.raises(
        ValueError, match="`max_sprite_px` must be >= 100 to fit 10000 thumbnails, got 50"
    ):
        P.sprite_images(torch.rand(10000, 1, 4, 4), max_sprite_px=50)
    with pytest.raises(ValueError, match=r"`images` must be in \[0, 1\]"):
        P.sprite_images(torch.rand(4, 3, 8, 8) * 255)
    with pytest.raises(TypeError, match="`max_thumb` must be an int >= 1, got '64'"):
        P.sprite_images(torch.rand(4, 3, 8, 8), max_thumb="64")


# --------------------------------------------------------------------------- figures


def test_line_figure():
    fig = R.line_figure(
        [1.0, 2.0, 4.0],
        {"pgd": [0.9, 0.5, 0.1], "fgsm": [0.9, 0.6, 0.3]},
        xlabel="eps",
        ylabel="accuracy",
        title="robustness",
        xticklabels=["1/255", "2/255", "4/255"],
    )
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 2
    assert [line.get_label() for line in ax.lines] == ["pgd", "fgsm"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.9, 0.6, 0.3])
    assert ax.get_xlabel() == "eps" and ax.get_ylabel() == "accuracy"
    assert ax.get_title() == "robustness"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1/255", "2/255", "4/255"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pgd", "fgsm"]


def test_bar_figure():
    fig = R.bar_figure(
        ["circle", "square", "star"],
        {"shape": [0.5, 0.7, 0.1], "texture": [0.2, 0.1, 0.8]},
        ylabel="fraction",
        title="per class",
    )
    (ax,) = fig.axes
    assert len(ax.patches) == 6
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.5, 0.7, 0.1, 0.2, 0.1, 0.8])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["circle", "square", "star"]
    assert ax.get_ylabel() == "fraction" and ax.get_title() == "per class"


def test_scatter_figure():
    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [3.0, 3.0]])
    labels = torch.tensor([2, 0, 2, 1])
    fig = R.scatter_figure(pts, labels, class_names=["a", "b", "c"], title="tsne")
    (ax,) = fig.axes
    assert len(ax.collections) == 3
    np.testing.assert_allclose(ax.collections[2].get_offsets(), [[0.0, 0.0], [2.0, 0.5]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    assert ax.get_title() == "tsne"
    fig2 = R.scatter_figure(pts, labels)
    assert [t.get_text() for t in fig2.axes[0].get_legend().get_texts()] == ["0", "1", "2"]
    # matplotlib leaves out labels that are empty or start with "_": every class is named
    fig3 = R.scatter_figure(pts, labels, class_names=["_background", "", "c"])
    texts = [t.get_text().strip() for t in fig3.axes[0].get_legend().get_texts()]
    assert texts == ["_background", "", "c"]


def test_figure_to_image():
    fig = R.bar_figure(["a"], {"s": [1.0]})
    img = figure_to_image(fig)
    w, h = fig.get_size_inches() * fig.dpi
    assert img.dtype == torch.uint8 and img.shape == (3, round(h), round(w))
    assert int(img.min()) < 100 and int(img.max()) == 255  # drawn, white background
    with pytest.raises(TypeError, match="`fig` must be a matplotlib.figure.Figure, got <Tensor>"):
        figure_to_image(img)


def test_figures_are_drawn_without_latex_and_leave_the_users_rcparams():
    """A matplotlibrc with ``text.usetex: True`` (no LaTeX here, and our tags'
    underscores are LaTeX markup) failed every figure, which turned AdversarialProbe
    and CorruptionProbe off; ``figure.constrained_layout.use`` made each figure warn
    (an error under ``-W error``). Our figures turn TeX off on their own texts and pick
    their layout engine: the global rcParams are never written (the worker draws while
    the user's thread may plot)."""
    import warnings

    from lightning_viz._runtime.writers._images import figure_pixels

    def drawn():
        x = {"robustness/pgd_acc": [0.9, 0.5, 0.1]}
        figures = [
            R.line_figure([1.0, 2.0, 4.0], x, title="clean_acc % 50"),
            R.bar_figure(["gaussian_noise", "fog"], {"acc_1": [0.5, 0.25]}, title="a_b"),
            R.scatter_figure(torch.tensor([[0.0, 1e5], [1.0, 2e5]]), torch.tensor([0, 1])),
        ]
        return [figure_pixels(f) for f in figures]

    plain = drawn()
    for rc in (
        {"text.usetex": True},
        {"axes.formatter.use_mathtext": True},
        {"figure.constrained_layout.use": True},
        {"figure.autolayout": True},
    ):
        with matplotlib.rc_context(rc), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # an old matplotlib's own deprecations aside,
            theirs = dict(matplotlib.rcParams)  # no word about the layout engine
            for ours, reference in zip(drawn(), plain, strict=True):
                np.testing.assert_array_equal(ours, reference)
            assert dict(matplotlib.rcParams) == theirs
        assert not [str(w.message) for w in caught if "layout" in str(w.message)]
    with matplotlib.rc_context({"font.size": 23.0}):  # the user's other rcParams apply
        assert not np.array_equal(drawn()[0], plain[0])


def test_class_names_with_dollar_signs_are_drawn_as_written():
    """matplotlib reads text between two ``$`` as a formula: a class name "$x^$" failed
    the draw (the background job, so EmbeddingProjector turned itself off) and
    "$\\alpha$" became a Greek letter (H59). Names are drawn as written."""
    from lightning_viz._runtime.writers._images import figure_pixels

    names = ["$x^$", "cost $5-$10", "$\\alpha$"]
    points, labels = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]), torch.arange(3)
    for fig in (
        R.scatter_figure(points, labels, class_names=names, title="$x^$"),
        R.bar_figure(names, {"$x^$": [0.5, 0.25, 0.1]}, title="shape_bias"),
        R.line_figure([1.0, 2.0], {"$x^$": [0.1, 0.2]}, xticklabels=names[:2]),
    ):
        texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        assert any("$x^$" in t for t in texts)  # kept as written (before the draw)
        assert figure_pixels(fig).shape[0] > 0  # no formula parsed: "$x^$" raised


def test_figure_validation():
    with pytest.raises(ValueError, match=r"`series\['pgd'\]` .*\(3 of them\), got \[1, 2\]"):
        R.line_figure([1, 2, 3], {"pgd": [1, 2]})
    with pytest.raises(ValueError, match=r"`x` must be a non-empty list of numbers, got \[\]"):
        R.line_figure([], {"pgd": []})
    with pytest.raises(TypeError, match="`x` must be a non-empty list of numbers, got None"):
        R.line_figure(None, {"pgd": [1]})
    with pytest.raises(ValueError, match=r"`xticklabels` .*\(3 of them\), got <2 strings"):
        R.line_figure([1, 2, 3], {"pgd": [1, 2, 3]}, xticklabels=["a", "b"])
    with pytest.raises(ValueError, match="`series` must be a non-empty dict .* got {}"):
        R.bar_figure(["a"], {})
    with pytest.raises(TypeError, match=r"`series` must be a dict .* got \['s'\]"):
        R.bar_figure(["a"], ["s"])
    with pytest.raises(
        TypeError, match=r"`series\['s'\]` must be a non-empty list of numbers .* got \['x'\]"
    ):
        R.bar_figure(["a"], {"s": ["x"]})
    with pytest.raises(
        ValueError, match=r"`categories` must be a non-empty list of strings, got \[\]"
    ):
        R.bar_figure([], {"s": []})
    with pytest.raises(TypeError, match="`categories` must be a list of strings, got 'ab'"):
        R.bar_figure("ab", {"s": [1, 2]})
    with pytest.raises(ValueError, match=r"`points` .* size 2, got <shape \(3, 3\)>"):
        R.scatter_figure(torch.rand(3, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`labels` must be of shape \(2,\), got <shape \(3,\)>"):
        R.scatter_figure(torch.rand(2, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(
        TypeError, match="`labels` must be an integer tensor .* got <dtype torch.float32>"
    ):
        R.scatter_figure(torch.rand(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"`class_names` .* label in \[0, 4\], got \['a', 'b'\]"):
        R.scatter_figure(torch.rand(2, 2), torch.tensor([0, 4]), class_names=["a", "b"])


def test_no_pyplot_state_and_backend_untouched():
    # a user's non-Agg backend stays selected, and no pyplot figure is created
    code = (
        "import matplotlib; b = matplotlib.get_backend();"
        "import torch; from lightning_viz import render as R;"
        "from tests.render._figures import figure_to_image;"
        "img = figure_to_image(R.scatter_figure(torch.rand(5, 2), torch.arange(5)));"
        "figure_to_image(R.line_figure([1, 2], {'a': [1, 2]}));"
        "import matplotlib.pyplot as plt;"
        "assert plt.get_fignums() == [], plt.get_fignums();"
        "assert matplotlib.get_backend() == b == 'svg', (b, matplotlib.get_backend());"
        "assert img.shape[0] == 3; print('ok')"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_tiles_wider_than_max_tile_are_shrunk_with_their_aspect():
    # a 224 x 112 (W x H) photo-sized image: half white on the left, black on the right
    images = torch.zeros(3, 3, 112, 224)
    images[..., :112] = 1.0
    grid = R.image_grid(images, nrow=3, padding=2)  # default max_tile=128
    assert grid.shape == (3, 2 + 64 + 2, 2 + 3 * (128 + 2))
    tile = grid[:, 2 : 2 + 64, 2 : 2 + 128].float()
    assert tile[:, :, :60].min() == 255 and tile[:, :, 68:].max() == 0  # the halves stay
    kept = R.image_grid(images, nrow=3, padding=2, max_tile=None)
    assert kept.shape == (3, 2 + 112 + 2, 2 + 3 * (224 + 2))
    # small images are still upscaled by `scale`, up to max_tile
    assert R.image_grid(torch.zeros(1, 3, 32, 32), scale=4, padding=0).shape[-1] == 128
    assert R.image_grid(torch.zeros(1, 3, 32, 32), scale=5, padding=0).shape[-1] == 128
    with pytest.raises(ValueError, match="max_tile"):
        R.image_grid(images, max_tile=0)


def test_rows_and_feature_maps_shrink_wide_tiles_too():
    images = torch.rand(2, 3, 224, 224)
    maps = torch.rand(2, 224, 224)
    grid = R.rows_grid([images, maps.unsqueeze(1)], padding=2)  # no labels, no captions
    assert grid.shape == (3, 2 + 2 * (128 + 2), 2 + 2 * (128 + 2))
    fm = R.feature_map_grid(images, torch.rand(2, 3, 224, 224), padding=2)
    assert fm.shape[-1] == 2 + 4 * (128 + 2)  # the image, then 3 maps, 128 px each
    assert R.feature_map_grid(images, torch.rand(2, 3, 56, 56), padding=2).shape[-1] == (
        2 + 4 * (56 + 2)  # narrow maps keep their size
    )


def test_every_grid_checks_its_options_alike():
    images = torch.rand(2, 3, 8, 8)
    grids = {
        "image_grid": lambda **kw: R.image_grid(images, **kw),
        "rows_grid": lambda **kw: R.rows_grid([images], **kw),
        "feature_map_grid": lambda **kw: R.feature_map_grid(images, torch.rand(2, 3, 8, 8), **kw),
    }
    for name, grid in grids.items():
        with pytest.raises(TypeError, match="pad_value"):
            grid(pad_value="white")
        for option in ("scale", "max_width", "max_tile"):
            with pytest.raises(ValueError, match=option):
                grid(**{option: 0})
        with pytest.raises(ValueError, match="padding"):
            grid(padding=-1)
        assert grid().dtype == torch.uint8, name


def test_pictures_of_other_channel_counts_show_rgb_or_the_mean():
    from lightning_viz.render.maps import shown_channels

    four = torch.rand(3, 4, 8, 8)
    assert torch.equal(R.image_grid(four), R.image_grid(four[:, :3]))
    two = torch.rand(3, 2, 8, 8)
    assert torch.equal(R.image_grid(two), R.image_grid(two.mean(1, keepdim=True)))
    maps = torch.rand(3, 1, 8, 8)
    assert torch.equal(R.overlay(four, maps), R.overlay(four[:, :3], maps))
    u8 = torch.tensor([[[[10]], [[13]]]], dtype=torch.uint8)  # (1, 2, 1, 1)
    assert shown_channels(u8).dtype == torch.uint8 and int(shown_channels(u8)) == 12
    gray, rgb = torch.rand(1, 1, 2, 2), torch.rand(1, 3, 2, 2)
    assert shown_channels(gray) is gray and shown_channels(rgb) is rgb


def test_bar_figure_tilts_names_wider_than_their_slot():
    """Five 18-character class names were drawn level and ran into each other."""
    values = {"shape bias": [0.5] * 5}
    long_names = [f"n0144{i}764 tench,.." for i in range(5)]
    tilted = R.bar_figure(long_names, values).axes[0].get_xticklabels()
    assert {t.get_rotation() for t in tilted} == {45.0}
    level = R.bar_figure(["cat", "dog", "ship", "car", "star"], values).axes[0].get_xticklabels()
    assert {t.get_rotation() for t in level} == {0.0}


def test_scatter_figure_of_100_classes_has_distinct_colors_and_no_legend():
    """Its legend ran off the figure over the points, and tab20 repeated every 20."""
    torch.manual_seed(0)
    fig = R.scatter_figure(torch.rand(200, 2), torch.arange(200) % 100, title="pca")
    ax = fig.axes[0]
    colors = {tuple(c.get_facecolor()[0]) for c in ax.collections}
    assert len(ax.collections) == 100 and len(colors) == 100
    assert ax.get_legend() is None and ax.get_title() == "pca (100 classes, colors only)"
    few = R.scatter_figure(torch.rand(6, 2), torch.arange(6) % 3).axes[0]
    assert [t.get_text() for t in few.get_legend().get_texts()] == ["0", "1", "2"]


def test_a_constant_map_is_drawn_as_no_pixel_standing_out():
    """A constant Grad-CAM map (0.3 everywhere) was scaled to 1 everywhere: an overlay
    of solid red, read as "everything matters"."""
    maps = torch.stack([torch.full((1, 4, 4), 0.3), torch.zeros(1, 4, 4), torch.rand(1, 4, 4)])
    out = R.normalize_maps(maps, percentile=100)
    assert torch.equal(out[0], torch.zeros(1, 4, 4)) and torch.equal(out[1], torch.zeros(1, 4, 4))
    assert float(out[2].max()) == 1.0  # a map with structure is scaled as before


def test_rows_of_224_px_images_keep_their_samples_in_one_block():
    """The label column was 2.5 tile widths (320 px at 128-px tiles): six samples of
    224-px images went into two blocks of three."""
    rows = [torch.rand(6, 3, 128, 128) for _ in range(3)]
    labels = ["image", "perturbation (amplified)", "adversarial"]
    grid = R.rows_grid(rows, captions=[f"cat / dog {i}" for i in range(6)], row_labels=labels)
    assert grid.shape[2] <= 1000 and grid.shape[1] < 2 * 3 * 128  # one block of 3 rows


def test_row_labels_of_very_wide_short_images_stay_in_their_rows():
    """16x128 images make 8-px tiles, shorter than a label's line: the three labels were
    drawn over one another. A row is now at least one line tall."""
    from lightning_viz.render.grids import rows_grid

    rows = [torch.full((2, 3, 16, 128), 0.5) for _ in range(3)]
    grid = rows_grid(rows, row_labels=["true / pred", "map", "overlay"]).permute(1, 2, 0).numpy()
    tiles = (grid == 128).all(-1)  # the grey tiles
    left = int(np.nonzero(tiles.any(0))[0][0])  # first tile column
    tops = [y for y in range(grid.shape[0]) if tiles[y, left] and not tiles[y - 1, left]]
    assert len(tops) == 3
    ink = np.nonzero((grid[:, :left] < 60).all(-1).any(1))[0]  # rows with label text
    runs = np.split(ink, np.nonzero(np.diff(ink) > 1)[0] + 1)  # one block of lines per label
    assert len(runs) == 3
    for r, run in enumerate(runs):  # each label between its tile's top and the next one's
        assert tops[r] <= run[0] and (r == 2 or run[-1] < tops[r + 1]), (r, run, tops)


def test_line_figure_styles_legend_beside_and_crowded_ticks_spread():
    """H47: the union of the attacks ("worst") was drawn over the strongest attack's
    line in the same style (the pgd line in the legend was nowhere to be seen), the
    legend sat over the curves, and eps labels 0/255 1/255 2/255 overlapped on a sweep
    to 16/255."""
    xs = [0.0, 1 / 255, 2 / 255, 4 / 255, 16 / 255]
    labels = ["0", "1/255", "2/255", "4/255", "16/255"]
    pgd = [0.9, 0.7, 0.5, 0.3, 0.1]
    fig = R.line_figure(
        xs,
        {"pgd": pgd, "worst": pgd},
        xticklabels=labels,
        styles={"worst": {"color": "black", "linestyle": "--", "marker": ""}},
    )
    ax = fig.axes[0]
    pgd_line, worst = ax.lines
    assert worst.get_linestyle() == "--" and worst.get_color() == "black"
    assert worst.get_marker() in ("", "None", None) and pgd_line.get_marker() == "o"
    np.testing.assert_allclose(pgd_line.get_xdata(), [0, 1, 2, 3, 4])  # evenly, each at its label
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, not over the curves
    spread = R.line_figure(
        [0.0, 2 / 255, 8 / 255], {"a": [1.0, 0.5, 0.2]}, xticklabels=["0", "2", "8"]
    )
    np.testing.assert_allclose(spread.axes[0].lines[0].get_xdata(), [0.0, 2 / 255, 8 / 255])
    # crowded labels on values already evenly spaced: the slopes are to scale, no note
    even = R.line_figure(
        list(range(11)), {"a": [1.0] * 11}, xticklabels=[f"{i}/255 long" for i in range(11)]
    )
    assert even.axes[0].get_xlabel() == ""
    assert ax.get_xlabel() == "(evenly spaced)"  # the uneven sweep above was placed evenly
    # H56: "already even" is judged relative to the gaps (not np.allclose's 1e-8)
    tiny = R.line_figure(
        [0.0, 1e-9, 2e-9, 1e-8], {"a": [1.0] * 4}, xticklabels=["0", "1e-09", "2e-09", "1e-08"]
    )
    assert tiny.axes[0].get_xlabel() == "(evenly spaced)"
    with pytest.raises(TypeError, match="styles"):
        R.line_figure([0.0, 1.0], {"a": [1.0, 0.5]}, styles={"a": "dashed"})


def test_bar_figure_wraps_a_long_series_name_in_its_legend_as_line_figure_does():
    """H50: a 41-character series name squeezed the bars to a third of the figure and
    the category labels ran together ("contrastsnowfallpixelate")."""
    name = "robust accuracy under the strongest attack"
    fig = R.bar_figure(["contrast", "snow", "fog", "pixelate", "jpeg"], {name: [0.5] * 5})
    (text,) = fig.axes[0].get_legend().get_texts()
    assert text.get_text().replace("\n", " ") == name
    assert max(len(line) for line in text.get_text().split("\n")) <= 22
    fig.canvas.draw()
    assert fig.axes[0].get_position().width > 0.55  # the axes keep most of the figure


def test_a_long_title_and_axis_label_stay_inside_every_figure():
    """H64: TextureShapeBias's per-class title with "(none by shape or texture yet: no
    shape bias)" ran past both sides of its 6-in figure (TensorBoard showed "ct decisions
    per shape class (none by ..."), and a long y label past the top and bottom."""
    title = "cue-conflict decisions per shape class (none by shape or texture yet: no shape bias)"
    ylabel = "fraction (shape bias: 95 % Wilson interval of the shape decisions)"
    figures = [
        R.bar_figure(["0", "3", "4", "7"], {"shape bias": [0.5] * 4}, ylabel=ylabel, title=title),
        R.line_figure([1, 2, 3], {"accuracy": [0.5, 0.4, 0.3]}, ylabel=ylabel, title=title),
        R.scatter_figure(
            torch.randn(30, 2, generator=torch.Generator().manual_seed(0)),
            torch.arange(30) % 3,
            title=title,
        ),
    ]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for fig in figures:
        canvas = FigureCanvasAgg(fig)  # as the figures are drawn to pixels
        canvas.draw()
        ax = fig.axes[0]
        for text in (ax.title, ax.yaxis.label):
            box = text.get_window_extent(canvas.get_renderer())
            assert box.x0 >= -1 and box.x1 <= fig.bbox.x1 + 1, (text.get_text(), box)
            assert box.y0 >= -1 and box.y1 <= fig.bbox.y1 + 1, (text.get_text(), box)
        assert ax.title.get_text().replace("\n", " ") == title
    own = R.line_figure([1, 2], {"a": [0.5, 0.4]}, title="robust accuracy\n(ResNet-18)")
    assert own.axes[0].get_title() == "robust accuracy\n(ResNet-18)"  # H67: its breaks kept


def test_adversarial_probes_curve_draws_the_union_dashed_over_the_attacks():
    from lightning_viz.callbacks.robustness import AdversarialProbe
    from lightning_viz.monitoring.record import make_record

    probe = AdversarialProbe(attacks=("fgsm", "pgd"), eps=(2 / 255, 8 / 255))

    def rec(k):
        return make_record(0, 0, n=100, successes=k)

    results = {
        "fgsm": {2 / 255: rec(60), 8 / 255: rec(40)},
        "pgd": {2 / 255: rec(50), 8 / 255: rec(10)},
        "worst": {2 / 255: rec(50), 8 / 255: rec(10)},
    }
    ax = probe._curve(results, rec(90)).axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert lines["worst"].get_linestyle() == "--" and lines["pgd"].get_linestyle() == "-"
    assert lines["worst"].get_zorder() > lines["pgd"].get_zorder()


@pytest.mark.parametrize(
    ("width", "target", "scale"),
    [(32, 64, 2), (28, 64, 2), (64, 64, 1), (100, 64, 1), (8, 64, 8), (5, 48, 9)],
)
def test_display_scale_is_the_largest_integer_that_keeps_the_tile_within_target(
    width, target, scale
):
    """A 32-px probe image is drawn at 64 px (scale 2), not 96: the widths every view's
    grid has (and test_image_widths' limits) follow from it."""
    assert R.display_scale(width, target=target) == scale
    assert R.display_scale(torch.rand(1, 3, 7, width), target=target) == scale


def test_scatter_legend_names_the_classes_present_by_their_index():
    """Labels {0, 2, 4} with five names: the legend reads the names of classes 0, 2 and 4
    (an embedding probe often holds a subset of the classes)."""
    points = torch.rand(6, 2)
    labels = torch.tensor([0, 0, 2, 2, 4, 4])
    fig = R.scatter_figure(points, labels, class_names=["a", "b", "c", "d", "e"])
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a", "c", "e"]


def test_line_figure_bands_span_each_interval():
    """The Wilson band of a series covers [low, high] at each x (not a zero-height band)."""
    fig = R.line_figure(
        [0, 1, 2], {"acc": [0.5, 0.6, 0.7]}, intervals={"acc": [(0.4, 0.6), (0.5, 0.7), (0.6, 0.8)]}
    )
    (band,) = fig.axes[0].collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(0.4) and ys.max() == pytest.approx(0.8)


def test_a_tile_narrower_than_a_letter_clips_the_word_instead_of_dropping_letters():
    """H48: on 8-px tiles "mouse" was drawn "ouse" (each letter its own line, the wide
    ones clipped to nothing)."""
    font = G._font(10)
    narrow = int(G._text_width(font, "m")) - 1
    assert all(line.endswith("..") or line == "" for line in G._wrap("mouse", font, narrow, 9))
    assert len(G._wrap("mouse", font, narrow, 9)) == 1


def test_eps_labels_closer_than_their_width_are_placed_evenly():
    """H48: a sweep 1/255 ... 12/255 kept its linear axis and "1/255" overlapped "2/255"."""
    xs = [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 12 / 255]
    labels = ["0/255", "1/255", "2/255", "4/255", "8/255", "12/255"]
    fig = R.line_figure(xs, {"a": [0.9, 0.8, 0.7, 0.5, 0.3, 0.2]}, xticklabels=labels)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), range(6))


def test_neighbouring_captions_are_a_space_apart():
    """H49: on 128-px tiles two captions filled to the last pixel were 6 px apart, less
    than a space (9 px): "golden_r" beside "cat /" read "golden_rcat /"."""
    images = torch.full((2, 3, 128, 128), 0.5)
    grid = R.image_grid(images, captions=["WWWWWWWWWWWW"] * 2, max_tile=128)
    band = grid[:, 2 + 128 :, :].float().mean(0)  # below the tiles
    ink = (band < 128).any(dim=0).nonzero().flatten().tolist()
    first_end = max(c for c in ink if c < 2 + 128 + 1)
    second_start = min(c for c in ink if c > 2 + 128)
    font = G._font(G._font_size(128))
    assert second_start - first_end - 1 >= math.ceil(G._text_width(font, " "))


def test_a_feature_map_rows_caption_band_is_as_tall_as_its_own_names():
    """H49: every row of maps had a band as tall as the image's caption (five lines for
    "ch8"), 60 % of the picture white."""
    images, maps = torch.rand(1, 3, 8, 8), torch.rand(1, 16, 8, 8)
    short = R.feature_map_grid(images, maps, ncol=8, captions=["a"], scale=8)
    tall = R.feature_map_grid(images, maps, ncol=8, captions=["a\nb\nc\nd"], scale=8)
    line = G._line_height(G._font(G._font_size(64)))
    assert tall.shape[1] - short.shape[1] == 3 * line  # the image's row only, not both


def test_crowded_labels_tilt_and_long_legend_names_wrap():
    """H49: five corruption names ran into each other under the bars, eleven eps labels
    placed evenly still overlapped, and a 40-character series name squeezed the axes to
    a third of the figure."""
    names = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur"]
    bars = R.bar_figure(names, {"acc": [0.5] * 5})
    assert all(t.get_rotation() == 45 for t in bars.axes[0].get_xticklabels())
    eps = [i / 255 for i in range(11)]
    line = R.line_figure(eps, {"a": [0.5] * 11}, xticklabels=[f"{i}/255" for i in range(11)])
    assert all(t.get_rotation() == 45 for t in line.axes[0].get_xticklabels())
    assert line.axes[0].get_xlabel() == ""  # evenly spaced already: to scale, no note (H50)
    few = R.line_figure([0, 2 / 255, 8 / 255], {"a": [1, 0.5, 0.2]}, xticklabels=["0", "2", "8"])
    assert all(t.get_rotation() == 0 for t in few.axes[0].get_xticklabels())
    assert few.axes[0].get_xlabel() == ""
    long = "pgd_linf_steps_40_random_start_restarts_5"
    fig = R.line_figure([0.0, 1.0], {long: [1.0, 0.5]})
    (text,) = fig.axes[0].get_legend().get_texts()
    assert "\n" in text.get_text() and text.get_text().replace("\n", "") == long
