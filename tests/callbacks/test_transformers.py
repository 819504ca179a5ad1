"""Every callback on a Vision Transformer, and the gradient views on modern CNNs.

Trains for real (one or two epochs of the built-in data), reads the event files back.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz.data import LitClassifier
from lightning_viz.data.models import vit_small
from tests.conftest import (
    all_callbacks,
    decode_png,
    fit,
    layout_and_scalars,
    lightning_info,
    read_events,
    small_datamodule,
)
from tests.functional.vit_models import tiny_hf

NAMES = ["circle", "square", "triangle", "star", "cross"]
LAST_BLOCK_NORM = "model.encoder.layers.encoder_layer_1.ln_1"


def tiny_vit() -> LitClassifier:
    """A 2-block torchvision ViT (conv stem, 4x4 patches: an 8x8 grid + class token)."""
    torch.manual_seed(0)
    return LitClassifier(vit_small(5, num_layers=2, hidden_dim=32, mlp_dim=64), lr=1e-3)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vit")
    callbacks = all_callbacks(class_names=NAMES, on_error="raise")
    saliency = next(cb for cb in callbacks if isinstance(cb, lv.SaliencyLogger))
    saliency.methods = (*saliency.methods, "rollout", "grad_rollout")
    saliency.neuron = ("model.encoder.layers.encoder_layer_0", 3)
    callbacks.append(
        lv.SaliencyLogger(
            num_samples=4, smoothgrad_samples=2, on_error="raise", tag_prefix="saliency_default"
        )
    )
    trainer, model = fit(tmp, callbacks, epochs=2, model=tiny_vit())
    return trainer, model, callbacks, read_events(str(tmp))


def test_every_callback_writes_its_tags_on_a_vit(vit_run):
    _, _, callbacks, ev = vit_run
    images, scalars = ev["images"], ev["scalars"]
    steps = [4, 8]
    expected = [
        "activations/model.encoder.layers.encoder_layer_0",
        "activations/model.encoder.layers.encoder_layer_1",
        "saliency/rollout",
        "saliency/grad_rollout",
        "saliency/guided_backprop",
        "saliency/deconvnet",
        "saliency/neuron/model.encoder.layers.encoder_layer_0/3",
        "gradcam/gradcam",
        "gradcam/gradcam++",
        "gradcam/guided_gradcam",
        "class_model/grid",
        "bias/cue_conflict",
    ]
    for tag in expected:
        assert tag in images, (tag, sorted(images))
        assert [e[0] for e in images[tag]] == steps, tag
    for tag in ("robustness/clean_acc", "bias/shape_bias", "embedding/knn_acc"):
        assert [s for s, _ in scalars[tag]] == steps, tag
    for cb in callbacks:
        assert cb._enabled, type(cb).__name__  # none turned itself off
    listed, ours = layout_and_scalars(ev)  # the dashboard of a ViT run, with a second
    assert sorted(listed) == sorted(ours)  # SaliencyLogger under its own prefix
    assert "saliency_default/bias/saliency_in_mask" in listed
    # Grad-CAM and the feature maps explain the encoder, never the patch embedding
    views = [t for t in images if t.startswith(("gradcam/", "activations/"))]
    assert views and not any("conv_proj" in t for t in views)
    gradcam = next(cb for cb in callbacks if isinstance(cb, lv.GradCAMLogger))
    assert gradcam._layer_name == LAST_BLOCK_NORM


def test_vit_default_saliency_methods_include_the_rollouts(vit_run):
    _, _, callbacks, ev = vit_run
    default = callbacks[-1]
    assert default._active == lv.callbacks.saliency.DEFAULT_METHODS  # every one applies
    for method in default._active:
        assert f"saliency_default/{method}" in ev["images"], method


def test_embedding_projector_embeds_the_class_token(vit_run):
    trainer, model, callbacks, _ = vit_run
    projector = next(cb for cb in callbacks if isinstance(cb, lv.EmbeddingProjector))
    assert projector._layer_name == "model.heads.head"  # its input: the class token after ln
    dim = model.model.hidden_dim
    tensors = list(trainer.logger.log_dir and _projector_tensors(trainer.logger.log_dir))
    assert tensors and all(t.shape[1] == dim for t in tensors)


def _projector_tensors(log_dir: str):
    import glob

    import numpy as np

    for path in glob.glob(f"{log_dir}/**/tensors.tsv", recursive=True):
        yield np.loadtxt(path, ndmin=2)


def test_vit_gradcam_image_is_not_flat(vit_run):
    _, _, _, ev = vit_run
    (_, width, height, png) = ev["images"]["gradcam/gradcam"][-1]
    img = decode_png(png).float()
    overlay = img[height // 2 :]  # second row: the CAM over the image
    assert overlay.std() > 5


# -------------------------------------------------- default methods that do not apply
class TanhCNN(nn.Module):
    """A small CNN with no ReLU-family unit: guided backprop and deconvnet do not apply."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.Tanh()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def test_default_methods_that_do_not_apply_are_skipped_with_one_info_line(tmp_path):
    cb = lv.SaliencyLogger(num_samples=4, smoothgrad_samples=2, on_error="raise")
    with lightning_info() as messages:
        fit(tmp_path, [cb], epochs=1, model=LitClassifier(TanhCNN(), lr=1e-2))
    assert cb._active == ("vanilla", "smoothgrad")
    lines = [m for m in messages if "skips its default methods" in m]
    assert len(lines) == 1
    for method in ("guided_backprop", "deconvnet", "rollout", "grad_rollout"):
        assert repr(method) in lines[0]
    assert "act (Tanh)" in lines[0]  # names what the model uses instead
    images = read_events(str(tmp_path))["images"]
    assert {t for t in images if t.startswith("saliency/")} == {
        "saliency/vanilla",
        "saliency/smoothgrad",
        "saliency/segmentation",
    }


def test_default_rollouts_that_fail_on_a_probe_image_are_skipped_not_the_callback(
    tmp_path, monkeypatch
):
    """Rollout was offered by the model's type alone: on a ViT whose token grid it could
    not read (a timm hybrid ViT, before its grid was known), the first epoch-end run
    failed and the whole callback turned off, the methods that work with it."""

    def cannot(*args, **kwargs):
        raise ValueError("5 tokens do not fit a 8x8 patch grid")

    monkeypatch.setattr(LF, "attention_rollout", cannot)
    cb = lv.SaliencyLogger(num_samples=4, smoothgrad_samples=2, quality=(), on_error="raise")
    with lightning_info() as messages:
        fit(tmp_path, [cb], epochs=1, model=LitClassifier(vit_small(5), lr=1e-3))
    assert cb._enabled and "rollout" in cb.methods and "grad_rollout" in cb.methods
    assert cb._active == tuple(m for m in cb.methods if m not in ("rollout", "grad_rollout"))
    (line,) = [m for m in messages if "skips its default methods" in m]
    assert "'rollout', 'grad_rollout' (it failed on a probe image: ValueError: 5 tokens" in line
    assert "saliency/vanilla" in read_events(str(tmp_path))["images"]


@pytest.mark.parametrize(
    ("methods", "model", "match"),
    [
        (("rollout",), None, r"`methods` must be methods that apply .*Vision Trans.*'rollout'"),
        (("vanilla", "guided_backprop"), TanhCNN, r"no ReLU-family unit.*'guided_backprop'"),
    ],
)
def test_explicit_method_that_does_not_apply_raises_at_setup(tmp_path, methods, model, match):
    cb = lv.SaliencyLogger(methods=methods, num_samples=4, on_error="warn")
    module = None if model is None else LitClassifier(model(), lr=1e-2)
    with pytest.raises(ValueError, match=match):
        fit(tmp_path, [cb], epochs=1, model=module)


def test_guided_gradcam_on_a_model_without_relus_is_a_configuration_error(tmp_path):
    """It was found only at the first epoch end (the callback turned off)."""
    cb = lv.GradCAMLogger(methods=("gradcam", "guided_gradcam"), num_samples=4, on_error="warn")
    match = r"`methods` must be methods that apply .*no ReLU-family unit.*got 'guided_gradcam'"
    with pytest.raises(ValueError, match=match):
        fit(tmp_path, [cb], epochs=1, model=LitClassifier(TanhCNN(), lr=1e-2))


def test_gelu_network_guided_backprop_is_not_the_plain_gradient():
    torch.manual_seed(0)
    net = vit_small(5, num_layers=2, hidden_dim=32, mlp_dim=64).eval()
    x = torch.rand(3, 3, 32, 32)
    guided = LF.guided_backprop(net, x, reduce=None)
    plain = LF.saliency(net, x, reduce=None)  # saliency is the abs gradient; compare signed
    x2 = x.clone().requires_grad_(True)
    net(x2).gather(1, net(x).argmax(1, keepdim=True)).sum().backward()
    assert not torch.allclose(guided, x2.grad, atol=1e-6)
    assert plain.shape == guided.shape


# ------------------------------------------------- modern CNNs: the gradient views run
def _cnn(name: str) -> nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None, num_classes=5)


@pytest.mark.parametrize(
    "name", ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"]
)
def test_gradient_views_on_torchvision_cnns_at_32px(tmp_path, name):
    callbacks = [
        lv.ActivationLogger(num_samples=2, max_channels=4, on_error="raise"),
        lv.SaliencyLogger(
            methods=("vanilla", "guided_backprop", "deconvnet"),
            num_samples=2,
            on_error="raise",
        ),
        lv.GradCAMLogger(methods=("gradcam", "gradcam++"), num_samples=2, on_error="raise"),
    ]
    dm = small_datamodule(train_size=16, val_size=10, batch_size=8)
    fit(
        tmp_path,
        callbacks,
        epochs=1,
        model=LitClassifier(_cnn(name), lr=1e-3),
        datamodule=dm,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    images = read_events(str(tmp_path))["images"]
    for tag in ("saliency/vanilla", "saliency/guided_backprop", "saliency/deconvnet"):
        assert tag in images, (name, tag)
    for tag in ("gradcam/gradcam", "gradcam/gradcam++"):
        (_, _, height, png) = images[tag][-1]
        overlay = decode_png(png).float()[height // 2 :]
        assert overlay.std() > 1, (name, tag)  # a map, not a blank
    assert len([t for t in images if t.startswith("activations/")]) == 3
    for cb in callbacks:
        assert cb._enabled


# -------------------------------------------------- a Hugging Face transformers ViT
class HFViTModule(LitClassifier):
    """A transformers ``ViTForImageClassification`` trained as a user would: the module
    returns the ``ModelOutput`` and the loss reads ``.logits``."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(tiny_hf("vit", num_hidden_layers=3, num_labels=5), lr=1e-3)

    def forward(self, x):
        return self.model(pixel_values=x)

    def _shared_step(self, batch, prefix):
        x, y = batch[0], batch[1]
        loss = torch.nn.functional.cross_entropy(self(x).logits, y)
        self.log(f"{prefix}_loss", loss, batch_size=len(y))
        return loss


def test_a_transformers_vit_gets_the_encoder_layers_and_the_rollouts(tmp_path):
    blocks = [n for n, m in HFViTModule().named_modules() if type(m).__name__ == "ViTLayer"]
    common = {"output_to_logits": lambda out: out.logits, "on_error": "raise"}
    gradcam = lv.GradCAMLogger(num_samples=4, quality=(), **common)
    activations = lv.ActivationLogger(num_samples=2, max_channels=4, **common)
    saliency = lv.SaliencyLogger(num_samples=4, smoothgrad_samples=2, quality=(), **common)
    with lightning_info() as messages:
        _, module = fit(tmp_path, [gradcam, activations, saliency], epochs=1, model=HFViTModule())
    # the last block's first norm, never the patch-embedding conv (the model's last conv)
    assert gradcam._layer_name == f"{blocks[-1]}.layernorm_before"
    assert activations._chosen == blocks  # early, middle, late block
    # every default method applies: the rollouts read the attention weights of
    # transformers' blocks (they were skipped), guided backprop its GELUs
    assert saliency._active == saliency.methods
    assert {"rollout", "grad_rollout", "guided_backprop"} <= set(saliency._active)
    assert not any("skips its default methods" in m for m in messages)
    assert module.model.config._attn_implementation == "sdpa"  # put back after each run
    images = read_events(str(tmp_path))["images"]
    assert [s for s, *_ in images["saliency/rollout"]] == [4]
    assert [s for s, *_ in images["saliency/grad_rollout"]] == [4]
    assert [s for s, *_ in images["gradcam/gradcam"]] == [4]
    for block in blocks:
        assert [s for s, *_ in images[f"activations/{block}"]] == [4], block


def test_a_timm_swin_gets_its_stages_for_gradcam_and_activations(tmp_path):
    """A timm Swin (a known transformer): Grad-CAM explains the last stage, not the
    patch-embedding conv (the model's only conv, and what the CNN rule took);
    ActivationLogger shows the stages, read as grids; the maps are not blank."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        num_classes=5,
        img_size=32,
        window_size=4,
        embed_dim=16,
        depths=(1, 1),
        num_heads=(1, 2),
    )
    gradcam = lv.GradCAMLogger(num_samples=2, quality=(), on_error="raise")
    activations = lv.ActivationLogger(num_samples=2, max_channels=4, on_error="raise")
    fit(tmp_path, [gradcam, activations], epochs=1, model=LitClassifier(swin, lr=1e-3))
    assert gradcam._layer_name == "model.layers.1"
    assert activations._chosen == ["model.layers.0", "model.layers.1"]
    images = read_events(str(tmp_path))["images"]
    (_, _, height, png) = images["gradcam/gradcam"][-1]
    assert decode_png(png).float()[height // 2 :].std() > 1  # a map, not a blank
    assert {t for t in images if t.startswith("activations/")} == {
        "activations/model.layers.0",
        "activations/model.layers.1",
    }
