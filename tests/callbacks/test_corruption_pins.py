"""Pins for CorruptionProbe behaviour no existing test pins (mutation round five).

Each test fails with the one-line mutation its comment names (H63).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import lightning_viz as lv
import lightning_viz.callbacks.corruption as corruption_mod
from lightning_viz import render
from lightning_viz.functional import corrupt
from lightning_viz.monitoring.store import load_summary
from tests.conftest import fit, record_captions

THRESHOLD = 0.12  # uniform pixels: std 0.29; contrast (CIFAR) sev 1 keeps 0.75 of it, sev 5 0.15


def _std_model():
    import pytorch_lightning as pl

    class StdModel(pl.LightningModule):
        """Class 0 when the image's std is above THRESHOLD, else class 1."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            s = x.flatten(1).std(dim=1)
            logit = (s - THRESHOLD) * 100 + 0 * self.w
            return torch.stack([logit, -logit], dim=1)

        def training_step(self, batch, i):
            return (self.w**2).sum() + 0 * self(batch[0]).sum()

        def validation_step(self, batch, i):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    return StdModel()


@pytest.fixture(scope="module")
def contrast_run(tmp_path_factory):
    """severities given unsorted (5, 1): sev 1 keeps every image class 0 (right), sev 5
    turns every image to class 1 (wrong)."""
    mp = pytest.MonkeyPatch()
    captions = record_captions(mp, render, "image_grid")
    series = []
    real_bar = render.bar_figure

    def bar_spy(labels, values, **kw):
        series.append({k: list(v) for k, v in values.items()})
        return real_bar(labels, values, **kw)

    mp.setattr(render, "bar_figure", bar_spy)
    calls = []
    real_corrupt = corruption_mod.corrupt

    def corrupt_spy(x, name, sev, generator=None):
        calls.append((name, sev))
        return real_corrupt(x, name, sev, generator=generator)

    mp.setattr(corruption_mod, "corrupt", corrupt_spy)
    pixels = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(12, dtype=torch.long)
    cb = lv.CorruptionProbe(
        corruptions=("contrast",), severities=(5, 1), probe=(pixels, y), on_error="raise"
    )
    tmp = tmp_path_factory.mktemp("pin_corruption")
    try:
        trainer, _ = fit(tmp, [cb], model=_std_model(), epochs=2)
    finally:
        mp.undo()
    return SimpleNamespace(
        trainer=trainer, cb=cb, captions=captions, series=series, calls=calls, tmp=tmp
    )


def test_examples_show_the_highest_severity_and_its_prediction(contrast_run):
    # B01 (preds taken at severities[0]), B02 (severities not sorted), B08 (grid at [0])
    caps = [c for c in contrast_run.captions if c is not None][-1]
    cb = contrast_run.cb
    assert caps[1] == f"contrast 5: {cb.class_name(1)}", caps


def test_figure_has_one_series_per_severity_with_its_own_accuracy(contrast_run):
    # B10: every series drawn from the same severity
    values = contrast_run.series[-1]
    assert values == {"severity 1": [1.0], "severity 5": [0.0]}, values


def test_corrupting_is_done_once_per_fit(contrast_run):
    # B03: the cache never kept -> the probe is corrupted again at every run
    assert sorted(contrast_run.calls) == [("contrast", 1), ("contrast", 5)], contrast_run.calls


def test_the_summary_says_which_metrics_are_watched_and_their_tolerance(contrast_run):
    # B06 (clean_acc watched), B12 (tolerance not stored)
    summary = load_summary(contrast_run.trainer.logger.log_dir)
    clean = summary.metrics["corruption/clean_acc"]
    assert clean.watched is False and clean.tolerance is None
    for name in ("contrast", "mean"):
        m = summary.metrics[f"corruption/{name}_acc"]
        assert m.watched is True and m.tolerance == pytest.approx(0.02), (name, m)


def test_the_mean_is_a_regression_reference(contrast_run):
    # B07: mean_acc left out of the alert rule
    assert set(contrast_run.cb.references) == {"corruption/contrast_acc", "corruption/mean_acc"}


def _ctx():
    return SimpleNamespace(generator=torch.Generator().manual_seed(7), one_time=0.0)


def test_every_corruption_is_drawn_from_the_generators_state_at_the_run_start():
    # B05: set_state(start) dropped
    cb = lv.CorruptionProbe(corruptions=("gaussian_noise", "shot_noise"), severities=(1, 2))
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ctx = _ctx()
    out = cb._corrupted(ctx, x, "key")
    for (name, sev), images in out:
        expect = corrupt(x, name, sev, generator=torch.Generator().manual_seed(7))
        assert torch.equal(images, expect), (name, sev)


def test_a_new_probe_is_corrupted_again():
    # B04: the cache returned whatever its key
    cb = lv.CorruptionProbe(corruptions=("contrast",))
    a = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    b = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    cb._corrupted(_ctx(), a, "probe-a")
    out = dict(cb._corrupted(_ctx(), b, "probe-b"))
    assert torch.equal(out[("contrast", 3)], corrupt(b, "contrast", 3))


def test_the_fingerprint_names_the_task():
    # B09: the task dropped from the fingerprint
    cb = lv.CorruptionProbe(corruptions=("fog",))
    probe = SimpleNamespace(fingerprint=lambda: "probe")
    fps = {
        cb._fingerprint(SimpleNamespace(probe=probe, task=t)) for t in ("multiclass", "multilabel")
    }
    assert len(fps) == 2
