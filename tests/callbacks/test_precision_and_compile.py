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


class _Recording(LitClassifier):
    """Records, for every forward outside training, autocast and grad mode."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x):
        if not self.training:
            self.calls.append((torch.is_autocast_enabled("cpu"), torch.is_grad_enabled()))
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
