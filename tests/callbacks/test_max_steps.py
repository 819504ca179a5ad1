"""A fit that ``max_steps`` ends inside an epoch: Lightning skips that epoch's
validation but still ends the training epoch, so the callbacks that run after
validation run at the train-epoch end instead, once for that epoch."""

from __future__ import annotations

import warnings

import lightning_viz as lv
from lightning_viz.data import LitClassifier
from tests.conftest import fit, read_events

# fit() trains limit_train_batches=4 batches an epoch and validates every epoch
IMAGES = ("filters/model.block1.conv", "saliency/vanilla", "gradcam/gradcam")
SCALARS = ("robustness/clean_acc", "robustness/pgd_acc@8/255")


def _callbacks() -> list[lv.VizCallback]:
    return [
        lv.FilterLogger(on_error="raise"),
        lv.SaliencyLogger(methods=("vanilla",), num_samples=2, quality=(), on_error="raise"),
        lv.GradCAMLogger(methods=("gradcam",), num_samples=2, quality=(), on_error="raise"),
        lv.AdversarialProbe(eps=(8 / 255,), steps=1, num_samples=8, on_error="raise"),
    ]


def _count_runs(callbacks: list[lv.VizCallback]) -> dict[str, list[int]]:
    """The epochs each callback's ``run`` is called at."""
    epochs: dict[str, list[int]] = {}
    for cb in callbacks:
        seen = epochs.setdefault(type(cb).__name__, [])

        def run(ctx, _run=cb.run, _seen=seen):
            _seen.append(ctx.trainer.current_epoch)
            return _run(ctx)

        cb.run = run
    return epochs


def _steps(tmp_path) -> dict[str, list[int]]:
    events = read_events(str(tmp_path))
    steps = {t: [e[0] for e in events["images"].get(t, [])] for t in IMAGES}
    steps.update({t: [e[0] for e in events["scalars"].get(t, [])] for t in SCALARS})
    return steps


def _fit(tmp_path, callbacks, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path, callbacks, **kwargs)
    return trainer, [str(w.message) for w in caught]


def test_max_steps_inside_the_first_epoch_still_runs_every_callback_once(tmp_path):
    callbacks = _callbacks()
    runs = _count_runs(callbacks)
    projector = lv.EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    trainer, messages = _fit(tmp_path, [*callbacks, projector], epochs=-1, max_steps=3)
    assert trainer.global_step == 3
    assert all(cb._after_validation for cb in callbacks)  # the validation hook was chosen
    assert runs == {type(cb).__name__: [0] for cb in callbacks}
    assert _steps(tmp_path) == {t: [3] for t in (*IMAGES, *SCALARS)}
    assert all(cb._last_epoch == 0 for cb in callbacks)
    # no validation batches, no embeddings: said once, with the real reason
    said = [m for m in messages if m.startswith("EmbeddingProjector")]
    assert len(said) == 1, said
    assert "inside epoch 0 (max_steps=3 reached), before that epoch's validation" in said[0]
    assert "check_val_every_n_epoch" not in said[0]
    assert projector._last_epoch is None


def test_max_steps_inside_the_second_epoch_runs_it_once(tmp_path):
    callbacks = _callbacks()
    runs = _count_runs(callbacks)
    trainer, _ = _fit(tmp_path, callbacks, epochs=-1, max_steps=6)
    assert trainer.global_step == 6
    assert runs == {type(cb).__name__: [0, 1] for cb in callbacks}
    assert _steps(tmp_path) == {t: [4, 6] for t in (*IMAGES, *SCALARS)}


def test_ordinary_fits_run_once_an_epoch_after_validation(tmp_path):
    callbacks = _callbacks()
    runs = _count_runs(callbacks)
    _fit(tmp_path / "epochs", callbacks, epochs=2)
    assert runs == {type(cb).__name__: [0, 1] for cb in callbacks}
    assert _steps(tmp_path / "epochs") == {t: [4, 8] for t in (*IMAGES, *SCALARS)}

    # max_steps at the last batch of an epoch: that epoch validates, one run
    callbacks = _callbacks()[:2]
    runs = _count_runs(callbacks)
    _fit(tmp_path / "steps", callbacks, epochs=-1, max_steps=4)
    assert runs == {type(cb).__name__: [0] for cb in callbacks}


def test_a_cut_epoch_that_is_not_due_writes_nothing(tmp_path):
    cb = lv.FilterLogger(every_n_epochs=2, on_error="raise")
    runs = _count_runs([cb])
    _fit(tmp_path, [cb], epochs=-1, max_steps=3)  # epoch 0 only: not due
    assert runs == {"FilterLogger": []}


class _SkipsRest(LitClassifier):
    """Ends epoch 0 after two batches (``on_train_batch_start`` returns -1)."""

    def on_train_batch_start(self, batch, batch_idx):
        if self.current_epoch == 0 and batch_idx == 2:
            return -1
        return None


def test_an_epoch_ended_by_a_hook_runs_once_and_later_epochs_after_validation(tmp_path):
    cb = lv.FilterLogger(on_error="raise")
    runs = _count_runs([cb])
    trainer, _ = _fit(tmp_path, [cb], epochs=2, model=_SkipsRest(num_classes=5, lr=1e-2))
    assert trainer.global_step == 6
    assert runs == {"FilterLogger": [0, 1]}
    assert _steps(tmp_path)["filters/model.block1.conv"] == [2, 6]


def test_a_stop_asked_inside_an_epoch_validates_and_runs_once(tmp_path):
    # trainer.should_stop (EarlyStopping, Timer/max_time) makes Lightning validate at once
    from pytorch_lightning.callbacks import Callback

    class _Stop(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                trainer.should_stop = True

    cb = lv.FilterLogger(on_error="raise")
    runs = _count_runs([cb])
    trainer, _ = _fit(tmp_path, [cb, _Stop()], epochs=3)
    assert trainer.global_step == 3
    assert runs == {"FilterLogger": [0]}
    assert cb._validated_epoch == 0  # it ran after that validation
    assert _steps(tmp_path)["filters/model.block1.conv"] == [3]


def test_validation_after_every_batch_runs_once_an_epoch_at_its_end(tmp_path):
    """``val_check_interval=1`` (an int: after every training batch) compared equal to
    ``1.0`` ("once an epoch"): every callback ran at each of the 4 validations."""
    callbacks = _callbacks()
    runs = _count_runs(callbacks)
    _fit(tmp_path, callbacks, epochs=2, val_check_interval=1)
    assert not any(cb._after_validation for cb in callbacks)  # the training epoch end
    assert runs == {type(cb).__name__: [0, 1] for cb in callbacks}
    assert _steps(tmp_path) == {t: [4, 8] for t in (*IMAGES, *SCALARS)}


def test_validation_twice_an_epoch_runs_at_the_training_epoch_end(tmp_path):
    """``val_check_interval=0.5`` validates in the middle and at the end of each epoch:
    the callbacks run once an epoch at its end (step 4, 8), not at the first,
    half-way validation (step 2, 6) on a half-trained epoch."""
    callbacks = _callbacks()
    runs = _count_runs(callbacks)
    _fit(tmp_path, callbacks, epochs=2, val_check_interval=0.5)
    assert not any(cb._after_validation for cb in callbacks)
    assert runs == {type(cb).__name__: [0, 1] for cb in callbacks}
    assert _steps(tmp_path) == {t: [4, 8] for t in (*IMAGES, *SCALARS)}
