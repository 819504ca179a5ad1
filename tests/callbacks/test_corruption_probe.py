"""CorruptionProbe, trained for real: tags, values, summary outcomes, grid, tasks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lightning_viz as lv
from lightning_viz._guard import ModelView
from lightning_viz.functional import corrupt
from lightning_viz.monitoring.store import load_summary
from tests.conftest import decode_png, fit, read_events, small_datamodule

NAMES = ("gaussian_noise", "defocus_blur", "fog", "pixelate")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corruption")
    cb = lv.CorruptionProbe(corruptions=NAMES, severities=(1, 5), num_samples=24, on_error="raise")
    trainer, model = fit(tmp, [cb], epochs=2, datamodule=small_datamodule())
    return trainer, model, cb, read_events(str(tmp)), tmp


def test_tags_values_and_relative_drop(run):
    trainer, model, cb, ev, _ = run
    scalars = ev["scalars"]
    expected = [f"corruption/{n}_acc" for n in ("clean", *NAMES, "mean")]
    expected += ["corruption/relative_drop", "corruption/regression"]
    assert cb.tags() == expected
    for tag in expected:
        assert len(scalars[tag]) == 2, tag  # one value per epoch
    last = {k: v[-1][1] for k, v in scalars.items()}
    per = [last[f"corruption/{n}_acc"] for n in NAMES]
    assert last["corruption/mean_acc"] == pytest.approx(sum(per) / len(per), abs=1e-6)
    drop = last["corruption/clean_acc"] - last["corruption/mean_acc"]
    assert last["corruption/relative_drop"] == pytest.approx(drop, abs=1e-6)


def test_summary_holds_the_per_sample_outcomes(run):
    trainer, _, _, ev, tmp = run
    summary = load_summary(str(tmp / "run" / "version_0"))
    # the drop is better lower: its "best" epoch and compare's direction follow that
    assert summary.metrics["corruption/relative_drop"].higher_is_better is False
    assert summary.metrics["corruption/mean_acc"].higher_is_better is True
    for name in ("fog", "mean"):
        history = summary.metrics[f"corruption/{name}_acc"]
        rec = history.epochs[max(history.epochs)]
        # one sample per image: its accuracy over 2 severities (and 4 corruptions)
        decisions = 2 * (len(NAMES) if name == "mean" else 1)
        assert rec.outcomes is None and len(rec.values) == 24
        assert all(float(v * decisions).is_integer() for v in rec.values)
        assert rec.interval is None  # a mean of per-image accuracies: no Wilson interval
        logged = trainer.callback_metrics[f"corruption/{name}_acc"].item()
        assert logged == pytest.approx(sum(rec.values) / 24, abs=1e-6)
    rec = summary.metrics["corruption/clean_acc"].epochs[1]  # one decision per image
    assert len(rec.outcomes) == 24 and rec.interval is not None


def test_the_mean_over_corruptions_is_tested_on_images_not_decisions():
    """3 of 64 images go from right to wrong under all 14 corruptions: 3 samples worse,
    p = 1/8 (sign test), not 42 of 896 "samples" at p = 2e-13."""
    from lightning_viz._runtime.log import per_sample
    from lightning_viz.callbacks.corruption import _per_image
    from lightning_viz.monitoring.record import make_record
    from lightning_viz.monitoring.rule import compare_records

    before = [torch.ones(64, dtype=torch.bool) for _ in range(14)]
    after = [m.clone() for m in before]
    for m in after:
        m[:3] = False
    ref, cand = (
        make_record(e, e, **per_sample(_per_image(ms)), fingerprint="p")
        for e, ms in enumerate((before, after))
    )
    c = compare_records(ref, cand)
    assert (c.label, c.n, c.worse, c.better) == ("paired", 64, 3, 0)
    assert c.pvalue == pytest.approx(0.125)
    assert cand.value == pytest.approx(61 / 64)


def test_figure_bands_are_wilson_intervals_only_when_every_accuracy_is_counted():
    from lightning_viz._runtime.log import per_sample, wilson_bands
    from lightning_viz.monitoring.record import make_record
    from lightning_viz.stats import wilson_interval

    counted = make_record(0, 0, **per_sample(torch.tensor([True, True, False, True])))
    other = make_record(0, 0, **per_sample(torch.tensor([False, False, False, True])))
    averaged = make_record(0, 0, **per_sample(torch.tensor([[True, False], [True, True]])))
    bands = wilson_bands({"a": [counted, other], "b": [other]})
    assert bands == {
        "a": [wilson_interval(3, 4), wilson_interval(1, 4)],
        "b": [wilson_interval(1, 4)],
    }
    # one per-image mean (a multilabel model): no series gets bands
    assert wilson_bands({"a": [counted], "b": [averaged]}) is None


def test_elastic_transform_on_images_under_3_px_is_refused_at_setup():
    from types import SimpleNamespace

    probe = lv.CorruptionProbe()
    with pytest.raises(
        ValueError, match="without 'elastic_transform' for images under 3 px a side"
    ):
        probe.check(SimpleNamespace(pixels=torch.rand(2, 3, 2, 64)))
    probe.check(SimpleNamespace(pixels=torch.rand(2, 3, 3, 3)))  # large enough
    lv.CorruptionProbe(corruptions=("contrast",)).check(
        SimpleNamespace(pixels=torch.rand(2, 3, 2, 2))
    )


def test_figure_and_grid(run):
    _, _, _, ev, _ = run
    assert "corruption/accuracy" in ev["images"]
    (_, width, height, png) = ev["images"]["corruption/examples"][-1]
    img = decode_png(png)
    assert width >= 5 * 32 and height >= 32  # clean + 4 corruptions in one row
    assert img.shape[0] == height or img.shape[-2] == height


def test_corrupted_images_are_those_of_lf_corrupt():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    assert torch.equal(corrupt(x, "fog", 2, generator=g1), corrupt(x, "fog", 2, generator=g2))


def test_binary_model_with_mean_std(tmp_path):
    import pytorch_lightning as pl
    from torch import nn

    class Binary(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, i):
            return F.binary_cross_entropy_with_logits(self(batch[0])[:, 0], batch[1].float())

        def validation_step(self, batch, i):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Binary()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    pixels = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    normed = (pixels - 0.5) / 0.25
    y = (model(normed)[:, 0] > 0).long()
    cb = lv.CorruptionProbe(
        corruptions=("contrast",),
        severities=(5,),
        probe=(normed, y),
        mean=mean,
        std=std,
        on_error="raise",
    )
    trainer, _ = fit(tmp_path, [cb], model=model, epochs=1)
    view = ModelView(model.eval(), mean, std)
    gen = torch.Generator().manual_seed(cb.seed)
    with torch.no_grad():
        pred = (view(corrupt(pixels, "contrast", 5, generator=gen))[:, 0] > 0).long()
    expect = (pred == y).float().mean().item()
    got = trainer.callback_metrics["corruption/contrast_acc"].item()
    assert got == pytest.approx(expect, abs=1e-6)
    assert trainer.callback_metrics["corruption/clean_acc"].item() == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"corruptions": ["frost"]}, "corruptions"),
        ({"severities": [0]}, "severities"),
        ({"severities": [6]}, "severities"),
        ({"severities": [2, 2]}, "severities"),
        ({"corruptions": []}, "corruptions"),
    ],
)
def test_configuration_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lv.CorruptionProbe(**kwargs)


def test_relative_drop_is_clean_minus_corrupted_on_a_model_that_does_drop(tmp_path):
    """The module fixture's model scores the same clean and corrupted (the drop is 0, so
    its sign is never seen): here a trained model loses accuracy under heavy noise."""
    cb = lv.CorruptionProbe(
        corruptions=("gaussian_noise", "pixelate"),
        severities=(5,),
        num_samples=24,
        on_error="raise",
    )
    fit(tmp_path, [cb], epochs=4, limit_train_batches=6)
    last = {k: v[-1][1] for k, v in read_events(str(tmp_path))["scalars"].items()}
    clean, mean = last["corruption/clean_acc"], last["corruption/mean_acc"]
    assert clean > mean  # a real drop, so the sign below is tested
    assert last["corruption/relative_drop"] == pytest.approx(clean - mean, abs=1e-6)
    assert last["corruption/relative_drop"] > 0


def test_the_fingerprint_names_the_severities_an_outcome_depends_on():
    """A per-image accuracy over severities (1, 5) is not the one over (3,): a baseline
    run with other severities is not paired with this one as the same probe."""
    from types import SimpleNamespace

    ctx = SimpleNamespace(probe=SimpleNamespace(fingerprint=lambda: "probe"), task="multiclass")

    def fp(**kwargs):
        return lv.CorruptionProbe(**{"corruptions": ("fog",), **kwargs})._fingerprint(ctx)

    assert fp() == fp(severities=(3,))  # the default severity: the same settings
    assert len({fp(), fp(severities=(1, 5)), fp(corruptions=("pixelate",)), fp(seed=1)}) == 4


def test_a_set_too_large_to_keep_is_made_one_corruption_at_a_time(tmp_path, monkeypatch):
    """H74: the corrupted probes were all made before the size check, so a set over the
    512 MB that may be kept (the defaults at 224 px) was held whole in every run. Made
    lazily, at most one set is alive when the next is made, and the values are those of
    the kept set."""
    import gc
    import weakref

    import lightning_viz.callbacks.corruption as C

    def fit_once(path, cache_bytes):
        monkeypatch.setattr(C, "_CACHE_BYTES", cache_bytes)
        alive: list[weakref.ref] = []
        most = [0]
        real = C.corrupt

        def counting(x, name, sev, generator=None):
            gc.collect()
            most[0] = max(most[0], sum(r() is not None for r in alive))
            out = real(x, name, sev, generator=generator)
            alive.append(weakref.ref(out))
            return out

        monkeypatch.setattr(C, "corrupt", counting)
        cb = lv.CorruptionProbe(
            corruptions=("contrast", "pixelate"), severities=(1, 3), num_samples=8
        )
        fit(path, [cb], epochs=2, datamodule=small_datamodule())
        monkeypatch.setattr(C, "corrupt", real)
        return read_events(str(path))["scalars"], most[0], len(alive)

    kept, most_kept, made_kept = fit_once(tmp_path / "kept", 512 * 2**20)
    lazy, most_lazy, made_lazy = fit_once(tmp_path / "lazy", 0)
    assert (made_kept, made_lazy) == (4, 8)  # once per fit, or once per run
    assert most_kept == 3 and most_lazy <= 1
    for tag in ("corruption/contrast_acc", "corruption/pixelate_acc", "corruption/mean_acc"):
        assert [v for _, v in lazy[tag]] == [v for _, v in kept[tag]], tag
