"""Pins from a mutation round on the renderer and the projector writer: each test fails
on a one-line change that alters a picture the user sees and that no other test caught."""

from __future__ import annotations

import io
import os
import re

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer
from PIL import Image, ImageDraw

from lightning_viz import render as R
from lightning_viz._runtime import projector as P
from lightning_viz.render import grids as G


def _left_bearing(font, text: str) -> int:
    """The first inked column of ``text`` drawn at x = 0 as the grids draw it."""
    canvas = Image.new("L", (64, 64), 255)
    draw = ImageDraw.Draw(canvas)
    draw.fontmode = "1"
    draw.text((0, 0), text, fill=0, font=font)
    return int((np.array(canvas) == 0).nonzero()[1].min())


def _jet(values: list[float]) -> torch.Tensor:
    """``(3, len(values))``: matplotlib's jet colors of ``values``."""
    rgba = matplotlib.colormaps["jet"](values)
    return torch.tensor(rgba[:, :3], dtype=torch.float32).T


def test_an_upsampled_map_is_registered_on_pixel_centres_not_corners():
    # a 1x2 map upsampled to 1x4 with pixel-centre sampling (align_corners=False) is
    # 0, 1/4, 3/4, 1; corner alignment (1/3, 2/3) would shift a CAM's cells on the image
    maps = torch.tensor([[[[0.0, 1.0]]]])
    out = R.overlay(torch.zeros(1, 3, 1, 4), maps, alpha=1.0)
    torch.testing.assert_close(out[0, :, 0], _jet([0.0, 0.25, 0.75, 1.0]))


def test_a_caption_exactly_as_wide_as_its_room_stays_on_one_line_unclipped():
    font = G._font(13)
    text = "deer star"
    width = G._text_width(font, text)
    if width != int(width):  # the pin needs a text of a whole number of pixels
        pytest.skip(f"{text!r} is {width} px wide in this font")
    assert G._fit(text, font, int(width)) == text
    assert G._wrap(text, font, int(width), 6) == [text]
    assert G._wrap(text, font, int(width) - 1, 6) == ["deer", "star"]


def test_as_many_paragraphs_as_lines_are_all_shown_without_dots():
    # a one-line row label (rh // line_h == 1) and a caption of exactly max_lines
    # paragraphs were drawn with a ".." although nothing was cut
    font = G._font(13)
    assert G._wrap("conv1", font, 100, 1) == ["conv1"]
    assert G._wrap("a\nb", font, 100, 2) == ["a", "b"]
    assert G._wrap("a\nb\nc", font, 100, 2) == ["a", "b.."]


def test_the_widest_row_label_fits_its_column_on_one_line():
    font = G._font(G._font_size(64))
    for label in ["saliency", "guided_gradcam", "overlay"]:
        width = G._label_width(["x", label], font, 64)
        room = width - 2 * G._CAPTION_MARGIN  # as _compose wraps it
        assert G._wrap(label, font, room, 1) == [label]


def test_a_long_row_label_column_is_capped_at_two_and_a_half_tiles():
    font = G._font(G._font_size(64))  # 13 px: the 8-letter floor is 104 px
    assert G._label_width(["a very long row label " * 5], font, 64) == 160  # 2.5 * 64
    font = G._font(G._font_size(100))  # 20 px
    assert G._label_width(["a very long row label " * 5], font, 100) == 200  # at most 200
    font = G._font(G._font_size(32))  # 10 px: 2.5 tiles (80) < 8 letters (80)
    assert G._label_width(["a very long row label " * 5], font, 32) == 80


def test_a_grid_is_never_wider_than_max_width_by_its_padding():
    images = torch.zeros(4, 1, 10, 10)  # tiles 10 px, padding 2: k columns are 2 + 12k px
    assert R.image_grid(images, max_width=38).shape[-1] == 38  # 3 columns fit exactly
    assert R.image_grid(images, max_width=37).shape[-1] == 26  # 3 would be 38 > 37: 2
    assert R.rows_grid([images], max_width=37).shape[-1] == 26


def test_the_caption_band_is_its_lines_and_a_margin_above_and_below():
    images = torch.stack([torch.full((1, 10, 10), 0.2), torch.full((1, 10, 10), 0.6)])
    grid = R.image_grid(images, nrow=1, captions=["a", "b"])
    line_h = G._line_height(G._font(G._font_size(10)))
    band = line_h + 2 * 2  # one line, 2 px of white above and below it
    top = 2 + 10 + band + 2  # second row: padding, tile, band, padding
    assert grid.shape == (3, top + 10 + band + 2, 14)
    assert grid[0, top - 1, 2:12].tolist() == [255] * 10  # the padding above the tile
    assert grid[0, top : top + 10, 2:12].unique().tolist() == [round(0.6 * 255)]
    assert grid[0, 2:12, 2:12].unique().tolist() == [round(0.2 * 255)]


def test_a_pad_value_outside_the_unit_range_is_clamped_to_white_or_black():
    images = torch.full((1, 1, 2, 2), 0.5)
    assert R.image_grid(images, pad_value=2.0)[:, 0].unique().tolist() == [255]
    assert R.image_grid(images, pad_value=-1.0)[:, 0].unique().tolist() == [0]


def test_a_row_label_is_centred_in_its_row_and_a_margin_from_the_left():
    grid = R.rows_grid([torch.ones(1, 1, 64, 64)], row_labels=["H"])
    font = G._font(G._font_size(64))
    line_h = G._line_height(font)
    label_w = G._label_width(["H"], font, 64)
    ink = (grid[0, :, 2 : 2 + label_w] == 0).nonzero()  # black text in the label column
    top = 2 + (64 - line_h) // 2  # padding, then the line centred in the 64-px row
    assert len(ink) > 0
    assert top <= int(ink[:, 0].min()) and int(ink[:, 0].max()) < top + line_h
    assert int(ink[:, 1].min()) == 2 + _left_bearing(font, "H")  # 2 px inside its column


def test_a_caption_starts_one_pixel_inside_its_tile():
    grid = R.image_grid(torch.ones(2, 1, 64, 64), captions=["H", "H"])
    font = G._font(G._font_size(64))
    band = grid[0, 2 + 64 :, :]  # below the tiles
    first = (band[:, : 2 + 64] == 0).nonzero()[:, 1]  # the first caption's ink columns
    assert int(first.min()) == 2 + 1 + _left_bearing(font, "H")


def test_an_upscaling_to_exactly_max_tile_stays_nearest_neighbour():
    # 4-px-wide images at scale 32 are exactly the 128-px max_tile: pixel blocks, not a blur
    images = torch.tensor([[[[0.0, 1.0, 0.0, 1.0]]]])
    grid = R.image_grid(images, scale=32, padding=0)
    assert grid.shape == (3, 32, 128)
    row = grid[0, 0]
    for i, value in enumerate([0, 255, 0, 255]):
        assert row[32 * i : 32 * (i + 1)].tolist() == [value] * 32


def test_a_shrunk_tile_keeps_its_aspect_rounded_to_the_nearest_pixel():
    assert R.image_grid(torch.zeros(1, 1, 3, 200), padding=0).shape == (3, 2, 128)  # 1.92
    assert R.image_grid(torch.zeros(1, 1, 70, 256), padding=0).shape == (3, 35, 128)


def test_a_table_with_row_labels_stays_within_max_width():
    rows = [torch.zeros(6, 1, 10, 10), torch.ones(6, 1, 10, 10)]
    # 6 tiles of 10 px and padding 2 are 74 px without labels; the labels need more
    grid = R.rows_grid(rows, row_labels=["ab", "cd"], max_width=74)
    assert grid.shape[-1] <= 74
    label_w = G._label_width(["ab", "cd"], G._font(G._font_size(10)), 10)
    assert (74 - 2 - label_w) // 12 == 4  # 4 columns fit: two balanced blocks of 3
    assert grid.shape[-1] == 2 + label_w + 3 * 12


def test_an_image_of_another_aspect_than_its_maps_is_resized_to_the_tile():
    images = torch.zeros(1, 1, 4, 8)  # 2x the maps' height but 1x their width
    images[..., 4:] = 1.0  # right half white
    grid = R.feature_map_grid(images, torch.zeros(1, 2, 8, 8), padding=0)
    assert grid.shape == (3, 8, 3 * 8)  # the image, then two maps
    image = grid[0, :, :8]
    assert image[:, 0].tolist() == [0] * 8 and image[:, 7].tolist() == [255] * 8


def test_each_feature_map_is_captioned_with_its_own_channel_index():
    grid = R.feature_map_grid(
        torch.ones(1, 1, 64, 64), torch.ones(1, 3, 64, 64), captions=["img"], max_width=None
    )
    band = slice(2 + 64, grid.shape[1] - 2)  # one row: the band under the tiles
    for j in range(3):
        alone = R.image_grid(torch.ones(1, 1, 64, 64), captions=[f"ch{j}"])
        x = 2 + (j + 1) * (64 + 2)  # map j is in column j + 1, after the image
        assert torch.equal(grid[:, band, x : x + 64], alone[:, band, 2 : 2 + 64]), j


def test_unsorted_values_placed_evenly_go_to_their_rank_with_their_label():
    xs = [4 / 255, 1 / 255, 2 / 255, 12 / 255]
    labels = ["4/255", "1/255", "2/255", "12/255"]
    fig = R.line_figure(xs, {"a": [0.5, 0.8, 0.7, 0.2]}, xticklabels=labels)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [2, 0, 1, 3])  # each value's rank
    names = [t.get_text() for t in ax.get_xticklabels()]
    ticks = dict(zip(ax.get_xticks().tolist(), names, strict=True))
    assert ticks == {0.0: "1/255", 1.0: "2/255", 2.0: "4/255", 3.0: "12/255"}


def test_an_asymmetric_interval_is_drawn_from_its_low_to_its_high_end():
    fig = R.bar_figure(["a", "b"], {"s": [0.5, 0.2]}, intervals={"s": [(0.4, 0.8), (0.1, 0.25)]})
    (errorbar,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    segments = errorbar.lines[2][0].get_segments()
    spans = [sorted(float(y) for y in seg[:, 1]) for seg in segments]
    np.testing.assert_allclose(spans, [[0.4, 0.8], [0.1, 0.25]])


def test_each_group_of_bars_is_centred_on_its_category():
    fig = R.bar_figure(["a", "b"], {"s": [1.0, 2.0], "t": [3.0, 4.0]})
    patches = fig.axes[0].patches  # series s, then t: 0.4 wide, 0.8 a group
    centres = [p.get_x() + p.get_width() / 2 for p in patches]
    np.testing.assert_allclose(centres, [-0.2, 0.8, 0.2, 1.2])
    np.testing.assert_allclose([p.get_width() for p in patches], [0.4] * 4)


def _scatter(k: int):
    labels = torch.arange(k).repeat_interleave(2)
    points = torch.rand(2 * k, 2, generator=torch.Generator().manual_seed(0))
    return R.scatter_figure(points, labels).axes[0]


def test_ten_classes_take_tab10_and_twenty_keep_their_legend():
    ax = _scatter(10)
    tab10 = matplotlib.colormaps["tab10"]
    for j, collection in enumerate(ax.collections):  # tab20's pairs would be alike
        np.testing.assert_allclose(collection.get_facecolor()[0], tab10(j))
    ax = _scatter(20)
    assert len(ax.get_legend().get_texts()) == 20
    ax = _scatter(21)  # over 20: colors along turbo, its two ends included, and no legend
    assert ax.get_legend() is None
    turbo = matplotlib.colormaps["turbo"]
    np.testing.assert_allclose(ax.collections[0].get_facecolor()[0], turbo(0.0))
    np.testing.assert_allclose(ax.collections[-1].get_facecolor()[0], turbo(1.0))


def test_a_multi_hot_rows_prediction_is_correct_only_when_it_is_one_of_its_labels():
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    rows = P.metadata_rows(labels, torch.tensor([1, 1, 0]), 3, None)
    assert rows == [["0+2", "1", "false"], ["1", "1", "true"], ["-", "0", "false"]]


def test_a_tab_or_line_break_in_a_class_name_is_one_space_in_its_metadata_cell():
    names = ["tab\there", "new\nline", "crlf\r\nname"]
    rows = P.metadata_rows(torch.tensor([0, 1]), torch.tensor([2, 1]), 2, names)
    assert rows == [["tab here", "crlf name", "false"], ["new line", "new line", "true"]]


def _decoded(png: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(png)).convert("RGB"))


def test_the_sprite_lays_thumbnails_row_major_upright_and_black_where_empty():
    # the projector shows sample i at row i // 2, column i % 2 of a 2x2 sprite: a
    # transposed layout would give each point another sample's picture
    thumbs = torch.tensor([[[[1, 2], [3, 4]]], [[[5, 6], [7, 8]]], [[[9, 10], [11, 12]]]])
    sprite = _decoded(P.sprite_png(thumbs.to(torch.uint8)))
    expected = [[1, 2, 5, 6], [3, 4, 7, 8], [9, 10, 0, 0], [11, 12, 0, 0]]
    assert sprite.shape == (4, 4, 3)
    for c in range(3):
        assert sprite[..., c].tolist() == expected


def test_float_thumbnails_are_rounded_to_the_nearest_level():
    thumbs = P.square_thumbnails(torch.full((1, 1, 2, 2), 0.5), 2)
    assert thumbs.unique().tolist() == [128]  # 127.5 rounds up, not down to 127


def test_projector_tensors_are_written_with_three_significant_digits(tmp_path):
    features = torch.tensor([[1.23456, -0.000123456, 12345.6]])
    thumbs = torch.zeros(1, 1, 2, 2, dtype=torch.uint8)
    folder = P.write_embedding(str(tmp_path), "emb", 0, features, [["a"]], ["x"], thumbs)
    with open(os.path.join(folder, "tensors.tsv")) as f:
        assert f.read() == "1.23\t-0.000123\t1.23e+04\n"


def test_a_sprite_of_other_thumbnails_is_a_new_file_not_the_first_ones(tmp_path):
    # the same first thumbnail, another second one: the projector must show the new ones
    first = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    second = first.clone()
    second[1] = 200
    features = torch.rand(2, 3)
    for step, thumbs in ((0, first), (1, second)):
        P.write_embedding(str(tmp_path), "emb", step, features, [["a"], ["b"]], ["x"], thumbs)
    with open(os.path.join(tmp_path, "projector_config.pbtxt")) as f:
        paths = sorted(set(re.findall(r'image_path: "([^"]+)"', f.read())))
    assert len(paths) == 2
    shown = []
    for path in paths:
        with open(os.path.join(tmp_path, path), "rb") as f:
            shown.append(_decoded(f.read())[:2, 2:, 0])  # the second thumbnail
    assert sorted(int(s.max()) for s in shown) == [0, 200]


def test_a_step_written_again_replaces_its_entry_instead_of_listing_it_twice(tmp_path):
    # trainer.validate() after fit, or a resumed run, writes the last step again
    thumbs = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    for step in (0, 5, 5):
        P.write_embedding(
            str(tmp_path), "emb", step, torch.rand(2, 3), [["a"], ["b"]], ["x"], thumbs
        )
    with open(os.path.join(tmp_path, "projector_config.pbtxt")) as f:
        names = re.findall(r'tensor_name: "([^"]+)"', f.read())
    assert names == ["emb:00000", "emb:00005", "emb (latest, step 5)"]
