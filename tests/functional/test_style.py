"""Tests for lightning_viz.functional.style: Gram matrices, the random extractor, style transfer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_viz._hooks import has_hooks
from lightning_viz.functional.style import RandomFeatureExtractor, gram_matrix, style_transfer

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
    with pytest.raises(ValueError, match="`steps` must be an int >= 0, got -1"):
        style_transfer(c, c, steps=-1)
    with pytest.raises(TypeError, match="`steps` must be an int"):
        style_transfer(c, c, steps=1.5)
    with pytest.raises(ValueError, match="`lr` must be a finite number > 0"):
        style_transfer(c, c, lr=0)
    with pytest.raises(ValueError, match="`style_weight` must be a finite number >= 0"):
        style_transfer(c, c, style_weight=-1.0)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        style_transfer(c, c, generator=0)
    with pytest.raises(ValueError, match="at least one layer"):
        style_transfer(c, c, style_layers=[])


def test_a_float64_default_dtype_changes_neither_the_filters_nor_the_images_dtype():
    """``torch.set_default_dtype(torch.float64)`` (a user's script may set it): the
    extractor draws the same float32 filters and stylizes float32 images."""
    reference = RandomFeatureExtractor(seed=0)
    content, style = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    expected = style_transfer(content, style, steps=2)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = RandomFeatureExtractor(seed=0)
        out = style_transfer(content, style, steps=2)
        doubles = style_transfer(content.double(), style.double(), steps=2)
    finally:
        torch.set_default_dtype(before)
    for a, b in zip(reference.parameters(), again.parameters(), strict=True):
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(doubles.float(), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"style_size": 0}, ValueError, "`style_size` must be an int >= 8, got 0"),
        ({"style_size": -1}, ValueError, "`style_size` must be an int >= 8, got -1"),
        ({"content": "img"}, TypeError, "`content` must be a torch.Tensor"),
        ({"style": torch.rand(3, 8, 8)}, ValueError, r"`style` must be a non-empty image batch"),
    ],
)
def test_stylize_checks_its_arguments(kwargs, error, match):
    """style_size < 1 halved the pyramid forever (memory grew until the process died)."""
    from lightning_viz.functional.bias import stylize

    args = {"content": torch.rand(1, 3, 16, 16), "style": torch.rand(1, 3, 16, 16), **kwargs}
    with pytest.raises(error, match=match):
        stylize(args.pop("content"), args.pop("style"), steps=1, **args)
