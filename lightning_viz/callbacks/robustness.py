"""AdversarialProbe: how robust the model is to small adversarial perturbations."""

from __future__ import annotations

import math
import numbers
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from lightning_viz import render
from lightning_viz._checks import (
    check_choice,
    check_choices,
    check_float,
    check_int,
    fail,
    is_vector,
)
from lightning_viz._io import fingerprint
from lightning_viz._runtime.compat import rank_zero_warn
from lightning_viz._runtime.log import per_sample, wilson_bands
from lightning_viz.callbacks._alerts import WatchesRegressions
from lightning_viz.callbacks._attack_checks import AttackChecks, _masking_flips
from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.callbacks._overfitting import WatchesOverfitting
from lightning_viz.functional import attacks as A
from lightning_viz.functional._task import correct, predict
from lightning_viz.functional.apgd import apgd_mask
from lightning_viz.monitoring.record import EpochRecord

__all__ = ["AdversarialProbe", "eps_label"]

ATTACKS = ("fgsm", "pgd", "apgd-ce", "apgd-t")
NORMS = ("linf", "l2")
NUM_EXAMPLES = 6
MASKING_SUBSET = 32  # probe samples attacked at every eps on their own, for the masking check


_EPS_TEXT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(/\s*255)?\s*$")


def _parse_eps(value: Any) -> float | None:
    """A number, or a string ``"8/255"`` / ``"0.03"``; ``None`` when it is neither."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    match = _EPS_TEXT.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    return float(match.group(1)) / (255.0 if match.group(2) else 1.0)


def _check_eps(eps: Any, norm: str) -> list[float]:
    """Perturbation sizes: a list of numbers or ``"k/255"`` strings, finite, ``>= 0``, unique.

    For ``norm="linf"`` (pixel space ``[0, 1]``) values above 1 are rejected with a
    hint: ``8`` is almost certainly ``8/255``.
    """
    allowed = 'a list of perturbation sizes, e.g. [2/255, 8/255] (in YAML ["2/255", "8/255"])'
    if isinstance(eps, str | bytes) or not (isinstance(eps, Sequence) or is_vector(eps)):
        value = _parse_eps(eps)
        valid = value is not None and math.isfinite(value) and value >= 0
        valid = valid and (norm != "linf" or value <= 1)  # type: ignore[operator]
        hint = f"; for one size pass eps=[{value:.6g}]" if valid else ""
        raise TypeError(f"`eps` must be {allowed}, got {eps!r}{hint}")
    given = eps.tolist() if is_vector(eps) else list(eps)
    values = [_parse_eps(e) for e in given]
    if any(v is None for v in values):
        fail("eps", allowed + " (numbers or 'k/255' strings)", given, TypeError)
    if not values:
        fail("eps", allowed + " (at least one)", given)
    if not all(math.isfinite(v) and v >= 0 for v in values):  # type: ignore[operator]
        fail("eps", "finite sizes >= 0", given)
    for e, v in zip(given, values, strict=True):
        if norm == "linf" and v > 1:  # type: ignore[operator]
            raise ValueError(
                f"`eps` values must be pixel-space sizes in [0, 1] for norm='linf', got {e!r} "
                f"in {given!r}; did you mean {e}/255 (= {v / 255:.4g})?"  # type: ignore[operator]
            )
    if len({round(v * 255, 6) for v in values}) != len(values):  # type: ignore[operator]
        fail("eps", "unique sizes", given)
    return values  # type: ignore[return-value]


def eps_label(eps: float, norm: str = "linf") -> str:
    """The name of a perturbation size in tags: ``"8/255"``, ``"0.5/255"`` or ``"0.5"``.

    Under ``norm="linf"``: ``k/255`` when ``eps * 255`` is within ``1e-6`` of a number
    with at most two decimals (``k`` printed with ``:g``), otherwise ``eps`` with
    ``:g``. Under ``norm="l2"`` (a length, conventionally a plain number): ``eps`` with
    ``:g``.

    Examples:
        >>> eps_label(8 / 255), eps_label(0.5 / 255), eps_label(0.3), eps_label(0.5, "l2")
        ('8/255', '0.5/255', '76.5/255', '0.5')
    """
    if norm == "l2":
        return f"{eps:g}"
    k = eps * 255.0
    rounded = round(k, 2)
    if abs(k - rounded) <= 1e-6:
        return f"{rounded:g}/255"
    return f"{eps:g}"


class AdversarialProbe(WatchesRegressions, AttackChecks, WatchesOverfitting, VizCallback):
    """Measures robust accuracy of the probe under FGSM, PGD and APGD, with a noise control.

    At every run, in pixel space (``mean``/``std`` applied inside the attacked model):

    * scalar ``robustness/clean_acc``: accuracy on the unperturbed probe;
    * scalar ``robustness/<attack>_acc@<eps>`` per attack and ``eps``: robust accuracy
      (:func:`lightning_viz.functional.robust_mask`: a sample counts as robust only
      if no visited point fooled the model; broken samples leave the batch early).
      Each attack sweeps ``eps`` upward and attacks only the samples that survived
      the smaller ``eps`` (a sample broken inside a smaller ball is broken inside every
      larger one of the same norm), so the estimate is never weaker and most samples
      of a non-robust model are attacked once; the clean forward is shared;
    * scalar ``robustness/worst_acc@<eps>``: accuracy under the union of the attacks
      (robust to every one of them);
    * scalar ``robustness/noise_acc@<eps>``: the same with random noise of the same
      size (``+-eps`` per pixel for Linf), a control: a model that loses accuracy to
      noise is fragile, the gap to the attacks is the adversarial part;
    * figure ``robustness/curve``: accuracy against ``eps``, clean accuracy at 0, with
      95 % Wilson intervals as bands;
    * image ``robustness/examples``: clean images, the perturbation amplified
      (``0.5 + delta / (2 eps)``), the adversarial images (PGD at the largest ``eps``,
      FGSM without PGD), captioned ``true / clean pred -> adversarial pred``;
    * scalar ``robustness/regression``: the largest drop of an attack's robust
      accuracy below its reference (its best run after ``warmup``; 0 when none).
      An alert is printed when a drop is both larger than ``tolerance`` and
      significant under the exact paired sign test on the probe samples that flipped
      (``alpha``, Holm-corrected across the watched metrics), for ``patience``
      consecutive runs; once per episode (see ``RegressionMonitor``). Every value,
      with its per-sample outcomes, goes to ``<log_dir>/lightning_viz/summary.json``.

    ``<eps>`` is written as ``k/255`` when ``eps * 255`` has at most two decimals
    (``8/255``, ``0.5/255``) and with ``:g`` otherwise, so
    ``EarlyStopping(monitor="robustness/pgd_acc@8/255", mode="max")`` works.

    Gradient-masking warnings (at most once per run and kind): PGD weaker than FGSM at
    the same ``eps``, accuracy that rises with ``eps`` (the sweep cannot rise, so this
    is looked for once per fit, at the first run, on the first 32 probe samples with
    every attack and size run on its own), or random noise hurting more than an
    attack — each by more than one probe sample. These mean the gradients
    mislead the attack (e.g. quantized or saturated inputs), and the robust accuracy
    overstates the true robustness.

    AutoAttack's sanity checks (Croce & Hein 2020), once per fit on the first 32 probe
    samples, each warned at most once per run with its reason: outputs that already sum
    to one (a softmax inside the model), outputs that differ between two forwards of
    the same images (a randomized model), and at least 10 % of the samples with an input
    gradient that is exactly zero. AutoAttack's black-box Square check runs with
    ``black_box_queries`` > 0 (below).

    Catastrophic overfitting (Wong, Rice and Kolter, "Fast is better than free", ICLR
    2020), with ``"fgsm"`` and ``"pgd"`` both run: a warning, once per fit, when PGD
    accuracy falls while FGSM accuracy at the same eps holds or rises (not lower by
    more than ``tolerance``) and the samples FGSM leaves correct but PGD breaks grew
    significantly since the run where they were fewest (exact paired sign test,
    ``alpha``), and clean accuracy is above chance (the best constant prediction's,
    exact binomial test at ``alpha``; a model at chance has no robustness to lose); it
    names the epoch the growth started. The details stay in
    :attr:`catastrophic_overfitting` (``None`` until it fires).

    Every metric's random draws (PGD and APGD starts, noise) come from a copy of the
    callback's private generator in the state it has at the start of the run, so a
    value does not depend on which other attacks and sizes are measured, and the
    global RNG is never used.

    Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015;
    Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
    ICLR 2018.

    Args:
        attacks: Any of ``"fgsm"``, ``"pgd"``, ``"apgd-ce"`` (APGD with cross entropy)
            and ``"apgd-t"`` (targeted DLR APGD; APGD-CE for a model with fewer than 4
            classes or not multiclass, said once); see
            :func:`lightning_viz.functional.apgd`. Default: ``("fgsm", "pgd")`` (APGD
            costs about ``apgd_steps / 10`` times PGD-10 on the samples it cannot break,
            and APGD-T that again per target class).
        eps: Perturbation sizes, each finite and ``>= 0`` (Linf: per pixel in
            ``[0, 1]`` pixel space; L2: per image). Default: ``(2/255, 8/255)`` (two
            sizes and 128 samples keep a run near one training epoch of a robust
            ResNet-18 on 2,048 images; see ``benchmarks/overhead.py``).
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        steps: PGD steps, ``>= 1``. Default: ``10``.
        num_samples: Probe images (they need labels). Default: 128.
        tolerance: Drop below the reference (in accuracy, ``>= 0``) that is large
            enough to alert. Default: ``0.02``.
        step_size: PGD step size; ``None`` uses ``2.5 * eps / steps``. Default: ``None``.
        alpha: Significance level of the paired exact test (Holm-corrected), in
            ``(0, 1)``. Default: ``0.01``.
        warmup: Epochs at the start of fit whose runs are never references. Default: 0.
        patience: Consecutive flagged runs before an alert. Default: 2.
        baseline: An earlier run (its log dir or its ``summary.json``) to compare
            every run with, at the same epoch and at its best. Default: ``None``.
        apgd_steps: APGD iterations per run, ``>= 1``. Default: ``100`` (AutoAttack's).
        n_target_classes: Target classes of APGD-T, ``>= 1``. Default: ``9``.
        black_box_queries: Queries of the black-box sanity check, ``>= 0``: once per
            fit, Square Attack (L-infinity, no gradients) on the first 32 probe samples
            at the largest eps; a warning when it breaks significantly more samples
            that the white-box attacks leave correct than the reverse (exact sign test
            below ``alpha``: gradient masking). ``0`` turns it off (AutoAttack runs
            5000; 1000 find most). Default: ``0``.
        **kwargs: The options every callback shares (see ``VizCallback``).

    Raises:
        TypeError: ``eps`` is not a list (a bare number), or an argument has a wrong type.
        ValueError: ``eps`` empty, negative, non-finite or duplicate; unknown attack or
            norm; ``steps < 1``; ``tolerance < 0``; ``step_size <= 0``. At ``setup``:
            the probe has no labels.

    Examples:
        >>> probe = AdversarialProbe(eps=[2 / 255, 8 / 255], num_samples=128)
        >>> probe.tags()[:3]
        ['robustness/clean_acc', 'robustness/fgsm_acc@2/255', 'robustness/fgsm_acc@8/255']
    """

    family = "robustness"
    needs_gradient = True
    needs_labels = True

    def __init__(
        self,
        attacks: str | Sequence[str] = ("fgsm", "pgd"),
        eps: Sequence[float | str] = (2 / 255, 8 / 255),
        norm: Literal["linf", "l2"] = "linf",
        steps: int = 10,
        num_samples: int = 128,
        tolerance: float = 0.02,
        step_size: float | None = None,
        alpha: float = 0.01,
        warmup: int = 0,
        patience: int = 2,
        baseline: str | None = None,
        apgd_steps: int = 100,
        n_target_classes: int = 9,
        black_box_queries: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples=num_samples, **kwargs)
        self.attacks = check_choices(attacks, "attacks", ATTACKS)
        self.apgd_steps = check_int(apgd_steps, "apgd_steps", minimum=1)
        self.n_target_classes = check_int(n_target_classes, "n_target_classes", minimum=1)
        self.black_box_queries = check_int(black_box_queries, "black_box_queries", minimum=0)
        self.norm = check_choice(norm, "norm", NORMS)
        self.eps = _check_eps(eps, self.norm)
        if self.black_box_queries and self.norm != "linf":
            raise ValueError(
                f"`black_box_queries` runs Square Attack in L-infinity, but norm={self.norm!r}; "
                f"use norm='linf' or black_box_queries=0, got {black_box_queries!r}"
            )
        self.steps = check_int(steps, "steps", minimum=1)
        self.step_size = (
            None if step_size is None else check_float(step_size, "step_size", positive=True)
        )
        self.init_alerts(tolerance, alpha, warmup, patience, baseline)
        self._masking_warned: set[str] = set()
        self._subset_checked = False
        self._reset_overfitting()

    # ----------------------------------------------------------------- metadata
    def _eps(self, eps: float) -> str:
        """``eps`` as tags name it under this probe's norm (:func:`eps_label`)."""
        return eps_label(eps, self.norm)

    def key_args(self) -> dict[str, Any]:
        return {"attacks": self.attacks, "eps": [self._eps(e) for e in self.eps], "norm": self.norm}

    def measured_with(self) -> dict[str, str]:
        names = ("steps", "step_size", "apgd_steps", "n_target_classes", "black_box_queries")
        return {name: repr(getattr(self, name)) for name in names}

    @property
    def _acc(self) -> str:
        """``acc``, or ``label_acc`` for a multilabel model (accuracy per label)."""
        return "label_acc" if self._task == "multilabel" else "acc"

    def metric(self, attack: str, eps: float | None = None) -> str:
        """Metric name ``<attack>_acc@<eps>`` (``"noise"`` too), ``clean_acc`` for ``"clean"``.

        For a multilabel model ``acc`` reads ``label_acc``: the fraction of (image,
        label) decisions that stay correct.
        """
        if attack == "clean":
            return f"clean_{self._acc}"
        return f"{attack}_{self._acc}@{self._eps(eps)}"  # type: ignore[arg-type]

    def layout(self) -> dict[str, dict[str, list[str]]]:
        """One chart per attack (every eps), the clean and worst case, the noise control
        and the regression, so each scalar is on exactly one chart."""
        by_eps = {
            f"{attack} accuracy per eps": [self.tag(self.metric(attack, e)) for e in self.eps]
            for attack in self.attacks
        }
        clean_worst = [self.tag(self.metric("clean"))]
        clean_worst += [self.tag(self.metric("worst", e)) for e in self.eps]
        return {
            "robustness": {
                **by_eps,
                "clean and worst case (every attack)": clean_worst,
                "noise control (random noise of the same size)": [
                    self.tag(self.metric("noise", e)) for e in self.eps
                ],
                "regression (largest drop below the reference)": [self.tag("regression")],
            }
        }

    def tags(self) -> list[str]:
        """Every scalar tag this callback writes, besides ``viz/AdversarialProbe/seconds``."""
        names = [self.metric("clean")]
        names += [self.metric(a, e) for a in (*self.attacks, "noise", "worst") for e in self.eps]
        return [self.tag(n) for n in (*names, "regression")]

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._masking_warned = set()  # at most once per run and kind
            self._subset_checked = False
            self._reset_overfitting()
        super().setup(trainer, pl_module, stage)

    # ---------------------------------------------------------------------- run
    def run(self, ctx: RunContext) -> None:
        x, y = ctx.pixels, ctx.probe.labels.to(ctx.device)  # type: ignore[union-attr]
        fingerprint = self._fingerprint(ctx)
        clean_mask = correct(ctx.logits, y, ctx.task)  # the forward every attack shares
        clean = self._scalar(ctx, "clean", None, clean_mask, fingerprint)
        start = ctx.generator.get_state()
        n, part = len(y), ctx.share(len(y))  # under DDP each rank attacks its share
        xs, ys, known_clean = x[part], y[part], clean_mask[part]
        masks: dict[str, dict[float, Tensor]] = {}
        for attack in self.attacks:  # eps upward: only what survived the smaller eps
            masks[attack], known = {}, known_clean
            for eps in sorted(self.eps):
                known = self._robust(ctx, xs, ys, attack, eps, start, known)
                masks[attack][eps] = ctx.gather(known, n)
        masks["noise"] = {  # the control: every size on its own
            eps: ctx.gather(self._robust(ctx, xs, ys, "noise", eps, start, known_clean), n)
            for eps in self.eps
        }
        masks["worst"] = {  # robust to every attack: the union of the attacks
            eps: torch.stack([masks[a][eps] for a in self.attacks]).all(dim=0) for eps in self.eps
        }
        results = {
            attack: {eps: self._scalar(ctx, attack, eps, m, fingerprint) for eps, m in by.items()}
            for attack, by in masks.items()
        }
        watched = {
            self.tag(self.metric(attack, eps)): rec
            for attack in self.attacks
            for eps, rec in results[attack].items()
        }
        self.alert(ctx, watched)
        values = {a: {e: float(r.value) for e, r in by.items()} for a, by in results.items()}
        independent, notes = None, self._overfitting_messages(ctx, masks, clean_mask, y)
        if not self._subset_checked:  # once per fit (a collective under DDP: every rank)
            self._subset_checked = True
            began = time.perf_counter()
            independent = self._independent_subset(ctx, x, y, start)
            notes += self._sanity_messages(ctx, x, y, masks["worst"][max(self.eps)], start)
            ctx.one_time += time.perf_counter() - began
        if not ctx.log.writes:  # what follows is written, so only global rank 0 does it
            return
        flips = _masking_flips(masks, self.attacks, self.eps)
        for message in self._masking_messages(
            values, float(clean.value), len(y), independent, flips
        ):
            rank_zero_warn(message)
        for message in notes:
            rank_zero_warn(message)
        ctx.log.figure(self.tag("curve"), self._curve(results, clean))
        ctx.log.image(self.tag("examples"), self._examples(ctx, x, y, start))

    def _robust(
        self,
        ctx: RunContext,
        x: Tensor,
        y: Tensor,
        attack: str,
        eps: float,
        start: Tensor,
        known: Tensor | None,
    ) -> Tensor:
        """The robust mask under one attack at one size; random draws from ``start``."""
        gen = torch.Generator(device=ctx.generator.device)
        gen.set_state(start)
        if attack.startswith("apgd"):
            targeted = attack == "apgd-t" and self._targeted_possible(ctx)
            return apgd_mask(
                ctx.view,
                x,
                y,
                eps,
                loss="dlr" if targeted else "ce",
                targeted=targeted,
                n_target_classes=self.n_target_classes,
                steps=self.apgd_steps,
                norm=self.norm,
                generator=gen,
                task=ctx.task,
                known=known,
            )
        return A.robust_mask(
            ctx.view,
            x,
            y,
            eps,
            attack=attack,
            norm=self.norm,
            steps=self.steps,
            step_size=self.step_size,
            generator=gen,
            task=ctx.task,
            known=known,
            batch_size=ctx.max_batch,
        )

    def _independent_subset(
        self, ctx: RunContext, x: Tensor, y: Tensor, start: Tensor
    ) -> tuple[dict[str, dict[float, float]], float, int]:
        """Every attack and size run on its own on the first probe samples.

        The eps sweep attacks only what survived the smaller eps, so its accuracy
        cannot rise with eps; a rise on this subset is a sign of gradient masking.
        """
        n = min(MASKING_SUBSET, x.shape[0])
        part = ctx.share(n)
        known = correct(ctx.logits[:n], y[:n], ctx.task)
        acc = {
            a: {
                e: ctx.gather(self._robust(ctx, x[part], y[part], a, e, start, known[part]), n)
                .float()
                .mean()
                .item()
                for e in self.eps
            }
            for a in self.attacks
        }
        return acc, float(known.float().mean()), n

    def _fingerprint(self, ctx: RunContext) -> str:
        """The probe and every setting a robust outcome depends on, hashed: the smaller
        eps too (the sweep attacks only what survived them) and the attacks (``worst``)."""
        settings = (self.norm, self.steps, self.step_size, self.seed, ctx.task)
        settings += (tuple(sorted(self.eps)), tuple(self.attacks))
        if any(a.startswith("apgd") for a in self.attacks):
            settings += (self.apgd_steps, self.n_target_classes)
        return fingerprint(f"{ctx.probe.fingerprint()}|{settings}")

    def _scalar(
        self, ctx: RunContext, attack: str, eps: float | None, mask: Tensor, fingerprint: str
    ) -> EpochRecord:
        """Logs one accuracy with its per-image outcomes (a multilabel model's: each
        image's fraction of labels right, see :func:`per_sample`); attacks are watched."""
        watched = attack in self.attacks
        return ctx.log.scalar(
            self.tag(self.metric(attack, eps)),
            **per_sample(mask),
            fingerprint=fingerprint,
            watched=watched,
            tolerance=self.tolerance if watched else None,
        )

    # ------------------------------------------------------------------ render
    def _curve(self, results: dict[str, dict[float, EpochRecord]], clean: EpochRecord) -> Any:
        order = sorted(e for e in self.eps if e > 0)
        xs = [0.0, *order]
        series = {name: [clean, *(results[name][e] for e in order)] for name in results}
        bands = wilson_bands(series)
        return render.line_figure(
            xs,
            {name: [float(r.value) for r in recs] for name, recs in series.items()},
            xlabel=f"eps ({self.norm})",
            ylabel=f"accuracy (95 % Wilson intervals, n = {clean.n})"
            if bands is not None
            else f"label accuracy (mean of {len(clean.values or ())} images)",
            title="robust accuracy (eps 0: clean)",
            xticklabels=[self._eps(e) for e in xs],
            intervals=bands,
            # the union of the attacks is the strongest attack's line where one attack
            # breaks everything the others do: dashed, thin, so that line still shows
            styles={"worst": {"color": "black", "linestyle": "--", "marker": "", "zorder": 3}},
        )

    def _examples(self, ctx: RunContext, x: Tensor, y: Tensor, start: Tensor) -> Tensor:
        k = min(NUM_EXAMPLES, x.shape[0])
        xs, ys = x[:k], y[:k]
        eps = max(self.eps)
        attack = "pgd" if "pgd" in self.attacks else "fgsm"
        if attack == "pgd":
            gen = torch.Generator(device=ctx.generator.device)
            gen.set_state(start)
            adv = ctx.chunked(
                lambda xc, yc: A.pgd(
                    ctx.view,
                    xc,
                    yc,
                    eps,
                    steps=self.steps,
                    step_size=self.step_size,
                    norm=self.norm,
                    generator=gen,
                    task=ctx.task,
                ),
                xs,
                ys,
            )
        else:
            adv = ctx.chunked(
                lambda xc, yc: A.fgsm(ctx.view, xc, yc, eps, norm=self.norm, task=ctx.task), xs, ys
            )
        with torch.no_grad():
            adv_pred = predict(ctx.chunked(ctx.view, adv))
        delta = (adv - xs).float()
        if self.norm == "linf":
            scale = torch.full((k, 1, 1, 1), 2 * eps, device=delta.device)
        else:  # an L2 perturbation is spread thin: scale each image by its largest pixel
            scale = 2 * delta.abs().flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        shown = (0.5 + delta / scale.clamp_min(1e-12)).clamp(0, 1)
        caps = [
            f"{self.label_name(t)} / {self.class_name(int(c))}\n->{self.class_name(int(a))}"
            for t, c, a in zip(ys, ctx.predicted[:k].tolist(), adv_pred.tolist(), strict=True)
        ]
        images = xs.float().cpu()
        return render.rows_grid(
            [images, shown.cpu(), adv.float().clamp(0, 1).cpu()],
            captions=caps,
            row_labels=[
                "clean",
                "perturbation (amplified)",
                f"{attack} @ {self._eps(eps)}",
            ],
            scale=render.display_scale(images),
        )
