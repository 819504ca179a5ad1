"""The one convention of lightning_viz.functional, read from the signatures."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import lightning_viz.functional as LF

KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY

# methods with a class target: (model, inputs, target=None, *, options)
CLASS_TARGET = [
    "saliency",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "deconvnet",
    "grad_cam",
    "grad_cam_pp",
    "guided_grad_cam",
    "grad_rollout",
]
# attacks: (model, inputs, target, eps, *, options): the target is the true labels
ATTACKS = ["fgsm", "pgd", "apgd", "apgd_mask", "square_mask", "robust_mask", "robust_accuracy"]
# model-based methods without a class target, as the module docstring lists them
NO_TARGET = {
    "neuron_gradient": ["model", "inputs"],
    "activation_maps": ["model", "inputs", "layers"],
    "default_cam_layer": ["model", "inputs"],
    "class_model": ["model", "classes", "image_shape"],
    "attention_rollout": ["model", "inputs"],
    "relu_rule_counts": ["model", "inputs"],
    # transformers: what the model is and how its layers are read
    "is_transformer": ["model"],
    "token_layout": ["model", "layer", "input_size"],
    "default_transformer_cam_layer": ["model", "inputs"],
    "default_transformer_activation_layers": ["model", "inputs"],
    "randomizable_layers": ["model"],
}
# faithfulness scores of maps: (model, inputs, maps, target=None, *, options)
MAP_SCORES = ["deletion_curve", "insertion_curve", "perturbation_curves", "road"]


def _positional(fn) -> list[inspect.Parameter]:
    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


@pytest.mark.parametrize("name", CLASS_TARGET)
def test_class_target_methods_are_model_inputs_target_then_keywords(name):
    params = _positional(getattr(LF, name))
    assert [p.name for p in params] == ["model", "inputs", "target"]
    assert params[2].default is None  # None: the predicted class
    rest = list(inspect.signature(getattr(LF, name)).parameters.values())[3:]
    assert all(p.kind is KEYWORD_ONLY for p in rest), name


@pytest.mark.parametrize("name", MAP_SCORES)
def test_map_scores_are_model_inputs_maps_target_then_keywords(name):
    params = _positional(getattr(LF, name))
    assert [p.name for p in params] == ["model", "inputs", "maps", "target"]
    assert params[3].default is None
    rest = list(inspect.signature(getattr(LF, name)).parameters.values())[4:]
    assert all(p.kind is KEYWORD_ONLY for p in rest), name


def test_randomization_takes_the_map_method_first():
    params = _positional(LF.randomization_similarity)
    assert [p.name for p in params] == ["map_fn", "model", "inputs", "target"]
    rest = list(inspect.signature(LF.randomization_similarity).parameters.values())[4:]
    assert all(p.kind is KEYWORD_ONLY for p in rest)


@pytest.mark.parametrize("name", ATTACKS)
def test_attacks_are_model_inputs_target_eps_then_keywords(name):
    params = inspect.signature(getattr(LF, name)).parameters
    positional = [p.name for p in _positional(getattr(LF, name))]
    assert positional == ["model", "inputs", "target", "eps"]
    assert params["target"].default is inspect.Parameter.empty  # the true labels
    others = [p for p in params.values() if p.name not in positional]
    assert all(p.kind in (KEYWORD_ONLY, p.VAR_KEYWORD) for p in others), name


@pytest.mark.parametrize(("name", "positional"), list(NO_TARGET.items()))
def test_methods_without_a_class_target(name, positional):
    assert [p.name for p in _positional(getattr(LF, name))] == positional


def test_a_neuron_is_always_neuron_layer_channel():
    for fn in (LF.neuron_gradient, LF.class_model):
        param = inspect.signature(fn).parameters["neuron"]
        assert param.kind is KEYWORD_ONLY


def test_every_model_based_method_is_classified():
    """A new method taking ``model`` first must join one of the lists above."""
    classified = {*CLASS_TARGET, *ATTACKS, *NO_TARGET, *MAP_SCORES}
    model_based = {
        name
        for name in LF.__all__
        if inspect.isfunction(getattr(LF, name))
        and next(iter(inspect.signature(getattr(LF, name)).parameters), None) == "model"
    }
    assert model_based == classified


@pytest.mark.parametrize("bad", [torch.tensor([1.7, 0.2]), torch.tensor([True, False])])
def test_a_float_or_bool_target_tensor_is_a_type_error(bad):
    """They were cast to class indices (1.7 -> class 1, True -> class 1), while the
    attacks refused them."""
    from tests.functional.conftest import SmallCNN, make

    model, x = make(SmallCNN), torch.rand(2, 3, 8, 8)
    for fn in (LF.saliency, LF.grad_cam, LF.integrated_gradients):
        with pytest.raises(TypeError, match=f"integer class indices.*dtype {bad.dtype}"):
            fn(model, x, bad)
    maps = torch.rand(2, 1, 8, 8)
    with pytest.raises(TypeError, match="integer class indices"):
        LF.deletion_curve(model, x, maps, bad, steps=2)
    assert LF.saliency(model, x, torch.tensor([1, 0])).shape == (2, 1, 8, 8)  # integers do


def test_a_numpy_integer_target_is_an_int():
    import numpy as np

    from tests.functional.conftest import SmallCNN, make

    model, x = make(SmallCNN), torch.rand(2, 3, 8, 8)
    assert torch.equal(LF.saliency(model, x, np.int64(1)), LF.saliency(model, x, 1))


def test_cams_come_back_in_the_inputs_dtype_from_a_bfloat16_model():
    """A bf16 model behind ModelView gave a bf16 CAM (computed in bf16) for float32
    images, while every other map is in the inputs' dtype."""
    from tests.functional.conftest import SmallCNN, make

    model, x = make(SmallCNN), torch.rand(2, 3, 8, 8)
    view = LF.ModelView(make(SmallCNN).to(torch.bfloat16))
    view.model.load_state_dict({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()})
    for fn in (LF.grad_cam, LF.grad_cam_pp):
        cam = fn(view, x, 1, layer="conv3")
        assert cam.dtype == torch.float32
        torch.testing.assert_close(cam, fn(model, x, 1, layer="conv3"), atol=0.05, rtol=0.05)


def test_model_view_stats_for_another_channel_count_are_an_error():
    """Three stats on one-channel images broadcast them to three channels."""
    view = LF.ModelView(torch.nn.Conv2d(1, 2, 1), mean=(0.5,) * 3, std=(0.2,) * 3)
    with pytest.raises(ValueError, match=r"mean/std.*1-channel images.*3 values"):
        view(torch.rand(2, 1, 4, 4))
    assert LF.ModelView(torch.nn.Conv2d(1, 2, 1), mean=(0.5,), std=(0.2,))(
        torch.rand(2, 1, 4, 4)
    ).shape == (2, 2, 4, 4)


def test_label_rows_as_a_map_target_are_named_as_rows():
    from tests.functional.conftest import SmallCNN, make

    model, x = make(SmallCNN), torch.rand(2, 3, 8, 8)
    rows = torch.nn.functional.one_hot(torch.tensor([1, 0]), 10)
    with pytest.raises(ValueError, match=r"not label rows \(N, K\).*shape \(2, 10\)"):
        LF.saliency(model, x, rows)


class _ShiftsItsInput(nn.Module):
    """A forward that changes its input in place (``x.sub_(0.5)``), as some users' do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

    def forward(self, x):
        x.sub_(0.5)
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_a_forward_that_changes_its_input_in_place():
    """The gradient methods raised torch's "a leaf Variable that requires grad is being
    used in an in-place operation"; the attacks refused [0, 1] images (their first
    forward shifted their own copy) and advised clamp=None."""
    import lightning_viz.functional as LF

    torch.manual_seed(0)
    model, x, y = _ShiftsItsInput().eval(), torch.rand(2, 3, 8, 8), torch.tensor([0, 2])
    shifted = nn.Sequential()  # the same model with the shift written out of place
    shifted.forward = lambda z: model.fc(torch.relu(model.conv(z - 0.5)).mean((2, 3)))
    kept = x.clone()
    assert torch.allclose(LF.saliency(model, x, y), LF.saliency(shifted, x, y))
    ig = LF.integrated_gradients(model, x, y, steps=3)
    assert torch.allclose(ig, LF.integrated_gradients(shifted, x, y, steps=3), atol=1e-6)
    assert torch.equal(LF.fgsm(model, x, y, 0.03), LF.fgsm(shifted, x, y, 0.03))
    adv = LF.pgd(model, x, y, 0.03, steps=2, generator=torch.Generator().manual_seed(0))
    assert float((adv - x).abs().max()) <= 0.03 + 1e-6
    assert torch.equal(x, kept)  # the caller's images untouched


def _call_with_model(name: str, model: object) -> None:
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    fn = getattr(LF, name)
    if name == "randomization_similarity":
        fn(LF.saliency, model, x, y)
    elif name == "randomizable_layers":
        fn(model)
    elif name in MAP_SCORES and name != "perturbation_curves":
        fn(model, x, torch.rand(2, 16, 16), y)
    elif name in ATTACKS:
        fn(model, x, y, 0.1)
    elif name == "activation_maps":
        fn(model, x, ["conv"])
    elif name == "neuron_gradient":
        fn(model, x, neuron=("conv", 0))
    else:
        fn(model, x, y)


@pytest.mark.parametrize(
    "name",
    [
        *CLASS_TARGET,
        *ATTACKS,
        *(m for m in MAP_SCORES if m != "perturbation_curves"),
        "randomization_similarity",
        "randomizable_layers",
        "activation_maps",
        "neuron_gradient",
    ],
)
def test_a_function_as_the_model_is_a_type_error_naming_model(name):
    """A plain function in the model slot: the attribution methods raised an
    AttributeError from deep inside (``'function' object has no attribute 'modules'``)."""
    with pytest.raises(TypeError, match=r"`model` must be a torch.nn.Module, got <function>"):
        _call_with_model(name, lambda t: t.mean((2, 3)))


def test_seeded_draws_do_not_depend_on_the_default_dtype():
    """torch.set_default_dtype(torch.float64) in the user's program changed class_model's
    images (up to 0.5) and impulse noise (a tenth of the values); float64 images got
    other Gaussian noise and other attack starts than float32 ones."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.rand(2, 3, 8, 8)

    def draws():
        gen = torch.Generator().manual_seed(1)
        return [
            LF.class_model(net, [0, 2], (3, 8, 8), steps=3),
            LF.corrupt(x, "impulse_noise", 3, generator=gen),
            LF.corrupt(x.double(), "gaussian_noise", 3, generator=gen).float(),
        ]

    before = draws()
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        after = draws()
    finally:
        torch.set_default_dtype(default)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=1e-6)
    from lightning_viz.functional.attacks import _rand

    def seeded():
        return torch.Generator().manual_seed(2)

    as_float = LF.corrupt(x, "gaussian_noise", 3, generator=seeded())
    as_double = LF.corrupt(x.double(), "gaussian_noise", 3, generator=seeded())
    torch.testing.assert_close(as_double.float(), as_float, rtol=0, atol=1e-6)
    for kind in ("uniform", "normal", "sign"):  # the attacks' random starts
        start = _rand(x.shape, x.double(), seeded(), kind)
        assert start.dtype == torch.float64
        torch.testing.assert_close(start.float(), _rand(x.shape, x, seeded(), kind))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_a_model_of_another_dtype_takes_float32_pixels_as_model_view_does(dtype):
    """H60: on a float64 or bfloat16 module, float32 images failed deep in torch ("Input
    type (torch.FloatTensor) and weight type (torch.DoubleTensor) should be the same");
    every function casts them as ``ModelView`` does, and returns the same values."""
    from lightning_viz.data import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(num_classes=3).to(dtype).eval()
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    maps = torch.rand(2, 1, 16, 16)
    calls = {
        "saliency": lambda m: LF.saliency(m, x, y),
        "grad_cam": lambda m: LF.grad_cam(m, x, y),
        "guided_grad_cam": lambda m: LF.guided_grad_cam(m, x, y),
        "activation_maps": lambda m: LF.activation_maps(m, x, ["block1.conv"])["block1.conv"],
        "neuron_gradient": lambda m: LF.neuron_gradient(m, x, neuron=("block1.conv", 1)),
        "fgsm": lambda m: LF.fgsm(m, x, y, 8 / 255),
        "deletion_curve": lambda m: LF.deletion_curve(m, x, maps, y, steps=4).auc,
    }
    for name, call in calls.items():
        out, expected = call(model), call(LF.ModelView(model))
        assert out.dtype == expected.dtype, name
        torch.testing.assert_close(out, expected, rtol=0, atol=0, msg=name)


def test_rollout_of_two_vits_and_style_transfer_cast_to_the_models_dtype():
    """H62: the forward that finds which of two ViTs runs, and the style extractor's
    forwards, were not cast (the same failure deep in torch)."""
    from torchvision.models import VisionTransformer

    def vit():
        sizes = {"num_layers": 1, "num_heads": 1, "hidden_dim": 8, "mlp_dim": 8}
        return VisionTransformer(image_size=16, patch_size=8, num_classes=3, **sizes)

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = vit(), vit()

        def forward(self, x):
            return self.a(x) + self.b(x)

    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    model = Two().double().eval()
    expected = LF.attention_rollout(LF.ModelView(model), x)
    torch.testing.assert_close(LF.attention_rollout(model, x), expected)
    extractor = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).double()
    out = LF.style_transfer(
        x, x, extractor=extractor, content_layer="0", style_layers=["0"], steps=2
    )
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
