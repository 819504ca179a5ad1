"""``trainer.fit(torch.compile(module))`` and ``precision="64-true"``/``"bf16-true"``.

Lightning unwraps a compiled LightningModule by setting the compiled forward on the
module itself (``_compiler_ctx`` keeps the original): the callbacks must run the
eager forward (hooks fire, the randomized copy is a model of its own) and leave the
compiled one in place. Under a "true" precision the parameters are float64/bfloat16
while the probe images are float32: the images are cast where they enter the model.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pytorch_lightning import Callback
from pytorch_lightning import __version__ as pl_version
from pytorch_lightning.utilities.compile import from_compiled
from torch import nn

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz._guard import ModelView, preserve_state
from lightning_viz.data import LitClassifier
from tests.conftest import fit, read_events


class _ForwardSpy(Callback):
    """Records the forward the module has once Lightning set it up for training."""

    def __init__(self) -> None:
        self.forward = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.forward = vars(pl_module).get("forward")


def _gradient_callbacks() -> list:
    return [
        lv.ActivationLogger(num_samples=2, max_channels=8, on_error="raise"),
        lv.GradCAMLogger(methods=("gradcam",), num_samples=4, quality_cost=None, on_error="raise"),
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality_cost=None, on_error="raise"),
    ]


def _fit_classifier(tmp_path, callbacks, *, compiled: bool):
    torch.manual_seed(0)
    # a negligible learning rate: the eager and the compiled training steps leave the
    # same weights, so the callbacks (eager in both runs) must write the same values
    module = LitClassifier(num_classes=5, lr=1e-12, optimizer="sgd")
    model = torch.compile(module, backend="eager") if compiled else module
    fit(tmp_path, callbacks, epochs=1, model=model, limit_train_batches=2, num_sanity_val_steps=0)
    return module, read_events(str(tmp_path))


def _older_than(version: str, wanted: tuple[int, int]) -> bool:
    major, minor = (int(part) for part in version.split("+")[0].split(".")[:2])
    return (major, minor) < wanted


@pytest.mark.skipif(
    _older_than(torch.__version__, (2, 2)) or _older_than(pl_version, (2, 2)),
    reason="on torch 2.1 with pytorch-lightning 2.1 a compiled LightningModule's fit fails "
    "before any callback runs (Lightning: self.log called twice in training_step)",
)
def test_compiled_lightning_module_runs_eager_inside_the_callbacks(tmp_path):
    spy = _ForwardSpy()
    module, ev = _fit_classifier(
        tmp_path / "compiled", [*_gradient_callbacks(), spy], compiled=True
    )
    _, eager_ev = _fit_classifier(tmp_path / "eager", _gradient_callbacks(), compiled=False)

    # the training forward is the compiled one Lightning set, before and after the callbacks
    assert module._compiler_ctx is not None
    assert spy.forward is not None
    assert spy.forward is not module._compiler_ctx["original_forward"]
    assert vars(module)["forward"] is spy.forward

    # forward hooks fired: the activation maps and the CAMs were written
    activations = [t for t in ev["images"] if t.startswith("activations/")]
    assert activations and sorted(activations) == sorted(
        t for t in eager_ev["images"] if t.startswith("activations/")
    )
    assert [e[0] for e in ev["images"]["gradcam/gradcam"]] == [2]
    assert [e[0] for e in ev["images"]["saliency/vanilla"]] == [2]

    # the randomized copy is a model of its own: the same scores as the eager run
    for method in ("vanilla", "gradcam"):
        tag = f"explain/{method}/randomization_corr"
        (value,) = [v for _, v in ev["scalars"][tag]]
        (eager,) = [v for _, v in eager_ev["scalars"][tag]]
        assert value == pytest.approx(eager, abs=1e-4), tag
        assert value < 0.99, tag  # not the original model compared with itself


def test_guard_and_randomization_copy_use_the_eager_forward_of_a_compiled_module():
    torch.manual_seed(0)
    eager = LitClassifier(num_classes=5).eval()
    module = from_compiled(torch.compile(copy.deepcopy(eager), backend="eager"))
    compiled_forward = vars(module)["forward"]
    x = torch.rand(3, 3, 32, 32)

    seen = []
    handle = module.model.block1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        with preserve_state(module) as net:
            assert vars(net)["forward"] == module._compiler_ctx["original_forward"]
            net(x)
    finally:
        handle.remove()
    assert seen  # the hook fired: the eager forward ran
    assert vars(module)["forward"] is compiled_forward  # and the compiled one is back

    def fn(m, xs, idx):
        return LF.saliency(m, xs, idx)

    expected = LF.randomization_similarity(fn, ModelView(eager), x, 1)
    result = LF.randomization_similarity(fn, ModelView(module), x, 1)
    assert torch.allclose(result.spearman, expected.spearman, atol=1e-5)
    assert (result.spearman < 0.99).all()  # the copy is randomized, not the original
    assert vars(module)["forward"] is compiled_forward


@pytest.mark.skipif(not hasattr(nn.Module, "compile"), reason="Module.compile: torch >= 2.2")
def test_a_network_compiled_in_place_runs_eager_inside_the_callbacks(tmp_path):
    """H60: ``self.model.compile()`` (in place, as PyTorch recommends) kept Dynamo's
    compiled call while the callbacks ran, whose graphs skip hooks registered later:
    ActivationLogger, GradCAMLogger and EmbeddingProjector failed ("outputs nothing").
    The randomized copy must be a model of its own too (its compiled call is bound to
    the original)."""
    torch.manual_seed(0)
    module = LitClassifier(num_classes=5, lr=1e-12, optimizer="sgd")
    module.model.compile(backend="eager")
    impl = vars(module.model)["_compiled_call_impl"]
    embed = {"num_samples": 16, "on_error": "raise"}
    callbacks = [*_gradient_callbacks(), lv.EmbeddingProjector(**embed)]
    short = {"epochs": 1, "limit_train_batches": 2, "num_sanity_val_steps": 0}
    fit(tmp_path / "in_place", callbacks, model=module, **short)
    assert vars(module.model)["_compiled_call_impl"] is impl  # put back after each run
    ev = read_events(str(tmp_path / "in_place"))
    eager = [*_gradient_callbacks(), lv.EmbeddingProjector(**embed)]
    _, eager_ev = _fit_classifier(tmp_path / "eager", eager, compiled=False)
    for prefix in ("activations/", "gradcam/", "saliency/"):
        tags = sorted(t for t in ev["images"] if t.startswith(prefix))
        assert tags and tags == sorted(t for t in eager_ev["images"] if t.startswith(prefix))
    for tag in ("embedding/knn_acc", "explain/vanilla/randomization_corr"):
        assert ev["scalars"][tag][0][1] == pytest.approx(eager_ev["scalars"][tag][0][1], abs=1e-4)
    x = torch.rand(3, 3, 32, 32)
    plain = copy.deepcopy(module.model).eval()
    plain.__dict__["_compiled_call_impl"] = None
    expected = LF.randomization_similarity(LF.saliency, plain, x, 1)
    result = LF.randomization_similarity(LF.saliency, module.model.eval(), x, 1)
    assert torch.allclose(result.spearman, expected.spearman, atol=1e-5)
    assert (result.spearman < 0.99).all()  # the copy is randomized, not the original


# -------------------------------------------------------------------- true precision
def _all_callbacks() -> list:
    common = {"on_error": "raise", "max_overhead": None}
    return [
        lv.FilterLogger(**common),
        lv.ActivationLogger(num_samples=2, max_channels=8, **common),
        lv.SaliencyLogger(
            methods=("vanilla", "smoothgrad", "integrated_gradients", "guided_backprop"),
            num_samples=4,
            smoothgrad_samples=4,
            ig_steps=4,
            quality_cost=None,
            **common,
        ),
        lv.GradCAMLogger(
            methods=("gradcam", "gradcam++"), num_samples=4, quality_cost=None, **common
        ),
        lv.EmbeddingProjector(num_samples=64, **common),
        lv.AdversarialProbe(num_samples=16, steps=3, **common),
        lv.TextureShapeBias(num_images=10, style_steps=5, refine_steps=1, **common),
        lv.CorruptionProbe(num_samples=16, **common),
        lv.ClassModelLogger(steps=10, every_n_epochs=1, **common),
    ]


# the tag family each callback writes (its images or scalars)
FAMILIES = (
    "filters",
    "activations",
    "saliency",
    "gradcam",
    "embedding",
    "robustness",
    "bias",
    "corruption",
    "class_model",
)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("64-true", torch.float64), ("bf16-true", torch.bfloat16)]
)
def test_every_callback_writes_finite_values_under_true_precision(tmp_path, precision, dtype):
    torch.manual_seed(0)
    module = LitClassifier(num_classes=5)
    fit(
        tmp_path,
        _all_callbacks(),
        epochs=1,
        model=module,
        precision=precision,
        limit_train_batches=2,
        num_sanity_val_steps=0,
    )
    assert next(module.parameters()).dtype == dtype  # the run really was in that precision
    ev = read_events(str(tmp_path))
    tags = list(ev["scalars"]) + list(ev["images"])
    for family in FAMILIES:
        assert any(t.split("/")[0] == family for t in tags), family
    for tag, values in ev["scalars"].items():
        assert all(math.isfinite(v) for _, v in values), tag
    for method in ("vanilla", "smoothgrad", "integrated_gradients", "guided_backprop"):
        assert f"saliency/{method}" in ev["images"], method
    for method in ("gradcam", "gradcam++"):
        assert f"gradcam/{method}" in ev["images"], method
        assert -1.0 <= ev["scalars"][f"explain/{method}/randomization_corr"][0][1] <= 1.0


def test_model_view_casts_pixels_to_the_model_dtype_and_returns_fp32():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    reference = LF.saliency(ModelView(LitClassifier(num_classes=5).eval()), x, 1)
    for dtype in (torch.float64, torch.bfloat16):
        torch.manual_seed(0)
        net = LitClassifier(num_classes=5).eval().to(dtype)
        view = ModelView(net, mean=(0.5,) * 3, std=(0.25,) * 3)
        logits = view(x)
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
        maps = LF.saliency(view, x, 1)
        assert maps.dtype == torch.float32 and maps.shape == reference.shape
        assert torch.isfinite(maps).all() and maps.sum() > 0


def test_embedding_projector_embeds_through_a_compiled_submodule(tmp_path):
    """Dynamo does not call hooks registered after it compiled, so the head's hook never
    fired in a validation step through ``torch.compile(backbone)``: the projector turned
    itself off with "pass `layer=`". The features now come from an eager forward of the
    same images, equal to the uncompiled model's."""
    torch.manual_seed(0)
    eager = LitClassifier(num_classes=5)
    compiled = copy.deepcopy(eager)
    compiled.model = torch.compile(compiled.model, backend="eager")
    runs = {}
    for name, module in (("eager", eager), ("compiled", compiled)):
        projector = lv.EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
        views = [lv.FilterLogger(on_error="raise"), *_gradient_callbacks()]
        fit(tmp_path / name, [projector, *views], epochs=1, model=module)
        runs[name] = read_events(str(tmp_path / name))
        runs[name + " layer"] = projector._layer_name
    # the layers are named as the uncompiled model names them (was "model._orig_mod.fc",
    # and every per-layer tag held "_orig_mod": eager and compiled runs did not line up)
    assert runs["compiled layer"] == "model.fc"
    assert "filters/model.block1.conv/norm" in runs["compiled"]["scalars"]
    assert runs["eager"]["scalars"].keys() == runs["compiled"]["scalars"].keys()
    assert runs["eager"]["images"].keys() == runs["compiled"]["images"].keys()
    assert not any("_orig_mod" in tag for tag in runs["compiled"]["images"])
    for tag in ("embedding/knn_acc", "embedding/silhouette"):
        (e,), (c,) = runs["eager"]["scalars"][tag], runs["compiled"]["scalars"][tag]
        assert e == pytest.approx(c, abs=1e-6), tag


def test_a_compiled_submodule_is_named_and_explained_as_the_uncompiled_one():
    """A compiled block was a wrapper of one child, ``_orig_mod``: Grad-CAM explained the
    whole block (after its norm and ReLU) instead of its conv, and a ViT with a compiled
    encoder or block list refused the layer names picked for it ("unknown layer
    'encoder.layers.encoder_layer_3.ln_1'. Did you mean 'encoder._orig_mod.layers...'")."""
    from lightning_viz.data import SmallCNN, vit_small
    from lightning_viz.functional._grad import resolve_layer

    torch.manual_seed(0)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    cnn = SmallCNN(5, 3, 8).eval()
    part = copy.deepcopy(cnn)
    part.block3 = torch.compile(part.block3, backend="eager")
    assert LF.default_cam_layer(part, x) == LF.default_cam_layer(cnn, x) == "block3.conv"
    torch.testing.assert_close(LF.grad_cam(part, x, y), LF.grad_cam(cnn, x, y))
    assert resolve_layer(part, "block3._orig_mod.conv") == ("block3.conv", part.block3.conv)
    assert resolve_layer(part, part.block3)[0] == "block3"
    vit = vit_small(5).eval()
    encoded = copy.deepcopy(vit)
    encoded.encoder = torch.compile(encoded.encoder, backend="eager")
    layer = LF.default_cam_layer(encoded, x[:2])
    assert layer == LF.default_cam_layer(vit, x[:2]) == "encoder.layers.encoder_layer_3.ln_1"
    torch.testing.assert_close(LF.grad_cam(encoded, x[:2], y[:2]), LF.grad_cam(vit, x[:2], y[:2]))
    torch.testing.assert_close(
        LF.attention_rollout(encoded, x[:2]), LF.attention_rollout(vit, x[:2])
    )


def test_a_module_of_the_users_named_orig_mod_keeps_its_name():
    """Only a compile wrapper's ``_orig_mod`` leaves the names: a wrapper of the user's
    holding its net as ``self._orig_mod`` beside a head ``fc`` of its own had both
    named "wrap.fc", and ``layer="wrap._orig_mod.fc"`` hooked the other layer."""
    from lightning_viz.functional._grad import conv_layers, named_layers, resolve_layer

    wrap = nn.Module()
    wrap._orig_mod = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(8))
    wrap._orig_mod.fc = nn.Linear(8, 8)
    wrap.fc, wrap.conv = nn.Linear(8, 5), nn.Conv2d(3, 4, 1)
    model = nn.Module()
    model.wrap = wrap
    names = dict(named_layers(model))
    assert names["wrap._orig_mod.fc"] is wrap._orig_mod.fc and names["wrap.fc"] is wrap.fc
    assert resolve_layer(model, "wrap._orig_mod.fc") == ("wrap._orig_mod.fc", wrap._orig_mod.fc)
    assert [n for n, _ in conv_layers(model)] == ["wrap._orig_mod.0", "wrap.conv"]
