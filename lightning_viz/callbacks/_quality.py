"""How much to believe a map: the faithfulness scores ``SaliencyLogger`` and
``GradCAMLogger`` compute on the maps they already made.

For each method, on the probe (split across DDP ranks and gathered):

* ``explain/<method>/deletion_auc`` (lower is faithful) and
  ``explain/<method>/insertion_auc`` (higher is faithful): Petsiuk et al.'s curves
  (:func:`~lightning_viz.functional.deletion_curve`);
* ``explain/<method>/randomization_corr``: Spearman correlation between the map and
  the map of a copy of the model whose top layer is re-initialized (Adebayo et al.);
  a map that does not depend on the model stays near 1;
* each one's chance level, the same score of a random map: ``..._random``;
* ``explain/<method>/deletion_margin``: per image, the map's deletion AUC minus the
  random map's (below 0: the map finds what the class depends on better than chance);
* ``viz/<ClassName>/quality_seconds``: what the scoring cost in this run (part of
  ``viz/<ClassName>/seconds``).

Per-sample values go to the run summary, so a regression is tested paired on the
fixed probe: a deletion margin that rises significantly (exact sign test,
``tolerance``, ``alpha``, ``patience``, as the other probes) alerts once per episode
(the AUC itself rises with the model's confidence, whatever the map); a mean
randomization correlation above ``randomization_threshold`` alerts once until it falls
:data:`RANDOMIZATION_BAND` below it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._checks import check_float, check_int, fail
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.distributed import largest
from lightning_viz._runtime.rows import blank_nonfinite, fill_rows
from lightning_viz.callbacks._alerts import WatchesRegressions
from lightning_viz.callbacks._monitors import monitor_words
from lightning_viz.functional.faithfulness import BASELINES
from lightning_viz.monitoring.regression import Alert, format_alerts

__all__ = ["QUALITY", "ScoresMaps"]

QUALITY = ("deletion", "insertion", "randomization")
# a randomization episode ends this far below the threshold (a correlation; `tolerance`
# is the deletion margin's rise, another quantity)
RANDOMIZATION_BAND = 0.05
_SCALARS = {
    "deletion": "deletion_auc",
    "insertion": "insertion_auc",
    "randomization": "randomization_corr",
}
FAMILY = "explain"
MARGIN = "deletion_margin"  # the deletion AUC minus the random map's: the watched score
MapFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


def randomization_corr(spearman: Tensor, maps: Tensor) -> Tensor:
    """Per-sample randomization correlation ``(N,)`` from Spearman's ``(N,)`` of the maps
    ``(N, 1, H, W)`` and the randomized model's maps.

    Spearman's is undefined (NaN) when a map is constant. A map that ranks pixels and
    became constant on the randomized model (a Grad-CAM map that the ReLU made all zero)
    changed completely: 0. A constant map of the model itself has nothing to compare:
    NaN, left out of the mean.
    """
    informative = maps.flatten(1).amax(1) > maps.flatten(1).amin(1)
    return torch.where(spearman.isnan() & informative, torch.zeros_like(spearman), spearman)


def _on_rows(ctx: Any, fn: MapFn, target: Tensor, rows: Tensor) -> MapFn:
    """``fn`` as the randomization score calls it, on this rank's ``rows`` of the probe:
    in chunks of at most ``max_batch`` images, or, for a map that depends on the batch
    (``fn.whole_probe``: SmoothGrad's noise), made on the whole probe as the shown maps
    were, and its ``rows`` taken (else an unchanged model's maps would differ)."""
    if getattr(fn, "whole_probe", False):
        return lambda model, xs, ts: fn(model, ctx.pixels, target)[rows]
    return lambda model, xs, ts: ctx.chunked(lambda a, b: fn(model, a, b), xs, ts)


def _check_quality(quality: Any) -> tuple[str, ...]:
    if isinstance(quality, str):
        quality = (quality,)
    if not isinstance(quality, Sequence) or not all(isinstance(q, str) for q in quality):
        fail("quality", f"a list of names from {list(QUALITY)} (empty: off)", quality, TypeError)
    bad = [q for q in quality if q not in QUALITY]
    if bad:
        fail("quality", f"names from {list(QUALITY)} (empty: off)", bad)
    return tuple(dict.fromkeys(quality))


class ScoresMaps(WatchesRegressions):
    """Mixin: a map callback scores its maps (see the module docstring)."""

    def init_quality(
        self,
        quality: Sequence[str],
        steps: int,
        baseline: str,
        tolerance: float,
        alpha: float,
        warmup: int,
        patience: int,
        run_baseline: Any,
        randomization_threshold: float,
        cost: float | None,
    ) -> None:
        """Checks the options and creates the alert monitor (deletion margin: lower is better)."""
        self.quality = _check_quality(quality)
        self.quality_steps = check_int(steps, "quality_steps", minimum=1)
        if baseline not in BASELINES:
            fail("quality_baseline", f"one of {list(BASELINES)}", baseline)
        self.quality_baseline = baseline
        self.randomization_threshold = check_float(
            randomization_threshold, "randomization_threshold", minimum=-1.0, maximum=1.0
        )
        self.quality_cost = (
            None if cost is None else check_float(cost, "quality_cost", positive=True)
        )
        self.init_alerts(tolerance, alpha, warmup, patience, run_baseline, higher_is_better=False)
        self._above: dict[str, bool] = {}
        self._skip = 0  # due runs left unscored, so scoring stays within quality_cost

    def check_quality(self, ctx: Any) -> None:
        """At setup: the curves' ``quality_steps`` against the probe's pixels (each step
        removes or inserts at least one; 2x2 images have 4)."""
        h, w = ctx.pixels.shape[-2:]
        if {"deletion", "insertion"} & set(self.quality) and self.quality_steps > h * w:
            fail(
                "quality_steps",
                f"at most the pixels of the probe images ({h}x{w})",
                self.quality_steps,
            )

    # ------------------------------------------------------------------ state
    def measured_with(self) -> dict[str, str]:
        return {
            "quality_steps": repr(self.quality_steps),
            "quality_baseline": repr(self.quality_baseline),
        }

    def extra_state(self) -> dict[str, Any]:
        return {
            **super().extra_state(),
            "above_threshold": dict(self._above),
            "quality_runs_to_skip": self._skip,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self._above = {str(k): bool(v) for k, v in (state.get("above_threshold") or {}).items()}
        self._skip = int(state.get("quality_runs_to_skip", 0))  # a new run scores at once

    # ----------------------------------------------------------------- layout
    def quality_layout(self, methods: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """One chart per score and method (score and its random baseline)."""
        if not self.quality:
            return {}
        charts: dict[str, list[str]] = {}
        for method in methods:
            for q in self.quality:
                name = f"{method}/{_SCALARS[q]}"
                charts[f"{method} {_SCALARS[q]} (and random map)"] = [
                    self.tag(name, family=FAMILY),
                    self.tag(f"{name}_random", family=FAMILY),
                ]
            if "deletion" in self.quality:
                margin = self.tag(f"{method}/{MARGIN}", family=FAMILY)
                charts[f"{method} {MARGIN} (below 0: better than a random map)"] = [margin]
        if "deletion" in self.quality:
            charts[f"{self.family} faithfulness regression"] = [self.tag("regression")]
        name = type(self).__name__
        cost = {f"{name} scoring seconds": [self._quality_seconds_tag()]}
        return {"explanations": charts, "cost": cost}

    def _quality_seconds_tag(self) -> str:
        return self._seconds_tag().replace("/seconds", "/quality_seconds")  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- scoring
    def _fingerprint(self, ctx: Any) -> str:
        """The probe and every setting a score depends on, hashed."""
        settings = (self.quality_steps, self.quality_baseline, self.seed, ctx.task)
        return hashlib.sha256(f"{ctx.probe.fingerprint()}|{settings}".encode()).hexdigest()[:16]

    def score_maps(
        self,
        ctx: Any,
        maps: dict[str, Tensor],
        map_fns: dict[str, MapFn],
        target: Tensor,
        maps_seconds: float,
    ) -> None:
        """Scores ``maps`` (method -> ``(N, 1, H, W)``, computed on ``ctx.pixels`` in
        ``maps_seconds``), unless this run is one the cost limit leaves out."""
        if not self.quality or not maps:
            return
        if self._skip > 0 and self.quality_cost is not None and not self._monitors(ctx):
            self._skip -= 1  # a count restored from a checkpoint: only when still spaced
            return
        start = time.perf_counter()
        n = ctx.pixels.shape[0]
        rows = ctx.share(n)
        x, t = ctx.pixels[rows], target.to(ctx.device)[rows]
        rand = LF.random_maps(ctx.pixels, generator=ctx.generator)[rows]
        local_maps = {method: m.to(ctx.device)[rows] for method, m in maps.items()}
        # the random map's and every method's curves in one pass: gathered values, mean curve
        chance, *method_curves = self._curves(ctx, x, [rand, *local_maps.values()], t)
        fingerprint = self._fingerprint(ctx)
        records, curves = {}, {}
        unscored: dict[str, Tensor] = {}  # rows a method left out: out of the random curve
        drawn: set[str] = set()  # the kinds (deletion, insertion) some method's curve shows
        thresholds: list[Alert] = []  # every method's, said in one table
        randomize = "randomization" in self.quality and bool(LF.randomizable_layers(ctx.view))
        if "randomization" in self.quality and not randomize:
            self.warn_once(
                "no_randomizable_layer",
                "the model has no layer with parameters of its own and a reset_parameters() "
                "(its weights are bare nn.Parameters used through torch.nn.functional), so "
                "there is no top layer to re-initialize: randomization_corr is not written",
            )
        for (method, local), scores in zip(local_maps.items(), method_curves, strict=True):
            flat = local.flatten(1)  # a constant map ranks no pixel: no removal order
            constant = ctx.gather((flat.amax(1) == flat.amin(1)).float(), n) > 0
            for q in ("deletion", "insertion"):
                if q in scores:  # its sample is not counted (NaN), as an unranked one
                    values, curve = scores[q]  # and its curve out of the mean curve (as
                    out = constant.to(values.device) | values.isnan()  # a non-finite one)
                    scores[q] = (fill_rows(values, out, math.nan), fill_rows(curve, out, math.nan))
                    unscored[q] = unscored.get(q, out) | out
            if bool(constant.all()):
                self.warn_once(
                    f"constant_maps_{method}",
                    f"every {method} map of the probe is constant at epoch {ctx.log.epoch} "
                    "(a Grad-CAM map is all zero when no channel of its layer has positive "
                    "evidence, common early in training; a gradient map when the class score "
                    "does not depend on the input), so it ranks no pixel: its scores are not "
                    "written while that lasts",
                )
            if randomize:
                sim = LF.randomization_similarity(
                    _on_rows(ctx, map_fns[method], target.to(ctx.device), rows),
                    ctx.view,
                    x,
                    t,
                    layers="top",
                    maps=local,
                    seed=self.seed,
                    chunk_size=ctx.max_batch,
                )
                corr = ctx.gather(randomization_corr(sim.spearman[:, 0], local), n)
                scores["randomization"] = (corr, None)
                rnd = LF.rank_correlation(local, rand)
                chance_r = ctx.gather(rnd, n)
            for q in self.quality:
                if q not in scores:
                    continue
                values, curve = scores[q]
                # the random map's level over the images the score counts
                base = (
                    chance_r
                    if q == "randomization"
                    else fill_rows(chance[q][0], values.isnan(), math.nan)
                )
                name = f"{method}/{_SCALARS[q]}"
                rec = ctx.log.scalar(
                    self.tag(name, family=FAMILY),
                    values=values.tolist(),
                    fingerprint=fingerprint,
                    watched=False,  # (one resumed from a summary where the AUC was watched)
                    higher_is_better=q == "insertion",
                )
                ctx.log.scalar(
                    self.tag(f"{name}_random", family=FAMILY),
                    values=base.tolist(),
                    fingerprint=fingerprint,
                    higher_is_better=q == "insertion",
                )
                if q == "deletion":  # watched against chance: the AUC follows confidence
                    margin = self.tag(f"{method}/{MARGIN}", family=FAMILY)
                    records[margin] = ctx.log.scalar(
                        margin,
                        values=(values - base).tolist(),
                        fingerprint=fingerprint,
                        watched=True,
                        tolerance=self.tolerance,
                        higher_is_better=False,
                    )
                if q == "randomization":
                    scored = int((~values.isnan()).sum())  # the mean's images, not the probe's
                    tag = self.tag(name, family=FAMILY)
                    above = self._threshold_alert(ctx, tag, rec.value, scored)
                    thresholds += [above] if above is not None else []
                if curve is not None and not bool(curve.isnan().all()):
                    curves[f"{method} {q}"] = torch.nanmean(curve, 0).tolist()
                    drawn.add(q)
        if records:
            self.alert(ctx, records)
        self._report_thresholds(ctx, thresholds)
        if curves:
            for q in ("deletion", "insertion"):
                if q in drawn and chance[q][1] is not None:  # beside some method's curve
                    random = fill_rows(chance[q][1], unscored[q], math.nan)  # NaN: not finite
                    curves[f"random map {q}"] = torch.nanmean(random, 0).tolist()
            self._figure(ctx, curves)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        seconds = time.perf_counter() - start
        ctx.log.scalar(self._quality_seconds_tag(), seconds, summary=False)
        self._skip = self._runs_to_skip(ctx, seconds, maps_seconds)

    def finite_maps(self, ctx: Any, method: str, maps: Tensor) -> Tensor:
        """``maps`` ``(N, ...)`` with the rows holding NaN or inf (NaN outputs on those
        probe images, an overflow) zeroed, said once: drawn blank, not scored (a constant
        map), instead of failing the render and turning the callback off."""
        return blank_nonfinite(
            self,
            f"nonfinite_maps_{method}",
            maps,
            0.0,
            f"{method} maps hold NaN or inf at epoch {ctx.log.epoch} (the model's outputs on "
            "those probe images are not finite): they are drawn blank and left out of the "
            "scores",
        )[0]

    def _monitors(self, ctx: Any) -> list[Any]:
        """The trainer's monitors (EarlyStopping, ModelCheckpoint) of a score."""
        prefix = self.tag("", family=FAMILY)
        monitors = Coordinator.monitors_of(ctx.trainer, self)
        return [m for m in monitors if str(m.monitor).startswith(prefix)]

    def _runs_to_skip(self, ctx: Any, seconds: float, maps_seconds: float) -> int:
        """Due runs to leave unscored so that scoring costs at most ``quality_cost`` times
        the maps over the fit (the same on every rank: the largest ratio)."""
        if self.quality_cost is None:
            return 0
        ratio = largest(ctx.trainer, seconds / max(maps_seconds, 1e-9))
        # a stale score would decide early stopping or the best checkpoint
        if monitors := self._monitors(ctx):
            self._coordinator.info_once(  # type: ignore[attr-defined]
                f"quality monitored {self.tag_prefix}",
                f"lightning-viz: {type(self).__name__} scores its maps at every run: "
                f"{monitor_words(monitors[0])} monitors a score, so quality_cost does not "
                "space the scoring out",
            )
            return 0
        return max(0, math.ceil(ratio / self.quality_cost - 1e-9) - 1)

    def _curves(
        self, ctx: Any, x: Tensor, maps: list[Tensor], t: Tensor
    ) -> list[dict[str, tuple[Tensor, Tensor | None]]]:
        """Deletion/insertion of each of ``maps``: gathered per-sample AUCs ``(N,)`` and
        curves ``(N, steps + 1)`` (:func:`~lightning_viz.functional.perturbation_curves`:
        the input and the baseline are classified once for all maps)."""
        kinds = [q for q in ("deletion", "insertion") if q in self.quality]
        if not kinds:
            return [{} for _ in maps]
        n = ctx.pixels.shape[0]
        results = LF.perturbation_curves(
            ctx.view,
            x,
            maps,
            t,
            steps=self.quality_steps,
            baseline=self.quality_baseline,
            task=ctx.task,
            chunk_size=ctx.max_batch,
            kinds=kinds,
        )
        return [
            {q: (ctx.gather(c.auc, n), ctx.gather(c.curve, n)) for q, c in r.items()}
            for r in results
        ]

    def _threshold_alert(self, ctx: Any, tag: str, value: float, n: int) -> Alert | None:
        """Once per episode: the mean randomization correlation above the threshold. An
        episode ends once the value is :data:`RANDOMIZATION_BAND` below it (a mean of a
        few images wobbling around the threshold is one episode)."""
        if ctx.log.epoch < self.warmup or math.isnan(value):
            return None
        was = self._above.get(tag, False)
        if was:
            self._above[tag] = value > self.randomization_threshold - RANDOMIZATION_BAND
            return None
        self._above[tag] = value > self.randomization_threshold
        if not self._above[tag]:
            return None
        return Alert(
            metric=tag,
            kind="best",
            epoch=ctx.log.epoch,
            step=ctx.log.step,
            value=value,
            reference="threshold",
            reference_epoch=ctx.log.epoch,
            reference_value=self.randomization_threshold,
            drop=value - self.randomization_threshold,
            pvalue=math.nan,
            test="threshold (map barely changes when the top layer is randomized)",
            n=n,
            worse=None,
            better=None,
            tolerance=0.0,
            alpha=self.alpha,
            flagged_since=ctx.log.epoch,
        )

    def _report_thresholds(self, ctx: Any, alerts: list[Alert]) -> None:
        """The run's threshold alerts (every method's), in the summary and one table."""
        if not alerts:
            return
        coordinator = ctx.coordinator
        if coordinator.summary is not None:
            for alert in alerts:
                coordinator.summary.add_alert(alert)
        coordinator.say(ctx.trainer, format_alerts(alerts, type(self).__name__))

    def _figure(self, ctx: Any, curves: dict[str, list[float]]) -> None:
        """Mean deletion and insertion curves per method (drawn on the background worker)."""
        steps = self.quality_steps
        xs = [i / steps for i in range(steps + 1)]
        title = f"{self.family}: mean curves ({self.quality_baseline} baseline)"
        ctx.log.defer(
            self.tag(f"{self.family}/curves", family=FAMILY),
            lambda: render.line_figure(
                xs,
                curves,
                xlabel="fraction of pixels deleted / inserted (map order)",
                ylabel="probability of the explained class",
                title=title,
            ),
        )  # one cheap line figure a run: every run's is written (no back-pressure drop)
