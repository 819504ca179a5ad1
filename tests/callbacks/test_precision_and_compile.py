"""Mixed precision and torch.compile: the methods still see gradients, in fp32."""

from __future__ import annotations

import copy

import pytest
import torch

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz._guard import ModelView, preserve_state
from lightning_viz._hooks import has_hooks
from lightning_viz.data import LitClassifier, SmallCNN
from tests.conftest import fit, read_events


def _cpu_autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


class _Recording(LitClassifier):
    """Records, for every forward outside training, autocast and grad mode."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x):
        if not self.training:
            self.calls.append((_cpu_autocast_enabled(), torch.is_grad_enabled()))
        return super().forward(x)


def test_bf16_mixed_forward_runs_under_autocast_and_gradients_flow(tmp_path):
    model = _Recording(num_classes=5)
    callbacks = [
        lv.SaliencyLogger(methods=("vanilla", "guided_backprop"), num_samples=3, on_error="raise"),
        lv.GradCAMLogger(methods=("gradcam", "gradcam++"), num_samples=3, on_error="raise"),
    ]
    fit(tmp_path, callbacks, epochs=1, model=model, precision="bf16-mixed")
    # the callbacks' forwards (grad enabled, outside training) ran under autocast
    assert (True, True) in model.calls
    assert all(autocast for autocast, grad in model.calls if grad)
    ev = read_events(str(tmp_path))
    assert [e[0] for e in ev["images"]["saliency/guided_backprop"]] == [4]
    assert [e[0] for e in ev["images"]["gradcam/gradcam++"]] == [4]
    value = ev["scalars"]["bias/saliency_in_mask"][0][1]
    assert 0.0 < value < 1.0


def test_model_view_returns_fp32_logits_and_fp32_input_gradients():
    net = SmallCNN(num_classes=5).eval()
    x = torch.rand(2, 3, 32, 32)
    view = ModelView(net, forward_context=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    logits = view(x)
    assert logits.dtype == torch.float32
    maps = LF.saliency(view, x, 1)
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all() and maps.sum() > 0


def test_compiled_submodule_uses_the_original_forward():
    torch.manual_seed(0)
    eager = SmallCNN(num_classes=5).eval()
    compiled_net = torch.compile(copy.deepcopy(eager), backend="eager")
    x = torch.rand(3, 3, 32, 32)
    holder = torch.nn.Sequential(compiled_net)  # a compiled module inside the user's model
    compiled_forward = compiled_net.__dict__["forward"]
    for fn in (LF.guided_backprop, LF.saliency):
        assert torch.allclose(fn(holder, x, 2), fn(eager, x, 2), atol=1e-6)
    cam_eager = LF.grad_cam(eager, x, 2, layer="block3.conv")
    cam_compiled = LF.grad_cam(holder, x, 2, layer="0._orig_mod.block3.conv")
    assert torch.allclose(cam_eager, cam_compiled, atol=1e-6) and cam_eager.sum() > 0
    assert compiled_net.__dict__["forward"] is compiled_forward  # the compiled forward is back
    assert not has_hooks(holder)


def test_compiled_forward_restored_when_the_method_raises():
    compiled_net = torch.compile(SmallCNN(num_classes=5), backend="eager")
    before = compiled_net.__dict__["forward"]
    holder = torch.nn.Sequential(compiled_net)
    with pytest.raises(RuntimeError, match="boom"), preserve_state(holder):
        assert compiled_net.__dict__["forward"] is not before  # the eager forward
        raise RuntimeError("boom")
    assert compiled_net.__dict__["forward"] is before


class _Checkpointed(torch.nn.Module):
    """GELU blocks run under non-reentrant activation checkpointing when the
    timm-style ``grad_checkpointing`` flag is on (as timm runs them, also in eval)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        conv = torch.nn.Conv2d
        self.blocks = torch.nn.Sequential(
            conv(8, 8, 3, padding=1), torch.nn.GELU(), conv(8, 8, 3, padding=1)
        )
        self.head = torch.nn.Linear(8, 5)
        self.grad_checkpointing = True

    def forward(self, x):
        x = torch.nn.functional.gelu(self.stem(x))
        if self.grad_checkpointing:
            x = torch.utils.checkpoint.checkpoint(self.blocks, x, use_reentrant=False)
        else:
            x = self.blocks(x)
        return self.head(x.mean((2, 3)))


def test_activation_checkpointing_is_off_inside_the_guard_and_back_on_after():
    torch.manual_seed(0)
    model = _Checkpointed()
    x = torch.rand(3, 3, 16, 16)
    plain = copy.deepcopy(model)
    plain.grad_checkpointing = False
    # the ReLU-family rule applies in the forward; a recomputation would run without it
    for method in (LF.guided_backprop, LF.deconvnet):
        torch.testing.assert_close(method(model, x, 1), method(plain, x, 1))
    assert model.grad_checkpointing is True
    with preserve_state(model):
        assert model.grad_checkpointing is False
    assert model.grad_checkpointing is True


def test_callbacks_run_on_a_model_trained_with_activation_checkpointing(tmp_path):
    callbacks = [
        lv.SaliencyLogger(methods=("vanilla", "guided_backprop"), num_samples=4, on_error="raise"),
        lv.GradCAMLogger(methods=("gradcam", "guided_gradcam"), num_samples=4, on_error="raise"),
        lv.ActivationLogger(num_samples=2, max_channels=4, on_error="raise"),
    ]
    module = LitClassifier(_Checkpointed(), lr=1e-3)
    fit(tmp_path, callbacks, epochs=1, model=module)
    images = read_events(str(tmp_path))["images"]
    for tag in ("saliency/guided_backprop", "gradcam/gradcam", "gradcam/guided_gradcam"):
        assert [s for s, *_ in images[tag]] == [4], tag
    assert module.model.grad_checkpointing is True  # training keeps checkpointing
