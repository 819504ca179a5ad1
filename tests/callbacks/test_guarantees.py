"""The guarantees every callback keeps: observing does not change the run, no leaks."""

from __future__ import annotations

import contextlib
import gc

import pytest
import torch
from torch import nn
from torch.overrides import _get_current_function_mode_stack

import lightning_viz as lv
from lightning_viz._hooks import has_hooks
from lightning_viz.data import LitClassifier, SmallCNN
from tests.conftest import (
    all_callbacks,
    assert_observing_changes_nothing,
    fit,
    gradient_callbacks,
    inject_failure,
)


class DropoutCNN(SmallCNN):
    """The demo CNN (BatchNorm) with Dropout before the classifier: train mode matters twice."""

    def __init__(self) -> None:
        super().__init__(num_classes=5)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        return self.fc(self.drop(self.flatten(self.pool(self.block3(self.block2(self.block1(x)))))))


SCHEDULES = {
    "with_validation": {},
    "no_validation": {"limit_val_batches": 0},
    "validation_every_2nd_epoch": {"check_val_every_n_epoch": 2},
    "accumulate_grad_batches": {"accumulate_grad_batches": 2},
    "val_check_interval": {"val_check_interval": 0.5},
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_observing_does_not_change_the_experiment(tmp_path, schedule):
    callbacks = all_callbacks(on_error="raise")
    trainer, model = assert_observing_changes_nothing(
        tmp_path,
        callbacks,
        model_factory=lambda: LitClassifier(model=DropoutCNN(), lr=1e-2),
        epochs=2,
        **SCHEDULES[schedule],
    )
    # every callback did run, at each of the two epochs (EmbeddingProjector only when a
    # validation loop ran in the last one: it embeds validation features)
    for cb in callbacks:
        if isinstance(cb, lv.EmbeddingProjector) and schedule == "no_validation":
            continue
        assert f"viz/{type(cb).__name__}/seconds" in trainer.callback_metrics, type(cb)
        assert cb._last_epoch == 1, type(cb)


def test_observing_a_fit_whose_loaders_keep_their_workers_changes_nothing(tmp_path):
    """With ``persistent_workers=True`` the probe scan at setup left the user's loader
    holding its worker iterator; the fit reused it instead of starting one, so the seed
    draw of a new iterator was skipped and every later random number (dropout here,
    augmentations in the workers) shifted: the weights differed by up to 0.03."""
    from torch.utils.data import DataLoader

    from lightning_viz.data import ShapesTexturesDataModule

    class Persistent(ShapesTexturesDataModule):
        """One loader object per stage (as loaders passed to ``fit``) and no private
        generator: a new iterator draws its seed from the global RNG."""

        def _loader(self, dataset, shuffle):
            made = self.__dict__.setdefault("made", {})
            if shuffle not in made:
                data = self.train_dataset if shuffle else self.val_dataset
                made[shuffle] = DataLoader(
                    data, 32, shuffle, num_workers=1, persistent_workers=True
                )
            return made[shuffle]

    _fit_plain_and_observed(tmp_path, Persistent)


def _fit_plain_and_observed(tmp_path, datamodule_type) -> list:
    """Fits without and with a FilterLogger, on data of ``datamodule_type``, and checks
    that both end in the same state; returns both datamodules."""
    from tests.conftest import assert_same_final_state, final_state

    states, datamodules = [], []  # no sanity check: Lightning isolates the RNG around it
    for name, callbacks in (("plain", []), ("observed", [lv.FilterLogger(on_error="raise")])):
        torch.manual_seed(0)
        model = LitClassifier(model=DropoutCNN(), lr=1e-2)
        datamodules.append(datamodule_type(train_size=192, val_size=64, seed=0))
        trainer, _ = fit(
            tmp_path / name,
            callbacks,
            model=model,
            datamodule=datamodules[-1],
            num_sanity_val_steps=0,
        )
        states.append(final_state(trainer, model))
    assert_same_final_state(*states)
    return datamodules


def test_observing_a_fit_whose_loaders_share_a_generator_changes_nothing(tmp_path):
    """PyTorch's reproducibility recipe gives the loaders a ``generator=``; the probe scan
    of the validation loader drew its iterator's seed from it. Shared with the training
    loader, that reshuffled the training data (every weight differed)."""
    from torch.utils.data import DataLoader

    from lightning_viz.data import ShapesTexturesDataModule

    class SharedGenerator(ShapesTexturesDataModule):
        def _loader(self, dataset, shuffle):
            generator = self.__dict__.setdefault("generator", torch.Generator().manual_seed(42))
            data = self.train_dataset if shuffle else self.val_dataset
            return DataLoader(data, 32, shuffle, generator=generator)

    plain, observed = _fit_plain_and_observed(tmp_path, SharedGenerator)
    assert torch.equal(plain.generator.get_state(), observed.generator.get_state())


def test_a_callback_kept_after_the_fit_holds_neither_model_nor_trainer(tmp_path):
    """H66: with a batch transfer hook of the user's (normalization on the device), each
    callback kept the hooks' closure, and so the trainer and the model (optimizer state,
    parameters; GPU memory on a GPU), for as long as the user kept the callback."""
    import weakref

    class DeviceNormalized(LitClassifier):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            return batch

    callbacks = [
        lv.SaliencyLogger(methods=("vanilla",), num_samples=2, quality=()),
        lv.AdversarialProbe(eps=(2 / 255,), steps=1, num_samples=4),
    ]
    trainer, model = fit(tmp_path, callbacks, epochs=1, model=DeviceNormalized(num_classes=5))
    refs = weakref.ref(trainer), weakref.ref(model)
    for cb in callbacks:  # Lightning's own: the module's log methods, bound at each fit
        cb.__dict__.pop("log", None)
        cb.__dict__.pop("log_dict", None)
    del trainer, model
    gc.collect()
    assert [ref() is None for ref in refs] == [True, True]


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


def test_background_generation_does_not_rewind_the_training_rng(tmp_path, monkeypatch):
    """The cue-conflict set made on the background worker, while training draws dropout
    masks from the global RNG: the worker's state guard must not put the RNG back (it
    saved it before those draws), so the run ends bitwise as without the callback."""
    import threading

    import pytorch_lightning as pl

    import lightning_viz.functional.style as style

    entered, release = threading.Event(), threading.Event()
    guard = style.preserve_state

    @contextlib.contextmanager
    def held_open(model):  # the worker stays inside the guard for two training steps
        with guard(model) as net:
            if threading.current_thread() is not threading.main_thread():
                entered.set()
                release.wait(60)
            yield net

    class Interleave(pl.Callback):
        def on_train_batch_end(self, trainer, *_):
            if trainer.global_step == 1:
                assert entered.wait(60), "the background generation never started"
            if trainer.global_step == 3:
                release.set()

        def on_train_end(self, *_):
            release.set()

    monkeypatch.setattr(style, "preserve_state", held_open)
    bias = lv.TextureShapeBias(
        num_images=10, num_samples=10, style_steps=2, background=True, on_error="raise"
    )
    assert_observing_changes_nothing(
        tmp_path,
        [Interleave(), bias],
        model_factory=lambda: LitClassifier(model=DropoutCNN(), lr=1e-2),
        epochs=2,
    )
    assert entered.is_set()
