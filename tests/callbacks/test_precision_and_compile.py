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


class _Counted(torch.nn.Sequential):
    """A Sequential that counts its forwards (no hook: the leak checks look for hooks)."""

    calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


class _CallsCheckpoint(torch.nn.Module):
    """Calls ``torch.utils.checkpoint`` in ``forward`` itself, with no flag to turn it
    off (research code's way), reentrant or not."""

    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.reentrant = reentrant
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.block = _Counted(
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 1)
        )
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.utils.checkpoint.checkpoint(self.block, x, use_reentrant=self.reentrant)
        return self.head(torch.relu(x).mean((2, 3)))


def _checkpoint_internals():
    from torch.utils import checkpoint

    names = (
        "_checkpoint_without_reentrant_generator",
        "_checkpoint_without_reentrant_generator_impl",
    )
    return [vars(checkpoint.CheckpointFunction).get("apply")] + [
        getattr(checkpoint, n, None) for n in names
    ]


def _block_calls_in_a_training_step(model) -> int:
    before = model.block.calls
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    model(x).sum().backward()
    return model.block.calls - before


@pytest.mark.parametrize("reentrant", [False, True], ids=["non_reentrant", "reentrant"])
def test_checkpoint_called_in_forward_runs_plainly_inside_the_guard(reentrant):
    torch.manual_seed(0)
    model = _CallsCheckpoint(reentrant)
    x = torch.rand(3, 3, 16, 16)
    assert _block_calls_in_a_training_step(model) == 2  # checkpointing: forward + recompute
    internals = _checkpoint_internals()
    # without the guard each of these fails (reentrant: no autograd.grad; non-reentrant:
    # the recomputation runs without the hooks/rules, a CheckpointError) or is wrong
    for name, method in {
        "saliency": lambda m: LF.saliency(m, x, 1),
        "guided_backprop": lambda m: LF.guided_backprop(m, x, 1),
        "deconvnet": lambda m: LF.deconvnet(m, x, 1),
        "grad_cam": lambda m: LF.grad_cam(m, x, 1, layer="block.0"),
        "pgd": lambda m: LF.pgd(m, x, torch.tensor([0, 1, 2]), eps=4 / 255, steps=2),
        "class_model": lambda m: LF.class_model(m, 1, (3, 16, 16), steps=3),
    }.items():
        got = method(model)
        with preserve_state(model):  # the same model, checkpointing already off
            expected = method(model)
        assert torch.equal(got, expected), name
        assert got.abs().sum() > 0, name
    # and inside the guard the block runs once for a forward and backward
    with preserve_state(model):
        assert _block_calls_in_a_training_step(model) == 1
    assert _checkpoint_internals() == internals
    assert _block_calls_in_a_training_step(model) == 2  # checkpointing is back


def test_the_checkpoint_guard_nests_and_restores_after_an_exception():
    from lightning_viz._guard import plain_checkpoint_calls

    model = _CallsCheckpoint(reentrant=False)
    internals = _checkpoint_internals()
    with pytest.raises(RuntimeError, match="boom"):
        with plain_checkpoint_calls():
            with plain_checkpoint_calls():
                pass
            assert _block_calls_in_a_training_step(model) == 1  # still plain: outer block
            raise RuntimeError("boom")
    assert _checkpoint_internals() == internals
    assert _block_calls_in_a_training_step(model) == 2


@pytest.mark.parametrize("reentrant", [False, True], ids=["non_reentrant", "reentrant"])
def test_every_callback_runs_on_a_model_that_calls_checkpoint_in_forward(tmp_path, reentrant):
    from tests.conftest import all_callbacks, assert_observing_changes_nothing

    internals = _checkpoint_internals()
    trainer, module = assert_observing_changes_nothing(
        tmp_path,
        all_callbacks(neuron=("model.block.0", 1), on_error="raise"),
        model_factory=lambda: LitClassifier(_CallsCheckpoint(reentrant), lr=1e-2),
        epochs=1,
    )
    assert _checkpoint_internals() == internals
    events = read_events(str(tmp_path / "observed"))
    for tag in ("saliency/deconvnet", "gradcam/gradcam", "class_model/grid"):
        assert [s for s, *_ in events["images"][tag]] == [4], tag
    for tag in ("robustness/pgd_acc@8/255", "explain/deconvnet/deletion_auc"):
        assert [s for s, _ in events["scalars"][tag]] == [4], tag
    assert _block_calls_in_a_training_step(module.model) == 2  # training still checkpoints
