"""Pinning tests for the faithfulness scoring and its alerts (callbacks/_quality.py,
_alerts.py), mutation round six (H73): each fails with one mutation the suite let through."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz.callbacks._quality import RANDOMIZATION_BAND
from lightning_viz.monitoring.record import RunSummary, make_record


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def _grad_map(model, x, t):
    x = x.clone().requires_grad_(True)
    out = model(x).gather(1, t[:, None]).sum()
    (g,) = torch.autograd.grad(out, x)
    return g.abs().amax(1, keepdim=True)


def fake_context(x, model, log, **more):
    """The run context ``ScoresMaps.score_maps`` reads, of one process, for ``x`` ``(N, C, H,
    W)`` and ``model`` (multiclass)."""
    return SimpleNamespace(
        pixels=x,
        share=lambda m: torch.arange(m),
        gather=lambda v, m: v,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        view=model,
        task="multiclass",
        max_batch=64,
        log=log,
        trainer=None,
        chunked=lambda f, a, b: f(a, b),
        **more,
    )


def _run(cb, maps, *, quality_cost_skip=None, epoch=0):
    model = _model()
    x, t = torch.rand(8, 3, 8, 8), torch.randint(0, 3, (8,))
    calls, figures, said = [], {}, []
    cb._fingerprint = lambda ctx: "fp"
    cb.warn_once = lambda *a, **k: None
    cb._figure_orig = cb._figure

    def scalar(tag, value=None, **kw):
        calls.append((tag, value, kw))
        vals = kw.get("values")
        return make_record(epoch, 0, values=vals) if vals is not None else None

    summary = RunSummary()
    log = SimpleNamespace(
        epoch=epoch, step=10 * epoch, scalar=scalar, defer=lambda tag, fn: figures.update({tag: fn})
    )
    coordinator = SimpleNamespace(
        summary=summary, say=lambda tr, text: said.append(text), info_once=lambda *a: None
    )
    cb._coordinator = coordinator
    cb._monitors = lambda ctx: []
    ctx = fake_context(x, model, log, coordinator=coordinator)
    m = maps(model, x, t) if callable(maps) else maps
    cb.score_maps(ctx, {"vanilla": m}, {"vanilla": _grad_map}, t, 1.0)
    return SimpleNamespace(
        calls=calls, figures=figures, summary=summary, said=said, x=x, t=t, model=model, maps=m
    )


def _by_tag(calls):
    return {tag: (value, kw) for tag, value, kw in calls}


def test_margin_is_map_minus_random_per_image_and_watched_lower_is_better():
    cb = lv.SaliencyLogger(
        methods=("vanilla",),
        quality=("deletion", "insertion"),
        quality_steps=4,
        quality_cost=None,
        tolerance=0.07,
    )
    r = _run(cb, _grad_map)
    got = _by_tag(r.calls)
    d = got["explain/vanilla/deletion_auc"][1]
    dr = got["explain/vanilla/deletion_auc_random"][1]
    mg = got["explain/vanilla/deletion_margin"][1]
    want = [a - b for a, b in zip(d["values"], dr["values"], strict=True)]
    assert mg["values"] == pytest.approx(want)
    assert any(abs(v) > 1e-4 for v in want)
    assert mg["watched"] is True and mg["higher_is_better"] is False
    assert mg["tolerance"] == 0.07
    assert d["watched"] is False and d["higher_is_better"] is False
    assert dr["higher_is_better"] is False and "watched" not in dr
    ins = got["explain/vanilla/insertion_auc"][1]
    assert ins["higher_is_better"] is True and ins["watched"] is False
    assert got["explain/vanilla/insertion_auc_random"][1]["higher_is_better"] is True
    assert "explain/vanilla/insertion_margin" not in got
    # values are the functional scores
    rand = LF.random_maps(r.x, generator=torch.Generator().manual_seed(0))
    res = LF.perturbation_curves(
        r.model,
        r.x,
        [rand, r.maps],
        r.t,
        steps=4,
        baseline="blur",
        task="multiclass",
        kinds=["deletion", "insertion"],
    )
    assert d["values"] == pytest.approx(res[1]["deletion"].auc.tolist(), abs=1e-5)
    assert dr["values"] == pytest.approx(res[0]["deletion"].auc.tolist(), abs=1e-5)
    assert got["explain/vanilla/insertion_auc"][1]["values"] == pytest.approx(
        res[1]["insertion"].auc.tolist(), abs=1e-5
    )
    # the cost scalar, outside the summary
    (qs,) = [c for c in r.calls if c[0].endswith("/quality_seconds")]
    assert qs[2].get("summary") is False and qs[1] >= 0
    # the regression scalar of the alert mixin
    assert cb.tag("regression") in got


def test_constant_maps_rows_are_nan_in_score_and_random_and_margin():
    cb = lv.SaliencyLogger(
        methods=("vanilla",), quality=("deletion", "insertion"), quality_steps=4, quality_cost=None
    )

    def maps(model, x, t):
        m = _grad_map(model, x, t)
        m[:3] = 0.5
        return m

    r = _run(cb, maps)
    got = _by_tag(r.calls)
    for tag in (
        "deletion_auc",
        "deletion_auc_random",
        "deletion_margin",
        "insertion_auc",
        "insertion_auc_random",
    ):
        vals = got[f"explain/vanilla/{tag}"][1]["values"]
        assert all(math.isnan(v) for v in vals[:3]), tag
        assert not any(math.isnan(v) for v in vals[3:]), tag
    fig = r.figures["explain/saliency/curves"] if "explain/saliency/curves" in r.figures else None
    assert fig is not None, list(r.figures)


def test_figure_keys_title_and_axes(monkeypatch):
    cb = lv.SaliencyLogger(
        methods=("vanilla",),
        quality=("deletion", "insertion"),
        quality_steps=4,
        quality_cost=None,
        quality_baseline="mean",
    )
    seen = {}
    from lightning_viz import render

    monkeypatch.setattr(
        render, "line_figure", lambda xs, curves, **kw: seen.update(xs=xs, curves=curves, **kw)
    )
    r = _run(cb, _grad_map)
    (tag,) = r.figures
    assert tag == "explain/saliency/curves"
    r.figures[tag]()
    assert seen["xs"] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert set(seen["curves"]) == {
        "vanilla deletion",
        "vanilla insertion",
        "random map deletion",
        "random map insertion",
    }
    assert seen["title"] == "saliency: mean curves (mean baseline)"
    assert len(seen["curves"]["vanilla deletion"]) == 5


def test_randomization_scored_and_threshold_alert_counts_scored_images():
    cb = lv.SaliencyLogger(
        methods=("vanilla",),
        quality=("randomization",),
        quality_cost=None,
        randomization_threshold=-1.0,
        warmup=0,
    )

    def maps(model, x, t):
        m = _grad_map(model, x, t)
        m[:2] = 0.0  # constant of the model itself: NaN, not counted
        return m

    r = _run(cb, maps)
    got = _by_tag(r.calls)
    vals = got["explain/vanilla/randomization_corr"][1]["values"]
    assert all(math.isnan(v) for v in vals[:2]) and not any(math.isnan(v) for v in vals[2:])
    assert got["explain/vanilla/randomization_corr"][1]["higher_is_better"] is False
    rnd = got["explain/vanilla/randomization_corr_random"][1]["values"]
    assert rnd == pytest.approx(
        LF.rank_correlation(
            r.maps, LF.random_maps(r.x, generator=torch.Generator().manual_seed(0))
        ).tolist(),
        abs=1e-5,
        nan_ok=True,
    )
    (alert,) = r.summary.alerts
    assert alert["metric"] == "explain/vanilla/randomization_corr"
    assert alert["n"] == 6 and alert["message"].endswith("mean of 6 samples)"), alert
    assert len(r.said) == 1 and "threshold" in r.said[0]
    assert "explain/vanilla/deletion_margin" not in got


def test_threshold_boundaries():
    tag = "explain/gradcam/randomization_corr"
    cb = lv.GradCAMLogger(quality=("randomization",), randomization_threshold=0.5, warmup=2)

    def ctx(e):
        return SimpleNamespace(log=SimpleNamespace(epoch=e, step=e))

    assert cb._threshold_alert(ctx(1), tag, 0.9, 4) is None  # in warmup
    assert cb._above == {}
    assert cb._threshold_alert(ctx(2), tag, math.nan, 4) is None
    assert cb._threshold_alert(ctx(2), tag, 0.5, 4) is None  # at the threshold: not above
    a = cb._threshold_alert(ctx(2), tag, 0.6, 4)  # first epoch after warmup counts
    assert a is not None and a.n == 4 and a.reference_value == 0.5 and a.metric == tag
    assert a.kind == "best" and a.epoch == 2 and a.flagged_since == 2 and a.tolerance == 0.0
    # exactly threshold - band: the episode ends
    assert cb._threshold_alert(ctx(3), tag, 0.5 - RANDOMIZATION_BAND, 4) is None
    assert cb._above[tag] is False
    assert cb._threshold_alert(ctx(4), tag, 0.6, 4) is not None
    assert cb._threshold_alert(ctx(5), tag, 0.46, 4) is None
    assert cb._above[tag] is True  # still in the episode inside the band
    assert RANDOMIZATION_BAND == 0.05


def test_skip_counter_and_state():
    cb = lv.GradCAMLogger(quality=("deletion",), quality_cost=0.5)
    cb._monitors = lambda ctx: []
    ctx = SimpleNamespace(trainer=None)
    assert cb._runs_to_skip(ctx, 1.5, 1.0) == 2  # 3x over 0.5: 1 of 3 runs
    assert cb._runs_to_skip(ctx, 0.0, 0.0) == 0
    cb._skip = 2
    fake = SimpleNamespace(pixels=None)
    cb.score_maps(fake, {"gradcam": torch.zeros(1, 1, 2, 2)}, {}, torch.zeros(1), 1.0)
    assert cb._skip == 1
    cb.score_maps(fake, {"gradcam": torch.zeros(1, 1, 2, 2)}, {}, torch.zeros(1), 1.0)
    assert cb._skip == 0
    st = cb.extra_state()
    assert st["quality_runs_to_skip"] == 0 and st["above_threshold"] == {}
    cb._skip, cb._above = 3, {"t": True}
    st = cb.extra_state()
    other = lv.GradCAMLogger(quality=("deletion",), quality_cost=0.5)
    other.load_extra_state(st)
    assert other._skip == 3 and other._above == {"t": True}
    # monitored: scored at every run, whatever the ratio
    said = []
    cb._coordinator = SimpleNamespace(info_once=lambda key, text: said.append(text))
    cb.tag_prefix = getattr(cb, "tag_prefix", "")
    mon = SimpleNamespace(monitor="explain/gradcam/deletion_margin", mode="min")
    cb._monitors = lambda ctx: [mon]
    import lightning_viz.callbacks._quality as Q

    orig = Q.monitor_words
    Q.monitor_words = lambda m: "EarlyStopping"
    try:
        assert cb._runs_to_skip(ctx, 10.0, 1.0) == 0
    finally:
        Q.monitor_words = orig
    assert len(said) == 1 and "quality_cost does not space" in said[0]
    none = lv.GradCAMLogger(quality=("deletion",), quality_cost=None)
    assert none._runs_to_skip(ctx, 10.0, 1.0) == 0


def test_skip_ignored_without_cost_limit():
    cb = lv.SaliencyLogger(
        methods=("vanilla",), quality=("deletion",), quality_steps=4, quality_cost=None
    )
    cb._skip = 2
    r = _run(cb, _grad_map)
    assert any(c[0] == "explain/vanilla/deletion_auc" for c in r.calls)


def test_layout_names_and_tags():
    cb = lv.GradCAMLogger(quality=("deletion", "insertion"))
    lay = cb.quality_layout(["gradcam"])
    ch = lay["explanations"]
    assert ch["gradcam deletion_auc (and random map)"] == [
        "explain/gradcam/deletion_auc",
        "explain/gradcam/deletion_auc_random",
    ]
    assert ch["gradcam deletion_margin (below 0: better than a random map)"] == [
        "explain/gradcam/deletion_margin"
    ]
    assert "gradcam faithfulness regression" in ch
    assert list(lay["cost"]) == ["GradCAMLogger scoring seconds"]
    assert lay["cost"]["GradCAMLogger scoring seconds"][0].endswith("/quality_seconds")
    cb2 = lv.GradCAMLogger(quality=("insertion",))
    assert cb2.quality_layout(["gradcam"])["explanations"] == {
        "gradcam insertion_auc (and random map)": [
            "explain/gradcam/insertion_auc",
            "explain/gradcam/insertion_auc_random",
        ]
    }
    assert lv.GradCAMLogger(quality=()).quality_layout(["gradcam"]) == {}


def test_alert_mixin_adds_alerts_to_summary_and_says_them():
    cb = lv.SaliencyLogger(methods=("vanilla",), quality=("deletion",), patience=1, warmup=0)
    s, said, scal = RunSummary(), [], []
    tag = "explain/vanilla/deletion_margin"

    def ctx(e):
        log = SimpleNamespace(epoch=e, step=e, scalar=lambda *a, **k: scal.append((a, k)))
        return SimpleNamespace(
            log=log,
            trainer=None,
            coordinator=SimpleNamespace(summary=s, say=lambda tr, t: said.append(t)),
        )

    assert cb.alert(ctx(0), {tag: make_record(0, 0, values=[0.0] * 12)}) == []
    assert said == []
    out = cb.alert(ctx(1), {tag: make_record(1, 1, values=[0.5] * 12)})
    assert len(out) == 1 and len(said) == 1 and len(s.alerts) == 1
    assert scal[-1][0][0] == cb.tag("regression")
    assert scal[-1][1] == {"summary": False}
    assert scal[-1][0][1] > 0


def test_a_nan_mean_keeps_the_randomization_episode_open():
    """A run whose maps were all constant (mean NaN) says nothing: it must not end the
    episode, or the next high value alerts again (mutation: drop `or math.isnan(value)`)."""
    tag = "explain/gradcam/randomization_corr"
    cb = lv.GradCAMLogger(quality=("randomization",), randomization_threshold=0.5, warmup=0)

    def ctx(e):
        return SimpleNamespace(log=SimpleNamespace(epoch=e, step=e))

    assert cb._threshold_alert(ctx(0), tag, 0.9, 4) is not None
    assert cb._threshold_alert(ctx(1), tag, math.nan, 0) is None
    assert cb._above[tag] is True
    assert cb._threshold_alert(ctx(2), tag, 0.9, 4) is None  # same episode


def test_all_constant_maps_draw_no_curves_figure():
    cb = lv.SaliencyLogger(
        methods=("vanilla",), quality=("deletion", "insertion"), quality_steps=4, quality_cost=None
    )
    r = _run(cb, torch.zeros(8, 1, 8, 8))
    assert r.figures == {}  # no all-NaN lines drawn
    assert all(
        math.isnan(v)
        for v in dict((c[0], c[2]) for c in r.calls)["explain/vanilla/deletion_auc"]["values"]
    )
