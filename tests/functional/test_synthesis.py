"""Tests for lightning_viz.functional.synthesis: Gram matrices, style transfer, cue
conflict and class-model visualization."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from lightning_viz._hooks import has_hooks
from lightning_viz.functional.synthesis import (
    RandomFeatureExtractor,
    _pick_pairs,
    class_model,
    cue_conflict,
    gram_matrix,
    style_transfer,
)

H = 32


def _grid():
    return torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")


def _circle_on_black() -> torch.Tensor:  # (1, 3, H, H), gray disc on black
    yy, xx = _grid()
    disc = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 100).float()
    return torch.stack([disc * 0.9 + 0.05] * 3)[None]


def _stripes() -> torch.Tensor:  # (1, 3, H, H), red/blue vertical stripes
    _, xx = _grid()
    s = ((xx // 3) % 2).float()
    return torch.stack([s * 0.8 + 0.1, s * 0.2, 1 - s * 0.7])[None]


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    a = a.flatten() - a.mean()
    b = b.flatten() - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def _snapshot(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _assert_unchanged(model: nn.Module, snap) -> None:
    flags, req, grads, state = snap
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == req
    assert all(p.grad is g for p, g in zip(model.parameters(), grads, strict=True))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not has_hooks(model)


# ------------------------------------------------------------------------------ gram
def test_gram_matrix_by_hand():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    # F F^T = [[1+4, 3+8], [3+8, 9+16]] / (C*H*W = 4)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(f), expected)


def test_gram_matrix_batched_and_symmetric():
    f = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    g = gram_matrix(f)
    assert g.shape == (3, 4, 4)
    torch.testing.assert_close(g, g.transpose(1, 2))
    torch.testing.assert_close(g[1], gram_matrix(f[1:2])[0])


def test_gram_matrix_validation():
    with pytest.raises(TypeError, match="torch.Tensor"):
        gram_matrix([[1.0]])
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        gram_matrix(torch.ones(2, 3))
    with pytest.raises(TypeError, match="floating-point"):
        gram_matrix(torch.ones(1, 2, 2, 2, dtype=torch.long))


# ---------------------------------------------------------------- random extractor
def test_random_extractor_seeded_and_leaves_global_rng():
    rng = torch.get_rng_state()
    a, b, c = (
        RandomFeatureExtractor(seed=0),
        RandomFeatureExtractor(seed=0),
        RandomFeatureExtractor(seed=1),
    )
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a.block2[1].weight, b.block2[1].weight)
    assert not torch.equal(a.block2[1].weight, c.block2[1].weight)
    assert not any(p.requires_grad for p in a.parameters())
    names = dict(a.named_modules())
    assert all(n in names for n in (*a.style_layers, a.content_layer))
    out = a(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 128, 4, 4)


def test_random_extractor_validation():
    with pytest.raises(TypeError, match="in_channels"):
        RandomFeatureExtractor(in_channels=3.0)
    with pytest.raises(ValueError, match="width"):
        RandomFeatureExtractor(width=1)
    with pytest.raises(TypeError, match="seed"):
        RandomFeatureExtractor(seed="0")


# -------------------------------------------------------------------- style transfer
def test_style_transfer_moves_style_and_keeps_content():
    content, style = _circle_on_black(), _stripes()
    out, losses = style_transfer(content, style, steps=60, return_losses=True)
    assert out.shape == content.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert set(losses) == {"content", "style", "tv", "total"}
    assert losses["style"].shape == (60, 1)
    ls = losses["style"][:, 0]
    assert float(ls[-1]) * 5 < float(ls[0])  # style loss falls at least 5x
    assert float(losses["content"][-1, 0]) < 1.0  # relative content error stays small
    # the gray-level layout follows the circle, not the stripes ...
    gray = out.mean(1)
    assert _corr(gray, content.mean(1)) > 0.3
    assert _corr(gray, content.mean(1)) > abs(_corr(gray, style.mean(1))) + 0.15
    # ... and the colours come from the style (red/blue, hardly any green)
    means = out.mean((0, 2, 3))
    style_means = style.mean((0, 2, 3))
    assert float((means - style_means).abs().max()) < 0.15
    assert float(means[1]) < float(means[0]) and float(means[1]) < float(means[2])


def test_style_transfer_batched_equals_per_pair():
    g = torch.Generator().manual_seed(3)
    content = torch.rand(3, 3, 16, 16, generator=g)
    style = torch.rand(3, 3, 16, 16, generator=g)
    batched = style_transfer(content, style, steps=8)
    singles = torch.cat(
        [style_transfer(content[i : i + 1], style[i : i + 1], steps=8) for i in range(3)]
    )
    torch.testing.assert_close(batched, singles, atol=1e-3, rtol=0)  # float noise only
    assert not torch.equal(batched, content)  # it did move


def test_style_transfer_broadcast_single_style():
    g = torch.Generator().manual_seed(4)
    content = torch.rand(2, 3, 16, 16, generator=g)
    style = torch.rand(1, 3, 16, 16, generator=g)
    a = style_transfer(content, style, steps=4)
    b = style_transfer(content, style.expand(2, -1, -1, -1).clone(), steps=4)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_style_transfer_noise_init_uses_private_generator():
    content, style = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    rng = torch.get_rng_state()
    a = style_transfer(
        content, style, steps=2, init="noise", generator=torch.Generator().manual_seed(1)
    )
    b = style_transfer(
        content, style, steps=2, init="noise", generator=torch.Generator().manual_seed(1)
    )
    c = style_transfer(
        content, style, steps=2, init="noise", generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def _custom_extractor() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
    )


def test_style_transfer_custom_extractor_state_preserved():
    ext = _custom_extractor()
    ext.train()
    ext[0].eval()  # a mixed state to restore
    ext[2].weight.requires_grad_(False)
    snap = _snapshot(ext)
    content, style = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    rng = torch.get_rng_state()
    out = style_transfer(
        content,
        style,
        ext,
        content_layer="3",
        style_layers=["1", "3"],
        steps=3,
    )
    assert out.shape == (2, 3, 8, 8)
    _assert_unchanged(ext, snap)
    assert torch.equal(torch.get_rng_state(), rng)


def test_style_transfer_no_hook_leak_when_extractor_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.training_flag_seen = None

        def forward(self, x):
            self.conv(x)
            raise RuntimeError("boom")

    ext = Boom()
    snap = _snapshot(ext)
    with pytest.raises(RuntimeError, match="boom"):
        style_transfer(
            torch.rand(1, 3, 8, 8),
            torch.rand(1, 3, 8, 8),
            ext,
            content_layer="conv",
            style_layers=["conv"],
            steps=2,
        )
    _assert_unchanged(ext, snap)


def test_style_transfer_unknown_layer():
    with pytest.raises(ValueError, match=r"unknown layer 'blok3'.*Did you mean 'block3'"):
        style_transfer(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), content_layer="blok3")
    with pytest.raises(ValueError, match=r"unknown layer 'conv9'.*Available layers: 0, 1, 2, 3"):
        style_transfer(
            torch.rand(1, 3, 8, 8),
            torch.rand(1, 3, 8, 8),
            _custom_extractor(),
            content_layer="1",
            style_layers=["conv9"],
        )
    with pytest.raises(ValueError, match="`content_layer` is required"):
        style_transfer(
            torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), _custom_extractor(), style_layers=["1"]
        )


def test_style_transfer_validation():
    c = torch.rand(2, 3, 16, 16)
    with pytest.raises(TypeError, match="`content` must be a torch.Tensor"):
        style_transfer(c.tolist(), c)
    with pytest.raises(TypeError, match="`extractor` must be an nn.Module"):
        style_transfer(c, c, "vgg")
    with pytest.raises(ValueError, match="`style` has 1 channels"):
        style_transfer(c, c[:, :1])
    with pytest.raises(ValueError, match=r"1 or N=2 images, got shape \(3, 3, 16, 16\)"):
        style_transfer(c, torch.rand(3, 3, 16, 16))
    with pytest.raises(ValueError, match=r"pixel-space images in \[0, 1\]"):
        style_transfer(c * 3, c)
    with pytest.raises(ValueError, match="`init` must be"):
        style_transfer(c, c, init="zeros")
    with pytest.raises(ValueError, match="`steps` must be >= 0, got -1"):
        style_transfer(c, c, steps=-1)
    with pytest.raises(TypeError, match="`steps` must be an int"):
        style_transfer(c, c, steps=1.5)
    with pytest.raises(ValueError, match="`lr` must be a finite positive"):
        style_transfer(c, c, lr=0)
    with pytest.raises(ValueError, match="`style_weight` must be a finite non-negative"):
        style_transfer(c, c, style_weight=-1.0)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        style_transfer(c, c, generator=0)
    with pytest.raises(ValueError, match="at least one layer"):
        style_transfer(c, c, style_layers=[])


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
    with pytest.raises(ValueError, match="`num_images`=23 exceeds the 22 distinct"):
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
    with pytest.raises(ValueError, match=r"`masks` must have shape \(9, 1, 8, 8\)"):
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
    with pytest.raises(ValueError, match="`num_images`=9 exceeds the 8 distinct"):
        cue_conflict(images, labels, 9, steps=0)
    with pytest.raises(ValueError, match=r"at least 2 classes, got classes \[0\]"):
        cue_conflict(images[:2], labels[:2], 1, steps=0)
    with pytest.raises(TypeError, match="integer tensor"):
        cue_conflict(images, labels.float(), 1)
    with pytest.raises(TypeError, match="`labels` must be a tensor"):
        cue_conflict(images, [0, 1, 0, 1], 1)
    with pytest.raises(ValueError, match=r"shape \(4,\), got \(3,\)"):
        cue_conflict(images, labels[:3], 1)
    with pytest.raises(ValueError, match="`num_images` must be >= 1, got 0"):
        cue_conflict(images, labels, 0)
    with pytest.raises(TypeError, match="`progress` must be callable"):
        cue_conflict(images, labels, 1, progress=3)
    with pytest.raises(TypeError, match="does not accept the style_transfer argument 'init'"):
        cue_conflict(images, labels, 1, init="noise")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cue_conflict(images * 5, labels, 1)


@pytest.mark.slow
def test_cue_conflict_160_images_32px_under_60s():
    images, labels = _labelled(20, 10, size=32)
    t = time.perf_counter()
    out, _, _ = cue_conflict(images, labels, 160)
    seconds = time.perf_counter() - t
    assert out.shape == (160, 3, 32, 32)
    assert seconds < 60, f"cue-conflict generation took {seconds:.1f} s"


# ----------------------------------------------------------------------- class model
def _linear_model(k: int = 4, shape=(3, 8, 8)) -> nn.Module:
    """Class score linear in the image: smooth (blocky 4x4) random templates."""
    g = torch.Generator().manual_seed(1)
    lin = nn.Linear(shape[0] * shape[1] * shape[2], k)
    coarse = torch.randn(k, shape[0], shape[1] // 4, shape[2] // 4, generator=g)
    coarse = coarse - coarse.mean((1, 2, 3), keepdim=True)  # about zero-mean templates
    coarse = coarse.sign() * (coarse.abs() + 0.3)  # every weight well away from 0
    templates = coarse.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    with torch.no_grad():
        lin.weight.copy_(templates.flatten(1))
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin)


def _start_scores(model, k, shape, generator_seed=0):
    g = torch.Generator().manual_seed(generator_seed)
    x = (0.5 + 0.01 * torch.randn((k, *shape), generator=g)).clamp(0, 1)
    with torch.no_grad():
        return model(x).diagonal()


def test_class_model_linear_templates():
    model = _linear_model()
    x = class_model(model, None, (3, 8, 8), steps=100)
    assert x.shape == (4, 3, 8, 8)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    with torch.no_grad():
        logits = model(x)
    assert torch.equal(logits.argmax(1), torch.arange(4))
    start = _start_scores(model, 4, (3, 8, 8))
    w = model[1].weight
    # the best image in [0,1] scores 0.5*sum|w| above the gray image: get most of that
    best_gain = 0.5 * w.abs().sum(1)
    gain = logits.diagonal() - start
    assert bool((gain > 0.5 * best_gain).all()), (gain, best_gain)
    # the image follows its template's sign: bright where w > 0, dark where w < 0
    for k in range(4):
        assert _corr(x[k].flatten() - 0.5, w[k]) > 0.5


def test_class_model_without_regularizers_reaches_the_linear_optimum():
    # max over [0,1] of w.x is x = 1[w > 0]; projected ascent must get there
    model = _linear_model()
    x = class_model(
        model,
        None,
        (3, 8, 8),
        steps=100,
        lr=0.5,
        l2_decay=0.0,
        jitter=0,
        blur_every=0,
        pixel_clip=0.0,
    )
    w = model[1].weight.detach().view(4, 3, 8, 8)
    torch.testing.assert_close(x, (w > 0).float(), atol=1e-6, rtol=0)


def test_class_model_subset_and_mean_std():
    model = _linear_model()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    x = class_model(model, [2, 0], (3, 8, 8), steps=60, mean=mean, std=std)
    assert x.shape == (2, 3, 8, 8)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = model((x - m) / s).argmax(1)
    assert pred.tolist() == [2, 0]


class _ColourNet(nn.Module):
    """Class k = mean over pixels of relu(channel k - mean of the other channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_((torch.eye(3) * 1.5 - 0.5).view(3, 3, 1, 1))
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.pool(self.relu(self.bn(self.conv(x)))).flatten(1)


def test_class_model_conv_model_and_state_preserved():
    model = _ColourNet()
    model.train()
    model.bn.weight.grad = torch.ones(3)
    snap = _snapshot(model)
    rng = torch.get_rng_state()
    x = class_model(model, None, (3, 16, 16), steps=60)
    _assert_unchanged(model, snap)  # BatchNorm running stats untouched too
    assert torch.equal(torch.get_rng_state(), rng)
    means = x.mean((2, 3))  # (3, 3): channel k is highest in the image of class k
    assert torch.equal(means.argmax(1), torch.arange(3))
    model.eval()
    with torch.no_grad():
        scores = model(x).diagonal()
        start = model((0.5 + 0.01 * torch.randn(3, 3, 16, 16)).clamp(0, 1)).diagonal()
    assert torch.equal(model(x).argmax(1), torch.arange(3))
    assert bool((scores > start + 0.3).all())


def test_class_model_reproducible_with_generator():
    model = _linear_model()
    a = class_model(model, [1], (3, 8, 8), steps=10, generator=torch.Generator().manual_seed(7))
    b = class_model(model, [1], (3, 8, 8), steps=10, generator=torch.Generator().manual_seed(7))
    c = class_model(model, [1], (3, 8, 8), steps=10, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_class_model_neuron_mode():
    model = _ColourNet()
    x = class_model(model, None, (3, 16, 16), steps=40, neuron=("conv", [0, 2]))
    assert x.shape == (2, 3, 16, 16)
    means = x.mean((2, 3))
    assert int(means[0].argmax()) == 0 and int(means[1].argmax()) == 2
    with pytest.raises(ValueError, match="channel .*out of range"):
        class_model(model, None, (3, 16, 16), steps=1, neuron=("conv", 5))
    with pytest.raises(ValueError, match="unknown layer 'cnv'.*Did you mean 'conv'"):
        class_model(model, None, (3, 16, 16), steps=1, neuron=("cnv", 0))
    with pytest.raises(ValueError, match="`classes` must be None when `neuron`"):
        class_model(model, [0], (3, 16, 16), neuron=("conv", 0))
    assert not has_hooks(model)


def test_class_model_no_hook_leak_when_model_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("boom")
            return self.conv(x).mean((2, 3))

    model = Boom().train()
    snap = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        class_model(model, None, (3, 4, 4), steps=3, neuron=("conv", 0))
    _assert_unchanged(model, snap)


def test_class_model_validation():
    model = _linear_model()
    shape = (3, 8, 8)
    with pytest.raises(TypeError, match="`model` must be an nn.Module"):
        class_model(lambda x: x, None, shape)
    with pytest.raises(ValueError, match=r"`image_shape` must be 3 positive ints"):
        class_model(model, None, (8, 8))
    with pytest.raises(TypeError, match="`image_shape` must be a sequence"):
        class_model(model, None, 8)
    with pytest.raises(ValueError, match=r"in \[0, 4\), got \[4\]"):
        class_model(model, 4, shape)
    with pytest.raises(TypeError, match="`classes` must be an int"):
        class_model(model, "cat", shape)
    with pytest.raises(TypeError, match="`classes` must be integer"):
        class_model(model, torch.tensor([0.0]), shape)
    with pytest.raises(ValueError, match="`l2_decay` must lie in"):
        class_model(model, 0, shape, l2_decay=1.0)
    with pytest.raises(ValueError, match="`pixel_clip` must lie in"):
        class_model(model, 0, shape, pixel_clip=1.5)
    with pytest.raises(ValueError, match="`grad_clip` must be a finite positive"):
        class_model(model, 0, shape, grad_clip=0)
    with pytest.raises(ValueError, match="`jitter` must be >= 0"):
        class_model(model, 0, shape, jitter=-1)
    with pytest.raises(TypeError, match="`neuron` must be a"):
        class_model(model, None, shape, neuron="conv")
    with pytest.raises(TypeError, match="`generator` must be"):
        class_model(model, 0, shape, generator=1)
