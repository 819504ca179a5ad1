"""``trainer.fit`` again on the same trainer: from an earlier checkpoint, after a failed
fit, and continuing; every due epoch is measured once, and nothing false is said."""

from __future__ import annotations

import glob
import json
import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

import lightning_viz as lv
from lightning_viz.data import LitClassifier
from tests.conftest import make_trainer, read_events, small_datamodule

TAG = "robustness/fgsm_acc@8/255"


class _Seen(pl.Callback):
    """The monitored metric in ``callback_metrics`` at each validation end (after the probe)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float | None]] = []

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            value = trainer.callback_metrics.get(TAG)
            self.seen.append((trainer.current_epoch, None if value is None else float(value)))


def _trainer(tmp_path, callbacks, epochs):
    return make_trainer(
        tmp_path,
        callbacks,
        epochs=epochs,
        enable_checkpointing=True,
        num_sanity_val_steps=0,
        deterministic=False,
        limit_train_batches=2,
        limit_val_batches=1,
    )


def _summary_epochs(tmp_path):
    (path,) = glob.glob(str(tmp_path / "**" / "summary.json"), recursive=True)
    with open(path) as f:
        return [r["epoch"] for r in json.load(f)["metrics"][TAG]["epochs"]]


@pytest.mark.parametrize("budget", [None, 0.10])
def test_fit_again_from_an_earlier_checkpoint_measures_every_epoch_again(tmp_path, budget):
    """Two epochs, then ``fit(ckpt_path=<epoch 0>)`` on the same trainer: epoch 1 was
    skipped (the callback remembered it had run at epoch 1, and the budget that it had
    planned it), and an EarlyStopping on the probe's metric stopped the fit ("metric not
    available")."""
    pl.seed_everything(0)
    seen = _Seen()
    probe = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(8 / 255,), num_samples=8, on_error="raise", max_overhead=budget
    )
    stop = EarlyStopping(monitor=TAG, mode="max", patience=10)
    saved = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_top_k=-1)
    trainer = _trainer(tmp_path, [probe, seen, stop, saved], epochs=2)
    model = LitClassifier(num_classes=5)
    trainer.fit(model, datamodule=small_datamodule())
    (first,) = glob.glob(str(tmp_path / "ckpt" / "epoch=0*.ckpt"))
    trainer.fit_loop.max_epochs = 3
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=small_datamodule(), ckpt_path=first)
    assert [e for e, _ in seen.seen] == [0, 1, 1, 2]
    assert all(v is not None for _, v in seen.seen), seen.seen  # measured each time
    assert _summary_epochs(tmp_path) == [0, 1, 2]
    # sorted: the two fits' event files are read in the order of their names, whose
    # last part is a counter of the process's writers ("10" sorts before "9")
    assert sorted(s for s, _ in read_events(str(tmp_path))["scalars"][TAG]) == [2, 4, 4, 6]
    assert not [w for w in record if "without the summary" in str(w.message)]


def test_fit_again_after_a_failed_fit_measures_the_failed_epoch(tmp_path):
    """A fit that failed at epoch 1 after the probe ran (a user callback raised), then
    ``fit(ckpt_path="last")`` on the same trainer: epoch 1 ran again without the probe."""

    class _FailsOnce(pl.Callback):
        failed = False

        def on_validation_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1 and not self.failed:
                type(self).failed = True
                raise RuntimeError("a bug in the user's callback")

    pl.seed_everything(0)
    seen = _Seen()
    probe = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(8 / 255,), num_samples=8, on_error="raise", max_overhead=None
    )
    saved = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    trainer = _trainer(tmp_path, [probe, seen, _FailsOnce(), saved], epochs=3)
    model = LitClassifier(num_classes=5)
    with pytest.raises(RuntimeError, match="a bug in the user's callback"):
        trainer.fit(model, datamodule=small_datamodule())
    trainer.fit(model, datamodule=small_datamodule(), ckpt_path="last")
    assert [e for e, _ in seen.seen] == [0, 1, 1, 2]
    assert all(v is not None for _, v in seen.seen), seen.seen
    assert _summary_epochs(tmp_path) == [0, 1, 2]


def test_fit_again_to_continue_says_nothing_about_a_lost_summary(tmp_path):
    """The second ``fit`` on the same trainer warned that the run "resumed at epoch 2
    without the summary of the epochs before", while summary.json kept them all."""
    probe = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(8 / 255,), num_samples=8, on_error="raise", max_overhead=None
    )
    trainer = _trainer(tmp_path, [probe], epochs=2)
    model = LitClassifier(num_classes=5)
    trainer.fit(model, datamodule=small_datamodule())
    trainer.fit_loop.max_epochs = 3
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=small_datamodule())
    assert not [w for w in record if "without the summary" in str(w.message)]
    assert _summary_epochs(tmp_path) == [0, 1, 2]


def _resume(tmp_path, callbacks, ckpt):
    pl.seed_everything(0)
    model = LitClassifier(num_classes=5)
    _trainer(tmp_path, callbacks, epochs=3).fit(
        model, datamodule=small_datamodule(), ckpt_path=ckpt
    )
    return model


_RESTART_STAGES = pytest.mark.skipif(
    not hasattr(getattr(pl.loops.fit_loop, "_FitLoop", None), "restarted_mid_epoch"),
    reason="this Lightning's loops do not tell a restart at an epoch's last batch apart",
)


@_RESTART_STAGES
def test_resume_from_the_last_batch_of_an_epoch_measures_that_epoch(tmp_path):
    """A checkpoint saved at the last training batch of epoch 1 (``every_n_train_steps``):
    the resumed fit skips that epoch's validation and epoch end, so epoch 1 was never
    measured (no value at step 4, none in summary.json, its alerts lost) and nothing said.
    It is measured at the training start, as its end would have: the same value at the
    same step, and the training goes on bitwise as without the callback."""
    pl.seed_everything(0)
    probe = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(8 / 255,), num_samples=8, on_error="raise", max_overhead=None
    )
    saved = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), every_n_train_steps=2, save_top_k=-1)
    _trainer(tmp_path / "a", [probe, saved], epochs=2).fit(
        LitClassifier(num_classes=5), datamodule=small_datamodule()
    )
    (ckpt,) = glob.glob(str(tmp_path / "ckpt" / "epoch=1-step=4.ckpt"))
    resumed = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(8 / 255,), num_samples=8, on_error="raise", max_overhead=None
    )
    model = _resume(tmp_path / "b", [resumed], ckpt)
    before = dict(read_events(str(tmp_path / "a"))["scalars"][TAG])
    after = dict(read_events(str(tmp_path / "b"))["scalars"][TAG])
    assert sorted(after) == [4, 6]
    assert after[4] == before[4]
    # H79: outside the budget (this fit holds no training time of epoch 1): not
    # charged, and no viz/overhead at its step (it read 1221 against 2.6 uninterrupted)
    overhead = dict(read_events(str(tmp_path / "b"))["scalars"]["viz/overhead"])
    assert sorted(overhead) == [6]
    assert resumed._coordinator.budget.runs_done == {resumed.state_key: 1}  # epoch 2's
    assert _summary_epochs(tmp_path / "b") == [0, 1, 2]
    bare = _resume(tmp_path / "c", [], ckpt)  # the same resume without the callback
    mine, theirs = model.state_dict(), bare.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)  # BatchNorm buffers too


@_RESTART_STAGES
@pytest.mark.parametrize("save", ["mid-epoch", "validation end"])
def test_resume_inside_or_after_validation_measures_no_epoch_twice(tmp_path, save):
    """Mid-epoch (step 3 of 2-batch epochs: inside epoch 1) and validation-end
    checkpoints: Lightning runs the rest of the epoch, or it was measured before the
    save; the resumed fit measures only the epochs it trains to the end."""
    every = {"every_n_train_steps": 3} if save == "mid-epoch" else {}
    saved = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_top_k=-1, **every)
    pl.seed_everything(0)
    _trainer(tmp_path / "a", [saved], epochs=2).fit(
        LitClassifier(num_classes=5), datamodule=small_datamodule()
    )
    (ckpt,) = glob.glob(str(tmp_path / "ckpt" / f"epoch=1-step={3 if every else 4}.ckpt"))
    probe = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(8 / 255,), num_samples=8, on_error="raise", max_overhead=None
    )
    _resume(tmp_path / "b", [probe], ckpt)
    steps = [s for s, _ in read_events(str(tmp_path / "b"))["scalars"][TAG]]
    assert steps == ([4, 6] if every else [6])
