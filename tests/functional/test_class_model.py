"""Tests for lightning_viz.functional.class_model: class-model images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_viz._guard import ModelView
from lightning_viz._hooks import has_hooks
from lightning_viz.functional.class_model import class_model
from tests.conftest import UnknownTokenNet, tokens_to_grid


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


def test_class_model_subset_and_a_normalizing_view():
    model = _linear_model()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    x = class_model(ModelView(model, mean, std), [2, 0], (3, 8, 8), steps=60)
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
    with pytest.raises(ValueError, match=r"`neuron channel` must be in \[0, 3\)"):
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
    with pytest.raises(TypeError, match="`classes` must be None or a non-empty list of ints"):
        class_model(model, "cat", shape)
    with pytest.raises(TypeError, match="`classes` must be None or a non-empty list of ints"):
        class_model(model, torch.tensor([0.0]), shape)
    with pytest.raises(ValueError, match=r"`l2_decay` must be in \[0, 1\)"):
        class_model(model, 0, shape, l2_decay=1.0)
    with pytest.raises(ValueError, match=r"`pixel_clip` must be in \[0, 1\)"):
        class_model(model, 0, shape, pixel_clip=1.5)
    with pytest.raises(ValueError, match="`grad_clip` must be a finite number > 0"):
        class_model(model, 0, shape, grad_clip=0)
    with pytest.raises(ValueError, match="`jitter` must be an int >= 0"):
        class_model(model, 0, shape, jitter=-1)
    with pytest.raises(TypeError, match="`neuron` must be a"):
        class_model(model, None, shape, neuron="conv")
    with pytest.raises(TypeError, match="`generator` must be"):
        class_model(model, 0, shape, generator=1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_class_model_of_a_float64_or_bfloat16_model_is_the_float32_models_image(dtype):
    """The image was made in float32 and given to the model as it was: a float64 or
    bfloat16 model raised "expected scalar type Float but found Double" inside its conv."""
    import copy

    from lightning_viz.data import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(5, 3, 8).eval()
    other = copy.deepcopy(model).to(dtype)
    want = class_model(model, [0, 1], (3, 16, 16), steps=3, jitter=0)
    got = class_model(other, [0, 1], (3, 16, 16), steps=3, jitter=0)
    assert got.dtype == torch.float32 and next(other.parameters()).dtype == dtype
    assert (want - 0.5).abs().max() > 0.3  # it moved from the start
    if dtype == torch.float64:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    else:  # bfloat16's 3 digits, amplified by the normalized gradient steps: the same way
        pair = torch.stack([(want - 0.5).flatten(), (got - 0.5).flatten()])
        assert torch.corrcoef(pair)[0, 1] > 0.8


class _OnePixel(nn.Module):
    """Class 0's logit is pixel (2, 3) of what it is given; keeps every input."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.stack([x[:, 0, 2, 3], -x[:, 0, 2, 3]], dim=1)


def _one_step(**options):
    """The start, the image after the steps, and the inputs the model saw."""
    start = class_model(
        _OnePixel(), [0], (1, 8, 8), steps=0, generator=torch.Generator().manual_seed(1)
    )
    model = _OnePixel()
    options = {"l2_decay": 0.0, "pixel_clip": 0.0, "jitter": 0, "blur_every": 0, **options}
    out = class_model(model, [0], (1, 8, 8), generator=torch.Generator().manual_seed(1), **options)
    return start, out, model.seen


def test_a_jittered_step_moves_the_pixel_the_model_read():
    """The model reads a rolled image: the gradient is rolled back before the ascent,
    so the pixel that moves is the one that was at (2, 3) in what the model saw."""
    start, out, seen = _one_step(steps=1, jitter=2)
    shifts = [
        (a, b)
        for a in range(-2, 3)
        for b in range(-2, 3)
        if torch.equal(torch.roll(start, shifts=(a, b), dims=(2, 3)), seen[-1])
    ]
    assert len(shifts) == 1 and shifts[0] != (0, 0)  # seed 1 draws a non-zero roll
    (a, b) = shifts[0]
    moved = ((out - start).abs() > 1e-6).nonzero()[:, 2:].tolist()
    assert moved == [[(2 - a) % 8, (3 - b) % 8]]


def test_the_blur_comes_after_every_blur_every_th_step():
    start, out, _ = _one_step(steps=1, blur_every=2)  # step 1 of 2: not blurred
    assert ((out - start).abs() > 1e-6).nonzero()[:, 2:].tolist() == [[2, 3]]
    start, out, _ = _one_step(steps=2, blur_every=2)  # blurred after step 2
    assert int(((out - start).abs() > 1e-6).sum()) > 1


def test_class_model_neuron_of_a_transformer_block_is_a_token_feature():
    """H51: on a token layer ``(N, T, D)`` the channel indexed dim 1, the tokens: channel
    5 maximized token 5 over all its features (written as channel 5), and a channel
    below T but not below D was accepted. It is feature 5 over the patch tokens, as
    ``neuron_gradient`` and the callback's setup check read it."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        num_classes=3,
    ).eval()  # 1 class token + 16 patch tokens of 8 features
    block = vit.encoder.layers[0]
    grads = []

    def keep(module, args, output):
        output.register_hook(lambda g: grads.append(g.detach().clone()))

    handle = block.register_forward_hook(keep)
    try:
        class_model(vit, None, (3, 32, 32), neuron=("encoder.layers.encoder_layer_0", 5), steps=1)
    finally:
        handle.remove()
    (g,) = grads  # (1, 17, 8): the objective's gradient at the block's output
    assert (g[0, :, 5] != 0).sum() == 16 and bool((g[0, 0] == 0).all())  # patch tokens
    assert bool((g[0, :, [0, 1, 2, 3, 4, 6, 7]] == 0).all())  # feature 5 alone
    with pytest.raises(ValueError, match=r"`neuron channel` must be in \[0, 8\)"):
        class_model(vit, None, (3, 32, 32), neuron=("encoder.layers.encoder_layer_0", 12))
    assert not has_hooks(vit)


def test_class_model_neuron_of_a_linear_layer_is_its_output_feature():
    """H56: a layer with a 2-D output (a Linear, a ViT's ``heads.head``) failed with a raw
    IndexError (the (K,) activations were flattened from dimension 1). The neuron of
    the head that outputs the logits is the class score: the same images."""
    model = _linear_model(4)
    neurons = class_model(model, None, (3, 8, 8), neuron=("1", [0, 2]), steps=10)
    classes = class_model(model, [0, 2], (3, 8, 8), steps=10)
    torch.testing.assert_close(neurons, classes, rtol=0, atol=1e-6)


def _block_gradient(model: nn.Module, **kwargs) -> torch.Tensor:
    """The objective's gradient at ``model.block``'s output after one step."""
    grads = []

    def keep(module, args, output):
        output.register_hook(lambda g: grads.append(g.detach().clone()))

    handle = model.block.register_forward_hook(keep)
    try:
        class_model(model, None, (3, 32, 32), steps=1, jitter=0, **kwargs)
    finally:
        handle.remove()
    (g,) = grads
    return g[0]  # (16 tokens, 8 features)


def test_reshape_reads_an_unknown_token_layer_as_a_grid_for_neuron():
    """``reshape=`` (as SaliencyLogger's and neuron_gradient's) makes the channel a token
    feature of a layout lightning-viz does not know; without it dim 1 is indexed: the
    tokens (documented), and a channel below 16 tokens but not below 8 features passes."""
    torch.manual_seed(0)
    model = UnknownTokenNet().eval()
    g = _block_gradient(model, neuron=("block", 5), reshape=tokens_to_grid)
    assert int((g[:, 5] != 0).sum()) == 16  # feature 5 of every token
    assert bool((g[:, [0, 1, 2, 3, 4, 6, 7]] == 0).all())
    g = _block_gradient(model, neuron=("block", 5))  # no reshape: token 5, every feature
    assert int((g[5] != 0).sum()) > 0 and bool((g[torch.arange(16) != 5] == 0).all())
    class_model(model, None, (3, 32, 32), neuron=("block", 12), steps=1)  # token 12
    with pytest.raises(ValueError, match=r"`neuron channel` must be in \[0, 8\)"):
        class_model(model, None, (3, 32, 32), neuron=("block", 12), reshape=tokens_to_grid)
    with pytest.raises(ValueError, match="`reshape` must be None when no `neuron` is given"):
        class_model(model, [0], (3, 32, 32), reshape=tokens_to_grid)
    with pytest.raises(TypeError, match="`reshape` must be None, a TokenLayout or a callable"):
        class_model(model, None, (3, 32, 32), neuron=("block", 1), reshape=3)
    assert not has_hooks(model)


def test_a_neuron_layer_the_forward_never_runs_is_a_value_error():
    """H57: a layer beside the forward's path (a ViT's ``out_proj``, called through the
    functional attention) failed with a raw ``KeyError('layer')``."""

    class Spare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.used(x).mean((2, 3))

    with pytest.raises(ValueError, match=r"a layer the model's forward runs, got \('spare', 1\)"):
        class_model(Spare(), None, (3, 8, 8), neuron=("spare", 1), steps=2)


def test_a_neuron_given_as_any_sequence_is_read():
    """H62: a Hydra ``ListConfig`` (a Sequence, not a list) was refused by the functions
    while the callbacks took it."""
    from collections import UserList

    import lightning_viz.functional as LF

    model = _linear_model(4)
    as_list = class_model(model, None, (3, 8, 8), neuron=UserList(["1", 2]), steps=3)
    torch.testing.assert_close(
        as_list, class_model(model, None, (3, 8, 8), neuron=("1", 2), steps=3)
    )
    x = torch.rand(2, 3, 8, 8)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    cnn(x)
    torch.testing.assert_close(
        LF.neuron_gradient(cnn, x, neuron=UserList(["0", 1])),
        LF.neuron_gradient(cnn, x, neuron=("0", 1)),
    )
