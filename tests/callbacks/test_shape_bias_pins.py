"""Pins for TextureShapeBias behaviour no existing test pins (mutation round five).

Each test fails with the one-line mutation its comment names (H63).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._guard import make_generator
from lightning_viz._runtime import cue_cache
from lightning_viz.callbacks.shape_bias import generation_chunk
from lightning_viz.functional.bias import OTHER


def _spy(monkeypatch, name):
    seen = []
    real = getattr(render, name)

    def spy(*args, **kwargs):
        seen.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(render, name, spy)
    return seen


def test_per_class_chart_beyond_20_classes_keeps_the_20_most_decided_in_class_order(monkeypatch):
    # D01 (fewest decisions kept), D02 (not in class order), D11 (> MAX_BARS off by one)
    seen = _spy(monkeypatch, "bar_figure")
    cb = lv.TextureShapeBias()
    k = 25
    # class c: c+1 images, all decided by shape (pred == shape), texture another class
    s = torch.cat([torch.full((c + 1,), c) for c in range(k)])
    t = (s + 1) % k
    cb._per_class(s.clone(), s, t, k)
    labels, values = seen[-1][0][:2]
    assert labels == [cb.class_name(c) for c in range(5, 25)], labels
    assert "(20 of 25: the most decisions)" in seen[-1][1]["title"]
    # exactly 20 classes: all of them, and the title says no cut
    s20 = torch.arange(20).repeat(2)
    cb._per_class(s20.clone(), s20, (s20 + 1) % 20, 20)
    labels, _ = seen[-1][0][:2]
    assert len(labels) == 20 and "of 20" not in seen[-1][1]["title"]


def test_the_generation_chunk_is_at_least_one_pair_for_large_images():
    # D03: max(1, ...) dropped -> 0 pairs a chunk above ~405 px (a range of step 0)
    assert generation_chunk(512, 512) == 1
    assert generation_chunk(224, 224) == 3


def _check_ctx(labels, size=8):
    pixels = torch.rand(len(labels), 3, size, size, generator=torch.Generator().manual_seed(0))
    probe = SimpleNamespace(labels=torch.tensor(labels), masks=None)
    return SimpleNamespace(task="multiclass", num_classes=3, probe=probe, pixels=pixels)


def test_no_few_pairs_warning_when_the_probe_allows_exactly_num_images(recwarn):
    # D04: `available < num_images` became `<=`
    cb = lv.TextureShapeBias(num_images=2)  # 1 image of class 0, 1 of class 1: 2 pairs
    cb.check(_check_ctx([0, 1]))
    assert cb._images_to_make == 2
    assert not [w for w in recwarn if "distinct cue-conflict pairs" in str(w.message)]
    cb = lv.TextureShapeBias(num_images=3)
    with pytest.warns(UserWarning, match="allow only 2 distinct cue-conflict pairs"):
        cb.check(_check_ctx([0, 1]))


def test_texture_only_control_uses_4x4_tiles_of_the_probe():
    # D05: the tile side of the texture-only control
    cb = lv.TextureShapeBias(seed=3)
    ctx = _check_ctx([0, 1, 2, 0], size=32)
    cb._prepare(ctx)
    expect = LF.texture_only(ctx.pixels, 8, generator=make_generator(3, "cpu"))
    assert torch.equal(cb._controls[1], expect)


def test_nan_logits_decide_no_class():
    # D07: NaN logits fell to the argmax (class 0)
    cb = lv.TextureShapeBias()

    def model(x):
        out = torch.zeros(x.shape[0], 3)
        out[0] = float("nan")
        out[1, 0] = 1.0
        return out

    ctx = SimpleNamespace(
        share=lambda n: torch.arange(n),
        forward=lambda x, mapper: mapper(model(x)),
        gather=lambda t, n: t,
        device=torch.device("cpu"),
    )
    pred = cb._predict(ctx, torch.rand(2, 3, 8, 8))
    assert pred.tolist() == [OTHER, 0]


def test_grid_captions_name_shape_then_texture_then_prediction(monkeypatch):
    # D08: shape and texture swapped in the captions
    seen = _spy(monkeypatch, "image_grid")
    cb = lv.TextureShapeBias()
    cb._grid(
        torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([1, 1])
    )
    caps = seen[-1][1]["captions"]
    assert caps[0] == "shape 0\ntexture 2\npred 1", caps


@pytest.mark.parametrize("change", [{"seed": 1}, {"content_weight": 0.1}])
def test_the_cache_key_covers_the_generation_settings(change):
    # D09 (seed), D10 (content_weight) left out of the cache key: a rerun in the same log
    # dir with another setting would reload the images the old one made
    pixels, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    keys = {
        cue_cache.cache_key(pixels, labels, None, lv.TextureShapeBias(**kw)._settings())
        for kw in ({}, change)
    }
    assert len(keys) == 2
