"""Tests for lightning_viz.functional.bias: shape-bias counts and cue-removing transforms."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_viz.functional.bias import (
    OTHER,
    UNCOUNTED,
    _pick_pairs,
    cue_conflict,
    decisions,
    per_class_shape_bias,
    shape_bias,
    shape_only,
    texture_only,
)
from lightning_viz.functional.bias import SHAPE as SHAPE_D
from lightning_viz.functional.bias import TEXTURE as TEXTURE_D

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
    with pytest.raises(ValueError, match=r"logits of shape \(N, K\), got <shape \(10,\)>"):
        shape_bias(PRED.float(), SHAPE, TEXTURE)
    with pytest.raises(ValueError, match=r"class indices of shape \(N,\), got <shape \(10, 1\)>"):
        shape_bias(PRED[:, None], SHAPE, TEXTURE)
    with pytest.raises(TypeError, match="dtype torch.bool"):
        shape_bias(PRED > 0, SHAPE, TEXTURE)
    with pytest.raises(TypeError, match="`shape_labels` must be an integer tensor"):
        shape_bias(PRED, SHAPE.float(), TEXTURE)
    with pytest.raises(TypeError, match="`texture_labels` must be a tensor"):
        shape_bias(PRED, SHAPE, TEXTURE.tolist())
    with pytest.raises(
        ValueError, match=r"`texture_labels` must be of shape \(10,\), got <shape \(9,\)>"
    ):
        shape_bias(PRED, SHAPE, TEXTURE[:9])
    with pytest.raises(ValueError, match=r"`shape_labels` must be of shape \(10,\)"):
        shape_bias(PRED, SHAPE[:, None], TEXTURE)
    with pytest.raises(ValueError, match="class indices >= 0"):
        shape_bias(PRED, SHAPE - 1, TEXTURE)
    with pytest.raises(ValueError, match=r"`shape_labels` must be class indices in \[0, 3\)"):
        shape_bias(_logits(PRED, 5)[:, :3], SHAPE, TEXTURE)


def test_per_class_shape_bias_by_shape_label():
    counts = per_class_shape_bias(PRED, SHAPE, TEXTURE, num_classes=5)
    out = counts["shape_bias"]
    assert out.shape == (5,) and out.dtype == torch.float32
    # counted images per shape class (row 3 and 8 are same-class pairs), and decisions
    assert counts["images"].tolist() == [3, 2, 1, 2, 0]
    assert counts["shape"].tolist() == [1, 1, 0, 2, 0]
    assert counts["texture"].tolist() == [1, 1, 0, 0, 0]
    # class 0: rows 0,1 (1 shape, 1 texture), row 2 miss; class 1: rows 4,5;
    # class 2: only a miss (row 3 excluded) -> nan; class 3: rows 6,7 -> 1; class 4: none
    expected = torch.tensor([0.5, 0.5, math.nan, 1.0, math.nan])
    torch.testing.assert_close(out, expected, equal_nan=True)
    torch.testing.assert_close(
        per_class_shape_bias(_logits(PRED), SHAPE, TEXTURE, 5)["shape_bias"],
        expected,
        equal_nan=True,
    )


def test_decisions_by_hand():
    got = decisions(PRED, SHAPE, TEXTURE).tolist()
    assert got == [
        SHAPE_D,
        TEXTURE_D,
        OTHER,
        UNCOUNTED,
        SHAPE_D,
        TEXTURE_D,
        SHAPE_D,
        SHAPE_D,
        UNCOUNTED,
        OTHER,
    ]
    assert torch.equal(decisions(_logits(PRED), SHAPE, TEXTURE), torch.tensor(got))


def test_per_class_shape_bias_validation():
    with pytest.raises(TypeError, match="`num_classes` must be an int"):
        per_class_shape_bias(PRED, SHAPE, TEXTURE, 4.0)
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 1, got 0"):
        per_class_shape_bias(PRED, SHAPE, TEXTURE, 0)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\), got <max 3>"):
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
    with pytest.raises(ValueError, match=r"`masks` must be of shape \(1, 1, 4, 4\) or \(1, 4, 4\)"):
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
    with pytest.raises(ValueError, match=r"`patch` must be an int >= 1 and <= 8, got 9"):
        texture_only(x, patch=9)
    with pytest.raises(ValueError, match="got 0"):
        texture_only(x, patch=0)
    with pytest.raises(TypeError, match="`generator` must be"):
        texture_only(x, generator=3)
    with pytest.raises(ValueError, match="shape"):
        texture_only(torch.rand(3, 8, 8))


# ---------------------------------------------------------------------- cue conflict
def _labelled(n_per_class: int, k: int, size: int = 8):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(k).repeat_interleave(n_per_class)
    images = torch.rand(k * n_per_class, 3, size, size, generator=g)
    return images, labels


def test_cue_conflict_pairs_balanced_and_labels_right():
    images, labels = _labelled(4, 4)
    k = 4
    out, shape_l, tex_l = cue_conflict(images, labels, 3 * k * (k - 1), steps=0)
    assert out.shape == (36, 3, 8, 8)
    assert shape_l.dtype == tex_l.dtype == torch.long
    assert bool((shape_l != tex_l).all())
    counts = torch.bincount(shape_l * k + tex_l, minlength=k * k).view(k, k)
    expected = torch.full((k, k), 3)
    expected.fill_diagonal_(0)
    assert torch.equal(counts, expected)
    # with 0 steps the output is the content image: its class is the shape label
    for img, sl in zip(out, shape_l, strict=True):
        src = [i for i in range(len(images)) if torch.equal(images[i], img)]
        assert len(src) == 1 and int(labels[src[0]]) == int(sl)


def test_pick_pairs_no_repeated_combination_and_exhausts_all():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    avail = 2 * 1 + 2 * 3 + 1 * 2 + 1 * 3 + 3 * 2 + 3 * 1  # sum over A != B of n_A * n_B = 22
    ci, si, sl, tl = _pick_pairs(labels, avail, torch.Generator().manual_seed(0))
    combos = set(zip(ci.tolist(), si.tolist(), strict=True))
    assert len(combos) == avail
    assert torch.equal(labels[ci], sl) and torch.equal(labels[si], tl)
    assert bool((sl != tl).all())
    with pytest.raises(ValueError, match="`num_images` must be at most the 22 distinct .* got 23"):
        _pick_pairs(labels, avail + 1, torch.Generator().manual_seed(0))


def test_cue_conflict_deterministic_from_generator():
    images, labels = _labelled(3, 3)
    a = cue_conflict(images, labels, 6, steps=2, generator=torch.Generator().manual_seed(5))
    b = cue_conflict(images, labels, 6, steps=2, generator=torch.Generator().manual_seed(5))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    pa = _pick_pairs(labels, 6, torch.Generator().manual_seed(5))
    pc = _pick_pairs(labels, 6, torch.Generator().manual_seed(6))
    assert any(not torch.equal(x, y) for x, y in zip(pa, pc, strict=True))


def test_cue_conflict_masks_keep_the_content_background():
    images, labels = _labelled(3, 3)
    masks = torch.zeros(images.shape[0], 1, 8, 8, dtype=torch.bool)
    masks[:, :, 2:6, 2:6] = True  # the "object" of every image
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    plain, s1, t1 = cue_conflict(images, labels, 6, steps=3, generator=gen())
    pasted, s2, t2 = cue_conflict(images, labels, 6, steps=3, generator=gen(), masks=masks)
    content, _, _ = cue_conflict(images, labels, 6, steps=0, generator=gen())
    assert torch.equal(s1, s2) and torch.equal(t1, t2)
    inside = masks[0].expand_as(plain[0])
    for p, q, c in zip(plain, pasted, content, strict=True):
        assert torch.equal(q[inside], p[inside])  # the stylized object
        assert torch.equal(q[~inside], c[~inside])  # on its own background
        assert not torch.equal(p[~inside], c[~inside])  # which style transfer had changed
    with pytest.raises(
        ValueError, match=r"`masks` must be None or a tensor of shape \(9, 1, 8, 8\)"
    ):
        cue_conflict(images, labels, 6, steps=0, masks=masks[:3])


def test_cue_conflict_progress_batches_and_global_rng():
    images, labels = _labelled(2, 3)
    calls = []
    rng = torch.get_rng_state()
    out, _, _ = cue_conflict(
        images, labels, 5, steps=1, batch_size=2, progress=lambda d, t: calls.append((d, t))
    )
    assert torch.equal(torch.get_rng_state(), rng)
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert out.shape == (5, 3, 8, 8)


def test_cue_conflict_errors():
    images, labels = _labelled(2, 2)
    with pytest.raises(ValueError, match="`num_images` must be at most the 8 distinct .* got 9"):
        cue_conflict(images, labels, 9, steps=0)
    with pytest.raises(ValueError, match=r"at least 2 classes for cue-conflict images, got \[0\]"):
        cue_conflict(images[:2], labels[:2], 1, steps=0)
    with pytest.raises(TypeError, match="integer tensor"):
        cue_conflict(images, labels.float(), 1)
    with pytest.raises(TypeError, match="`labels` must be a tensor"):
        cue_conflict(images, [0, 1, 0, 1], 1)
    with pytest.raises(ValueError, match=r"shape \(4,\), got <shape \(3,\)>"):
        cue_conflict(images, labels[:3], 1)
    with pytest.raises(ValueError, match="`num_images` must be an int >= 1, got 0"):
        cue_conflict(images, labels, 0)
    with pytest.raises(TypeError, match="`progress` must be a callable"):
        cue_conflict(images, labels, 1, progress=3)
    with pytest.raises(
        TypeError, match="`style_kwargs` must be style_transfer options other than init.*got 'init'"
    ):
        cue_conflict(images, labels, 1, init="noise")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cue_conflict(images * 5, labels, 1)


def test_per_class_counts_are_float32_under_a_float64_default_dtype():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        counts = per_class_shape_bias(PRED, SHAPE, TEXTURE, num_classes=5)
    finally:
        torch.set_default_dtype(before)
    assert counts["shape_bias"].dtype == torch.float32
    assert counts["shape"].tolist() == [1, 1, 0, 2, 0]


def test_nan_logits_are_no_decision():
    """argmax of a NaN row is the NaN's index: a diverged model's rows were shape calls."""
    from lightning_viz.functional.bias import decisions, shape_bias

    nan = float("nan")
    logits = torch.tensor([[nan, nan, nan], [0.0, nan, 1.0], [0.0, 1.0, 3.0]])
    shape, texture = torch.tensor([0, 1, 1]), torch.tensor([2, 2, 2])
    assert decisions(logits, shape, texture).tolist() == [-1, -1, 0]
    assert shape_bias(logits, shape, texture)["shape_bias"] == 0.0


def test_one_logit_is_a_binary_decision():
    from lightning_viz.functional.bias import decisions, per_class_shape_bias

    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    shape, texture = torch.tensor([1, 1, 0, 0]), torch.tensor([0, 0, 1, 1])
    assert decisions(logits, shape, texture).tolist() == [1, 0, 0, 1]
    by_class = per_class_shape_bias(logits, shape, texture, 2)
    assert by_class["shape_bias"].tolist() == [0.5, 0.5]


def test_per_class_shape_bias_of_no_images():
    from lightning_viz.functional.bias import per_class_shape_bias

    empty = torch.zeros(0, dtype=torch.long)
    out = per_class_shape_bias(torch.zeros(0, 3), empty, empty, 3)
    assert out["images"].tolist() == [0.0, 0.0, 0.0]
    assert torch.isnan(out["shape_bias"]).all()


def test_resizing_down_along_the_width_only_is_antialiased():
    """Antialiasing was on only when the height shrank: a wider style image of the
    content's height, or a 1-px-tall pyramid level, was resized with aliasing."""
    from torch.nn import functional as F

    from lightning_viz.functional.bias import _resized

    stripes = (torch.arange(256) % 3 == 0).float().expand(1, 3, 64, 256).contiguous()
    for size in ((64, 50), (63, 50), (32, 256)):
        expected = F.interpolate(stripes, size=size, mode="bilinear", antialias=True)
        assert torch.allclose(_resized(stripes, size), expected.clamp(0, 1), atol=1e-6), size
