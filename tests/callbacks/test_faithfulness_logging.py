"""SaliencyLogger and GradCAMLogger score their maps (deletion, insertion, randomization),
trained for real; the alert rule on per-sample values."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz.monitoring.record import make_record
from lightning_viz.monitoring.regression import RegressionMonitor
from lightning_viz.monitoring.rule import compare_records
from tests.conftest import fit, layout_and_scalars, lightning_info, read_events

STEPS = [4, 8]
SCORES = ("deletion_auc", "insertion_auc", "randomization_corr")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faith")
    callbacks = [
        lv.SaliencyLogger(
            methods=("vanilla", "smoothgrad"),
            num_samples=6,
            smoothgrad_samples=4,
            on_error="raise",
            quality_cost=None,
        ),
        lv.GradCAMLogger(num_samples=6, on_error="raise", quality_cost=None),
    ]
    trainer, model = fit(tmp, callbacks, epochs=2)
    return trainer, model, callbacks, read_events(str(tmp)), tmp


def test_scores_and_baselines_every_epoch(run):
    _, _, _, ev, _ = run
    scalars = ev["scalars"]
    for method in ("vanilla", "smoothgrad", "gradcam"):
        for score in SCORES:
            for tag in (f"explain/{method}/{score}", f"explain/{method}/{score}_random"):
                assert [s for s, _ in scalars[tag]] == STEPS, tag
                lo = -1.0 if score == "randomization_corr" else 0.0
                assert all(lo <= v <= 1.0 for _, v in scalars[tag]), tag
    # the random map's correlation with any map is near 0 (6 maps of 1024 pixels)
    assert abs(scalars["explain/vanilla/randomization_corr_random"][-1][1]) < 0.1
    for tag in ("explain/saliency/curves", "explain/gradcam/curves"):
        assert [e[0] for e in ev["images"][tag]] == STEPS, tag


def test_logged_values_are_the_functional_scores(run):
    trainer, model, callbacks, ev, _ = run
    cam = callbacks[1]
    view = LF.ModelView(model)
    x = cam._probe.images
    maps = LF.grad_cam(view, x, None, layer=cam._layer_name)  # the predicted class (eval)
    dele = LF.deletion_curve(view, x, maps, None, steps=8).auc.mean().item()
    ins = LF.insertion_curve(view, x, maps, None, steps=8).auc.mean().item()
    scalars = ev["scalars"]
    assert scalars["explain/gradcam/deletion_auc"][-1][1] == pytest.approx(dele, abs=1e-5)
    assert scalars["explain/gradcam/insertion_auc"][-1][1] == pytest.approx(ins, abs=1e-5)


def test_summary_keeps_per_sample_values_and_layout_groups_them(run):
    _, _, _, ev, tmp = run
    path = os.path.join(str(tmp), "run", "version_0", "lightning_viz", "summary.json")
    with open(path) as f:
        summary = json.load(f)
    dele = summary["metrics"]["explain/gradcam/deletion_auc"]
    assert dele["watched"] is False and dele["higher_is_better"] is False
    values = dele["epochs"][-1]["values"]
    assert len(values) == 6
    assert sum(values) / 6 == pytest.approx(dele["epochs"][-1]["value"], abs=1e-5)
    assert summary["metrics"]["explain/gradcam/insertion_auc"]["watched"] is False
    # the watched score: per image, the map's deletion AUC minus the random map's
    margin = summary["metrics"]["explain/gradcam/deletion_margin"]
    assert margin["watched"] is True and margin["higher_is_better"] is False
    assert margin["tolerance"] == pytest.approx(0.05)
    chance = summary["metrics"]["explain/gradcam/deletion_auc_random"]["epochs"][-1]["values"]
    expected = [v - c for v, c in zip(values, chance, strict=True)]
    assert margin["epochs"][-1]["values"] == pytest.approx(expected, abs=2e-6)  # each rounded
    listed, written = layout_and_scalars(ev)
    explain = {t for t in written if t.startswith("explain/")}
    assert explain and explain <= set(listed)


def test_more_curve_steps_than_pixels_is_an_error_before_training(tmp_path):
    """It failed at the first epoch end, after training, naming the functional's `steps`."""
    for callback in (
        lv.SaliencyLogger(methods=("vanilla",), num_samples=2, quality_steps=1025),
        lv.GradCAMLogger(methods=("gradcam",), num_samples=2, quality_steps=1025),
    ):
        with pytest.raises(
            ValueError,
            match=r"`quality_steps` must be at most the pixels of the probe images \(32x32\)",
        ):
            trainer, _ = fit(tmp_path / type(callback).__name__, [callback], epochs=1)
    # with the curves turned off the steps do not matter
    ok = lv.SaliencyLogger(
        methods=("vanilla",), num_samples=2, quality=("randomization",), quality_steps=1025
    )
    trainer, _ = fit(tmp_path / "off", [ok], epochs=1, limit_train_batches=1)
    assert trainer.global_step == 1


def test_cost_limit_leaves_runs_unscored(tmp_path):
    """Grad-CAM maps are cheap (one backward): scoring costs several times as much, so at
    the default quality_cost=0.5 the first run is scored and the next is not."""
    cb = lv.GradCAMLogger(num_samples=4, on_error="raise")
    fit(tmp_path, [cb], epochs=2)
    scalars = read_events(str(tmp_path))["scalars"]
    assert [s for s, _ in scalars["explain/gradcam/deletion_auc"]] == [4]
    assert [s for s, _ in scalars["viz/GradCAMLogger/quality_seconds"]] == [4]
    assert [s for s, _ in scalars["viz/GradCAMLogger/seconds"]] == STEPS
    assert cb._skip >= 0


def test_a_monitored_score_is_scored_at_every_run(tmp_path):
    """An EarlyStopping on a score read the first run's value for the runs the cost
    limit left unscored, and stopped the fit on it. A monitored score is never skipped,
    as a monitored probe is never spaced out by the budget."""
    from pytorch_lightning.callbacks import EarlyStopping

    cb = lv.GradCAMLogger(num_samples=4, on_error="raise")  # quality_cost 0.5 by default
    stop = EarlyStopping(monitor="explain/gradcam/deletion_auc", mode="min", patience=5)
    with lightning_info() as said:
        fit(tmp_path, [cb, stop], epochs=3)
    scalars = read_events(str(tmp_path))["scalars"]
    assert [s for s, _ in scalars["explain/gradcam/deletion_auc"]] == [4, 8, 12]
    assert cb._skip == 0
    assert any("scores its maps at every run" in line for line in said)


@pytest.mark.parametrize("resumed_with", ["monitor", "quality_cost=None"])
def test_a_resume_scores_at_every_run_when_spacing_no_longer_applies(tmp_path, resumed_with):
    """A checkpoint of a fit whose scoring was spaced out holds the due runs left to
    skip; resumed with a monitor of a score (or quality_cost=None) those runs were still
    skipped, and a strict EarlyStopping stopped the fit: "metric ... not available"."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    saved = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_top_k=-1)
    first = lv.GradCAMLogger(num_samples=4, on_error="raise")  # quality_cost 0.5
    fit(tmp_path / "first", [first, saved], epochs=1, enable_checkpointing=True)
    assert first._skip > 0  # Grad-CAM's maps are cheap: scoring is spaced out
    ckpt = str(next((tmp_path / "ckpt").glob("*.ckpt")))
    kwargs = {"quality_cost": None} if resumed_with != "monitor" else {}
    cb = lv.GradCAMLogger(num_samples=4, on_error="raise", **kwargs)
    stop = EarlyStopping(monitor="explain/gradcam/deletion_auc", mode="min", patience=5)
    monitors = [stop] if resumed_with == "monitor" else []
    fit(tmp_path / "second", [cb, *monitors], epochs=3, ckpt_path=ckpt)
    scalars = read_events(str(tmp_path / "second"))["scalars"]
    assert [s for s, _ in scalars["explain/gradcam/deletion_auc"]] == [8, 12]


def test_quality_off_writes_nothing(tmp_path):
    cb = lv.GradCAMLogger(num_samples=4, quality=(), on_error="raise")
    fit(tmp_path, [cb], epochs=1)
    ev = read_events(str(tmp_path))
    assert not [t for t in ev["scalars"] if t.startswith("explain/")]
    assert "gradcam/gradcam" in ev["images"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"quality": ("roar",)}, ValueError, "quality"),
        ({"quality": 3}, TypeError, "quality"),
        ({"quality_steps": 0}, ValueError, "quality_steps"),
        ({"quality_baseline": "zeros"}, ValueError, "quality_baseline"),
        ({"randomization_threshold": 2.0}, ValueError, "randomization_threshold"),
        ({"tolerance": -1.0}, ValueError, "tolerance"),
        ({"quality_cost": 0.0}, ValueError, "quality_cost"),
    ],
)
def test_bad_quality_options(kwargs, error, match):
    for cls in (lv.SaliencyLogger, lv.GradCAMLogger):
        with pytest.raises(error, match=match):
            cls(**kwargs)


# ---------------------------------------------------------- the rule on values
def test_paired_sign_test_on_per_sample_values():
    ref = make_record(0, 1, values=[0.2] * 10)
    worse = make_record(1, 2, values=[0.3] * 9 + [0.1])
    c = compare_records(ref, worse, higher_is_better=False, same_probe_if_unknown=True)
    assert (c.test, c.worse, c.better, c.n) == ("paired", 9, 1, 10)
    assert c.pvalue == pytest.approx(11 / 1024)  # P(X >= 9), X ~ Bin(10, 1/2)
    assert c.drop == pytest.approx(0.3 * 0.9 + 0.01 - 0.2)
    assert ref.value == pytest.approx(0.2)
    rt = make_record(**{k: v for k, v in worse.to_dict().items() if k != "interval"})
    assert rt.values == worse.values


def test_deletion_auc_rise_alerts_once_per_episode():
    m = RegressionMonitor(0.05, patience=1, alpha=0.01, higher_is_better=False)
    tag = "explain/gradcam/deletion_auc"
    assert m.update(0, 1, {tag: {"values": [0.2] * 12}}) == []
    alerts = m.update(1, 2, {tag: {"values": [0.4] * 12}})
    assert [a.metric for a in alerts] == [tag]
    assert m.update(2, 3, {tag: {"values": [0.4] * 12}}) == []  # same episode
    assert m.update(3, 4, {tag: {"values": [0.21] * 12}}) == []  # recovered
    assert len(m.update(4, 5, {tag: {"values": [0.5] * 12}})) == 1  # a new episode
    assert m.update(5, 6, {tag: {"values": [math.nan] * 12}}) == []


# ------------------------------------------------------------- binary, multilabel
@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_binary_and_multilabel_scores_use_the_explained_labels_sigmoid(tmp_path, task):
    import torch

    from tests.callbacks.test_trust import RelabelledData, TaskModule, _multi_hot

    if task == "binary":
        dm = RelabelledData(relabel=lambda y: torch.tensor(float(y == 0)))
        module = TaskModule(1, "bce")
    else:
        dm = RelabelledData(relabel=_multi_hot)
        module = TaskModule(5, "bce")
    cb = lv.SaliencyLogger(
        methods=("vanilla",), num_samples=6, on_error="raise", quality=("deletion",)
    )
    fit(tmp_path, [cb], model=module, datamodule=dm, epochs=1)
    assert cb._task == task
    view, x = LF.ModelView(module), cb._probe.images
    maps = LF.saliency(view, x)  # the predicted class / top label, in eval mode
    expected = LF.deletion_curve(view, x, maps, None, steps=8, task=task)
    logged = read_events(str(tmp_path))["scalars"]["explain/vanilla/deletion_auc"][-1][1]
    assert logged == pytest.approx(expected.auc.mean().item(), abs=1e-5)
    if task == "multilabel":  # a softmax over the labels would give other values
        softmax = LF.deletion_curve(view, x, maps, None, steps=8, task="multiclass")
        assert abs(softmax.auc.mean().item() - logged) > 1e-3


def test_a_map_made_constant_by_randomization_counts_as_changed():
    import torch

    from lightning_viz.callbacks._quality import randomization_corr

    maps = torch.zeros(3, 1, 2, 2)
    maps[0, 0, 0, 0] = maps[1, 0, 1, 1] = 1.0  # samples 0 and 1 rank pixels; 2 is constant
    spearman = torch.tensor([math.nan, 0.4, math.nan])
    out = randomization_corr(spearman, maps)
    assert out[0].item() == 0.0 and out[1].item() == pytest.approx(0.4)
    assert math.isnan(out[2].item())  # the model's own map says nothing: left out


def test_all_constant_maps_say_why_randomization_corr_is_missing(tmp_path):
    """Positive activations into a head whose weights are all negative: every Grad-CAM
    weight is negative, so every map is ReLU(negative) = 0. The maps rank nothing: no
    correlation, and no deletion or insertion order (they were scored in raster order),
    so none is written; the callback says so once instead of leaving them out silently."""
    import warnings

    import torch
    from torch import nn

    from lightning_viz.data import LitClassifier

    class AllZeroCam(LitClassifier):
        def __init__(self) -> None:
            super().__init__(num_classes=5, lr=1e-9)  # the weights stay as built
            conv = nn.Conv2d(3, 4, 3, padding=1)
            head = nn.Linear(4, 5)
            with torch.no_grad():
                conv.weight.fill_(0.01)
                conv.bias.fill_(1.0)  # activations > 0 on [0, 1] images
                head.weight.copy_(-torch.rand(5, 4, generator=torch.Generator().manual_seed(0)))
            self.model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)

    cb = lv.GradCAMLogger(methods=("gradcam",), num_samples=4, quality_cost=None, on_error="raise")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=AllZeroCam(), epochs=2)
    said = [str(w.message) for w in record if "every gradcam map" in str(w.message)]
    assert len(said) == 1 and "at epoch 0" in said[0], said  # once per fit
    scalars = read_events(str(tmp_path))["scalars"]
    assert not {"randomization_corr", "deletion_auc", "insertion_auc"} & {
        t.removeprefix("explain/gradcam/") for t in scalars
    }
    # nor the random map's levels: they are over the images the score counts (none)
    assert "explain/gradcam/deletion_auc_random" not in scalars


def test_randomization_threshold_alert_reads_as_a_threshold(tmp_path):
    """A mean randomization correlation above ``randomization_threshold`` alerts once per
    episode; its sentence names the threshold and no test (it said "Holm-adjusted p =
    nan <= 0.01" before, and a stored alert without a p-value raised TypeError)."""
    from lightning_viz.monitoring.regression import Alert, alert_sentence, format_alerts

    cb = lv.GradCAMLogger(
        num_samples=4,
        quality=("randomization",),
        randomization_threshold=-1.0,  # any correlation is above it
        quality_cost=None,
        on_error="raise",
    )
    with pytest.warns(UserWarning, match=r"regression at epoch 1 \(above a threshold\)") as said:
        fit(tmp_path, [cb], epochs=3)
    path = os.path.join(str(tmp_path), "run", "version_0", "lightning_viz", "summary.json")
    with open(path) as f:
        alerts = json.load(f)["alerts"]
    assert [a["epoch"] for a in alerts] == [1]  # after warmup 1; epoch 2 is the same episode
    alert = alerts[0]
    assert alert["metric"] == "explain/gradcam/randomization_corr"
    assert alert["message"].startswith(
        f"explain/gradcam/randomization_corr = {alert['value']:.4f} at epoch 1, "
        "above the threshold -1 (threshold (map barely changes"
    )
    assert alert["message"].endswith("mean of 4 samples)")
    text = "\n".join(str(w.message) for w in said)
    assert "nan" not in text and "Holm" not in text
    assert "threshold (epoch 1)" in text
    # a stored alert without a p-value (JSON null) still reads
    assert "p = -" in alert_sentence({**alert, "reference": "best", "pvalue": None})
    # tested and threshold alerts together: the head names the tests' alpha
    tested = Alert(**{**{k: alert[k] for k in alert if k != "message"}, "reference": "best"})
    both = format_alerts([tested, Alert(**{k: alert[k] for k in alert if k != "message"})], "X")
    assert both.splitlines()[0] == (
        "X: 2 regressions at epoch 1 (one-sided exact tests, p x runs a best is chosen from, "
        "Holm-adjusted, alpha 0.01)"
    )


def test_a_callback_reused_on_a_new_trainer_scores_its_first_due_run(tmp_path, monkeypatch):
    """The count of due runs left unscored (to stay within ``quality_cost``) belongs to
    a run: a second trainer wrote no scores until the first run's count ran out. A
    resume continues the count from the checkpoint."""
    from lightning_viz.callbacks._quality import ScoresMaps

    monkeypatch.setattr(ScoresMaps, "_runs_to_skip", lambda self, ctx, s, m: 3)
    saliency = lv.SaliencyLogger(
        methods=("vanilla",), num_samples=4, quality=("deletion",), on_error="raise"
    )
    fit(tmp_path / "a", [saliency], epochs=2)  # epoch 0 scored, epoch 1 skipped
    first = read_events(str(tmp_path / "a"))["scalars"]["explain/vanilla/deletion_auc"]
    assert [s for s, _ in first] == [4]
    assert saliency.state_dict()["quality_runs_to_skip"] == 2
    fit(tmp_path / "b", [saliency], epochs=1)
    second = read_events(str(tmp_path / "b"))["scalars"]["explain/vanilla/deletion_auc"]
    assert [s for s, _ in second] == [4]
    saliency.load_state_dict(saliency.state_dict() | {"quality_runs_to_skip": 1})
    assert saliency._skip == 1


class _FunctionalNet(torch.nn.Module):
    """Weights as bare parameters used through torch.nn.functional: no layer to reset."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_w = torch.nn.Parameter(torch.randn(8, 3, 3, 3) * 0.2)
        self.fc_w = torch.nn.Parameter(torch.randn(5, 8) * 0.2)

    def forward(self, x):
        h = torch.nn.functional.relu(torch.nn.functional.conv2d(x, self.conv_w, padding=1))
        return torch.nn.functional.linear(h.mean((2, 3)), self.fc_w)


def test_a_model_with_no_layer_to_reinitialize_says_why_randomization_is_missing(tmp_path):
    from lightning_viz.data import LitClassifier

    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise")
    with pytest.warns(UserWarning, match="no top layer to re-initialize"):
        fit(tmp_path, [saliency], epochs=1, model=LitClassifier(model=_FunctionalNet()))
    scalars = read_events(str(tmp_path))["scalars"]
    assert "explain/vanilla/deletion_auc" in scalars
    assert "explain/vanilla/randomization_corr" not in scalars


def test_every_methods_threshold_alert_of_an_epoch_is_one_table(tmp_path):
    """Three methods above the threshold at one epoch: one warning with three rows (it
    was three warnings of one row each)."""
    cb = lv.SaliencyLogger(
        methods=("vanilla", "guided_backprop", "deconvnet"),
        num_samples=4,
        quality=("randomization",),
        randomization_threshold=-1.0,  # any correlation is above it
        quality_cost=None,
        on_error="raise",
    )
    with pytest.warns(UserWarning) as said:
        fit(tmp_path, [cb], epochs=2)
    tables = [str(w.message) for w in said if "at epoch 1 (above a threshold)" in str(w.message)]
    assert len(tables) == 1, tables
    assert tables[0].startswith("SaliencyLogger: 3 regressions at epoch 1")
    for method in ("vanilla", "guided_backprop", "deconvnet"):
        assert f"explain/{method}/randomization_corr" in tables[0]


@pytest.mark.parametrize("max_batch", [3, 16])
def test_smoothgrads_randomized_maps_get_the_noise_its_shown_maps_got(
    tmp_path, monkeypatch, max_batch
):
    """With the re-initialization left out, the "randomized" model is the model: every
    map is the same and the correlation is 1. SmoothGrad's noise restarted at every
    chunk of max_batch images (and every rank's share), so an unchanged model's maps
    differed (0.97) and the sanity check leaned towards "the map changes"."""
    import lightning_viz.functional.randomization as randomization

    monkeypatch.setattr(randomization, "_reset", lambda module: None)
    cb = lv.SaliencyLogger(
        methods=("smoothgrad",),
        num_samples=8,
        smoothgrad_samples=4,
        quality=("randomization",),
        quality_cost=None,
        max_batch_size=max_batch,
        on_error="raise",
    )
    fit(tmp_path, [cb], epochs=1)
    values = cb._coordinator.summary["explain/smoothgrad/randomization_corr"].epochs[0].values
    assert len(values) == 8 and values == pytest.approx([1.0] * 8, abs=1e-6)


# ------------------------------------------------------ NaN outputs, constant maps
class _NaNOnSome:
    """A LitClassifier whose eval-mode outputs are NaN for the first image of a batch
    (``every=False``) or for all of them (an overflow on some inputs, or on all)."""

    @staticmethod
    def make(every: bool):
        from lightning_viz.data import LitClassifier

        class Module(LitClassifier):
            def forward(self, x):
                out = super().forward(x)
                if self.training:
                    return out
                scale = torch.ones_like(out)  # NaN outputs with NaN gradients
                scale[: None if every else 1] = float("nan")
                return out * scale

        return Module(num_classes=5)


def test_nan_outputs_on_some_probe_images_blank_their_maps_and_keep_the_callbacks_on(tmp_path):
    """The maps of those images held NaN: rendering them failed and turned
    SaliencyLogger, GradCAMLogger and ClassModelLogger off for the rest of the fit."""
    import warnings

    cbs = [
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality=("deletion",)),
        lv.GradCAMLogger(num_samples=4, quality=("deletion",), quality_cost=None),
        lv.ClassModelLogger(classes=[0, 1], steps=2, every_n_epochs=1),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, cbs, model=_NaNOnSome.make(every=False), epochs=1)
    said = [str(w.message) for w in caught]
    assert all(cb._enabled for cb in cbs), [m for m in said if "turns itself off" in m]
    assert any("vanilla maps hold NaN or inf" in m for m in said)
    assert any("gradcam maps hold NaN or inf" in m for m in said)
    assert any("class-model images hold NaN or inf" in m for m in said)
    ev = read_events(str(tmp_path))
    assert {"saliency/vanilla", "gradcam/gradcam", "class_model/grid"} <= set(ev["images"])
    auc = ev["scalars"]["explain/vanilla/deletion_auc"][-1][1]
    assert math.isfinite(auc)  # the other three images are scored


def test_constant_maps_are_not_scored_and_all_zero_maps_look_nowhere(tmp_path):
    """Every map blank (all outputs NaN): deletion and insertion scored pixels in raster
    order, and saliency_in_mask read 0 ("looks at the background")."""
    import warnings

    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality=("deletion", "insertion"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=_NaNOnSome.make(every=True), epochs=1)
    said = [str(w.message) for w in caught]
    scalars = read_events(str(tmp_path))["scalars"]
    assert "explain/vanilla/deletion_auc" not in scalars
    assert "explain/vanilla/insertion_auc" not in scalars
    assert "bias/saliency_in_mask" not in scalars
    assert any("every vanilla map of the probe is constant" in m for m in said)
    assert any("saliency_in_mask is not written" in m for m in said)
    assert cb._enabled


def test_a_left_out_map_is_left_out_of_its_random_level_and_of_the_mean_curves(
    tmp_path, monkeypatch
):
    """H45: the random map's level averaged the images the score left out (the chart
    compared means over different images), and the drawn mean curves averaged in the
    NaN curves of those images (gaps in the lines)."""
    import warnings

    from lightning_viz.callbacks import _quality

    drawn = {}
    line_figure = _quality.render.line_figure

    def keep(xs, curves, **kwargs):
        drawn.update(curves)
        return line_figure(xs, curves, **kwargs)

    monkeypatch.setattr(_quality.render, "line_figure", keep)
    cb = lv.SaliencyLogger(
        methods=("vanilla",), num_samples=4, quality=("deletion", "insertion"), quality_cost=None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [cb], model=_NaNOnSome.make(every=False), epochs=1)
    summary = cb._coordinator.summary
    for q in ("deletion", "insertion"):
        score = summary[f"explain/vanilla/{q}_auc"].epochs[0].values
        level = summary[f"explain/vanilla/{q}_auc_random"].epochs[0].values
        left_out = [math.isnan(v) for v in score]
        assert any(left_out) and not all(left_out)
        assert [math.isnan(v) for v in level] == left_out  # the same images
    assert {"vanilla deletion", "vanilla insertion", "random map deletion"} <= set(drawn)
    assert all(math.isfinite(v) for curve in drawn.values() for v in curve), drawn


def test_a_threshold_alert_counts_the_samples_its_mean_is_over(tmp_path):
    """H45: it said "mean of 4 samples" when a left-out map made it a mean of 3."""
    import warnings

    cb = lv.GradCAMLogger(
        num_samples=4,
        quality=("randomization",),
        randomization_threshold=-1.0,  # any correlation is above it
        quality_cost=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tmp_path, [cb], model=_NaNOnSome.make(every=False), epochs=2)
    (alert,) = cb._coordinator.summary.alerts
    epochs = cb._coordinator.summary["explain/gradcam/randomization_corr"].epochs
    values = epochs[alert["epoch"]].values
    scored = sum(not math.isnan(v) for v in values)
    assert scored < 4 and alert["message"].endswith(f"mean of {scored} samples)"), alert


def test_the_figures_random_curve_is_over_the_images_the_methods_scored():
    """H48: the random map's mean curve in the figure still averaged every probe image
    while the method's curve left out the images of its constant maps."""
    from types import SimpleNamespace

    from tests.callbacks.test_quality_pins import _model, fake_context

    model = _model()  # seeded
    x, t = torch.rand(8, 3, 16, 16), torch.randint(0, 3, (8,))
    maps = torch.rand(8, 1, 16, 16)
    maps[:4] = 0.0  # constant: not ranked, left out
    cb = lv.SaliencyLogger(quality=("deletion",), quality_steps=4)
    figures = {}
    cb._figure = lambda ctx, curves: figures.update(curves)
    cb.alert = lambda ctx, records: []
    cb._report_thresholds = lambda ctx, alerts: None
    cb._runs_to_skip = lambda *args: 0
    cb._fingerprint = lambda ctx: "fp"
    cb.warn_once = lambda *args, **kwargs: None
    log = SimpleNamespace(epoch=0, scalar=lambda tag, *args, **kwargs: None)
    ctx = fake_context(x, model, log)
    cb.score_maps(ctx, {"vanilla": maps}, {}, t, 1.0)
    rand = LF.random_maps(x, generator=torch.Generator().manual_seed(0))
    (curves,) = LF.perturbation_curves(
        model, x, [rand], t, steps=4, baseline="blur", task="multiclass", kinds=["deletion"]
    )
    expected = curves["deletion"].curve[4:].mean(0)
    assert torch.allclose(torch.tensor(figures["random map deletion"]), expected, atol=1e-5)
    assert not torch.allclose(expected, curves["deletion"].curve.mean(0), atol=1e-5)


def test_a_randomization_correlation_wobbling_around_the_threshold_is_one_episode():
    """H52: a mean of 8 images at 0.51, 0.49, 0.52, 0.48, 0.53 alerted three times (the
    episode ended at each value below 0.5); it ends once the value is 0.05 below the
    threshold."""
    from types import SimpleNamespace

    cb = lv.SaliencyLogger(num_samples=8, tolerance=0.05)
    tag = "explain/vanilla/randomization_corr"
    values = [0.30, 0.51, 0.49, 0.52, 0.48, 0.53, 0.44, 0.46, 0.51, 0.2, 0.6]
    fired = []
    for epoch, value in enumerate(values, start=cb.warmup):
        ctx = SimpleNamespace(log=SimpleNamespace(epoch=epoch, step=2 * (epoch + 1)))
        if cb._threshold_alert(ctx, tag, value, 8) is not None:
            fired.append(value)
    # 0.51 starts an episode, 0.44 (below 0.45) ends it, 0.46 starts none, 0.51 does;
    # 0.2 ends that one and 0.6 starts a third
    assert fired == [0.51, 0.51, 0.6], fired
    assert cb._above[tag] is True
    # H57: the band is the correlation's own, not the deletion AUC's `tolerance`: at
    # tolerance=0.5 a recovery to 0.05 ended no episode (and at 1.5 none ever ended)
    for tolerance in (0.0, 0.5, 1.5):
        cb = lv.SaliencyLogger(num_samples=8, tolerance=tolerance)
        fired = []
        for epoch, value in enumerate([0.9, 0.05, 0.9, 0.48, 0.9], start=cb.warmup):
            ctx = SimpleNamespace(log=SimpleNamespace(epoch=epoch, step=2 * (epoch + 1)))
            if cb._threshold_alert(ctx, tag, value, 8) is not None:
                fired.append(epoch - cb.warmup)
        assert fired == [0, 2], (tolerance, fired)


def test_deletion_references_measured_with_other_quality_settings_start_anew():
    """H58: the curves' steps and baseline change the AUCs; resumed with others, the
    references of the checkpoint are not compared with (said)."""
    cb = lv.SaliencyLogger(methods=("vanilla",), quality_steps=8, quality_baseline="blur")
    tag = "explain/vanilla/deletion_auc"
    cb._monitor.update(1, 20, {tag: {"values": [0.1, 0.2, 0.3, 0.4]}})  # after warmup
    assert set(cb.references) == {tag}
    state = cb.state_dict()
    assert state["measured_with"] == {"quality_steps": "8", "quality_baseline": "'blur'"}
    other = lv.SaliencyLogger(methods=("vanilla",), quality_steps=8, quality_baseline="mean")
    with pytest.warns(UserWarning, match=r"quality_baseline='blur' \(now 'mean'\)"):
        other.load_state_dict(state)
    assert other.references == {}
    same = lv.SaliencyLogger(methods=("vanilla",), quality_steps=8, quality_baseline="blur")
    same.load_state_dict(state)
    assert set(same.references) == {tag}


def test_a_model_growing_confident_with_the_same_maps_does_not_alert(tmp_path):
    """H70: the raw deletion AUC was watched; it follows the model's confidence whatever
    the map (an untrained 5-class model's is about 1/5), so every ordinary fit scored
    often alerted "regressed" while its maps beat the random map by more and more. The
    watched score is the margin over the random map, image by image."""
    import pytorch_lightning as pl

    from lightning_viz.data import LitClassifier

    class Sharpening(LitClassifier):
        """Frozen weights (no optimizer step); the logits' scale rises at epoch 2: the
        model grows confident, its maps stay the same."""

        def __init__(self):
            super().__init__(num_classes=5)
            self.register_buffer("scale", torch.tensor(1.0))

        def forward(self, x):
            return super().forward(x) * self.scale

        def on_train_epoch_start(self):
            self.scale.fill_((1.0, 1.0, 20.0)[self.current_epoch])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    pl.seed_everything(0)
    cb = lv.SaliencyLogger(
        methods=("vanilla",),
        num_samples=12,
        quality=("deletion",),
        quality_cost=None,
        patience=1,
        on_error="raise",
    )
    fit(tmp_path, [cb], epochs=3, model=Sharpening(), limit_train_batches=1)
    path = os.path.join(str(tmp_path), "run", "version_0", "lightning_viz", "summary.json")
    with open(path) as f:
        summary = json.load(f)
    metrics = summary["metrics"]
    auc = [e["value"] for e in metrics["explain/vanilla/deletion_auc"]["epochs"]]
    margin = [e["value"] for e in metrics["explain/vanilla/deletion_margin"]["epochs"]]
    assert auc[2] > auc[1] + 0.1  # the AUC rose well past the tolerance (0.05) ...
    assert abs(margin[2] - margin[1]) < 0.05  # ... the margin over chance did not
    assert summary["alerts"] == []
