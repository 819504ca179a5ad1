"""A lightning-viz metric that EarlyStopping or ModelCheckpoint monitors: the fit stops
before training when the callback cannot write it at every check, and a failure during
the fit says that the monitor now reads a frozen value."""

from __future__ import annotations

import math
import os
import warnings

import pytest
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

import lightning_viz as lv
from tests.callbacks.test_trust import NoGradBackbone
from tests.conftest import fit

TAG = "robustness/clean_acc"


def _probe(**kwargs):
    return lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8, **kwargs)


def test_a_monitored_metric_written_every_second_epoch_is_an_error_before_training(tmp_path):
    """EarlyStopping stopped the fit at the end of epoch 0 ("conditioned on metric ...
    which is not available"), and read a stale value at later odd epochs."""
    stop = EarlyStopping(monitor=TAG, mode="max", patience=5)
    with pytest.raises(ValueError, match=r"EarlyStopping\(monitor='robustness/clean_acc'\)") as err:
        trainer, _ = fit(tmp_path / "es", [_probe(every_n_epochs=2), stop], epochs=2)
    assert "every_n_epochs=2" in str(err.value) and "every_n_epochs=1" in str(err.value)
    # on the same epochs, or not strict: accepted, and the fit runs
    for other in (
        ModelCheckpoint(monitor=TAG, mode="max", every_n_epochs=2, dirpath=tmp_path / "ck"),
        EarlyStopping(monitor=TAG, mode="max", strict=False),
    ):
        checkpoints = isinstance(other, ModelCheckpoint)
        trainer, _ = fit(
            tmp_path / type(other).__name__,
            [_probe(every_n_epochs=2), other],
            enable_checkpointing=checkpoints,
        )
        assert trainer.current_epoch == 2 and TAG in trainer.callback_metrics


def test_a_lenient_monitor_skips_the_epochs_a_callback_does_not_measure(tmp_path):
    """``EarlyStopping(strict=False)``, as the error above suggests for every_n_epochs=2:
    the last run's value stayed in ``callback_metrics`` at the epochs between runs, and
    each counted as no improvement, so patience ran out twice as fast as measurements."""
    import pytorch_lightning as pl

    stop = EarlyStopping(monitor=TAG, mode="max", patience=10, strict=False)
    there: dict[int, bool] = {}
    waits: dict[int, int] = {}  # epoch -> EarlyStopping's wait count after its check

    class Spy(pl.Callback):
        def on_validation_end(self, trainer, pl_module):  # after the callbacks ran
            if not trainer.sanity_checking:
                there[trainer.current_epoch] = TAG in trainer.callback_metrics

        def on_train_epoch_start(self, trainer, pl_module):  # EarlyStopping checked the
            waits[trainer.current_epoch - 1] = stop.wait_count  # last epoch at its end

        def on_train_end(self, trainer, pl_module):
            waits[trainer.current_epoch - 1] = stop.wait_count  # (the last epoch ended)

    fit(tmp_path, [_probe(every_n_epochs=2), stop, Spy()], epochs=5, enable_checkpointing=False)
    assert there == {e: e % 2 == 1 for e in range(5)}
    assert stop._check_on_train_epoch_end  # so the wait of epoch e is read at e + 1's start
    # an unmeasured epoch is no check (the last value again would add 1 to the wait)
    assert waits[0] == 0 and waits[2] == waits[1] and waits[4] == waits[3]


def test_a_monitored_callback_that_cannot_run_stops_the_fit_before_training(tmp_path):
    """It turned itself off, and after a whole epoch EarlyStopping stopped the fit."""
    stop = EarlyStopping(monitor=TAG, mode="max")
    trainer_steps = []
    with pytest.raises(ValueError, match=r"no gradient path.*EarlyStopping\(monitor="):
        trainer, _ = fit(tmp_path, [_probe(), stop], model=NoGradBackbone(), epochs=1)
        trainer_steps.append(trainer.global_step)
    assert trainer_steps == []  # raised in fit, before any result
    with warnings.catch_warnings(record=True) as caught:  # unmonitored: turns off, goes on
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path / "alone", [_probe()], model=NoGradBackbone(), epochs=1)
    assert trainer.global_step > 0 and any("turns itself off" in str(w.message) for w in caught)


class _FailsAtEpoch1(lv.AdversarialProbe):
    def run(self, ctx):
        if ctx.trainer.current_epoch == 1:
            raise RuntimeError("injected failure")
        super().run(ctx)


def test_a_monitored_callback_failing_during_the_fit_says_the_value_is_frozen(tmp_path):
    probe = _FailsAtEpoch1(attacks=("fgsm",), eps=(2 / 255,), num_samples=8)
    stop = EarlyStopping(monitor=TAG, mode="max", patience=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path, [probe, stop], epochs=3)
    said = [str(w.message) for w in caught if "injected failure" in str(w.message)]
    assert len(said) == 1 and "EarlyStopping(monitor='robustness/clean_acc') now reads" in said[0]
    assert "frozen" in said[0] and trainer.current_epoch == 3  # training went on


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ({"check_val_every_n_epoch": None, "val_check_interval": 2}, "validation every 2 steps"),
        ({"check_val_every_n_epoch": 2}, "validation every 2 epochs"),
        # ModelCheckpoint's own rule, asked before the validation batches are counted,
        # answered "no validation: the training epoch end"; the fit stopped at step 2
        ({"val_check_interval": 0.5}, "validation at 0.5 of each epoch"),
        ({"val_check_interval": 2}, "validation every 2 training batches"),
    ],
)
def test_a_monitor_at_each_validation_end_of_a_metric_written_at_the_epoch_end(
    tmp_path, schedule, words
):
    """Validation by steps: ModelCheckpoint found no key at the first validation and
    stopped the fit at step 2; validation every second epoch: EarlyStopping read the
    value of the epoch before."""
    checkpoint = ModelCheckpoint(monitor=TAG, mode="max", dirpath=tmp_path / "ck")
    with pytest.raises(ValueError, match=words) as err:
        fit(tmp_path / "mc", [_probe(), checkpoint], enable_checkpointing=True, **schedule)
    assert "ModelCheckpoint(save_on_train_epoch_end=True)" in str(err.value)
    stop = EarlyStopping(monitor=TAG, mode="max")
    with pytest.raises(ValueError, match="EarlyStopping\\(check_on_train_epoch_end=True\\)"):
        fit(tmp_path / "es", [_probe(), stop], **schedule)
    # the advice works: checked at the training epoch end, after the callbacks
    checkpoint = ModelCheckpoint(
        monitor=TAG, mode="max", dirpath=tmp_path / "ok", save_on_train_epoch_end=True
    )
    trainer, _ = fit(tmp_path / "ok", [_probe(), checkpoint], enable_checkpointing=True, **schedule)
    assert checkpoint.best_model_score is not None and trainer.current_epoch == 2


def test_a_map_callbacks_explain_metric_is_known_as_its_own_before_training(tmp_path):
    """``explain/...`` does not start with ``saliency/``: the every-second-epoch check
    missed it, and Lightning stopped the fit after the first epoch."""
    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, every_n_epochs=2)
    stop = EarlyStopping(monitor="explain/vanilla/deletion_auc", mode="min")
    with pytest.raises(ValueError, match=r"SaliencyLogger writes it every 2 epochs"):
        fit(tmp_path / "s", [saliency, stop], epochs=2)
    cam = lv.GradCAMLogger(methods=("gradcam",), num_samples=4, every_n_epochs=2)
    stop = EarlyStopping(monitor="explain/gradcam/insertion_auc", mode="max")
    with pytest.raises(ValueError, match=r"GradCAMLogger writes it every 2 epochs"):
        fit(tmp_path / "g", [cam, stop], epochs=2)
    from types import SimpleNamespace

    from lightning_viz._runtime.coordinator import Coordinator

    masked = lv.SaliencyLogger(methods=("vanilla",), every_n_epochs=2)
    alone = SimpleNamespace(callbacks=[masked])
    assert Coordinator.writes(alone, masked, {"bias/saliency_in_mask"})  # known with masks
    assert not Coordinator.writes(
        alone, masked, {"explain/gradcam/deletion_auc", "robustness/clean_acc"}
    )


def test_a_tag_under_a_callbacks_prefix_that_another_callback_writes_is_the_others():
    """``bias/saliency_in_mask`` is the SaliencyLogger's although it starts with
    TextureShapeBias's ``bias/``: TextureShapeBias(every_n_epochs=2) took its monitor as
    its own, refused a strict EarlyStopping on it before training, and took the
    SaliencyLogger's fresh value out of ``callback_metrics`` at the epochs it skipped."""
    from types import SimpleNamespace

    import torch

    from lightning_viz._runtime.coordinator import Coordinator
    from lightning_viz.callbacks._monitors import check_monitored_schedule, forget_unmeasured

    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=4)
    bias = lv.TextureShapeBias(num_images=10, every_n_epochs=2)
    mask_tag = "bias/saliency_in_mask"
    stop = EarlyStopping(monitor=mask_tag, strict=False)
    trainer = SimpleNamespace(
        callbacks=[saliency, bias, stop],
        current_epoch=2,
        callback_metrics={mask_tag: torch.tensor(0.4)},
    )
    assert Coordinator.monitors_of(trainer, saliency) == [stop]
    assert Coordinator.monitors_of(trainer, bias) == []
    bias._last_epoch = 1  # skips epoch 2
    forget_unmeasured(bias, trainer)
    assert mask_tag in trainer.callback_metrics  # the SaliencyLogger's fresh value
    trainer.callbacks = [saliency, bias, EarlyStopping(monitor=mask_tag)]
    check_monitored_schedule(bias, trainer)  # no error: not its metric
    # its own metrics under the prefix, named or not, are still its own
    for tag in ("bias/shape_bias", "bias/some_future_metric"):
        trainer.callbacks = [saliency, bias, EarlyStopping(monitor=tag)]
        assert len(Coordinator.monitors_of(trainer, bias)) == 1
    # a tag under a longer prefix is that callback's, before it has named or written it
    nested = lv.FilterLogger(tag_prefix="bias/late")
    trainer.callbacks = [bias, nested, EarlyStopping(monitor="bias/late/conv/change")]
    assert Coordinator.monitors_of(trainer, bias) == []
    assert len(Coordinator.monitors_of(trainer, nested)) == 1


def test_at_the_epoch_a_run_fails_its_stale_metric_leaves_for_a_lenient_monitor():
    """The warning says a lenient EarlyStopping skips its checks from then on, but at the
    failing epoch itself the last run's value stayed and counted as no improvement."""
    from types import SimpleNamespace

    import torch

    from lightning_viz.callbacks._monitors import forget_unmeasured

    callback = SimpleNamespace(_last_epoch=2, known_tags=lambda: {TAG}, tag_prefix="x")
    for fresh, kept in ((set(), False), ({TAG}, True)):  # what the failed run wrote first
        trainer = SimpleNamespace(
            callbacks=[EarlyStopping(monitor=TAG, strict=False)],
            current_epoch=2,
            callback_metrics={TAG: torch.tensor(0.4)},
        )
        forget_unmeasured(callback, trainer, fresh)
        assert (TAG in trainer.callback_metrics) == kept


def test_a_metric_another_monitor_needs_stays_at_an_unmeasured_epoch():
    """Taken out for an EarlyStopping(strict=False) alone; a ModelCheckpoint (or a strict
    EarlyStopping) on the same metric would raise without it, so it stays."""
    from types import SimpleNamespace

    import torch

    from lightning_viz.callbacks._monitors import forget_unmeasured

    callback = SimpleNamespace(_last_epoch=2, known_tags=lambda: {TAG}, tag_prefix="x")
    for others, kept in (((), False), ((ModelCheckpoint(monitor=TAG),), True)):
        trainer = SimpleNamespace(
            callbacks=[EarlyStopping(monitor=TAG, strict=False), *others],
            current_epoch=3,
            callback_metrics={TAG: torch.tensor(0.4)},
        )
        forget_unmeasured(callback, trainer)
        assert (TAG in trainer.callback_metrics) == kept
    callback._last_epoch = 3  # it ran at this epoch: its fresh value stays
    trainer.callbacks = trainer.callbacks[:1]  # the lenient EarlyStopping alone
    forget_unmeasured(callback, trainer)
    assert TAG in trainer.callback_metrics
    # a ModelCheckpoint(every_n_epochs=2) reads it only at the epochs it saves (1, 3, ...);
    # one that saves by steps may read it at any time
    callback._last_epoch = 1
    for every, epoch, kept in ((2, 2, False), (2, 3, True), (None, 2, True)):
        by = {"every_n_epochs": every} if every else {"every_n_train_steps": 5}
        trainer = SimpleNamespace(
            callbacks=[
                EarlyStopping(monitor=TAG, strict=False),
                ModelCheckpoint(monitor=TAG, **by),
            ],
            current_epoch=epoch,
            callback_metrics={TAG: torch.tensor(0.4)},
        )
        forget_unmeasured(callback, trainer)
        assert (TAG in trainer.callback_metrics) == kept, (every, epoch)


def test_after_a_failure_a_lenient_monitor_is_said_to_skip_its_checks():
    from types import SimpleNamespace

    from lightning_viz.callbacks._monitors import frozen_note

    callback = SimpleNamespace(known_tags=lambda: {TAG}, tag_prefix="x")
    lenient = SimpleNamespace(callbacks=[EarlyStopping(monitor=TAG, strict=False)])
    note = frozen_note(callback, lenient)
    assert "skips its checks from now on" in note and "frozen" not in note
    both = SimpleNamespace(callbacks=[*lenient.callbacks, ModelCheckpoint(monitor=TAG)])
    note = frozen_note(callback, both)  # the checkpoint keeps the last value for both
    assert note.count("now reads the value of the last run that did not fail, frozen") == 1
    assert "EarlyStopping(monitor=" in note and "skips" not in note


@pytest.mark.parametrize(
    ("monitor", "said"),
    [
        ("robustness/pgd_acc@8/255", "did you mean 'robustness/pgd_acc@2/255'?"),
        ("robustness/pgd_acc@2/255", None),
        ("val_loss", None),
    ],
)
def test_a_monitor_of_a_tag_no_callback_writes_is_said_before_training(tmp_path, monitor, said):
    """The README's probe (other eps) with the docs' EarlyStopping on pgd_acc@8/255 trained
    a whole epoch before Lightning stopped: "not available", without what is written."""
    probe = lv.AdversarialProbe(attacks=("pgd",), eps=(2 / 255,), num_samples=8, steps=2)
    stop = EarlyStopping(monitor=monitor, mode="max", strict=False, check_finite=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [probe, stop], epochs=1)
    lines = [str(w.message) for w in caught if "no lightning-viz callback" in str(w.message)]
    if said is None:
        assert not lines
    else:
        (line,) = lines
        assert said in line and "AdversarialProbe writes" in line


# ------------------------------------------------------- ReduceLROnPlateau as a monitor
def _plateau_module(steps: list[int], **scheduler):
    import torch

    from lightning_viz.data import LitClassifier

    class Plateau(LitClassifier):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            sch = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0)
            step = sch.step

            def counted(metrics, *args, **kwargs):
                steps.append(self.trainer.current_epoch)
                return step(metrics, *args, **kwargs)

            sch.step = counted
            return {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": sch, "monitor": TAG, **scheduler},
            }

    return Plateau(num_classes=5, lr=1e-2)


def test_fast_dev_run_measures_a_metric_a_plateau_scheduler_steps_on(tmp_path):
    """Lightning's smoke run (fast_dev_run=True) turns EarlyStopping and ModelCheckpoint
    off but steps the schedulers: a strict ReduceLROnPlateau on a lightning-viz metric
    stopped the smoke run of a valid configuration ("metric not available"). The
    callback measures it there, writing nothing; one not monitored only checks."""
    steps: list[int] = []
    probe, other = _probe(), lv.FilterLogger()
    trainer, _ = fit(tmp_path, [probe, other], model=_plateau_module(steps), fast_dev_run=True)
    assert steps == [0] and 0.0 <= float(trainer.callback_metrics[TAG]) <= 1.0
    assert probe._enabled and not other._enabled
    assert math.isfinite(float(trainer.callback_metrics["viz/overhead"]))  # was inf
    assert [f for _, _, files in os.walk(tmp_path) for f in files] == []  # nothing written


def test_a_plateau_scheduler_on_a_metric_is_a_monitor(tmp_path):
    """``configure_optimizers`` with ``ReduceLROnPlateau`` on a lightning-viz metric: the
    budget spaced the probe out and the scheduler cut the learning rate on the stale
    value; with every_n_epochs=2 Lightning stopped the fit after the first epoch."""
    import pytorch_lightning as pl

    steps: list[int] = []
    measured: list[int] = []
    probe = _probe(max_overhead=1e-4, overhead_allowance=0.0)  # every other run: spaced out

    class Spy(pl.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if probe._last_epoch == trainer.current_epoch:
                measured.append(trainer.current_epoch)

    fit(
        tmp_path / "budget",
        [probe, Spy()],
        model=_plateau_module(steps),
        epochs=3,
        keep_budget=True,
    )
    assert steps == measured == [0, 1, 2]  # never spaced out: every read is fresh
    with pytest.raises(
        ValueError,
        match=r"ReduceLROnPlateau\(monitor='robustness/clean_acc'\) checks its metric every "
        r"epoch.*\"frequency\": 2",
    ) as err:
        fit(tmp_path / "every2", [_probe(every_n_epochs=2)], model=_plateau_module([]), epochs=2)
    assert "every_n_epochs=2" in str(err.value)
    steps.clear()  # on the same epochs: accepted, read only where measured
    fit(
        tmp_path / "freq2",
        [_probe(every_n_epochs=2)],
        model=_plateau_module(steps, frequency=2),
        epochs=4,
    )
    assert steps == [1, 3]


def test_a_monitored_embedding_metric_needs_a_validation_at_every_check(tmp_path):
    """EmbeddingProjector embeds the validation loop's features: with no validation, or
    validation every 2nd epoch checked at every training epoch end (the advice of the
    error above), Lightning stopped the fit after epoch 0, and a ModelCheckpoint saving
    at the training epoch end ranked unvalidated epochs by a stale value."""
    import pytorch_lightning as pl

    tag = "embedding/knn_acc"

    def projector():
        return lv.EmbeddingProjector(num_samples=16, projection="pca")

    stop = EarlyStopping(monitor=tag, mode="max")
    with pytest.raises(ValueError, match=r"runs none \(limit_val_batches=0\); EarlyStopping"):
        fit(tmp_path / "none", [projector(), stop], epochs=1, limit_val_batches=0)
    on_epoch_end = EarlyStopping(monitor=tag, mode="max", check_on_train_epoch_end=True)
    match = (
        r"writes it every 2 epochs \(every_n_epochs=1, at the epochs validated with "
        r"check_val_every_n_epoch=2\).*Validate every epoch \(check_val_every_n_epoch=1\), "
        r"or skip the checks without it \(EarlyStopping\(strict=False\)\)$"
    )
    with pytest.raises(ValueError, match=match):
        fit(tmp_path / "every2", [projector(), on_epoch_end], check_val_every_n_epoch=2)
    there: dict[int, bool] = {}

    class Spy(pl.Callback):  # after the projector, where the monitor reads
        def on_train_epoch_end(self, trainer, pl_module):
            there[trainer.current_epoch] = tag in trainer.callback_metrics

    lenient = EarlyStopping(monitor=tag, mode="max", strict=False, check_on_train_epoch_end=True)
    fit(tmp_path / "lenient", [projector(), Spy(), lenient], epochs=4, check_val_every_n_epoch=2)
    assert there == {0: False, 1: True, 2: False, 3: True}  # no stale value in between
    # validation every 6 training batches of 4 an epoch: epoch 0 has none
    by_steps = {"check_val_every_n_epoch": None, "val_check_interval": 6}
    with pytest.raises(ValueError, match=r"validation every 6 training batches and 4 an epoch"):
        fit(tmp_path / "steps", [projector(), on_epoch_end], **by_steps)
    save = ModelCheckpoint(monitor=tag, mode="max", save_on_train_epoch_end=True)
    with pytest.raises(ValueError, match=r"Validate at most every 4 batches$"):  # no `strict`
        fit(tmp_path / "ckpt", [projector(), save], enable_checkpointing=True, **by_steps)
    # every 8 batches of 4: epochs 1, 3, ... hold one, where a checkpoint every 2 saves
    every2 = ModelCheckpoint(monitor=tag, mode="max", every_n_epochs=2, save_top_k=-1,
                             save_on_train_epoch_end=True, dirpath=tmp_path / "ck2")  # fmt: skip
    by_8 = {"check_val_every_n_epoch": None, "val_check_interval": 8}
    fit(tmp_path / "ckpt2", [projector(), every2], epochs=4, enable_checkpointing=True, **by_8)
    assert sorted(p.name[:7] for p in (tmp_path / "ck2").iterdir()) == ["epoch=1", "epoch=3"]
    # an EarlyStopping is told its own way out (it has no every_n_epochs)
    with pytest.raises(ValueError, match=r"or skip the checks without it") as refused:
        fit(tmp_path / "es8", [projector(), on_epoch_end], **by_8)
    assert "ModelCheckpoint(" not in str(refused.value)
    # a projector every 3rd epoch: the advice is every 6th (it said 2, then 3, then 2)
    every3 = lv.EmbeddingProjector(num_samples=16, projection="pca", every_n_epochs=3)
    save3 = ModelCheckpoint(monitor=tag, mode="max", every_n_epochs=3,
                            save_on_train_epoch_end=True, dirpath=tmp_path / "ck3")  # fmt: skip
    with pytest.raises(ValueError, match=r"ModelCheckpoint\(every_n_epochs=6\)"):
        fit(tmp_path / "c8_3", [every3, save3], enable_checkpointing=True, **by_8)
    fit(
        tmp_path / "steps4",
        [projector(), on_epoch_end],
        check_val_every_n_epoch=None,
        val_check_interval=4,
    )  # every epoch holds one: accepted


def test_a_plateau_scheduler_on_a_metric_with_nowhere_to_write_stops_before_training(tmp_path):
    """No logger the callbacks can write to: an EarlyStopping on their metric stopped
    the fit at setup, a ReduceLROnPlateau (known only after the callbacks' setup) let
    them turn off, and Lightning stopped the fit after the first epoch."""
    steps: list[int] = []
    with pytest.raises(ValueError, match=r"need a logger.*ReduceLROnPlateau\(monitor="):
        fit(tmp_path, [_probe()], model=_plateau_module(steps), epochs=2, logger=False)
    assert steps == []
    lenient: list[int] = []  # "strict": False skips its update without the metric
    with pytest.warns(UserWarning, match="turn themselves off"):
        trainer, _ = fit(
            tmp_path / "lenient",
            [_probe()],
            model=_plateau_module(lenient, strict=False),
            epochs=2,
            logger=False,
        )
    assert trainer.current_epoch == 2 and lenient == []


def test_a_checkpoint_saved_by_steps_on_a_metric_is_told_whose_value_it_gets(tmp_path):
    """Each step-based save took the value measured at the last epoch end, for other
    weights; nothing said so."""
    save = ModelCheckpoint(monitor=TAG, mode="max", every_n_train_steps=2, dirpath=tmp_path / "c")
    with pytest.warns(UserWarning, match=r"every_n_train_steps=2\) saves between epoch ends"):
        fit(tmp_path, [_probe(), save], epochs=1, enable_checkpointing=True)
