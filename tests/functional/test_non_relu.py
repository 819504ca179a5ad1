"""Guided backprop and deconvnet beyond ReLU: the documented rule by hand; refusal without ReLUs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

import lightning_viz.functional as LF
from lightning_viz._hooks import has_hooks, relu_backward
from tests.functional.vit_models import nontrivial, tiny_vit


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.fixture
def x() -> Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))


class ActCNN(nn.Module):
    """conv-act-conv-act-gap-linear with the activation called as a module or functionally."""

    def __init__(self, act: str = "gelu", call: str = "module", classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)
        self.kind, self.call = act, call
        if call in ("module", "inplace"):
            self.act1 = _module(act, inplace=call == "inplace")
            self.act2 = _module(act, inplace=call == "inplace")

    def _act(self, i: int, t: Tensor) -> Tensor:
        if self.call == "functional":
            return _functional(self.kind, t)
        return getattr(self, f"act{i}")(t)

    def forward(self, x: Tensor) -> Tensor:
        x = self._act(1, self.conv1(x))
        x = self._act(2, self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


def _module(kind: str, inplace: bool) -> nn.Module:
    if kind == "gelu":
        return nn.GELU()
    if kind == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if kind == "silu":
        return nn.SiLU(inplace=inplace)
    if kind == "hardswish":
        return nn.Hardswish(inplace=inplace)
    if kind == "mish":
        return nn.Mish(inplace=inplace)
    if kind == "elu":
        return nn.ELU(alpha=0.7, inplace=inplace)
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=inplace)
    if kind == "relu6":
        return nn.ReLU6(inplace=inplace)
    if kind == "tanh":
        return nn.Tanh()
    raise AssertionError(kind)


def _functional(kind: str, t: Tensor) -> Tensor:
    return {
        "gelu": lambda: F.gelu(t),
        "gelu_tanh": lambda: F.gelu(t, approximate="tanh"),
        "silu": lambda: F.silu(t),
        "hardswish": lambda: F.hardswish(t),
        "mish": lambda: F.mish(t),
        "elu": lambda: F.elu_(t.clone(), 0.7),  # the in-place functional form
        "leaky_relu": lambda: F.leaky_relu_(t.clone(), 0.2),
        "relu6": lambda: F.relu6(t),
        "tanh": lambda: torch.tanh(t),
    }[kind]()


KINDS = ["gelu", "gelu_tanh", "silu", "hardswish", "mish", "elu", "leaky_relu", "relu6"]
COUNTED = {"gelu_tanh": "gelu"}


# ----------------------------------------------------------------------------- by hand
def test_guided_backprop_on_a_gelu_cnn_is_not_the_vanilla_gradient(fx, x):
    model = fx.make(lambda: ActCNN("gelu"))
    vanilla = LF.saliency(model, x, 1, reduce=None)
    for method in (LF.guided_backprop, LF.deconvnet):
        got = method(model, x, 1, reduce=None)
        assert got.abs().sum() > 0
        assert not torch.allclose(got, vanilla, atol=1e-6)
    assert LF.relu_rule_counts(model, x) == {"gelu": 2}


class GeluMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3 * 4 * 4, 10)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x.flatten(1))))


def _gelu_slope(z: Tensor) -> Tensor:
    """d/dz z Phi(z) = Phi(z) + z phi(z)."""
    phi = torch.exp(-0.5 * z**2) / (2 * torch.pi) ** 0.5
    cdf = 0.5 * (1 + torch.erf(z / 2**0.5))
    return cdf + z * phi


@pytest.mark.parametrize("mode", ["guided", "deconvnet"])
def test_one_hidden_layer_gelu_mlp_by_hand(fx, mode):
    model = fx.make(GeluMLP)
    xs = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 1, 0])
    w1, b1, w2 = model.fc1.weight, model.fc1.bias, model.fc2.weight
    with torch.no_grad():
        z = xs.flatten(1) @ w1.T + b1  # (5, 10) pre-activations
        g = w2[target]  # (5, 10): d logit_t / d gelu(z)
        gate = (z > 0).float() if mode == "guided" else torch.ones_like(z)
        dz = g.clamp(min=0) * gate * _gelu_slope(z)
        expected = (dz @ w1).view_as(xs)
    method = LF.guided_backprop if mode == "guided" else LF.deconvnet
    got = method(model, xs, target, reduce=None)
    _close(got, expected)
    assert not torch.allclose(got, LF.saliency(model, xs, target, reduce=None), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["guided", "deconvnet"])
def test_rule_is_relu_of_gradient_times_local_slope(kind, mode):
    # one unit: backward of sum(f(x) * g) under the rule vs a central finite difference of f
    xs = torch.linspace(-3.5, 6.5, 41, dtype=torch.float64)  # avoids the kinks exactly
    xs = xs[(xs - 0).abs() > 1e-3]
    g = torch.randn(xs.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f = _module(kind, inplace=False)
    h = 1e-6
    slope = (f(xs + h) - f(xs - h)) / (2 * h)
    gate = (xs > 0).double() if mode == "guided" else torch.ones_like(xs)
    expected = g.clamp(min=0) * gate * slope
    for call in ("module", "inplace", "functional"):
        leaf = xs.clone().requires_grad_(True)
        with relu_backward(mode) as rule:
            t = leaf * 1.0  # a non-leaf, so in-place calls are legal
            if call == "functional":
                y = _functional(kind, t)
            else:
                y = _module(kind, inplace=call == "inplace")(t)
            (got,) = torch.autograd.grad(y, leaf, g)
        _close(y.detach(), f(xs))  # the forward is untouched
        _close(got, expected, tol=1e-6)
        assert rule.counts == {COUNTED.get(kind, kind): 1} and rule.calls == 1, call


@pytest.mark.parametrize("kind", KINDS)
def test_module_inplace_and_functional_models_agree(fx, x, kind):
    maps = {}
    for call in ("module", "inplace", "functional"):
        model = fx.make(lambda c=call: ActCNN(kind, c))
        maps[call] = LF.guided_backprop(model, x, 2, reduce=None)
        assert LF.relu_rule_counts(model, x) == {COUNTED.get(kind, kind): 2}
        assert not torch.allclose(maps[call], LF.saliency(model, x, 2, reduce=None), atol=1e-7)
    _close(maps["inplace"], maps["module"])
    _close(maps["functional"], maps["module"])


def test_relu_is_unchanged_and_counted(fx, x, small_cnn):
    assert LF.relu_rule_counts(small_cnn, x) == {"relu": 3}
    functional = fx.make(lambda: fx.SmallCNN(relu="functional"))
    assert LF.relu_rule_counts(functional, x) == {"relu": 3}


def test_a_vit_counts_its_gelus(fx, x):
    vit = fx.make(lambda: nontrivial(tiny_vit()))
    assert LF.relu_rule_counts(vit, x) == {"gelu": 2}
    got = LF.guided_backprop(vit, x, 0, reduce=None)
    assert not torch.allclose(got, LF.saliency(vit, x, 0, reduce=None), atol=1e-7)


# ----------------------------------------------------------------------------- refusal
def test_tanh_only_model_raises_naming_its_activations(fx, x):
    model = fx.make(lambda: ActCNN("tanh"))
    for method in (LF.guided_backprop, LF.deconvnet):
        name = "guided backprop" if method is LF.guided_backprop else "deconvnet"
        with pytest.raises(ValueError, match=rf"{name} is defined for ReLU-like units") as err:
            method(model, x)
        msg = str(err.value)
        assert "act1 (Tanh), act2 (Tanh)" in msg and "tanh x2" in msg
        assert "GELU" in msg and "Use saliency or integrated_gradients" in msg
    functional = fx.make(lambda: ActCNN("tanh", "functional"))
    with pytest.raises(ValueError, match=r"Activation modules: none; activation calls: tanh x2"):
        LF.guided_backprop(functional, x)
    with pytest.raises(ValueError, match="guided backprop is defined for ReLU-like units"):
        LF.guided_grad_cam(model, x, layer="conv2")
    assert LF.relu_rule_counts(model, x) == {}
    assert not has_hooks(model)


def test_models_without_activations_raise(fx):
    linear = fx.make(fx.LinearNet)
    with pytest.raises(ValueError, match="Activation modules: none; activation calls: none"):
        LF.guided_backprop(linear, torch.rand(2, 2, 4, 4))
    smooth = fx.make(fx.SmoothCNN)  # softplus then tanh: smooth, not ReLU-like
    with pytest.raises(ValueError, match="activation calls: softplus x1, tanh x1"):
        LF.deconvnet(smooth, torch.rand(2, 3, 32, 32))


def test_hardtanh_other_than_relu6_is_not_replaced():
    leaf = torch.tensor([-0.5, 0.5, 2.0], requires_grad=True)
    with relu_backward("guided") as rule:
        (got,) = torch.autograd.grad(F.hardtanh(leaf * 1.0), leaf, torch.tensor([1.0, -1.0, 1.0]))
    _close(got, torch.tensor([1.0, -1.0, 0.0]))  # ordinary gradient
    assert rule.calls == 0 and rule.others == {"hardtanh": 1}


@pytest.mark.parametrize("context", ["plain", "inference_mode"])
def test_gelu_rules_leave_the_model_unchanged(fx, x, context):
    model = fx.messy_state(fx.make(lambda: ActCNN("silu", "inplace")))
    before = fx.snapshot(model)
    ctx = torch.inference_mode if context == "inference_mode" else torch.enable_grad
    with ctx():
        xi = x.clone()
        for method in (LF.guided_backprop, LF.deconvnet):
            assert torch.isfinite(method(model, xi)).all()
        LF.relu_rule_counts(model, xi)
    fx.assert_unchanged(model, before)
    assert torch.equal(xi, x)


@pytest.mark.parametrize(
    ("factory", "kinds"),
    [
        ("resnet18", {"relu"}),
        ("mobilenet_v3_small", {"relu", "hardswish"}),
        ("efficientnet_b0", {"silu"}),
        ("convnext_tiny", {"gelu"}),
    ],
)
def test_torchvision_classifiers_get_the_rule_of_their_units(fx, factory, kinds):
    model = fx.make(lambda: getattr(torchvision.models, factory)(num_classes=4))
    for name, p in model.named_parameters():
        if name.endswith("layer_scale"):  # ConvNeXt starts its residual branches at 1e-6:
            p.data.fill_(1.0)  # the gradient would bypass every GELU
    xs = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = fx.snapshot(model)
    counts = LF.relu_rule_counts(model, xs)
    assert set(counts) == kinds and all(c > 0 for c in counts.values())
    vanilla = LF.saliency(model, xs, 1, reduce=None)
    for method in (LF.guided_backprop, LF.deconvnet):
        got = method(model, xs, 1, reduce=None)
        assert torch.isfinite(got).all() and got.abs().sum() > 0
        # random deep nets have tiny input gradients at 32 px: compare relative to their size
        assert (got - vanilla).norm() > 1e-2 * vanilla.norm()
    fx.assert_unchanged(model, before)
