"""Gradient attributions: hand-computed values, captum as the oracle, state and validation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import nn

import lightning_viz.functional as S  # the package: `saliency` names a function there
from lightning_viz._hooks import has_hooks

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

TARGET = torch.tensor([0, 1, 2, 3])


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- hand values
def _linear(fx):
    model = fx.LinearNet(shape=(2, 4, 4), classes=3).eval()
    w = torch.arange(3 * 32, dtype=torch.float32).view(3, 32)
    w = (w - 40.0) / 10.0 * torch.where(torch.arange(32) % 3 == 0, -1.0, 1.0)  # mixed signs
    with torch.no_grad():
        model.fc.weight.copy_(w)
        model.fc.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    return model, w


def test_linear_saliency_is_abs_weight_row(fx):
    model, w = _linear(fx)
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([2, 0, 1])
    rows = w[target].view(3, 2, 4, 4)  # the gradient of logit c is W_c, by hand
    _close(S.saliency(model, x, target, reduce=None), rows)
    _close(S.saliency(model, x, target, reduce="max"), rows.abs().amax(1, keepdim=True))
    _close(S.saliency(model, x, target, reduce="sum"), rows.abs().sum(1, keepdim=True))
    # int target = the same class for every image
    _close(S.saliency(model, x, 1, reduce=None), w[1].view(1, 2, 4, 4).expand(3, -1, -1, -1))


def test_linear_integrated_gradients_is_delta_times_weight(fx):
    model, w = _linear(fx)
    x = torch.rand(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    base = torch.full_like(x, 0.25)
    target = torch.tensor([1, 2])
    expected = (x - base) * w[target].view(2, 2, 4, 4)
    for method in ("gausslegendre", "riemann_trapezoid"):
        got = S.integrated_gradients(
            model, x, target, baseline=0.25, steps=7, method=method, reduce=None
        )
        _close(got, expected)


def test_linear_smoothgrad_is_abs_weight_with_any_noise(fx):
    model, w = _linear(fx)
    x = torch.rand(2, 2, 4, 4)
    got = S.smoothgrad(model, x, torch.tensor([0, 2]), samples=7, noise=0.5, chunk_size=3)
    rows = w[torch.tensor([0, 2])].view(2, 2, 4, 4)
    _close(got, rows.abs().amax(1, keepdim=True))


def test_neuron_gradient_by_hand_and_before_inplace_relu():
    # 1x1 conv: channel c at each pixel is w_c . x + b_c; its spatial mean has
    # gradient w_c / (H W) at every pixel, whatever follows the layer.
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-3.0, 0.25, 1.0]]).view(2, 3, 1, 1))
        conv.bias.copy_(torch.tensor([-0.5, 0.1]))
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    x = torch.rand(2, 3, 4, 4) - 0.5  # many negative pre-activations
    got = S.neuron_gradient(model, x, neuron=("0", 1), reduce=None)
    expected = torch.tensor([-3.0, 0.25, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4) / 16
    _close(got, expected)
    _close(S.neuron_gradient(model, x, neuron=(conv, 0)), torch.full((2, 1, 4, 4), 2.0 / 16))
    _close(
        S.neuron_gradient(model, x, neuron=(conv, 0), reduce="sum"),
        torch.full((2, 1, 4, 4), 3.5 / 16),
    )
    # after the ReLU the gradient is masked where the pre-activation was negative
    after = S.neuron_gradient(model, x, neuron=("1", 1), reduce=None)
    pre = conv(x)[:, 1:2].detach()
    _close(after, expected * (pre > 0))


def test_activation_maps_values_unaffected_by_inplace_relu(fx, small_cnn, images):
    model = fx.out_of_place(small_cnn)
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    maps = S.activation_maps(model, images, ["conv1", model.conv3])
    assert list(maps) == ["conv1", "conv3"]
    with torch.no_grad():
        c1 = model.conv1(images)
        c3 = model.conv3(model.pool(F.relu(model.conv2(F.relu(c1)))))
    assert (c1 < 0).any()  # so an in-place ReLU would have changed a stored reference
    _close(maps["conv1"], c1)
    _close(maps["conv3"], c3)
    assert not maps["conv1"].requires_grad
    assert S.activation_maps(model, images, "conv2")["conv2"].shape == (4, 6, 32, 32)


def test_saliency_mask_by_hand():
    maps = torch.arange(10.0).view(1, 1, 2, 5)
    mask = S.saliency_mask(maps, quantile=0.8)  # threshold 7.2
    assert mask.dtype == torch.bool and mask.shape == (1, 1, 2, 5)
    assert mask.flatten().tolist() == [False] * 8 + [True, True]
    assert not S.saliency_mask(torch.zeros(1, 1, 3, 3)).any()
    # box smoothing (radius 1) spreads a single hot pixel to its 3x3 neighbourhood
    spot = torch.zeros(1, 1, 5, 5)
    spot[0, 0, 2, 2] = 1.0
    smoothed = S.saliency_mask(spot, quantile=0.5, smooth=1)
    assert smoothed[0, 0].nonzero().tolist() == [[i, j] for i in (1, 2, 3) for j in (1, 2, 3)]


def test_saliency_in_mask_by_hand():
    maps = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2).repeat(3, 1, 1, 1)
    maps[2] = 0
    masks = torch.zeros(3, 1, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = True  # top row: (1 + 2) / 10
    masks[1, 0, :, 1] = True  # right column: (2 + 4) / 10
    masks[2] = True
    _close(S.saliency_in_mask(maps, masks), torch.tensor([0.3, 0.6, 0.0]))
    _close(S.saliency_in_mask(maps, masks[:, 0]), torch.tensor([0.3, 0.6, 0.0]))
    half = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    half[..., 0, :] = True  # an all-zero map scores 0, not the mask's share of the image
    _close(S.saliency_in_mask(torch.zeros(1, 1, 2, 2), half), torch.tensor([0.0]))


# ----------------------------------------------------------------------------- oracles
def test_saliency_matches_captum(small_cnn, images):
    ref = Saliency(copy.deepcopy(small_cnn))
    signed = ref.attribute(images.clone(), target=TARGET, abs=False)
    _close(S.saliency(small_cnn, images, TARGET, reduce=None), signed)
    absolute = ref.attribute(images.clone(), target=TARGET, abs=True)
    _close(S.saliency(small_cnn, images, TARGET), absolute.amax(1, keepdim=True))
    _close(S.saliency(small_cnn, images, TARGET, reduce="sum"), absolute.sum(1, keepdim=True))


@pytest.mark.parametrize(
    ("ours", "theirs"), [(S.guided_backprop, GuidedBackprop), (S.deconvnet, Deconvolution)]
)
def test_relu_rules_match_captum(small_cnn, images, ours, theirs):
    expected = theirs(copy.deepcopy(small_cnn)).attribute(images.clone(), target=TARGET)
    got = ours(small_cnn, images, TARGET, reduce=None)
    _close(got, expected)
    _close(ours(small_cnn, images, TARGET), expected.abs().amax(1, keepdim=True))
    # and it is not the plain gradient
    assert not torch.allclose(got, S.saliency(small_cnn, images, TARGET, reduce=None))


def test_guided_backprop_resnet18_inplace_equals_out_of_place(fx):
    model = fx.make(lambda: torchvision.models.resnet18(weights=None, num_classes=5))
    assert any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())
    twin = fx.out_of_place(model)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    maps = {}
    for method in (S.guided_backprop, S.deconvnet):
        maps[method] = a = method(model, x, torch.tensor([1, 4]), reduce=None)
        b = method(twin, x, torch.tensor([1, 4]), reduce=None)
        assert a.abs().sum() > 0
        _close(a, b)
    ref = GuidedBackprop(twin).attribute(x.clone(), target=torch.tensor([1, 4]))
    _close(maps[S.guided_backprop], ref, tol=1e-4)


@pytest.mark.parametrize("kind", ["functional", "torch"])
def test_functional_relus_are_caught_but_captum_skips_them(fx, small_cnn, images, kind):
    functional = fx.make(lambda: fx.SmallCNN(relu=kind))
    functional.load_state_dict(small_cnn.state_dict())
    for method in (S.guided_backprop, S.deconvnet):
        _close(
            method(functional, images, TARGET, reduce=None),
            method(small_cnn, images, TARGET, reduce=None),
        )
    # captum's module hooks never see F.relu: its "guided" map is the plain gradient
    theirs = GuidedBackprop(functional).attribute(images.clone(), target=TARGET)
    _close(theirs, S.saliency(functional, images, TARGET, reduce=None))
    assert not torch.allclose(theirs, S.guided_backprop(functional, images, TARGET, reduce=None))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients_matches_captum(fx, images, method):
    model = fx.make(fx.SmoothCNN)
    base = torch.full_like(images, 0.5)
    expected = IntegratedGradients(copy.deepcopy(model)).attribute(
        images.clone(), base, target=torch.tensor([0, 1, 2, 0]), n_steps=20, method=method
    )
    got = S.integrated_gradients(
        model,
        images,
        torch.tensor([0, 1, 2, 0]),
        baseline=base,
        steps=20,
        method=method,
        reduce=None,
        chunk_size=13,
    )
    if method == "riemann_trapezoid":
        # captum's trapezoid uses step 1/n instead of 1/(n-1): its weights sum to (n-1)/n,
        # so it under-integrates by that factor; ours is the textbook trapezoid rule.
        expected = expected * 20 / 19
    _close(got, expected, tol=1e-4)


@pytest.mark.parametrize("name", ["SmallCNN", "SmoothCNN"])
def test_integrated_gradients_completeness(fx, images, name):
    model = fx.make(getattr(fx, name))
    steps = 50
    attr = S.integrated_gradients(model, images, 0, steps=steps, reduce=None)
    with torch.no_grad():
        diff = model(images)[:, 0] - model(torch.zeros_like(images))[:, 0]
    assert diff.abs().min() > 1e-3
    rel = (attr.sum(dim=(1, 2, 3)) - diff).abs() / diff.abs()
    assert rel.max() < 0.01, rel
    default = S.integrated_gradients(model, images, 0, steps=steps)
    _close(default, attr.abs().amax(1, keepdim=True))


def test_smoothgrad_matches_captum_noise_tunnel_without_noise(small_cnn, images):
    ref = NoiseTunnel(Saliency(copy.deepcopy(small_cnn)))
    expected = ref.attribute(
        images.clone(), nt_type="smoothgrad", nt_samples=3, stdevs=0.0, target=TARGET
    )
    _close(
        S.smoothgrad(small_cnn, images, TARGET, samples=3, noise=0.0),
        expected.amax(1, keepdim=True),
    )


def test_smoothgrad_noise_zero_equals_saliency(small_cnn, images):
    for reduce in ("max", "sum", None):
        _close(
            S.smoothgrad(small_cnn, images, samples=5, noise=0.0, reduce=reduce, chunk_size=7),
            S.saliency(small_cnn, images, reduce=reduce),
        )


def test_smoothgrad_private_generator_reproducible(small_cnn, images):
    rng = torch.get_rng_state()
    a = S.smoothgrad(small_cnn, images, samples=4, generator=torch.Generator().manual_seed(7))
    b = S.smoothgrad(small_cnn, images, samples=4, generator=torch.Generator().manual_seed(7))
    c = S.smoothgrad(small_cnn, images, samples=4, generator=torch.Generator().manual_seed(8))
    d = S.smoothgrad(small_cnn, images, samples=4)  # default: a private seeded generator
    e = S.smoothgrad(small_cnn, images, samples=4)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a, b) and torch.equal(d, e)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, S.saliency(small_cnn, images))


def test_smoothgrad_target_resolved_on_clean_input(fx, images):
    model, w = _linear(fx)
    x = torch.rand(2, 2, 4, 4)
    with torch.no_grad():
        pred = model(x).argmax(1)
    rows = w[pred].view(2, 2, 4, 4)
    _close(S.smoothgrad(model, x, noise=3.0, samples=5, reduce=None), rows)


# ----------------------------------------------------------------------------- state
def _calls(fx):
    return {
        "saliency": lambda m, x: S.saliency(m, x),
        "smoothgrad": lambda m, x: S.smoothgrad(m, x, samples=3),
        "integrated_gradients": lambda m, x: S.integrated_gradients(m, x, steps=4),
        "guided_backprop": lambda m, x: S.guided_backprop(m, x),
        "deconvnet": lambda m, x: S.deconvnet(m, x),
        "neuron_gradient": lambda m, x: S.neuron_gradient(m, x, neuron=("conv3", 2)),
        "activation_maps": lambda m, x: S.activation_maps(m, x, ["conv1", "conv3"]),
    }


CALLS = [
    "saliency",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "deconvnet",
    "neuron_gradient",
    "activation_maps",
]


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode"])
def test_model_left_unchanged(fx, images, name, context):
    model = fx.messy_state(fx.make(lambda: fx.SmallCNN(relu="inplace")))
    before = fx.snapshot(model)
    x = images.clone()
    ctx = {
        "plain": torch.enable_grad,
        "no_grad": torch.no_grad,
        "inference_mode": torch.inference_mode,
    }[context]
    with ctx():
        x_in = x.clone()  # an inference tensor under inference_mode
        out = _calls(fx)[name](model, x_in)
    fx.assert_unchanged(model, before)
    assert torch.equal(x_in, x)  # inputs not mutated
    first = next(iter(out.values())) if isinstance(out, dict) else out
    assert first.device == x.device and torch.isfinite(first).all()


@pytest.mark.parametrize("name", CALLS)
def test_no_hook_leak_when_forward_raises(fx, images, name):
    model = fx.messy_state(fx.make(fx.RaisingCNN))
    before = fx.snapshot(model)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        _calls(fx)[name](model, images)
    fx.assert_unchanged(model, before)
    assert not has_hooks(model)
    # the ReLU rule is gone too: a later plain gradient is the ordinary one
    plain = fx.make(fx.SmallCNN)
    expected = Saliency(copy.deepcopy(plain)).attribute(images.clone(), target=0, abs=False)
    _close(S.saliency(plain, images, 0, reduce=None), expected)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "fn",
    [S.saliency, S.smoothgrad, S.integrated_gradients, S.guided_backprop, S.deconvnet],
)
def test_validation_common(small_cnn, images, fn):
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        fn(small_cnn, images.tolist())
    with pytest.raises(ValueError, match=r"got <shape \(3, 32, 32\)>"):
        fn(small_cnn, images[0])
    with pytest.raises(TypeError, match="floating-point"):
        fn(small_cnn, (images * 255).to(torch.uint8))
    with pytest.raises(
        ValueError, match=r"`reduce` must be one of \['max', 'sum', None\], got 'mean'"
    ):
        fn(small_cnn, images, reduce="mean")
    with pytest.raises(ValueError, match=r"in \[0, 5\), got \[0, 9, 0, 0\]"):
        fn(small_cnn, images, torch.tensor([0, 9, 0, 0]))
    with pytest.raises(ValueError, match="`target` must be 4 class indices .* got <3 entries>"):
        fn(small_cnn, images, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"in \[0, 5\), got \[-1"):
        fn(small_cnn, images, -1)
    with pytest.raises(TypeError, match="`target` must be an int, a tensor"):
        fn(small_cnn, images, "cat")


def test_validation_smoothgrad_and_ig(small_cnn, images):
    with pytest.raises(ValueError, match="`samples` must be an int >= 1, got 0"):
        S.smoothgrad(small_cnn, images, samples=0)
    with pytest.raises(TypeError, match="`samples` must be an int >= 1, got 2.5"):
        S.smoothgrad(small_cnn, images, samples=2.5)
    with pytest.raises(ValueError, match="`noise` must be a finite number >= 0, got -0.1"):
        S.smoothgrad(small_cnn, images, noise=-0.1)
    with pytest.raises(TypeError, match="`noise` must be a finite number >= 0, got 'big'"):
        S.smoothgrad(small_cnn, images, noise="big")
    with pytest.raises(ValueError, match="`chunk_size` must be an int >= 1, got 0"):
        S.smoothgrad(small_cnn, images, chunk_size=0)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator or None, got 3"):
        S.smoothgrad(small_cnn, images, generator=3)
    with pytest.raises(ValueError, match="`method` must be one of"):
        S.integrated_gradients(small_cnn, images, method="riemann_left")
    with pytest.raises(ValueError, match="`steps` must be an int >= 2, got 1"):
        S.integrated_gradients(small_cnn, images, steps=1, method="riemann_trapezoid")
    with pytest.raises(ValueError, match=r"`baseline` must be .* got <shape \(2, 3, 32, 32\)>"):
        S.integrated_gradients(small_cnn, images, baseline=torch.zeros(2, 3, 32, 32))
    with pytest.raises(
        TypeError, match="`baseline` must be a tensor, a float or None, got 'black'"
    ):
        S.integrated_gradients(small_cnn, images, baseline="black")
    # a per-channel baseline broadcasts
    out = S.integrated_gradients(small_cnn, images, baseline=torch.zeros(3, 1, 1), steps=2)
    assert out.shape == (4, 1, 32, 32)


def test_validation_layers(small_cnn, images):
    with pytest.raises(ValueError, match="unknown layer 'conv4'. Did you mean 'conv"):
        S.neuron_gradient(small_cnn, images, neuron=("conv4", 0))
    with pytest.raises(
        ValueError, match=r"`neuron channel` must be in \[0, 8\) for layer 'conv3', got 8"
    ):
        S.neuron_gradient(small_cnn, images, neuron=("conv3", 8))
    with pytest.raises(ValueError, match="`neuron channel` must be an int >= 0, got -1"):
        S.neuron_gradient(small_cnn, images, neuron=("conv3", -1))
    with pytest.raises(TypeError, match="`neuron channel` must be an int"):
        S.neuron_gradient(small_cnn, images, neuron=("conv3", 1.0))
    with pytest.raises(TypeError, match=r"`neuron` must be a \(layer, channel\) pair, got 'conv3'"):
        S.neuron_gradient(small_cnn, images, neuron="conv3")
    with pytest.raises(ValueError, match="unknown layer 'fc1'. Did you mean 'fc'"):
        S.activation_maps(small_cnn, images, ["conv1", "fc1"])
    with pytest.raises(TypeError, match="`layers` must be a non-empty list"):
        S.activation_maps(small_cnn, images, [])
    with pytest.raises(TypeError, match="`layer` must be a module name"):
        S.activation_maps(small_cnn, images, [3])
    small_cnn.unused = nn.Identity()  # registered but never called by forward
    with pytest.raises(ValueError, match=r"layers \['unused'\] did not run"):
        S.activation_maps(small_cnn, images, ["conv1", "unused"])
    with pytest.raises(ValueError, match=r"layer 'unused' did not run"):
        S.neuron_gradient(small_cnn, images, neuron=("unused", 0))
    assert not has_hooks(small_cnn)


def test_validation_masks():
    maps = torch.rand(2, 1, 4, 4)
    masks = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(TypeError, match="`maps` must be a torch.Tensor"):
        S.saliency_in_mask(maps.numpy(), masks)
    with pytest.raises(
        ValueError, match=r"`maps` must be of shape \(N, 1, H, W\), got <shape \(2, 3, 4"
    ):
        S.saliency_in_mask(torch.rand(2, 3, 4, 4), masks)
    with pytest.raises(TypeError, match="must be a bool tensor .* got <dtype torch.float32>"):
        S.saliency_in_mask(maps, masks.float())
    with pytest.raises(TypeError, match=r"`masks` must be a bool tensor .* got \[\[True\]\]"):
        S.saliency_in_mask(maps, [[True]])
    with pytest.raises(ValueError, match=r"`masks` must be of the maps' shape .* \(2, 1, 4, 5\)"):
        S.saliency_in_mask(maps, torch.zeros(2, 1, 4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="`maps` must be non-negative"):
        S.saliency_in_mask(maps - 0.5, masks)
    with pytest.raises(
        ValueError, match=r"`quantile` must be a finite number >= 0 and <= 1, got 1.5"
    ):
        S.saliency_mask(maps, 1.5)
    with pytest.raises(ValueError, match="`smooth` must be an int >= 0, got -1"):
        S.saliency_mask(maps, smooth=-1)
    with pytest.raises(TypeError, match="floating-point"):
        S.saliency_mask(maps.long())


def test_a_column_of_class_indices_is_the_same_target():
    """``(N, 1)`` indices were refused as label rows, with advice (``argmax(dim=1)``) that
    would have explained class 0 for every image."""
    import lightning_viz.functional as LF

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()
    x, y = torch.rand(2, 3, 4, 4), torch.tensor([1, 3])
    assert torch.equal(LF.saliency(model, x, y[:, None]), LF.saliency(model, x, y))
    row = LF.integrated_gradients(model, x, y[:, None], steps=4)
    assert torch.equal(row, LF.integrated_gradients(model, x, y, steps=4))
    with pytest.raises(ValueError, match="label rows"):
        LF.saliency(model, x, torch.tensor([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]]))


def test_a_layer_named_without_its_wrappers_prefix_is_suggested_with_it():
    """``layer="fc"`` on a LightningModule holding the net as ``model``: no suggestion
    (difflib's cutoff misses a short name inside a longer one)."""
    from lightning_viz.data import LitClassifier
    from lightning_viz.functional._grad import resolve_layer

    module = LitClassifier(num_classes=5)
    with pytest.raises(ValueError, match=r"unknown layer 'fc'\. Did you mean 'model\.fc'\?"):
        resolve_layer(module, "fc")
    with pytest.raises(ValueError, match=r"Did you mean 'model\.block2\.conv'\?"):
        resolve_layer(module, "block2.conv")


class _Bowl(nn.Module):
    """Class 0's score ``sum((x - 0.6)^2)``: its gradient ``2 (x - 0.6)`` is 0 at 0.6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = ((x - 0.6) ** 2).flatten(1).sum(1)
        return torch.stack([f, -f], dim=1)


def test_smoothgrad_noise_is_a_fraction_of_the_images_value_range():
    """At the two pixels equal to 0.6 the gradient is ``2 sigma z`` (z standard normal):
    its mean absolute value is ``2 sigma sqrt(2 / pi)``, with ``sigma = noise * (max -
    min)`` = 0.5 * 0.8 for this image (not ``noise * max``, nor twice the noise)."""
    x = torch.tensor([0.2, 1.0, 0.6, 0.6]).view(1, 1, 2, 2)
    maps = S.smoothgrad(_Bowl(), x, 0, samples=4000, noise=0.5, reduce="sum")
    sigma = 0.5 * (1.0 - 0.2)
    assert maps[0, 0, 1].mean().item() == pytest.approx(2 * sigma * (2 / torch.pi) ** 0.5, abs=0.04)
