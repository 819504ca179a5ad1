"""Token layers read as grids: layouts, default layers, token Grad-CAM against pytorch-grad-cam."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import lightning_viz.functional as LF
import lightning_viz.functional.cam as C
from lightning_viz._hooks import has_hooks
from tests.functional.vit_models import (
    HFLogits,
    Holder,
    nontrivial,
    tiny_hf,
    tiny_maxvit,
    tiny_swin,
    tiny_timm_vit,
    tiny_vit,
    vit_tokens,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

TARGET = torch.tensor([0, 1, 2, 0])
LAST_LN1 = "encoder.layers.encoder_layer_1.ln_1"


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _is_flat(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    return flat.amax(1) - flat.amin(1) <= 1e-6


@pytest.fixture
def vit(fx, x):
    """The tiny ViT of the first seed (from 1) whose Grad-CAM and Grad-CAM++ maps of ``x``
    at ``LAST_LN1`` are nowhere flat. A map that is all negative before the ReLU is flat
    and compares nothing; which seeds give one depends on how the torch version draws the
    initial weights (seed 1 on torch 2.14, a later one on torch 2.1)."""
    for seed in range(1, 30):
        model = fx.make(lambda: nontrivial(tiny_vit()), seed=seed)
        maps = [cam(model, x, TARGET, layer=LAST_LN1) for cam in (LF.grad_cam, LF.grad_cam_pp)]
        if not any(bool(_is_flat(m).any()) for m in maps):
            return model
    raise AssertionError("no seed in 1..29 gives a tiny ViT with nowhere-flat CAMs")


def _pgc_reshape(prefix: int, h: int = 4, w: int = 4):
    """pytorch-grad-cam's documented ViT reshape_transform (its tutorial), written out."""

    def reshape_transform(tensor):
        result = tensor[:, prefix:, :].reshape(tensor.size(0), h, w, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    return reshape_transform


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def _not_flat(maps: torch.Tensor) -> None:
    assert not bool(_is_flat(maps).any()), "a map is flat"


# ----------------------------------------------------------------------------- tokens_to_grid
def test_tokens_to_grid_by_hand():
    n, h, w, d = 2, 3, 4, 5
    tokens = torch.arange(n * (2 + h * w) * d, dtype=torch.float32).view(n, 2 + h * w, d)
    grid = LF.tokens_to_grid(tokens, input_size=(12, 16), patch_size=4, num_prefix_tokens=2)
    assert grid.shape == (n, d, h, w)
    for i in range(h):
        for j in range(w):  # patch (i, j) is token 2 + i * w + j, row-major
            _close(grid[:, :, i, j], tokens[:, 2 + i * w + j, :])
    # prefix count left over by the grid; grid inferred from the token count
    _close(LF.tokens_to_grid(tokens, input_size=(12, 16), patch_size=(4, 4)), grid)
    _close(LF.tokens_to_grid(tokens, input_size=(12, 16), num_prefix_tokens=2), grid)
    # channels-last (Swin): a permutation
    cl = torch.rand(n, h, w, d)
    _close(LF.tokens_to_grid(cl, input_size=(12, 16), channels_last=True), cl.permute(0, 3, 1, 2))


def test_tokens_to_grid_infers_class_and_register_tokens():
    patches = torch.rand(2, 64, 7)
    for prefix in (0, 1, 5):  # none, class token, class + 4 registers
        tokens = torch.cat([torch.rand(2, prefix, 7), patches], dim=1)
        grid = LF.tokens_to_grid(tokens, input_size=32)
        assert grid.shape == (2, 7, 8, 8)
        _close(grid.flatten(2).transpose(1, 2), patches)


def test_tokens_to_grid_errors():
    with pytest.raises(ValueError, match=r"17 tokens do not fit a 8x8 patch grid plus 1 prefix"):
        LF.tokens_to_grid(torch.rand(2, 17, 4), input_size=32, patch_size=4, num_prefix_tokens=1)
    with pytest.raises(ValueError, match=r"15 tokens do not fit a 4x4 patch grid"):
        LF.tokens_to_grid(torch.rand(2, 15, 4), input_size=32, patch_size=8)
    with pytest.raises(ValueError, match="do not form a patch grid of the 32x32 input"):
        LF.tokens_to_grid(torch.rand(2, 40, 4), input_size=32, num_prefix_tokens=0)
    with pytest.raises(
        ValueError, match=r"tokens of shape \(N, T, D\), got <shape \(2, 3, 4, 4\)>"
    ):
        LF.tokens_to_grid(torch.rand(2, 3, 4, 4), input_size=32, patch_size=8)
    with pytest.raises(ValueError, match=r"channels-last grid \(N, h, w, D\)"):
        LF.tokens_to_grid(torch.rand(2, 16, 4), input_size=32, channels_last=True)
    with pytest.raises(ValueError, match=r"\(4, 4\) grid does not match input size"):
        LF.tokens_to_grid(torch.rand(2, 4, 4, 3), input_size=32, patch_size=4, channels_last=True)
    with pytest.raises(TypeError, match="`output` must be a torch.Tensor"):
        LF.tokens_to_grid([[1.0]], input_size=32)
    with pytest.raises(ValueError, match="`patch_size` must be an int >= 1, got 0"):
        LF.tokens_to_grid(torch.rand(2, 17, 4), input_size=32, patch_size=0)
    with pytest.raises(ValueError, match="`num_prefix_tokens` must be an int >= 0, got -1"):
        LF.tokens_to_grid(torch.rand(2, 17, 4), input_size=32, num_prefix_tokens=-1)


# ----------------------------------------------------------------------------- detection
def test_layouts_of_a_torchvision_vit(vit, fx):
    layout = LF.token_layout(vit, "encoder.layers.encoder_layer_0", (32, 32))
    assert layout == LF.TokenLayout((32, 32), (8, 8), num_prefix_tokens=1)
    assert LF.token_layout(vit, vit.encoder.layers.encoder_layer_1.ln_1, 32) == layout
    assert LF.token_layout(vit, "conv_proj", 32) is None  # already (N, D, h, w)
    assert LF.token_layout(vit, "heads.head", 32) is None  # not spatial
    assert LF.is_transformer(vit) and not LF.is_transformer(fx.make(fx.SmallCNN))
    # inside a wrapper (a LightningModule's `model`)
    held = Holder(vit)
    assert LF.is_transformer(held)
    assert LF.token_layout(held, "model.encoder.layers.encoder_layer_0", 32) == layout
    assert LF.token_layout(fx.make(fx.SmallCNN), "conv3", 32) is None
    with pytest.raises(ValueError, match="unknown layer 'encoder.nope'"):
        LF.token_layout(vit, "encoder.nope", 32)


def test_swin_stages_are_channels_last_and_cam_matches_a_plain_permute(fx, x):
    swin = fx.make(tiny_swin)
    layout = LF.token_layout(swin, "features.1", 32)
    assert layout is not None and layout.channels_last
    assert LF.token_layout(swin, "features.0.0", 32) is None  # the patch-embedding conv
    assert LF.token_layout(swin, "norm", 32).channels_last
    assert LF.default_cam_layer(swin, x) == "features.3"  # last stage, 4x4 at 32 px
    assert LF.default_transformer_activation_layers(swin, x) == ["features.1", "features.3"]
    maps = LF.activation_maps(swin, x, ["features.1", "features.3"])
    assert maps["features.1"].shape == (4, 8, 8, 8) and maps["features.3"].shape == (4, 16, 4, 4)
    auto = LF.grad_cam(swin, x, TARGET)
    manual = LF.grad_cam(
        swin, x, TARGET, layer="features.3", reshape=lambda t: t.permute(0, 3, 1, 2)
    )
    _close(auto, manual)
    _not_flat(auto)


def test_maxvit_blocks_are_already_grids(fx, x):
    maxvit = fx.make(tiny_maxvit)
    for name in ("blocks.0", "blocks.0.layers.0", "blocks.0.layers.0.layers.window_attention"):
        assert LF.token_layout(maxvit, name, 32) is None
    maps = LF.activation_maps(maxvit, x, ["blocks.0.layers.0", "blocks.1.layers.0"])
    assert maps["blocks.0.layers.0"].shape == (4, 16, 8, 8)  # (N, C, H, W) as produced
    assert maps["blocks.1.layers.0"].shape == (4, 16, 4, 4)
    inside = "blocks.0.layers.0.layers.window_attention.attn_layer"
    with pytest.raises(ValueError, match=r"window-partitioned tokens \(N, G, P\*P, C\)"):
        LF.token_layout(maxvit, inside, 32)
    with pytest.raises(ValueError, match="window-partitioned"):
        LF.grad_cam(maxvit, x, layer=inside)
    assert LF.default_cam_layer(maxvit, x) == "blocks.1.layers.0"
    cam = LF.grad_cam(maxvit, x, TARGET)
    # no reshape: plain Grad-CAM of the block output, as captum computes it
    ref = copy.deepcopy(maxvit)
    low = LayerGradCam(ref, ref.blocks[1].layers[0]).attribute(
        x.clone(), target=TARGET, relu_attributions=True
    )
    _close(cam, LayerAttribution.interpolate(low, (32, 32), interpolate_mode="bilinear"))
    assert cam.sum() > 0


# ----------------------------------------------------------------------------- default layers
def test_default_cam_layer_of_a_vit_is_the_last_blocks_first_norm(vit, x):
    assert LF.default_cam_layer(vit, x) == LAST_LN1
    assert LF.default_transformer_cam_layer(vit, x) == LAST_LN1
    assert LF.default_cam_layer(Holder(vit), x) == f"model.{LAST_LN1}"
    _close(LF.grad_cam(vit, x, TARGET), LF.grad_cam(vit, x, TARGET, layer=LAST_LN1))


def _patch_token_grad(vit, x, layer_module):
    """Gradient of the summed target logits w.r.t. a layer's patch tokens, by a test hook."""
    store = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["out"] = out

    handle = layer_module.register_forward_hook(hook)
    try:
        logits = vit(x)
    finally:
        handle.remove()
    logits.gather(1, TARGET.view(-1, 1)).sum().backward()
    return store["out"].grad[:, 1:]  # (N, h*w, D) patch tokens


def test_default_layer_patch_tokens_get_gradient_and_conv_proj_is_never_chosen(vit, x):
    ref = copy.deepcopy(vit)
    name = LF.default_cam_layer(vit, x)
    assert name != "conv_proj" and "conv_proj" not in name
    g = _patch_token_grad(ref, x, ref.get_submodule(name))
    assert bool((g.flatten(1).abs().sum(1) > 0).all())
    # why not later: after the last block only the class token is read
    ref2 = copy.deepcopy(vit)
    assert _patch_token_grad(ref2, x, ref2.encoder.ln).abs().sum() == 0


def test_default_activation_layers_early_middle_late(fx, x):
    vit4 = fx.make(lambda: tiny_vit(num_layers=4))
    names = [f"encoder.layers.encoder_layer_{i}" for i in (0, 2, 3)]
    assert LF.default_transformer_activation_layers(vit4, x) == names
    vit1 = fx.make(lambda: tiny_vit(num_layers=1))
    assert LF.default_transformer_activation_layers(vit1, x) == ["encoder.layers.encoder_layer_0"]
    with pytest.raises(ValueError, match="`model` must be a torchvision VisionTransformer"):
        LF.default_transformer_activation_layers(fx.make(fx.SmallCNN), x)
    with pytest.raises(ValueError, match="`model` must be a torchvision VisionTransformer"):
        LF.default_transformer_cam_layer(fx.make(fx.SmallCNN), x)


# ----------------------------------------------------------------------------- activations, neurons
def test_activation_maps_of_a_block_are_its_patch_tokens_as_a_grid(vit, x):
    maps = LF.activation_maps(vit, x, ["encoder.layers.encoder_layer_0", "conv_proj"])
    with torch.no_grad():
        tokens = vit_tokens(vit, x)[1]  # block 0's output, (N, 17, D)
    expected = tokens[:, 1:].reshape(4, 4, 4, 16).permute(0, 3, 1, 2)
    _close(maps["encoder.layers.encoder_layer_0"], expected)
    assert maps["conv_proj"].shape == (4, 16, 4, 4)
    raw = LF.activation_maps(
        vit, x, "encoder.layers.encoder_layer_0", reshape=lambda t: t[:, :1, :, None]
    )
    _close(raw["encoder.layers.encoder_layer_0"], tokens[:, :1, :, None])  # a user reshape


def test_neuron_gradient_on_a_token_layer_is_the_patch_token_mean(vit, x):
    channel = 5
    got = LF.neuron_gradient(
        vit, x, neuron=("encoder.layers.encoder_layer_0", channel), reduce=None
    )
    xr = x.clone().requires_grad_(True)
    ref = copy.deepcopy(vit)
    tokens = vit_tokens(ref, xr)[1]
    objective = tokens[:, 1:, channel].mean(dim=1).sum()  # mean over the 16 patch tokens
    (expected,) = torch.autograd.grad(objective, xr)
    _close(got, expected)
    assert expected.abs().sum() > 0


# ----------------------------------------------------------------------------- oracles
@pytest.mark.parametrize(
    ("ours", "theirs"), [(C._gradcam_weights, GradCAM), (C._gradcam_pp_weights, GradCAMPlusPlus)]
)
def test_token_cams_match_pytorch_grad_cam(vit, x, ours, theirs):
    ref = copy.deepcopy(vit)
    layer = ref.encoder.layers.encoder_layer_1.ln_1
    targets = [ClassifierOutputTarget(int(t)) for t in TARGET]
    with theirs(model=ref, target_layers=[layer], reshape_transform=_pgc_reshape(1)) as cam:
        full = cam(x.clone(), targets)  # (N, H, W), min-max normalized, cv2-resized
        act = cam.activations_and_grads.activations[0].numpy()
        grad = cam.activations_and_grads.gradients[0].numpy()
        low = np.maximum(cam.get_cam_image(x, layer, None, act, grad), 0)
    # exact, at the layer's 4x4 resolution (before their normalization and resize)
    got_low, idx = C._cam(vit, x, TARGET, LAST_LN1, ours, upsample=False)
    assert idx.tolist() == TARGET.tolist()
    _close(got_low[:, 0], torch.from_numpy(low).float(), tol=1e-4)
    # and the maps at the input size: same picture (correlation per image)
    got = C._cam(vit, x, TARGET, LAST_LN1, ours)[0]
    _not_flat(got)
    corr = _corr(got[:, 0], torch.from_numpy(full))
    assert bool((corr > 0.98).all()), corr


def test_token_grad_cam_with_a_user_reshape_equals_the_detected_layout(vit, x):
    auto = LF.grad_cam(vit, x, TARGET, layer=LAST_LN1)
    user = LF.grad_cam(vit, x, TARGET, layer=LAST_LN1, reshape=_pgc_reshape(1))
    layout = LF.grad_cam(
        vit, x, TARGET, layer=LAST_LN1, reshape=LF.TokenLayout((32, 32), (8, 8), 1)
    )
    _close(auto, user)
    _close(auto, layout)
    _not_flat(auto)


def test_timm_vit_and_deit_layouts_and_oracle(fx, x):
    pytest.importorskip("timm")
    # seeds where no map is all-negative before the ReLU (then it is flat: nothing to compare)
    for distilled, prefix, seed in ((False, 1, 0), (True, 2, 2)):
        model = fx.make(lambda d=distilled: nontrivial(tiny_timm_vit(distilled=d)), seed=seed)
        assert LF.is_transformer(model)
        layout = LF.token_layout(model, "blocks.0", 32)
        assert layout == LF.TokenLayout((32, 32), (8, 8), num_prefix_tokens=prefix)
        assert (
            LF.token_layout(model, "patch_embed", 32).num_prefix_tokens == 0
        )  # no class token yet
        assert LF.token_layout(model, "patch_embed.proj", 32) is None
        assert LF.default_cam_layer(model, x) == "blocks.1.norm1"
        ref = copy.deepcopy(model)
        targets = [ClassifierOutputTarget(int(t)) for t in TARGET]
        with GradCAM(
            model=ref, target_layers=[ref.blocks[1].norm1], reshape_transform=_pgc_reshape(prefix)
        ) as cam:
            full = cam(x.clone(), targets)
        got = LF.grad_cam(model, x, TARGET)
        _not_flat(got)
        corr = _corr(got[:, 0], torch.from_numpy(full))
        assert bool((corr > 0.98).all()), (distilled, corr)
        maps = LF.activation_maps(model, x, ["blocks.0", "patch_embed"])
        assert maps["blocks.0"].shape == maps["patch_embed"].shape == (4, 16, 4, 4)


def test_a_transformers_swin_is_not_read_as_a_vit():
    """H51: transformers' Swin has ``embeddings.patch_embeddings``, ``config.patch_size``
    and ``encoder.layers`` like a ViT, so its merged stages were read as ViT patch
    tokens: Grad-CAM refused ("no LayerNorm to explain") and ActivationLogger too ("16
    tokens do not fit a 8x8 patch grid"). It is a transformer lightning-viz does not
    know (``config.depths``): its patch stem is the conv Grad-CAM explains, with the
    early-layer warning, and ``layer=`` with ``reshape=`` reads its blocks."""
    transformers = pytest.importorskip("transformers")
    config = transformers.SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1],
        num_heads=[1, 2, 4],
        window_size=2,
        num_labels=3,
    )
    torch.manual_seed(0)
    model = HFLogits(transformers.SwinForImageClassification(config)).eval()
    x = torch.rand(2, 3, 32, 32)
    assert not LF.is_transformer(model)
    layer = LF.default_cam_layer(model, x)
    assert layer == "hf.swin.embeddings.patch_embeddings.projection"
    cam = LF.grad_cam(model, x, torch.tensor([0, 1]), layer=layer)
    assert cam.shape == (2, 1, 32, 32) and bool(torch.isfinite(cam).all())
    assert LF.token_layout(model, "hf.swin.encoder.layers.0", 32) is None


@pytest.mark.parametrize(
    ("kind", "prefix", "norm"),
    [
        ("vit", 1, "layernorm_before"),
        ("deit_distilled", 2, "layernorm_before"),
        ("dinov2", 1, "norm1"),
    ],
)
def test_transformers_vits_layouts_default_layers_and_oracle(fx, x, kind, prefix, norm):
    """Hugging Face ViT-style encoders are known transformers: their blocks are read as
    grids after their class/distillation tokens, Grad-CAM explains the last block's
    first norm (not the patch-embedding conv, the last conv of the model), and the map
    is pytorch-grad-cam's with the same layer and reshape."""
    for seed in range(
        10
    ):  # the first seed whose maps are nowhere flat (a flat map compares nothing)
        model = fx.make(lambda: HFLogits(tiny_hf(kind)), seed=seed)
        got = LF.grad_cam(model, x, TARGET)
        if not bool(_is_flat(got).any()):
            break
    encoder = next(n for n, m in model.named_modules() if type(m).__name__.endswith("Model"))
    blocks = next(
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.ModuleList) and n.startswith(encoder)
    )
    assert LF.is_transformer(model)
    layer = f"{blocks}.1.{norm}"
    assert LF.default_cam_layer(model, x) == layer
    assert LF.default_transformer_activation_layers(model, x) == [f"{blocks}.0", f"{blocks}.1"]
    assert LF.token_layout(model, f"{blocks}.0", 32) == LF.TokenLayout(
        (32, 32), (8, 8), num_prefix_tokens=prefix
    )
    patches = f"{encoder}.embeddings.patch_embeddings"
    assert LF.token_layout(model, patches, 32).num_prefix_tokens == 0  # no class token yet
    assert LF.token_layout(model, f"{patches}.projection", 32) is None  # the conv's grid
    ref = copy.deepcopy(model)
    targets = [ClassifierOutputTarget(int(t)) for t in TARGET]
    with GradCAM(
        model=ref, target_layers=[ref.get_submodule(layer)], reshape_transform=_pgc_reshape(prefix)
    ) as cam:
        full = cam(x.clone(), targets)
    _not_flat(got)
    corr = _corr(got[:, 0], torch.from_numpy(full))
    assert bool((corr > 0.98).all()), (kind, corr)
    maps = LF.activation_maps(model, x, [f"{blocks}.0", patches])
    assert maps[f"{blocks}.0"].shape == maps[patches].shape == (4, 32, 4, 4)


# ----------------------------------------------------------------------------- state, validation
def _token_calls():
    return {
        "grad_cam": lambda m, x: LF.grad_cam(m, x),
        "grad_cam_pp": lambda m, x: LF.grad_cam_pp(m, x, 1, layer=LAST_LN1),
        "activation_maps": lambda m, x: LF.activation_maps(
            m, x, ["encoder.layers.encoder_layer_0"]
        ),
        "neuron_gradient": lambda m, x: LF.neuron_gradient(
            m, x, neuron=("encoder.layers.encoder_layer_1", 2)
        ),
        "default_cam_layer": lambda m, x: LF.default_transformer_cam_layer(m, x),
        "guided_grad_cam": lambda m, x: LF.guided_grad_cam(m, x, 0),
    }


@pytest.mark.parametrize("name", list(_token_calls()))
@pytest.mark.parametrize("context", ["plain", "inference_mode"])
def test_token_methods_leave_the_vit_unchanged(fx, x, name, context):
    model = fx.messy_state(fx.make(lambda: nontrivial(tiny_vit())))
    before = fx.snapshot(model)
    ctx = torch.inference_mode if context == "inference_mode" else torch.enable_grad
    with ctx():
        out = _token_calls()[name](model, x.clone())
    fx.assert_unchanged(model, before)
    if isinstance(out, torch.Tensor):
        assert torch.isfinite(out).all()


def test_reshape_validation(vit, x):
    with pytest.raises(TypeError, match="`reshape` must be None, a TokenLayout or a callable"):
        LF.grad_cam(vit, x, layer=LAST_LN1, reshape="tokens")
    with pytest.raises(TypeError, match="`reshape` must be"):
        LF.activation_maps(vit, x, [LAST_LN1], reshape=3)
    with pytest.raises(TypeError, match="`reshape` must be"):
        LF.neuron_gradient(vit, x, neuron=(LAST_LN1, 0), reshape=3)
    with pytest.raises(ValueError, match=r"reshape of layer '.*ln_1' must give \(N, D, h, w\)"):
        LF.grad_cam(vit, x, layer=LAST_LN1, reshape=lambda t: t)
    with pytest.raises(ValueError, match=r"17 tokens do not fit a 2x2 patch grid plus 1 prefix"):
        LF.grad_cam(vit, x, layer=LAST_LN1, reshape=LF.TokenLayout((32, 32), (16, 16), 1))
    assert not has_hooks(vit)


def test_cnn_cams_unchanged_by_the_reshape_step(small_cnn, images):
    # the CNN path does not go through a reshape: same maps with reshape=None as before,
    # and an identity reshape on a conv layer changes nothing
    plain = LF.grad_cam(small_cnn, images, TARGET, layer="conv3")
    _close(plain, LF.grad_cam(small_cnn, images, TARGET, layer="conv3", reshape=lambda t: t))
    assert LF.default_cam_layer(small_cnn, images) == "conv3"
    with pytest.raises(ValueError, match=r"CAMs need a layer with \(N, C, h, w\) output"):
        LF.grad_cam(small_cnn, images, layer="fc")
    assert isinstance(small_cnn.fc, nn.Linear)


def test_token_methods_through_a_model_view_of_a_wrapped_vit(vit, x):
    """The callbacks call the methods on ModelView(LightningModule-like wrapper): layer
    names are the user's model's, and every result equals the bare model's."""
    view = LF.ModelView(Holder(vit))
    name = f"model.{LAST_LN1}"
    assert LF.default_cam_layer(view, x[:1]) == name
    _close(LF.grad_cam(view, x, TARGET), LF.grad_cam(vit, x, TARGET))
    assert LF.default_transformer_activation_layers(view, x[:1]) == [
        "model.encoder.layers.encoder_layer_0",
        "model.encoder.layers.encoder_layer_1",
    ]
    maps = LF.activation_maps(view, x, [name])[name]
    _close(maps, LF.activation_maps(vit, x, [LAST_LN1])[LAST_LN1])
    assert maps.shape == (4, 16, 4, 4)
    _close(
        LF.neuron_gradient(view, x, neuron=(name, 3)),
        LF.neuron_gradient(vit, x, neuron=(LAST_LN1, 3)),
    )


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("cait_xxs24_224", {"img_size": 32, "patch_size": 4, "depth": 2}),
        ("xcit_nano_12_p16_224", {"img_size": 32, "patch_size": 8, "depth": 2}),
    ],
)
def test_timm_cait_and_xcit_are_not_taken_for_a_vit(name, kwargs):
    """They have ``patch_embed``, ``blocks`` and ``num_prefix_tokens`` as timm's ViT, but
    CaiT adds its class token after ``blocks`` and XCiT's patch size is one int: read as
    a ViT, the default layers failed at setup ("64 tokens do not fit ...")."""
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False, num_classes=3, **kwargs).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert not LF.is_transformer(model)
    layer = LF.default_cam_layer(model, x[:1])
    assert LF.grad_cam(model, x, torch.tensor([0, 1]), layer=layer).shape == (2, 1, 32, 32)
    from lightning_viz.functional.rollout import supports_rollout

    assert not supports_rollout(model)


@pytest.mark.parametrize("name", ["swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256"])
def test_timm_swin_stages_are_channels_last_and_cam_matches_pytorch_grad_cam(fx, x, name):
    """timm's Swin Transformers (v1, v2) are known transformers: stage outputs are read as
    channels-last grids, Grad-CAM explains the last stage larger than 1x1 (it explained
    the patch-embedding conv, the model's only conv), as pytorch-grad-cam does with the
    documented Swin reshape (a permute) at that stage."""
    timm = pytest.importorskip("timm")
    kwargs = {"img_size": 32, "window_size": 4, "embed_dim": 16, "depths": (1, 1)}
    model = fx.make(
        lambda: timm.create_model(name, pretrained=False, num_classes=3, num_heads=(1, 2), **kwargs)
    )
    assert LF.is_transformer(model)
    assert LF.token_layout(model, "layers.0", 32).channels_last
    assert LF.token_layout(model, "patch_embed", 32).channels_last
    assert LF.token_layout(model, "norm", 32).channels_last
    assert LF.token_layout(model, "patch_embed.proj", 32) is None  # the conv: (N, D, h, w)
    assert LF.token_layout(model, "head.fc", 32) is None
    assert LF.default_cam_layer(model, x) == "layers.1"  # 4x4 at 32 px
    assert LF.default_transformer_activation_layers(model, x) == ["layers.0", "layers.1"]
    maps = LF.activation_maps(model, x, ["layers.0", "layers.1"])
    assert maps["layers.0"].shape == (4, 16, 8, 8) and maps["layers.1"].shape == (4, 32, 4, 4)
    ref = copy.deepcopy(model)
    targets = [ClassifierOutputTarget(int(t)) for t in TARGET]
    with GradCAM(
        model=ref, target_layers=[ref.layers[-1]], reshape_transform=lambda t: t.permute(0, 3, 1, 2)
    ) as cam:
        full = torch.from_numpy(cam(x.clone(), targets))
    got = LF.grad_cam(model, x, TARGET)
    _not_flat(got)
    corr = _corr(got[:, 0], full)
    assert bool((corr > 0.98).all()), corr


def test_a_timm_vit_that_pads_its_input_to_whole_patches_gets_the_padded_grid():
    """timm's ``dynamic_img_pad`` pads a 70x100 input to 80x112 (a 5x7 grid of 16 px
    patches): the grid was computed rounding down (4x6), so every token layer failed
    and setup stopped the fit, whatever ``on_error`` said."""
    timm = pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=224,
        patch_size=16,
        num_classes=5,
        embed_dim=32,
        depth=2,
        num_heads=2,
        dynamic_img_size=True,
        dynamic_img_pad=True,
    ).eval()
    assert timm.__version__
    x = torch.rand(2, 3, 70, 100)
    layout = LF.token_layout(vit, "blocks.1", (70, 100))
    assert layout.input_size == (80, 112) and layout.num_prefix_tokens == 1
    tokens = torch.arange(2 * 36 * 4, dtype=torch.float).view(2, 36, 4)
    grid = layout(tokens)
    assert grid.shape == (2, 4, 5, 7)
    assert torch.equal(
        grid[:, :, 1, 2], tokens[:, 1 + 1 * 7 + 2]
    )  # row-major after the class token
    cam = LF.grad_cam(vit, x, 1, layer="blocks.1")
    assert cam.shape == (2, 1, 70, 100) and bool(torch.isfinite(cam).all())
    rollout = LF.attention_rollout(vit, x)
    assert rollout.shape == (2, 1, 70, 100)


def test_a_timm_hybrid_vit_reads_its_tokens_at_the_backbones_stride():
    """A hybrid ViT (a ResNet stem, then patches of its feature map) was read as patches
    of ``patch_embed.patch_size`` pixels (8 where 32 are one token): every token method
    failed ("5 tokens do not fit a 8x8 patch grid") and the callbacks turned off."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_r_s16_p8_224", pretrained=False, img_size=64, num_classes=3, depth=2
    ).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    layer = LF.default_cam_layer(model, x[:1])
    assert layer == "blocks.1.norm1"
    layout = LF.token_layout(model, layer, 64)
    assert layout.patch_size == (32, 32) and layout.num_prefix_tokens == 1  # a 2x2 grid
    assert LF.token_layout(model, "patch_embed.backbone.conv", 64) is None  # a conv map
    targets = [ClassifierOutputTarget(int(t)) for t in (0, 1)]
    ref = copy.deepcopy(model)
    with GradCAM(
        model=ref, target_layers=[ref.blocks[-1].norm1], reshape_transform=_pgc_reshape(1, 2, 2)
    ) as cam:
        full = torch.from_numpy(cam(x.clone(), targets))
    got = LF.grad_cam(model, x, torch.tensor([0, 1]))
    assert bool((_corr(got[:, 0], full) > 0.98).all())
    assert LF.attention_rollout(model, x).shape == (2, 1, 64, 64)


class _Distilled(nn.Module):
    """A frozen ViT teacher defined before the ViT student; forward runs the student."""

    def __init__(self) -> None:
        super().__init__()
        from lightning_viz.data import vit_small

        self.teacher = vit_small(3, num_layers=2).requires_grad_(False)
        self.student = vit_small(3, num_layers=2)

    def forward(self, x):
        return self.student(x)


def test_of_two_vits_the_defaults_are_the_one_the_forward_runs(x):
    """Every transformer default came from the first ViT defined, a frozen teacher the
    forward never runs: Grad-CAM, the activation layers and the rollouts failed ("did not
    run in the model's forward") and the callbacks turned off."""
    torch.manual_seed(0)
    model = _Distilled().eval()
    last = "encoder.layers.encoder_layer_1.ln_1"
    assert LF.default_cam_layer(model, x[:1]) == f"student.{last}"
    assert LF.default_transformer_activation_layers(model, x[:1]) == [
        "student.encoder.layers.encoder_layer_0",
        "student.encoder.layers.encoder_layer_1",
    ]
    maps = LF.grad_cam(model, x, TARGET)
    _close(maps, LF.grad_cam(model.student, x, TARGET, layer=last))
    assert float(maps.amax()) > 0
    _close(LF.attention_rollout(model, x), LF.attention_rollout(model.student, x))
    _close(LF.grad_rollout(model, x, TARGET), LF.grad_rollout(model.student, x, TARGET))
    # a layer of either network is read with its own network's layout
    assert LF.token_layout(model, f"teacher.{last}", 32).num_prefix_tokens == 1


def test_of_two_vits_rollout_applies_as_the_forward_runs_them(x):
    """``supports_rollout`` read the first ViT defined: a mean-pooled teacher beside a
    class-token student refused the student's rollouts at setup."""
    timm = pytest.importorskip("timm")
    from lightning_viz.functional.rollout import supports_rollout

    torch.manual_seed(0)
    model = _Distilled().eval()
    model.teacher = timm.models.vision_transformer.VisionTransformer(
        img_size=32,
        patch_size=4,
        embed_dim=16,
        depth=1,
        num_heads=2,
        num_classes=3,
        global_pool="avg",
    ).eval()
    assert not supports_rollout(model.teacher) and supports_rollout(model.student)
    assert supports_rollout(model, x[:1])  # the one the forward runs
    assert not supports_rollout(model)  # without images: the first defined
