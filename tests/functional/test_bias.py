"""Tests for lightning_viz.functional.bias: shape-bias counts and cue-removing transforms."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_viz.functional.bias import (
    per_class_shape_bias,
    shape_bias,
    shape_only,
    texture_only,
)

# A hand-made table: (prediction, shape label, texture label) -> decision
TABLE = [
    (0, 0, 1),  # shape
    (1, 0, 1),  # texture
    (2, 0, 1),  # miss
    (2, 2, 2),  # same class: excluded
    (1, 1, 2),  # shape
    (2, 1, 2),  # texture
    (3, 3, 2),  # shape
    (3, 3, 0),  # shape
    (0, 0, 0),  # same class: excluded
    (3, 2, 1),  # miss
]
PRED = torch.tensor([r[0] for r in TABLE])
SHAPE = torch.tensor([r[1] for r in TABLE])
TEXTURE = torch.tensor([r[2] for r in TABLE])


def _logits(pred: torch.Tensor, k: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(pred.numel(), k, generator=g) * 0.5
    return noise + 2.0 * torch.nn.functional.one_hot(pred, k).float()


def test_shape_bias_equals_the_formula_on_a_hand_table():
    out = shape_bias(PRED, SHAPE, TEXTURE)
    # 8 counted images (2 same-class excluded): 4 shape, 2 texture, 2 misses
    assert out == {
        "shape_bias": 4 / 6,
        "shape_acc": 4 / 8,
        "texture_acc": 2 / 8,
        "n_decisions": 6.0,
        "n_images": 8.0,
    }
    assert all(type(v) is float for v in out.values())


def test_shape_bias_logits_same_as_indices():
    assert shape_bias(_logits(PRED), SHAPE, TEXTURE) == shape_bias(PRED, SHAPE, TEXTURE)


def test_shape_bias_extremes_and_nan():
    s = torch.tensor([0, 1, 2])
    t = torch.tensor([1, 2, 0])
    assert shape_bias(s, s, t)["shape_bias"] == 1.0
    assert shape_bias(t, s, t)["shape_bias"] == 0.0
    misses = shape_bias(torch.tensor([2, 0, 1]), s, t)
    assert math.isnan(misses["shape_bias"])
    assert misses["shape_acc"] == 0.0 and misses["n_decisions"] == 0.0
    same = shape_bias(s, s, s)  # nothing counted
    assert math.isnan(same["shape_bias"]) and math.isnan(same["shape_acc"])
    assert math.isnan(same["texture_acc"]) and same["n_images"] == 0.0


def test_shape_bias_validation():
    with pytest.raises(TypeError, match="`predictions` must be a tensor"):
        shape_bias([0, 1], SHAPE[:2], TEXTURE[:2])
    with pytest.raises(ValueError, match=r"logits \(N, K\), got shape \(10,\)"):
        shape_bias(PRED.float(), SHAPE, TEXTURE)
    with pytest.raises(ValueError, match=r"class indices \(N,\), got shape \(10, 1\)"):
        shape_bias(PRED[:, None], SHAPE, TEXTURE)
    with pytest.raises(TypeError, match="dtype torch.bool"):
        shape_bias(PRED > 0, SHAPE, TEXTURE)
    with pytest.raises(TypeError, match="`shape_labels` must be an integer tensor"):
        shape_bias(PRED, SHAPE.float(), TEXTURE)
    with pytest.raises(TypeError, match="`texture_labels` must be a tensor"):
        shape_bias(PRED, SHAPE, TEXTURE.tolist())
    with pytest.raises(
        ValueError, match=r"`texture_labels` must have 10 entries, got shape \(9,\)"
    ):
        shape_bias(PRED, SHAPE, TEXTURE[:9])
    with pytest.raises(ValueError, match="`shape_labels` must be 1-D"):
        shape_bias(PRED, SHAPE[:, None], TEXTURE)
    with pytest.raises(ValueError, match="non-negative"):
        shape_bias(PRED, SHAPE - 1, TEXTURE)
    with pytest.raises(ValueError, match=r"`shape_labels` must lie in \[0, 3\)"):
        shape_bias(_logits(PRED, 5)[:, :3], SHAPE, TEXTURE)


def test_per_class_shape_bias_by_shape_label():
    out = per_class_shape_bias(PRED, SHAPE, TEXTURE, num_classes=5)
    assert out.shape == (5,) and out.dtype == torch.float32
    # class 0: rows 0,1 (1 shape, 1 texture), row 2 miss; class 1: rows 4,5;
    # class 2: only a miss (row 3 excluded) -> nan; class 3: rows 6,7 -> 1; class 4: none
    expected = torch.tensor([0.5, 0.5, math.nan, 1.0, math.nan])
    torch.testing.assert_close(out, expected, equal_nan=True)
    torch.testing.assert_close(
        per_class_shape_bias(_logits(PRED), SHAPE, TEXTURE, 5), expected, equal_nan=True
    )


def test_per_class_shape_bias_validation():
    with pytest.raises(TypeError, match="`num_classes` must be an int"):
        per_class_shape_bias(PRED, SHAPE, TEXTURE, 4.0)
    with pytest.raises(ValueError, match="`num_classes` must be >= 1, got 0"):
        per_class_shape_bias(PRED, SHAPE, TEXTURE, 0)
    with pytest.raises(ValueError, match=r"`shape_labels` must lie in \[0, 3\), got max 3"):
        per_class_shape_bias(PRED, SHAPE, TEXTURE, 3)


# ------------------------------------------------------------------------ shape_only
def test_shape_only_with_mask_is_the_silhouette():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 6, 6, generator=g)
    masks = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    masks[0, 0, 1:4, 2:5] = True
    masks[1, 0, 3:, :2] = True
    out = shape_only(images, masks)
    expected = (~masks).float().expand(2, 3, 6, 6)
    assert torch.equal(out, expected)  # black object on white
    assert torch.equal(shape_only(images, masks[:, 0].float()), expected)  # (N,H,W) float
    assert torch.equal(images, torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0)))


def test_shape_only_edges():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.equal(shape_only(flat), torch.ones(1, 3, 8, 8))  # no edges: all white
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    out = shape_only(step)
    assert out.shape == (1, 3, 8, 8)
    assert torch.equal(out[:, 0], out[:, 2])  # replicated over channels
    # Sobel magnitude: 4 at columns 3 and 4, 0 elsewhere -> normalized, inverted
    expected_row = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert torch.equal(out[0, 0], expected_row.expand(8, 8))


def test_shape_only_validation():
    with pytest.raises(TypeError, match="torch.Tensor"):
        shape_only([[0.0]])
    with pytest.raises(TypeError, match="`masks` must be a tensor"):
        shape_only(torch.rand(1, 3, 4, 4), masks=[[1]])
    with pytest.raises(ValueError, match=r"`masks` must have shape \(1, 1, 4, 4\)"):
        shape_only(torch.rand(1, 3, 4, 4), masks=torch.ones(1, 1, 5, 4))


# ---------------------------------------------------------------------- texture_only
def test_texture_only_preserves_pixels_and_tiles():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 16, 16, generator=g)
    before = images.clone()
    rng = torch.get_rng_state()
    out = texture_only(images, patch=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(images, before)  # input not mutated
    assert out.shape == images.shape
    for i in range(3):
        assert torch.equal(out[i].flatten().sort().values, images[i].flatten().sort().values)
        tiles_in = images[i].unfold(1, 4, 4).unfold(2, 4, 4).permute(1, 2, 0, 3, 4).reshape(16, -1)
        tiles_out = out[i].unfold(1, 4, 4).unfold(2, 4, 4).permute(1, 2, 0, 3, 4).reshape(16, -1)
        # every output tile is an intact input tile, each used once
        matches = (tiles_out[:, None] == tiles_in[None]).all(-1)  # (16, 16)
        assert torch.equal(matches.sum(0), torch.ones(16, dtype=torch.long))
        assert not torch.equal(out[i], images[i])  # shape destroyed
    # a different permutation per image
    same = images[:1].expand(2, -1, -1, -1).clone()
    o = texture_only(same, patch=4, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(o[0], o[1])


def test_texture_only_reproducible_and_border_kept():
    images = torch.rand(2, 1, 10, 9, generator=torch.Generator().manual_seed(2))
    a = texture_only(images, patch=4, generator=torch.Generator().manual_seed(3))
    b = texture_only(images, patch=4, generator=torch.Generator().manual_seed(3))
    c = texture_only(images, patch=4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[..., 8:, :], images[..., 8:, :])  # rows beyond full tiles stay
    assert torch.equal(a[..., :, 8:], images[..., :, 8:])
    for i in range(2):
        assert torch.equal(a[i].flatten().sort().values, images[i].flatten().sort().values)


def test_texture_only_validation():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(TypeError, match="`patch` must be an int"):
        texture_only(x, patch=2.0)
    with pytest.raises(ValueError, match=r"`patch` must lie in \[1, 8\] for 8x8 images, got 9"):
        texture_only(x, patch=9)
    with pytest.raises(ValueError, match="got 0"):
        texture_only(x, patch=0)
    with pytest.raises(TypeError, match="`generator` must be"):
        texture_only(x, generator=3)
    with pytest.raises(ValueError, match="shape"):
        texture_only(torch.rand(3, 8, 8))
