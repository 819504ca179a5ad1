"""CorruptionProbe: accuracy under the common corruptions of Hendrycks & Dietterich."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_viz import render
from lightning_viz._checks import check_choices, check_int_list, fail
from lightning_viz._runtime.log import per_sample, wilson_bands
from lightning_viz.callbacks._alerts import WatchesRegressions
from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.functional._task import correct, predict
from lightning_viz.functional.corruptions import CORRUPTIONS, corrupt
from lightning_viz.monitoring.record import EpochRecord, make_record

__all__ = ["CorruptionProbe"]

_CACHE_BYTES = 512 * 2**20  # corrupted probes up to this size are kept between runs
Pair = tuple[str, int]  # (corruption, severity)


class CorruptionProbe(WatchesRegressions, VizCallback):
    """Accuracy of the probe under common corruptions (noise, blur, weather, digital).

    Once per fit, the probe images (in pixel space: ``mean``/``std`` are applied inside
    the model) are corrupted by :func:`lightning_viz.functional.corrupt` with every
    chosen corruption and severity — with the CIFAR-10-C parameters below 128 px and
    the ImageNet-C ones from 128 px — from the callback's private generator, and the
    corrupted images are kept (up to 512 MB; beyond, they are drawn again each run,
    the same way, one corruption and severity at a time), so every run sees the same
    images and runs compare sample by sample. At every run:

    * scalar ``corruption/clean_acc``: accuracy on the unperturbed probe;
    * scalar ``corruption/<name>_acc`` per corruption: accuracy averaged over the chosen
      severities (in the run summary: each image's outcome, or with several severities
      each image's accuracy over them);
    * scalar ``corruption/mean_acc``: accuracy over every corruption and severity (in
      the run summary: each image's accuracy over them, one sample per image);
    * scalar ``corruption/relative_drop``: clean accuracy minus ``mean_acc`` — a model
      that only gets more accurate is not called more robust;
    * figure ``corruption/accuracy``: accuracy per corruption (bars) and severity
      (one series each), with 95 % Wilson intervals;
    * image ``corruption/examples``: the first probe image, clean and under every
      corruption at the highest chosen severity, captioned with the prediction;
    * scalar ``corruption/regression``: the largest drop of a watched metric
      (``<name>_acc``, ``mean_acc``) below its reference, with alerts as
      :class:`AdversarialProbe` (paired exact sign test on the probe's images,
      ``alpha``, ``tolerance``, ``patience``); per-image outcomes go to the run summary, so
      ``lightning-viz compare`` covers them.

    A multilabel model counts each (image, label) decision (tags read ``label_acc``);
    a binary model with one logit decides ``logit > 0``. Under DDP every rank
    corrupts the whole probe (the same draws) and classifies its share of it.

    Cost: one forward per probe image, corruption and severity, per run; corrupting
    is done once. At the defaults (64 images, 14 corruptions, severity 3) that is 896
    forwards — about a sixth of a training epoch of ``benchmarks/overhead.py``'s
    workload.

    Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common
    Corruptions and Perturbations", ICLR 2019.

    Args:
        corruptions: Names from :data:`lightning_viz.functional.CORRUPTIONS` (frost is
            not available). Default: all fourteen.
        severities: Severities ``1..5``, distinct. Default: ``(3,)``.
        num_samples: Probe images (they need labels). Default: 64.
        tolerance: Drop below the reference (in accuracy, ``>= 0``) large enough to
            alert. Default: ``0.02``.
        alpha: Significance level of the paired exact test (Holm-corrected), in
            ``(0, 1)``. Default: ``0.01``.
        warmup: Epochs at the start of fit whose runs are never references. Default: 0.
        patience: Consecutive flagged runs before an alert. Default: 2.
        baseline: An earlier run (its log dir or its ``summary.json``) to compare
            every run with. Default: ``None``.
        **kwargs: The options every callback shares (see ``VizCallback``).

    Raises:
        TypeError: An argument has a wrong type.
        ValueError: Unknown corruption, severity outside ``1..5`` or repeated, empty
            lists. At ``setup``: the probe has no labels.

    Examples:
        >>> probe = CorruptionProbe(corruptions=["fog", "pixelate"], severities=[1, 5])
        >>> probe.tags()[:3]
        ['corruption/clean_acc', 'corruption/fog_acc', 'corruption/pixelate_acc']
    """

    family = "corruption"
    needs_gradient = False
    needs_labels = True

    def __init__(
        self,
        corruptions: str | Sequence[str] = CORRUPTIONS,
        severities: Sequence[int] = (3,),
        num_samples: int = 64,
        tolerance: float = 0.02,
        alpha: float = 0.01,
        warmup: int = 0,
        patience: int = 2,
        baseline: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples=num_samples, **kwargs)
        self.corruptions = check_choices(corruptions, "corruptions", CORRUPTIONS)
        if not self.corruptions:
            fail("corruptions", "at least one corruption name", corruptions)
        if severities is None:  # None is no list of severities here
            fail("severities", "distinct ints in 1..5", severities, TypeError)
        try:
            sev = check_int_list(severities, "severities", minimum=1)
        except (TypeError, ValueError) as err:  # its message offers None
            raise type(err)(
                f"`severities` must be distinct ints in 1..5, got {severities!r}"
            ) from None
        if not sev or len(set(sev)) != len(sev) or max(sev) > 5:
            fail("severities", "distinct ints in 1..5", severities)
        self.severities = sorted(sev)  # type: ignore[arg-type]
        self.init_alerts(tolerance, alpha, warmup, patience, baseline)
        self._cache: tuple[str, dict[Pair, Tensor]] | None = None

    def check(self, ctx: RunContext) -> None:
        h, w = ctx.pixels.shape[-2:]
        if "elastic_transform" in self.corruptions and min(h, w) < 3:
            fail(
                "corruptions",
                f"corruptions without 'elastic_transform' for images under 3 px a side ({h}x{w})",
                list(self.corruptions),
            )

    # ----------------------------------------------------------------- metadata
    def key_args(self) -> dict[str, Any]:
        return {"corruptions": self.corruptions, "severities": self.severities}

    @property
    def _acc(self) -> str:
        return "label_acc" if self._task == "multilabel" else "acc"

    def metric(self, name: str) -> str:
        """``<name>_acc`` (``label_acc`` for a multilabel model), ``clean``, ``mean``."""
        return f"{name}_{self._acc}"

    def tags(self) -> list[str]:
        """Every scalar tag this callback writes, besides ``viz/CorruptionProbe/seconds``."""
        names = [self.metric(n) for n in ("clean", *self.corruptions, "mean")]
        return [self.tag(n) for n in (*names, "relative_drop", "regression")]

    def layout(self) -> dict[str, dict[str, list[str]]]:
        return {
            "robustness": {
                "corruption accuracy per corruption": [
                    self.tag(self.metric(n)) for n in self.corruptions
                ],
                "corruption: clean and mean accuracy": [
                    self.tag(self.metric("clean")),
                    self.tag(self.metric("mean")),
                ],
                "corruption: relative drop and regression": [
                    self.tag("relative_drop"),
                    self.tag("regression"),
                ],
            }
        }

    # ---------------------------------------------------------------------- run
    def _fingerprint(self, ctx: RunContext) -> str:
        settings = (self.corruptions, self.severities, self.seed, ctx.task)
        text = f"{ctx.probe.fingerprint()}|{settings}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _corrupted(self, ctx: RunContext, x: Tensor, key: str) -> Iterable[tuple[Pair, Tensor]]:
        """Every (corruption, severity) of the whole probe, drawn from the generator's
        state at the start of the run (the same every epoch): kept when they fit in
        ``_CACHE_BYTES`` together, else made one at a time as the run reads them."""
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1].items()
        start = ctx.generator.get_state()

        def one(name: str, sev: int) -> Tensor:
            gen = torch.Generator(device=ctx.generator.device)
            gen.set_state(start)
            return corrupt(x, name, sev, generator=gen)

        pairs = [(name, sev) for name in self.corruptions for sev in self.severities]
        if x.numel() * x.element_size() * len(pairs) > _CACHE_BYTES:
            return ((pair, one(*pair)) for pair in pairs)  # never all of them at once
        began = time.perf_counter()
        self._cache = (key, {pair: one(*pair) for pair in pairs})
        ctx.one_time += time.perf_counter() - began
        return self._cache[1].items()

    def run(self, ctx: RunContext) -> None:
        x, y = ctx.pixels, ctx.probe.labels.to(ctx.device)  # type: ignore[union-attr]
        fingerprint = self._fingerprint(ctx)
        clean_mask = correct(ctx.logits, y, ctx.task)
        clean = self._scalar(ctx, "clean", clean_mask, fingerprint, watched=False)
        corrupted = self._corrupted(ctx, x.float(), fingerprint)
        n, part = len(y), ctx.share(len(y))
        masks: dict[tuple[str, int], Tensor] = {}
        preds: dict[str, int] = {}
        firsts: dict[str, Tensor] = {}  # the examples' image: the first, highest severity
        for (name, sev), images in corrupted:
            if sev == self.severities[-1]:  # a copy: not a view that keeps the whole set
                firsts[name] = images[:1].float().cpu().clone()
            local = images[part].to(x.dtype)
            with torch.no_grad():  # at most max_batch images per forward pass
                logits = ctx.chunked(ctx.view, local).float()
            masks[(name, sev)] = ctx.gather(correct(logits, y[part], ctx.task), n)
            if sev == self.severities[-1] and len(logits) and int(part[0]) == 0:
                preds[name] = int(predict(logits[:1])[0])
        one = len(self.severities) == 1
        records = {
            name: self._scalar(
                ctx,
                name,
                masks[(name, self.severities[0])]
                if one
                else _per_image([masks[(name, s)] for s in self.severities]),
                fingerprint,
                watched=True,
            )
            for name in self.corruptions
        }
        mean = self._scalar(
            ctx, "mean", _per_image(list(masks.values())), fingerprint, watched=True
        )
        drop = float(clean.value) - float(mean.value)
        ctx.log.scalar(self.tag("relative_drop"), drop, higher_is_better=False)
        self.alert(ctx, {self.tag(self.metric(k)): r for k, r in {**records, "mean": mean}.items()})
        if not ctx.log.writes:  # what follows is written, so only global rank 0 does it
            return
        ctx.log.figure(self.tag("accuracy"), self._figure(masks))
        ctx.log.image(self.tag("examples"), self._examples(ctx, x, y, firsts, preds))

    def _scalar(
        self, ctx: RunContext, name: str, mask: Tensor, fingerprint: str, *, watched: bool
    ) -> EpochRecord:
        """Records one image's decision, or its mean over several, as one sample (see
        :func:`per_sample`)."""
        return ctx.log.scalar(
            self.tag(self.metric(name)),
            **per_sample(mask),
            fingerprint=fingerprint,
            watched=watched,
            tolerance=self.tolerance if watched else None,
        )

    # ------------------------------------------------------------------ render
    def _figure(self, masks: dict[tuple[str, int], Tensor]) -> Any:
        records = {
            f"severity {sev}": [
                make_record(0, 0, None, **per_sample(masks[(n, sev)])) for n in self.corruptions
            ]
            for sev in self.severities
        }
        bands = wilson_bands(records)
        return render.bar_figure(
            list(self.corruptions),
            {name: [float(r.value) for r in recs] for name, recs in records.items()},
            ylabel="accuracy (95 % Wilson intervals)" if bands is not None else "label accuracy",
            title="accuracy under corruption",
            intervals=bands,
        )

    def _examples(
        self,
        ctx: RunContext,
        x: Tensor,
        y: Tensor,
        firsts: dict[str, Tensor],
        preds: dict[str, int],
    ) -> Tensor:
        sev = self.severities[-1]
        images = [x[:1].float().cpu()]
        caps = [f"clean: {self.class_name(int(ctx.predicted[0]))}"]
        for name in self.corruptions:
            images.append(firsts[name])
            guess = preds.get(name)
            shown = self.class_name(guess) if guess is not None else "?"
            caps.append(f"{name} {sev}: {shown}")
        grid = torch.cat(images).clamp(0, 1)
        caps[0] += f"\ntrue {self.label_name(y[0])}"  # the parameter table: in the docs
        return render.image_grid(grid, nrow=5, captions=caps, scale=render.display_scale(grid))


def _per_image(masks: list[Tensor]) -> Tensor:
    """Each image's decisions in ``masks`` (each ``(N,)`` or ``(N, L)``: corruptions,
    severities, labels) side by side, ``(N, D)``: recorded as one sample per image, their
    mean (:func:`per_sample`). The decisions of one image are not independent (an image
    the model gets wrong under fog it tends to get wrong under haze), so a sign test must
    not count them as samples."""
    n = masks[0].shape[0]
    return torch.cat([m.reshape(n, -1) for m in masks], 1)
