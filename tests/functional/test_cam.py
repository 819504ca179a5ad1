"""CAMs: captum and pytorch-grad-cam as oracles, layer choice, state and validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import lightning_viz.functional as S  # the package: `saliency` names a function there
import lightning_viz.functional.cam as C
from lightning_viz._hooks import has_hooks

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

TARGET = torch.tensor([0, 1, 2, 3])


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _captum_gradcam(model, layer, x, target):
    low = LayerGradCam(model, layer).attribute(x.clone(), target=target, relu_attributions=True)
    return low, LayerAttribution.interpolate(low, tuple(x.shape[-2:]), interpolate_mode="bilinear")


def _minmax(cam):  # pytorch-grad-cam's scale_cam_image, per image
    flat = cam.flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    return (flat / (1e-7 + flat.max(1, keepdim=True).values)).view_as(cam)


# ----------------------------------------------------------------------------- oracles
def test_grad_cam_matches_captum_small_cnn(small_cnn, images):
    ref = copy.deepcopy(small_cnn)
    low, up = _captum_gradcam(ref, ref.conv3, images, TARGET)
    assert up.abs().sum() > 0
    _close(C.grad_cam(small_cnn, images, TARGET, layer="conv3"), up)
    _close(C.grad_cam(small_cnn, images, TARGET, layer=small_cnn.conv3), up)
    cam, idx = C._cam(small_cnn, images, TARGET, "conv3", C._gradcam_weights, upsample=False)
    _close(cam, low)
    assert idx.tolist() == TARGET.tolist()


def test_grad_cam_matches_captum_resnet18(fx):
    model = fx.make(lambda: torchvision.models.resnet18(weights=None, num_classes=5))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([3, 0])
    # the last block (2x2 at 64 px), pytorch-grad-cam's recommended layer4[-1]
    assert C.default_cam_layer(model, x) == "layer4.1"
    ref = copy.deepcopy(model)
    _, up = _captum_gradcam(ref, ref.layer4[1], x, target)
    _close(C.grad_cam(model, x, target), up, tol=1e-4)


def _one_block_resnet() -> nn.Module:
    """A ResNet whose stages have one block each (as timm's resnet10t): the last conv
    to run is the first block's shortcut (downsample) conv."""
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5)


@pytest.mark.parametrize(
    ("make", "expected", "shortcut"),
    [
        (_one_block_resnet, "layer4.0", "layer4.0.downsample.0"),
        (lambda: torchvision.models.densenet121(num_classes=5), "features.denseblock4", None),
        (
            lambda: torchvision.models.googlenet(
                num_classes=5, aux_logits=False, init_weights=False
            ),
            "inception5b",
            None,
        ),
        (lambda: torchvision.models.convnext_tiny(num_classes=5), "features.7.2", None),
    ],
    ids=["one-block resnet", "densenet121", "googlenet", "convnext_tiny"],
)
def test_the_default_layer_is_the_block_the_head_reads_not_a_branch_conv(
    fx, make, expected, shortcut
):
    """The last conv to run sits in a branch on these: a shortcut conv, one dense
    layer's 32 new channels, an Inception branch, ConvNeXt's depthwise conv before its
    MLP. The default is the block whose output the head reads; the map is
    pytorch-grad-cam's at that layer."""
    model = fx.make(make).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    layer = C.default_cam_layer(model, x)
    assert layer == expected
    if shortcut is not None:  # the layer the old rule (last conv run) picked
        assert C.grad_cam(model, x, TARGET[:2], layer=shortcut).shape == (2, 1, 64, 64)
    ref = copy.deepcopy(model)
    module = dict(ref.named_modules())[layer]
    with GradCAM(model=ref, target_layers=[module]) as cam:
        cam(x.clone(), [ClassifierOutputTarget(int(t)) for t in TARGET[:2]])
        act = cam.activations_and_grads.activations[0].numpy()
        grad = cam.activations_and_grads.gradients[0].numpy()
        low = np.maximum(cam.get_cam_image(x, module, None, act, grad), 0)
    got, _ = C._cam(model, x, TARGET[:2], layer, C._gradcam_weights, upsample=False)
    _close(got[:, 0], torch.from_numpy(low).float(), tol=1e-4)


@pytest.mark.parametrize(
    ("ours", "theirs"), [(C._gradcam_weights, GradCAM), (C._gradcam_pp_weights, GradCAMPlusPlus)]
)
def test_cams_match_pytorch_grad_cam_before_normalization(small_cnn, images, ours, theirs):
    # Low resolution (16x16 on conv3): compare pytorch-grad-cam's own pre-normalization steps
    # (get_cam_image on the activations/gradients it recorded, then its ReLU) with our map at
    # the layer's resolution, so neither its min-max scaling nor cv2.resize is involved.
    ref = copy.deepcopy(small_cnn)
    with theirs(model=ref, target_layers=[ref.conv3]) as cam:
        cam(images.clone(), [ClassifierOutputTarget(int(t)) for t in TARGET])
        act = cam.activations_and_grads.activations[0].numpy()
        grad = cam.activations_and_grads.gradients[0].numpy()
        weights = cam.get_cam_weights(images, ref.conv3, None, act, grad)
        low = np.maximum(cam.get_cam_image(images, ref.conv3, None, act, grad), 0)
    got, _ = C._cam(small_cnn, images, TARGET, "conv3", ours, upsample=False)
    _close(got[:, 0], torch.from_numpy(low).float(), tol=1e-4)
    w = ours(torch.from_numpy(act), torch.from_numpy(grad))
    _close(w, torch.from_numpy(np.asarray(weights)).float(), tol=1e-4)
    assert (w != 0).any()


@pytest.mark.parametrize(
    ("ours", "theirs"), [(C.grad_cam, GradCAM), (C.grad_cam_pp, GradCAMPlusPlus)]
)
def test_cams_match_pytorch_grad_cam_end_to_end(fx, images, ours, theirs):
    # Full resolution layer: no resize on either side, so its final output must equal our
    # public map after the same per-image min-max normalization.
    model = fx.make(fx.FullResCNN)
    ref = copy.deepcopy(model)
    target = torch.tensor([3, 1, 0, 2])
    with theirs(model=ref, target_layers=[ref.conv2]) as cam:
        expected = cam(images.clone(), [ClassifierOutputTarget(int(t)) for t in target])
    got = ours(model, images, target, layer="conv2")
    assert got.shape == (4, 1, 32, 32) and (got >= 0).all() and got.amax() > 0
    # it min-max scales twice (per layer, then after aggregating layers); eps 1e-7 matters
    # for the tiny CAMs of a random network, so do the same
    _close(_minmax(_minmax(got))[:, 0], torch.from_numpy(expected), tol=1e-4)


@pytest.mark.parametrize("reduce", ["max", "sum", None])
def test_guided_grad_cam_matches_captum(small_cnn, images, reduce):
    ref = copy.deepcopy(small_cnn)
    expected = GuidedGradCam(ref, ref.conv3).attribute(
        images.clone(), target=TARGET, interpolate_mode="bilinear"
    )
    got = C.guided_grad_cam(small_cnn, images, TARGET, layer="conv3", reduce=reduce)
    want = (
        expected
        if reduce is None
        else (
            expected.abs().amax(1, keepdim=True) if reduce == "max" else expected.abs().sum(1, True)
        )
    )
    assert want.abs().sum() > 0
    _close(got, want)


# ----------------------------------------------------------------------------- behaviour
class _Probe(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        _Probe.calls += 1
        return g


class _ProbedCNN(nn.Module):
    def __init__(self, fx) -> None:
        super().__init__()
        self.body = fx.SmallCNN()

    def forward(self, x):
        b = self.body
        x = _Probe.apply(torch.relu(b.conv1(x)))  # backward through here = past conv3
        x = b.pool(torch.relu(b.conv2(x)))
        return b.fc(torch.relu(b.conv3(x)).mean(dim=(2, 3)))


def test_backward_stops_at_the_layer(fx, images):
    model = fx.make(lambda: _ProbedCNN(fx))
    _Probe.calls = 0
    C.grad_cam(model, images, TARGET, layer="body.conv3")
    C.grad_cam_pp(model, images, TARGET, layer="body.conv3")
    assert _Probe.calls == 0
    S.saliency(model, images, TARGET)  # the probe does fire when backward goes further
    assert _Probe.calls == 1


def test_default_layer_is_last_spatial_conv(fx, small_cnn, images):
    assert C.default_cam_layer(small_cnn, images) == "conv3"
    default = C.grad_cam(small_cnn, images, TARGET)
    _close(default, C.grad_cam(small_cnn, images, TARGET, layer="conv3"))
    resnet = fx.make(lambda: torchvision.models.resnet18(weights=None, num_classes=5))
    # at 32 px layer4 is 1x1, so layer3's last block is chosen
    assert C.default_cam_layer(resnet, images[:1]) == "layer3.1"
    assert not has_hooks(resnet)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("efficientnet_b0", "features.5.2"),  # was features.6.0.block.0.0, an expansion conv
        ("regnet_y_400mf", "trunk_output.block3.block3-5"),  # was block4-0.f.a.0
        ("shufflenet_v2_x0_5", "stage3.7"),  # was stage4.0.branch2.0, one branch
        ("mobilenet_v3_small", "features.8"),  # was features.9.block.0.0
    ],
)
def test_a_last_stage_of_1x1_gives_the_stage_before_not_a_conv_inside_it(fx, name, expected):
    """At 32 px the last stage's output is 1x1: the default was the last conv with a
    larger output, the expansion conv inside the last stage's first block (before its
    strided conv). It is now the last block of the stage before."""
    model = fx.make(lambda: getattr(torchvision.models, name)(weights=None, num_classes=5))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert C.default_cam_layer(model.eval(), x) == expected
    cam = C.grad_cam(model, x, 1)
    assert cam.shape == (1, 1, 32, 32) and bool(torch.isfinite(cam).all())


def test_default_layer_execution_order_not_definition_order(images):
    class Reordered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = nn.Conv2d(4, 4, 3, padding=1)  # defined first, runs last
            self.early = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.late(self.early(x)).mean(dim=(2, 3)))

    assert C.default_cam_layer(Reordered(), images) == "late"


class _ListNet(nn.Module):
    """Blocks in an ``nn.ModuleList`` looped over in ``forward``: the list never runs."""

    def __init__(self, as_list: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        convs = [nn.Sequential(nn.Conv2d(4, 4, 3, stride=s, padding=1), nn.ReLU()) for s in (2, 1)]
        self.blocks = nn.ModuleList(convs) if as_list else nn.Sequential(*convs)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_blocks_in_a_module_list_are_searched_like_a_sequential_stage(images):
    """The search looked only at children that ran; a ModuleList never runs itself, so
    the stem before it was the default layer (timm's XCiT and PiT keep their blocks so)."""
    assert C.default_cam_layer(_ListNet(as_list=False).eval(), images[:1]) == "blocks.1.0"
    assert C.default_cam_layer(_ListNet().eval(), images[:1]) == "blocks.1.0"


class _GridEncoding(nn.Module):
    """A conv over a fixed coordinate grid: its output depends on the grid size alone
    (as XCiT's Fourier positional encoding)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(2, 4, 1)

    def forward(self, n: int, h: int, w: int) -> torch.Tensor:
        rows, cols = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        return self.proj(torch.stack([rows, cols]).expand(n, 2, h, w))


class _PositionEncoded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.pos = _GridEncoding()  # runs after the stem: the last grid before the head
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stem(x)
        f = f + self.pos(x.shape[0], *f.shape[-2:])
        return self.fc(f.relu().mean(dim=(2, 3)))


def test_a_layer_whose_output_does_not_depend_on_the_image_is_not_the_default(images):
    """A positional encoding computed from the grid size ran last with a grid output, so
    it was the default layer and every image got the same CAM (timm's XCiT). The default
    is now the last layer whose output changes with the image."""
    torch.manual_seed(0)
    model = _PositionEncoded().eval()
    assert C.default_cam_layer(model, images[:1]) == "stem"
    other = torch.rand(images.shape, generator=torch.Generator().manual_seed(2))
    target = torch.zeros(len(images), dtype=torch.long)
    ours, theirs = C.grad_cam(model, images, target), C.grad_cam(model, other, target)
    assert (ours - theirs).abs().amax() > 0.1 * ours.abs().amax() > 0
    fixed = [C.grad_cam(model, x, target, layer="pos") for x in (images, other)]
    assert torch.equal(*fixed)  # what the old default showed: one map for every image


class _FoldedPatches(nn.Module):
    """A conv over 2x2 patches folded into the batch (TNT's pixel embedding)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        patches = x.unfold(2, h // 2, h // 2).unfold(3, w // 2, w // 2)  # (N, C, 2, 2, h/2, w/2)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(n * 4, c, h // 2, w // 2)
        return self.fc(self.conv(patches).mean(dim=(2, 3)).view(n, 4, -1).mean(dim=1))


def test_a_conv_over_patches_folded_into_the_batch_is_named_for_what_it_is(images):
    """The default layer was a conv whose first dimension is N x patches, which Grad-CAM
    then refused as "not (N, C, h, w)" although its output was 4-D."""
    model = _FoldedPatches().eval()
    with pytest.raises(ValueError, match="one output \\(N, C, h, w\\) per image .* pass `layer=`"):
        C.default_cam_layer(model, images[:1])
    with pytest.raises(ValueError, match="its first dimension is 4, not the batch size 1"):
        C.grad_cam(model, images[:1], 0, layer="conv")


def test_default_layers_of_a_peft_lora_model_are_the_adapted_convs(fx, images):
    """PEFT's LoRA wraps each target conv in a layer holding the frozen ``base_layer``
    and the adapter's ``lora_A``/``lora_B`` convs (``lora_B`` zero-initialised): the
    last conv to run is ``lora_B``, whose Grad-CAM map is empty. The default layer is
    the wrapper, whose output is the adapted conv's."""
    peft = pytest.importorskip("peft")
    from lightning_viz.callbacks.activations import default_layers
    from lightning_viz.functional._grad import conv_layers, feature_conv_layers

    resnet = fx.make(lambda: torchvision.models.resnet18(weights=None, num_classes=5))
    plain = copy.deepcopy(resnet)
    config = peft.LoraConfig(r=4, target_modules=["conv1", "conv2"], modules_to_save=["fc"])
    model = peft.get_peft_model(resnet, config).eval()
    layer = C.default_cam_layer(model, images[:1])
    assert layer == "base_model.model.layer3.1"  # as without the adapters
    assert C.default_cam_layer(plain, images[:1]) == "layer3.1"
    # at initialisation the adapters add nothing: the same map as the plain model's
    torch.testing.assert_close(
        C.grad_cam(model, images, TARGET), C.grad_cam(plain, images, TARGET, layer=layer[17:])
    )
    assert C.grad_cam(model, images, TARGET).abs().sum() > 0
    names = [n for n, _ in feature_conv_layers(model)]
    assert not [n for n in names if "lora_" in n or n.endswith("base_layer")]
    assert len(names) == len(conv_layers(plain))  # one per conv of the model
    assert default_layers(model)[0] == "base_model.model.conv1"


def test_cam_outputs_non_negative_and_target_none(small_cnn, images):
    with torch.no_grad():
        pred = small_cnn(images).argmax(1)
    for fn in (C.grad_cam, C.grad_cam_pp):
        out = fn(small_cnn, images, layer="conv2")
        assert out.shape == (4, 1, 32, 32) and (out >= 0).all()
        _close(out, fn(small_cnn, images, pred, layer="conv2"))


# ----------------------------------------------------------------------------- state
CALLS = {
    "grad_cam": lambda m, x: C.grad_cam(m, x, layer="conv3"),
    "grad_cam_default": lambda m, x: C.grad_cam(m, x),
    "grad_cam_pp": lambda m, x: C.grad_cam_pp(m, x, layer=m.conv2),
    "guided_grad_cam": lambda m, x: C.guided_grad_cam(m, x, layer="conv3"),
    "default_cam_layer": lambda m, x: C.default_cam_layer(m, x),
}


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_model_left_unchanged(fx, images, name, context):
    model = fx.messy_state(fx.make(lambda: fx.SmallCNN(relu="inplace")))
    before = fx.snapshot(model)
    x = images.clone()
    with getattr(torch, context)():
        x_in = x.clone()
        out = CALLS[name](model, x_in)
    fx.assert_unchanged(model, before)
    assert torch.equal(x_in, x)
    if isinstance(out, torch.Tensor):
        assert out.shape == (4, 1, 32, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(CALLS))
def test_no_hook_leak_when_forward_raises(fx, images, name):
    model = fx.messy_state(fx.make(fx.RaisingCNN))
    before = fx.snapshot(model)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        CALLS[name](model, images)
    fx.assert_unchanged(model, before)


# ----------------------------------------------------------------------------- validation
def test_model_without_conv(fx, images):
    with pytest.raises(
        ValueError,
        match="GradCAM needs a convolutional layer; the model has none. Layers: fc1, fc2",
    ):
        C.grad_cam(fx.make(fx.MLP), images)
    with pytest.raises(ValueError, match="GradCAM needs a convolutional layer; the model has none"):
        C.default_cam_layer(fx.make(fx.MLP), images)


def test_only_1x1_conv_outputs(images):
    model = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4, 2)
    )
    with pytest.raises(ValueError, match="spatial output larger than 1x1"):
        C.grad_cam_pp(model, images)


def test_validation(small_cnn, images):
    for fn in (C.grad_cam, C.grad_cam_pp, C.guided_grad_cam):
        with pytest.raises(ValueError, match="unknown layer 'conv'. Did you mean 'conv"):
            fn(small_cnn, images, layer="conv")
        with pytest.raises(ValueError, match=r"\(N, C, h, w\) output; 'fc' returns shape \(4, 5\)"):
            fn(small_cnn, images, layer="fc")
        with pytest.raises(
            ValueError, match=r"`target` must be class indices in \[0, 5\), got \[7, 7, 7, 7\]"
        ):
            fn(small_cnn, images, 7, layer="conv3")
        with pytest.raises(TypeError, match="`target` must be an int, a tensor"):
            fn(small_cnn, images, [1, 2], layer="conv3")
        with pytest.raises(TypeError, match="`layer` must be a module name"):
            fn(small_cnn, images, layer=3)
        with pytest.raises(ValueError, match=r"got <shape \(3, 32, 32\)>"):
            fn(small_cnn, images[0], layer="conv3")
        with pytest.raises(TypeError, match="must be a torch.Tensor"):
            fn(small_cnn, images.numpy(), layer="conv3")
    with pytest.raises(
        ValueError, match=r"`reduce` must be one of \['max', 'sum', None\], got 'l2'"
    ):
        C.guided_grad_cam(small_cnn, images, reduce="l2")
    with pytest.raises(ValueError, match="is not a submodule"):
        C.grad_cam(small_cnn, images, layer=nn.Conv2d(3, 3, 1))
    small_cnn.unused = nn.Conv2d(8, 8, 1)
    with pytest.raises(ValueError, match="layer 'unused' did not run"):
        C.grad_cam(small_cnn, images, layer="unused")
    assert not has_hooks(small_cnn)
