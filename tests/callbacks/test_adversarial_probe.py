"""AdversarialProbe, trained for real: tags, values, monitoring, regression, masking."""

from __future__ import annotations

import math
import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

import lightning_viz as lv
from lightning_viz._guard import ModelView, make_generator
from lightning_viz._hooks import has_hooks
from lightning_viz.callbacks.robustness import AdversarialProbe, eps_label
from lightning_viz.functional.attacks import robust_accuracy
from lightning_viz.monitoring.regression import RegressionMonitor
from lightning_viz.monitoring.store import load_summary
from tests.conftest import (
    assert_observing_changes_nothing,
    decode_png,
    fit,
    read_events,
    small_datamodule,
)

STEPS = [20, 40]  # global_step after epoch 0 and 1 (20 train batches per epoch)
EPS = (2 / 255, 8 / 255)
KEY = "robustness/pgd_acc@8/255"


def probe_cb(**kwargs):
    args = {"eps": EPS, "num_samples": 32, "on_error": "raise"}
    args.update(kwargs)
    return AdversarialProbe(**args)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robust")
    cb = probe_cb(class_names=["circle", "square", "triangle", "star", "cross"])
    dm = small_datamodule(train_size=640)
    trainer, model = fit(tmp, [cb], epochs=2, datamodule=dm, limit_train_batches=20)
    return trainer, model, cb, read_events(str(tmp))


# ------------------------------------------------------------------------- outputs
def test_tags_and_steps(run):
    _, _, cb, ev = run
    scalars, images = ev["scalars"], ev["images"]
    expected = [
        "robustness/clean_acc",
        "robustness/fgsm_acc@2/255",
        "robustness/fgsm_acc@8/255",
        "robustness/pgd_acc@2/255",
        "robustness/pgd_acc@8/255",
        "robustness/noise_acc@2/255",
        "robustness/noise_acc@8/255",
        "robustness/worst_acc@2/255",
        "robustness/worst_acc@8/255",
        "robustness/regression",
        "viz/AdversarialProbe/seconds",
    ]
    assert sorted(cb.tags()) == sorted(expected[:-1])
    for tag in expected:
        assert [s for s, _ in scalars[tag]] == STEPS, tag  # never in the sanity check
    for tag in ("robustness/curve", "robustness/examples"):
        assert [e[0] for e in images[tag]] == STEPS, tag


def test_values_match_an_independent_computation(run):
    trainer, model, cb, ev = run
    probe = cb._probe
    model.eval()
    view = ModelView(model)
    with torch.no_grad():
        clean = (model(probe.images).argmax(1) == probe.labels).float().mean().item()
    scalars = ev["scalars"]
    assert scalars["robustness/clean_acc"][-1][1] == pytest.approx(clean, abs=1e-6)
    for attack in ("pgd", "fgsm", "noise"):
        for eps in EPS:
            expected = robust_accuracy(
                view,
                probe.images,
                probe.labels,
                eps,
                attack=attack,
                generator=make_generator(cb.seed, "cpu"),
            )
            tag = f"robustness/{attack}_acc@{eps_label(eps)}"
            assert scalars[tag][-1][1] == pytest.approx(expected, abs=1e-6), tag
            assert trainer.callback_metrics[tag].item() == pytest.approx(expected, abs=1e-6)


def test_accuracy_falls_with_eps_and_pgd_is_stronger(run):
    _, _, _, ev = run
    last = {tag: values[-1][1] for tag, values in ev["scalars"].items()}
    clean = last["robustness/clean_acc"]
    assert clean > 0.3  # above chance (0.2): the attacks have correct samples to break
    for attack in ("fgsm", "pgd", "noise"):
        a2, a8 = last[f"robustness/{attack}_acc@2/255"], last[f"robustness/{attack}_acc@8/255"]
        assert clean >= a2 >= a8, attack
    for e in ("2/255", "8/255"):
        assert last[f"robustness/pgd_acc@{e}"] <= last[f"robustness/fgsm_acc@{e}"]
    assert last["robustness/pgd_acc@8/255"] < clean  # the attack does break something


def test_references_are_the_best_runs_and_the_summary_holds_the_outcomes(run):
    trainer, _, cb, ev = run
    summary = load_summary(trainer.logger.log_dir)
    for attack in ("fgsm", "pgd"):
        for eps in EPS:
            tag = f"robustness/{attack}_acc@{eps_label(eps)}"
            values = [v for _, v in ev["scalars"][tag]]
            assert cb.references[tag].value == pytest.approx(max(values), abs=1e-6)
            assert summary[tag].watched and summary[tag].tolerance == cb.tolerance
            last = summary[tag].latest()
            assert last.value == pytest.approx(values[-1], abs=1e-6) and last.n == 32
            assert len(last.outcomes) == 32 and last.successes == last.outcomes.count("1")
    assert "robustness/noise_acc@2/255" not in cb.references  # the control is not watched
    assert not summary["robustness/noise_acc@2/255"].watched
    regression = dict(ev["scalars"]["robustness/regression"])[STEPS[-1]]
    drops = [cb.references[t].value - dict(ev["scalars"][t])[STEPS[-1]] for t in cb.references]
    assert regression == pytest.approx(max(0.0, *drops), abs=1e-6)


def test_examples_image_and_curve(run):
    _, _, _, ev = run
    (_, width, height, png) = ev["images"]["robustness/examples"][-1]
    img = decode_png(png)
    assert img.shape == (height, width, 3)
    # 6 columns of 64-px tiles (32 px scaled by 2), three rows
    assert width >= 6 * 64 and height >= 3 * 64
    # clean and adversarial rows look alike (small eps); the perturbation row is mostly
    # mid-gray-ish with +-eps extremes, i.e. it differs from the clean row
    tile = 64
    rows = [
        img[2 + r * (tile + 2) : 2 + r * (tile + 2) + tile, -6 * (tile + 2) :].float()
        for r in range(3)
    ]
    assert (rows[0] - rows[2]).abs().mean() < (rows[0] - rows[1]).abs().mean()
    (_, cw, ch, cpng) = ev["images"]["robustness/curve"][-1]
    assert decode_png(cpng).float().std() > 10 and cw > 100 and ch > 100


def test_model_is_left_as_found(run):
    _, model, _, _ = run
    assert not has_hooks(model)
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_observing_does_not_change_the_run(tmp_path):
    cb = probe_cb(eps=(8 / 255,), steps=3, on_error="raise")
    trainer, _ = assert_observing_changes_nothing(tmp_path, [cb], epochs=1)
    assert KEY in trainer.callback_metrics


def test_a_failure_inside_leaves_no_hooks_and_training_goes_on(tmp_path):
    calls = {"n": 0}

    def broken(output):  # works at setup, fails inside the first run
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom in output_to_logits")
        return output

    cb = probe_cb(on_error="warn", output_to_logits=broken)
    with pytest.warns(UserWarning, match="AdversarialProbe failed at epoch 0.*boom"):
        trainer, model = fit(tmp_path, [cb], epochs=2)
    assert trainer.current_epoch == 2  # training finished
    assert not has_hooks(model)
    assert all(p.requires_grad for p in model.parameters())
    assert model.training  # the flags the trainer left are restored


# ------------------------------------------------------------------ monitoring
def test_early_stopping_and_checkpoint_monitor_robust_accuracy(tmp_path):
    cb = probe_cb(eps=(8 / 255,))
    stop = pl.callbacks.EarlyStopping(monitor=KEY, mode="max", patience=0, min_delta=2.0)
    ckpt = pl.callbacks.ModelCheckpoint(
        dirpath=str(tmp_path / "ckpt"), filename="robust", monitor=KEY, mode="max"
    )
    trainer, _ = fit(tmp_path, [cb, stop, ckpt], epochs=5, enable_checkpointing=True)
    # min_delta 2 can never be met: the first epoch sets the best, the second stops
    assert trainer.should_stop and trainer.current_epoch == 2
    assert stop.stopped_epoch == 1
    values = [v for _, v in read_events(str(tmp_path))["scalars"][KEY]]
    assert len(values) == 2
    assert ckpt.best_model_score.item() == pytest.approx(max(values), abs=1e-6)
    assert ckpt.best_model_path.endswith("robust.ckpt")
    # the checkpoint carries the alert state, so a resumed run remembers the references
    saved = torch.load(ckpt.last_model_path or ckpt.best_model_path, weights_only=False)
    states = [v for k, v in saved["callbacks"].items() if k.startswith("AdversarialProbe")]
    assert len(states) == 1
    resumed = probe_cb(eps=(8 / 255,))
    resumed.load_state_dict(states[0])
    assert resumed.references[KEY].value == pytest.approx(max(values), abs=1e-6)


def test_state_dict_round_trip():
    cb = probe_cb()
    cb._monitor.update(0, 10, {KEY: {"outcomes": [1, 1, 0, 1]}})
    state = cb.state_dict()
    other = probe_cb()
    other.load_state_dict(state)
    assert other.references[KEY].outcomes == "1101" and other.references[KEY].epoch == 0
    assert other._monitor.state_dict() == cb._monitor.state_dict()
    other.load_state_dict({})  # an old checkpoint without these keys
    assert probe_cb().state_key == other.state_key
    assert probe_cb(eps=(1 / 255,)).state_key != other.state_key


def test_references_measured_with_other_attack_settings_are_not_compared_with():
    """H58: resumed with steps=50 after steps=1 (the same state key: eps, attacks and
    norm), the 50-step accuracy was compared sample by sample with the 1-step best: a
    false regression (a weaker attack hid a real one). The references start anew, said."""
    cb = probe_cb(steps=1)
    cb._monitor.update(0, 10, {KEY: {"outcomes": [1, 1, 0, 1]}})
    state = cb.state_dict()
    assert state["measured_with"]["steps"] == "1"
    same = probe_cb(steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say
        same.load_state_dict(state)
    assert same.references[KEY].outcomes == "1101"
    stronger = probe_cb(steps=50, step_size=0.003)
    assert stronger.state_key == cb.state_key  # Lightning hands it the old state
    with pytest.warns(UserWarning, match=r"measured with steps=1 \(now 50\), step_size=None"):
        stronger.load_state_dict(state)
    assert stronger.references == {}
    old = {k: v for k, v in state.items() if k != "measured_with"}  # an older checkpoint
    probe_cb(steps=50).load_state_dict(old)  # kept: nothing to compare with


# ------------------------------------------------------------------ regression
def _resumed_with_a_perfect_reference(**kwargs) -> AdversarialProbe:
    """A probe whose monitor holds a reference where all 16 samples were robust."""
    cb = probe_cb(eps=(8 / 255,), attacks=("pgd",), num_samples=16, patience=1, **kwargs)
    reference = RegressionMonitor(0.02, patience=1)
    reference.update(0, 0, {KEY: {"outcomes": [1] * 16, "fingerprint": "another probe"}})
    cb.load_state_dict({"monitor": reference.state_dict()})
    return cb


def test_a_regression_is_one_alert_naming_metric_epochs_values_and_p(tmp_path):
    cb = _resumed_with_a_perfect_reference()
    with pytest.warns(UserWarning, match="AdversarialProbe: 1 regression at epoch 0") as record:
        trainer, _ = fit(tmp_path, [cb], epochs=2)
    messages = [str(w.message) for w in record if "regression" in str(w.message)]
    assert len(messages) == 1  # one episode, one alert; the second epoch stays in it
    pgd, last = (v for _, v in sorted(read_events(str(tmp_path))["scalars"][KEY]))
    assert KEY in messages[0] and "best (epoch 0)" in messages[0]
    assert f"{pgd:.4f}" in messages[0] and "1.0000" in messages[0]
    assert "unpaired (probes differ)" in messages[0]  # another probe: Fisher's exact test
    alerts = load_summary(trainer.logger.log_dir).alerts
    assert [(a["metric"], a["epoch"], a["kind"]) for a in alerts] == [(KEY, 0, "best")]
    assert alerts[0]["pvalue"] < 0.01 and alerts[0]["drop"] == pytest.approx(1.0 - pgd)
    assert trainer.callback_metrics["robustness/regression"].item() == pytest.approx(1.0 - last)


def test_alerts_print_through_the_progress_bar_when_there_is_one(tmp_path, capsys):
    cb = _resumed_with_a_perfect_reference()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning: the bar prints it
        warnings.filterwarnings("ignore", message=".*(logging interval|num_workers|LeafSpec).*")
        fit(tmp_path, [cb], epochs=1, enable_progress_bar=True)
    out = capsys.readouterr().out
    assert out.count("AdversarialProbe: 1 regression at epoch 0") == 1 and KEY in out


def test_a_bad_baseline_fails_at_construction(tmp_path):
    with pytest.raises(ValueError, match="`baseline` must be an earlier run.*no such file"):
        probe_cb(baseline=str(tmp_path / "no_such_run"))


# ------------------------------------------------------------- gradient masking
class Quantize(nn.Module):
    """Rounds to 8-bit levels: a zero gradient everywhere (masks the attack)."""

    def forward(self, x):
        return (x * 255).round() / 255


class MaskedLit(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(Quantize(), nn.Flatten(), nn.Linear(3 * 32 * 32, 5))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)  # weights stay fixed


def test_gradient_masking_is_detected(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MaskedLit()
    x = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)  # clean accuracy 1
    cb = AdversarialProbe(eps=(16 / 255, 64 / 255), probe=(x, y), on_error="raise")
    with pytest.warns(UserWarning, match="gradient masking: random noise .* hurts more than fgsm"):
        trainer, _ = fit(tmp_path, [cb], model=model, epochs=2)
    m = trainer.callback_metrics
    assert m["robustness/fgsm_acc@16/255"].item() == 1.0  # sign(0) = 0: FGSM does nothing
    assert m["robustness/noise_acc@16/255"].item() < 1.0 - 1 / 32
    assert cb._masking_warned == {"noise_stronger", "zero_gradients"}  # rounding: no gradient


def test_masking_rules_and_once_per_run():
    cb = probe_cb(eps=(2 / 255, 8 / 255), tolerance=0.0)
    ok = {
        "fgsm": {2 / 255: 0.6, 8 / 255: 0.3},
        "pgd": {2 / 255: 0.5, 8 / 255: 0.1},
        "noise": {2 / 255: 0.9, 8 / 255: 0.85},
    }
    assert cb._masking_messages(ok, 0.9, 100) == []
    weaker = {**ok, "pgd": {2 / 255: 0.5, 8 / 255: 0.35}}
    (msg,) = cb._masking_messages(weaker, 0.9, 100)
    assert "PGD accuracy 0.3500 is above FGSM accuracy 0.3000 at eps 8/255" in msg
    assert cb._masking_messages(weaker, 0.9, 100) == []  # once per run and kind
    rising = {**ok, "fgsm": {2 / 255: 0.6, 8 / 255: 0.7}, "pgd": {2 / 255: 0.5, 8 / 255: 0.6}}
    (msg,) = cb._masking_messages(rising, 0.9, 100)
    assert "accuracy rises with eps" in msg and "0.6000 at 2/255, 0.7000 at 8/255" in msg
    noisy = {**ok, "noise": {2 / 255: 0.4, 8 / 255: 0.05}}
    (msg,) = cb._masking_messages(noisy, 0.9, 100)
    assert "random noise (0.4000) hurts more than fgsm (0.6000) at eps 2/255" in msg
    # differences of one sample are tolerated
    fresh = probe_cb(eps=(2 / 255, 8 / 255))
    tiny = {**ok, "pgd": {2 / 255: 0.5, 8 / 255: 0.31}}
    assert fresh._masking_messages(tiny, 0.9, 100) == []


def test_pgd_above_fgsm_by_a_few_samples_is_not_masking():
    from lightning_viz.callbacks.robustness import _masking_flips

    eps = 8 / 255
    values = {"fgsm": {eps: 0.156}, "pgd": {eps: 0.180}, "noise": {eps: 0.9}}
    # 3 samples survive PGD that FGSM broke, none the other way: p = 1/8, no warning
    # (seen in the short texture-shortcut run of test_compare_demo)
    few = {("pgd", "fgsm", eps): (3, 0)}
    assert probe_cb(eps=(eps,))._masking_messages(values, 0.95, 128, flips=few) == []
    many = {("pgd", "fgsm", eps): (8, 0)}  # p = 1/256 < alpha = 0.01
    values["pgd"] = {eps: 0.2}
    (msg,) = probe_cb(eps=(eps,))._masking_messages(values, 0.95, 128, flips=many)
    assert "PGD accuracy 0.2000 is above FGSM accuracy 0.1560" in msg
    mixed = {("pgd", "fgsm", eps): (9, 3)}  # p = 0.073: PGD and FGSM each win some
    assert probe_cb(eps=(eps,))._masking_messages(values, 0.95, 128, flips=mixed) == []
    # the counts, from robust masks (True: still correct)
    masks = {
        "fgsm": {eps: torch.tensor([1, 0, 0, 1, 1], dtype=torch.bool)},
        "pgd": {eps: torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool)},
    }
    assert _masking_flips(masks, ("fgsm", "pgd"), (eps,)) == {("pgd", "fgsm", eps): (1, 2)}
    assert _masking_flips(masks, ("pgd",), (eps,)) == {}


# ------------------------------------------------------------------- validation
def test_eps_label():
    assert eps_label(8 / 255) == "8/255"
    assert eps_label(0.5 / 255) == "0.5/255"
    assert eps_label(0.25 / 255) == "0.25/255"
    assert eps_label(0.0) == "0/255"
    assert eps_label(0.5) == "127.5/255"
    assert eps_label(1e-4) == "0.0001"
    assert eps_label(0.5, "l2") == "0.5" and eps_label(2 / 255, "l2") == "0.00784314"
    assert eps_label(math.pi / 100) == f"{math.pi / 100:g}"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": 8 / 255}, TypeError, r"got 0\.0313725.*; for one size pass eps=\[0\.0313725\]"),
        ({"eps": "8/255"}, TypeError, r"a list of perturbation sizes.*got '8/255'; .*eps=\[0\.031"),
        # no advice that the next check refuses (eps=[-1], eps=[8] for linf)
        ({"eps": -1}, TypeError, r"\[2/255, 8/255\] \(in YAML \[\"2/255\", \"8/255\"\]\), got -1$"),
        ({"eps": 8}, TypeError, r"got 8$"),
        ({"eps": {1: 2}}, TypeError, "must be a list of perturbation sizes"),
        ({"eps": [0.1, "a"]}, TypeError, r"numbers or 'k/255' strings\), got \[0\.1, 'a'\]"),
        ({"eps": [0.1, -0.1]}, ValueError, r"finite sizes >= 0, got \[0\.1, -0\.1\]"),
        ({"eps": [float("nan")]}, ValueError, r"finite sizes >= 0, got \[nan\]"),
        ({"eps": [float("inf")]}, ValueError, r"finite sizes >= 0, got \[inf\]"),
        (
            {"eps": [8]},
            ValueError,
            r"sizes in \[0, 1\] for norm='linf', got 8 .*did you mean 8/255",
        ),
        ({"eps": []}, ValueError, r"\(at least one\), got \[\]"),
        ({"eps": [8 / 255, 8.0000000001 / 255]}, ValueError, "unique sizes"),
        (
            {"attacks": ("fgsm", "cw")},
            ValueError,
            r"names from \['fgsm', 'pgd', 'apgd-ce', 'apgd-t'\], got \['cw'\]",
        ),
        (
            {"attacks": ()},
            ValueError,
            r"non-empty list of names from \['fgsm', 'pgd', 'apgd-ce', 'apgd-t'\], got \[\]",
        ),
        ({"attacks": ("noise",)}, ValueError, r"got \['noise'\]"),
        ({"attacks": [1]}, TypeError, "`attacks` must be a list of names"),
        ({"norm": "l1"}, ValueError, r"`norm` must be one of \['linf', 'l2'\], got 'l1'"),
        ({"steps": 0}, ValueError, "`steps` must be an int >= 1, got 0"),
        ({"steps": 2.0}, TypeError, "`steps` must be an int >= 1, got 2.0"),
        ({"tolerance": -0.1}, ValueError, r"`tolerance` must be a finite number >= 0, got -0\.1"),
        ({"tolerance": "a"}, TypeError, "`tolerance` must be a finite number >= 0, got 'a'"),
        ({"step_size": 0.0}, ValueError, "`step_size` must be a finite number > 0, got 0.0"),
        ({"step_size": "x"}, TypeError, "`step_size` must be a finite number > 0, got 'x'"),
        ({"num_samples": 0}, ValueError, "`num_samples` must be an int >= 1, got 0"),
    ],
)
def test_configuration_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        AdversarialProbe(**kwargs)


def test_eps_as_k_over_255_strings_as_in_a_yaml_config():
    cb = AdversarialProbe(eps=["2/255", "8 / 255", "0.5", 0.25])
    assert cb.eps == [2 / 255, 8 / 255, 0.5, 0.25]
    assert cb.tags()[1:3] == ["robustness/fgsm_acc@2/255", "robustness/fgsm_acc@8/255"]
    assert AdversarialProbe(eps=[3.0], norm="l2").eps == [3.0]  # L2 sizes may exceed 1


def test_single_attack_name_and_defaults():
    cb = AdversarialProbe(attacks="pgd")
    assert cb.attacks == ["pgd"] and cb.num_samples == 128 and cb.tolerance == 0.02
    assert cb.tags()[1:3] == [f"robustness/pgd_acc@{k}/255" for k in (2, 8)]
    assert lv.AdversarialProbe is AdversarialProbe


def test_probe_without_labels_fails_at_setup(tmp_path):
    cb = AdversarialProbe(probe=torch.rand(8, 3, 32, 32), on_error="raise")
    with pytest.raises(ValueError, match="AdversarialProbe needs labels"):
        fit(tmp_path, [cb], epochs=1, datamodule=small_datamodule())


def test_a_resumed_run_does_not_repeat_an_alert(tmp_path):
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    cb = _resumed_with_a_perfect_reference()
    with pytest.warns(UserWarning, match="1 regression at epoch 0"):
        fit(tmp_path, [cb, ckpt], epochs=1, enable_checkpointing=True)
    resumed = probe_cb(eps=(8 / 255,), attacks=("pgd",), num_samples=16, patience=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer, _ = fit(
            tmp_path, [resumed], epochs=2, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
        )
    assert not [w for w in record if "regression at" in str(w.message)]  # same episode
    summary = load_summary(trainer.logger.log_dir)  # the same log dir: one file, both runs
    assert [a["epoch"] for a in summary.alerts] == [0]
    assert [r.epoch for r in summary[KEY].records()] == [0, 1]


def test_a_baseline_run_is_compared_at_the_same_epoch(tmp_path):
    from lightning_viz.monitoring.record import RunSummary

    baseline = RunSummary()
    baseline.record(KEY, 0, 4, outcomes=[1] * 16, watched=True, tolerance=0.02)
    path = baseline.write(tmp_path / "baseline")
    cb = probe_cb(eps=(8 / 255,), attacks=("pgd",), num_samples=16, patience=1, baseline=path)
    with pytest.warns(UserWarning, match="1 regression at epoch 0") as record:
        trainer, _ = fit(tmp_path / "candidate", [cb], epochs=1)
    message = next(str(w.message) for w in record if "regression at" in str(w.message))
    assert "baseline (epoch 0)" in message and "unpaired (probes differ)" in message
    alerts = load_summary(trainer.logger.log_dir).alerts
    assert [(a["kind"], a["reference_epoch"]) for a in alerts] == [("baseline", 0)]


def test_a_baseline_that_shares_no_watched_metric_is_said(tmp_path):
    """A baseline measured at other eps was silently inert."""
    from lightning_viz.monitoring.record import RunSummary

    baseline = RunSummary()
    baseline.record("robustness/pgd_acc@1/255", 0, 4, outcomes=[1] * 16, watched=True)
    path = baseline.write(tmp_path / "baseline")
    cb = probe_cb(eps=(8 / 255,), attacks=("pgd",), num_samples=16, baseline=path)
    with pytest.warns(UserWarning, match="the `baseline` run holds none of the metrics") as said:
        fit(tmp_path / "candidate", [cb], epochs=2)
    texts = [str(w.message) for w in said if "holds none of the metrics" in str(w.message)]
    assert len(texts) == 1 and KEY in texts[0] and "robustness/pgd_acc@1/255" in texts[0]


def test_the_fingerprint_names_the_eps_and_attacks_an_outcome_depends_on():
    """The sweep attacks at 8/255 only what survived 2/255, and ``worst`` is the union
    of the attacks: runs with other eps or attacks are not paired as the same probe."""
    from types import SimpleNamespace

    ctx = SimpleNamespace(probe=SimpleNamespace(fingerprint=lambda: "probe"), task="multiclass")

    def fp(**kwargs):
        return lv.AdversarialProbe(**{"eps": (8 / 255,), **kwargs})._fingerprint(ctx)

    assert fp() == fp(eps=(8 / 255,))  # the same settings: paired
    assert fp(eps=(2 / 255, 8 / 255)) == fp(eps=(8 / 255, 2 / 255))  # order is no setting
    assert len({fp(), fp(eps=(2 / 255, 8 / 255)), fp(attacks=("pgd",))}) == 3


EPS = (2 / 255, 8 / 255)


def _last(tmp):
    return {k: v[-1][1] for k, v in read_events(str(tmp))["scalars"].items()}


def test_worst_is_robust_to_every_attack_image_by_image(tmp_path):
    """worst_acc@eps counts the images that survive every attack (the intersection),
    so it is at most each attack's accuracy; per image it is the AND of the outcomes."""
    cb = AdversarialProbe(eps=(4 / 255, 16 / 255), num_samples=32, steps=5, on_error="raise")
    fit(
        tmp_path,
        [cb],
        epochs=2,
        datamodule=small_datamodule(train_size=640),
        limit_train_batches=20,
    )
    last = _last(tmp_path)
    summary = load_summary(str(tmp_path / "run" / "version_0"))
    for e in ("4/255", "16/255"):
        per = {a: last[f"robustness/{a}_acc@{e}"] for a in ("fgsm", "pgd")}
        assert last[f"robustness/worst_acc@{e}"] <= min(per.values()) + 1e-9
        out = {
            a: summary.metrics[f"robustness/{a}_acc@{e}"].epochs[1].outcomes
            for a in ("fgsm", "pgd", "worst")
        }
        bits = {a: [int(c) for c in str(o)] for a, o in out.items()}  # "1001...": 1 robust
        if e == "16/255":  # the attacks break different images there: all != any
            assert bits["fgsm"] != bits["pgd"]
        assert bits["worst"] == [f & p for f, p in zip(bits["fgsm"], bits["pgd"], strict=True)]


def test_eps_given_in_any_order_give_the_same_sweep(tmp_path):
    """The sweep goes eps upward whatever the order given: (8/255, 2/255) writes the
    same accuracies as (2/255, 8/255)."""
    up = AdversarialProbe(eps=EPS, attacks=("pgd",), num_samples=32, steps=3, tag_prefix="up")
    down = AdversarialProbe(
        eps=EPS[::-1], attacks=("pgd",), num_samples=32, steps=3, tag_prefix="down"
    )
    fit(
        tmp_path,
        [up, down],
        epochs=1,
        datamodule=small_datamodule(train_size=640),
        limit_train_batches=20,
    )
    last = _last(tmp_path)
    for e in ("2/255", "8/255"):
        assert last[f"down/pgd_acc@{e}"] == pytest.approx(last[f"up/pgd_acc@{e}"], abs=1e-9), e
    assert last["up/pgd_acc@2/255"] > last["up/pgd_acc@8/255"]  # the order matters here


def test_catastrophic_overfitting_is_flagged_when_fgsm_accuracy_holds():
    """The documented rule: PGD falls, FGSM "holds or rises" (not lower by more than
    ``tolerance``). Hand-built masks: FGSM stays at 32/64 while PGD falls from 32 to 4."""
    from types import SimpleNamespace

    cb = AdversarialProbe(eps=(8 / 255,), attacks=("fgsm", "pgd"))
    cb._reset_overfitting()
    labels = torch.arange(64) % 4
    clean = torch.ones(64, dtype=torch.bool)  # far above chance (1/4)
    eps = 8 / 255
    fgsm = torch.zeros(64, dtype=torch.bool)
    fgsm[:32] = True

    def at(epoch, pgd):
        ctx = SimpleNamespace(trainer=SimpleNamespace(current_epoch=epoch), task="multiclass")
        return cb._overfitting_messages(
            ctx, {"fgsm": {eps: fgsm}, "pgd": {eps: pgd}}, clean, labels
        )

    assert at(0, fgsm.clone()) == []  # the reference: no gap
    pgd = torch.zeros(64, dtype=torch.bool)
    pgd[:4] = True  # 28 of 64 (> GAP) now broken by PGD only
    (message,) = at(1, pgd)
    assert "catastrophic overfitting" in message
    assert cb.catastrophic_overfitting["epoch"] == 1
