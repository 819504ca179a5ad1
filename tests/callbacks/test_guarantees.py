"""The guarantees every callback keeps: observing does not change the run, no leaks."""

from __future__ import annotations

import gc
import random

import numpy as np
import pytest
import torch
from torch.overrides import _get_current_function_mode_stack

import lightning_viz as lv
from lightning_viz._hooks import has_hooks
from tests.conftest import fit, inject_failure


def gradient_callbacks(**kwargs):
    """The callbacks of the foundation issue, cheap settings."""
    return [
        lv.FilterLogger(**kwargs),
        lv.ActivationLogger(**kwargs),
        lv.SaliencyLogger(
            methods=(
                "vanilla",
                "smoothgrad",
                "integrated_gradients",
                "guided_backprop",
                "deconvnet",
            ),
            num_samples=4,
            smoothgrad_samples=4,
            ig_steps=8,
            neuron=("model.block2.conv", 1),
            **kwargs,
        ),
        lv.GradCAMLogger(
            methods=("gradcam", "gradcam++", "guided_gradcam"), num_samples=4, **kwargs
        ),
    ]


def all_callbacks(**kwargs):
    """Every callback."""
    return [
        *gradient_callbacks(**kwargs),
        lv.EmbeddingProjector(num_samples=16, projection="pca", **kwargs),
        lv.AdversarialProbe(eps=(2 / 255, 8 / 255), steps=3, num_samples=16, **kwargs),
        lv.TextureShapeBias(num_images=10, num_samples=10, style_steps=3, **kwargs),
        lv.ClassModelLogger(steps=5, every_n_epochs=1, **kwargs),
    ]


def _final_state(trainer, model):
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": trainer.optimizers[0].state_dict(),
        "torch": torch.rand(8),
        "numpy": np.random.rand(8),
        "python": [random.random() for _ in range(8)],
        "flags": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def _assert_same(a, b):
    assert a["weights"].keys() == b["weights"].keys()
    for key in a["weights"]:  # weights and BatchNorm running stats, bitwise
        assert torch.equal(a["weights"][key], b["weights"][key]), key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for idx in sa:
        for name, value in sa[idx].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb[idx][name])), (idx, name)
    assert torch.equal(a["torch"], b["torch"])
    assert np.array_equal(a["numpy"], b["numpy"])
    assert a["python"] == b["python"]
    assert a["flags"] == b["flags"]
    assert a["requires_grad"] == b["requires_grad"]
    for ga, gb in zip(a["grads"], b["grads"], strict=True):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert torch.equal(ga, gb)


def test_observing_does_not_change_the_experiment(tmp_path):
    trainer_a, model_a = fit(tmp_path / "plain", [], epochs=2)
    plain = _final_state(trainer_a, model_a)
    callbacks = all_callbacks(on_error="raise")
    trainer_b, model_b = fit(tmp_path / "observed", callbacks, epochs=2)
    observed = _final_state(trainer_b, model_b)
    _assert_same(plain, observed)
    # the callbacks did run, twice each
    metrics = trainer_b.callback_metrics
    for cb in callbacks:
        assert f"viz/{type(cb).__name__}/seconds" in metrics
        assert cb._last_epoch == 1
    assert not has_hooks(model_b)


def test_no_hooks_or_modes_left_and_flags_restored_after_a_run(tmp_path):
    trainer, model = fit(tmp_path, all_callbacks(on_error="raise"), epochs=1)
    assert not has_hooks(model)
    assert len(_get_current_function_mode_stack()) == 0
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_exception_inside_a_method_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    calls, arm = inject_failure(monkeypatch)
    callbacks = gradient_callbacks(on_error="warn")[1:]  # FilterLogger has no forward
    with pytest.warns(UserWarning, match="injected failure inside a method") as record:
        trainer, model = fit(tmp_path, [arm, *callbacks], epochs=2)
    assert trainer.current_epoch == 2  # training finished
    assert calls["n"] >= len(callbacks)
    failures = [w for w in record if "turns itself off" in str(w.message)]
    assert len(failures) == len(callbacks)  # once each, not once per epoch
    assert all("Traceback" in str(w.message) for w in failures)
    assert not has_hooks(model)
    assert len(_get_current_function_mode_stack()) == 0
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_exception_inside_a_method_is_raised_on_request(tmp_path, monkeypatch):
    _, arm = inject_failure(monkeypatch)
    callback = lv.SaliencyLogger(methods=("guided_backprop",), num_samples=2, on_error="raise")
    model_holder = {}

    class Keep(lv.FilterLogger):
        def setup(self, trainer, pl_module, stage):
            model_holder["m"] = pl_module
            super().setup(trainer, pl_module, stage)

    with pytest.raises(RuntimeError, match="injected failure"):
        fit(tmp_path, [arm, Keep(), callback], epochs=1)
    model = model_holder["m"]
    assert not has_hooks(model)
    assert len(_get_current_function_mode_stack()) == 0
    assert all(p.requires_grad for p in model.parameters())


def _live_tensor_bytes() -> tuple[int, int]:
    gc.collect()
    count = total = 0
    for obj in gc.get_objects():
        try:
            if torch.is_tensor(obj):
                count += 1
                total += obj.numel() * obj.element_size()
        except ReferenceError:  # pragma: no cover - weakly referenced objects
            continue
    return count, total


def test_thirty_epochs_do_not_grow_memory(tmp_path):
    samples: dict[int, tuple[int, int]] = {}

    class Measure(lv.FilterLogger):
        def on_train_epoch_end(self, trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)
            if trainer.current_epoch in (4, 29):
                samples[trainer.current_epoch] = _live_tensor_bytes()

    callbacks = [
        *gradient_callbacks(on_error="raise"),
        Measure(tag_prefix="measure", on_error="raise"),
    ]
    fit(tmp_path, callbacks, epochs=30, limit_train_batches=1, limit_val_batches=1)
    (count_4, bytes_4), (count_29, bytes_29) = samples[4], samples[29]
    assert count_29 <= count_4 + 5, (count_4, count_29)
    assert bytes_29 <= bytes_4 * 1.05 + 4096, (bytes_4, bytes_29)
