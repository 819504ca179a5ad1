"""SaliencyLogger: which pixels the class score (or one neuron) is sensitive to."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._checks import (
    check_choice,
    check_choices,
    check_float,
    check_int,
    check_neuron,
    check_reshape,
    check_target,
    fail,
)
from lightning_viz._guard import make_generator
from lightning_viz._runtime.compat import rank_zero_info
from lightning_viz.callbacks._base import (
    CAPTION_LABEL,
    RunContext,
    VizCallback,
)
from lightning_viz.callbacks._quality import QUALITY, ScoresMaps
from lightning_viz.functional._grad import resolve_layer
from lightning_viz.functional.relu_rules import relu_rules_unusable
from lightning_viz.functional.rollout import supports_rollout

__all__ = ["SaliencyLogger"]

METHODS = (
    "vanilla",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "deconvnet",
    "rollout",
    "grad_rollout",
)
# what ``methods=None`` asks for; the ones that do not apply to the model are skipped
DEFAULT_METHODS = (
    "vanilla",
    "smoothgrad",
    "guided_backprop",
    "deconvnet",
    "rollout",
    "grad_rollout",
)
RELU_RULES = ("guided_backprop", "deconvnet")  # need a ReLU-family unit in the forward
ROLLOUTS = ("rollout", "grad_rollout")  # need a ViT with a class token


class SaliencyLogger(ScoresMaps, VizCallback):
    """Logs gradient attribution maps of the probe images.

    For each method, image ``saliency/<method>`` has three rows: the image, the
    map (abs gradient reduced over channels, normalized per image) and the overlay,
    captioned with the true and predicted class. ``saliency/segmentation`` shows the
    mask made of the most salient pixels (first method in ``methods``); when the
    probe carries object masks, scalar ``bias/saliency_in_mask`` is the mean
    fraction of saliency mass inside the object: low values mean the network looks
    at the background. With ``neuron=(layer, channel)``, image
    ``saliency/neuron/<layer>/<channel>`` shows the gradient of that channel's mean
    activation instead of a class score.

    ``"rollout"`` (attention rollout, Abnar & Zuidema 2020) and ``"grad_rollout"``
    (gradient-weighted, Chefer et al. 2021) apply to Vision Transformers with a class
    token; ``"guided_backprop"`` and ``"deconvnet"`` to models with ReLU-family units
    (see :func:`~lightning_viz.functional.guided_backprop` for GELU, SiLU and the
    like). With the default ``methods`` the ones that do not apply to the model are
    skipped at ``setup`` with one info line; a method passed explicitly that does not
    apply raises ``ValueError`` at ``setup``.

    Args:
        methods: Any of ``"vanilla"``, ``"smoothgrad"``, ``"integrated_gradients"``,
            ``"guided_backprop"``, ``"deconvnet"``, ``"rollout"``, ``"grad_rollout"``.
            Default: ``None``: vanilla, smoothgrad, guided backprop, deconvnet,
            rollout and grad rollout, those that apply to the model.
        target: ``"predicted"`` (the predicted class), ``"true"`` (the label) or a
            class index. Default: ``"predicted"``.
        neuron: ``(layer_name, channel)`` to explain one channel too. Default: ``None``.
        num_samples: Probe images. Default: 8.
        reduce: Channel reduction of the abs gradient, ``"max"`` or ``"sum"``.
        smoothgrad_samples: Noisy copies per image for SmoothGrad. Default: 25.
        smoothgrad_noise: Noise std as a fraction of each image's range. Default: 0.15.
        ig_steps: Integration steps of Integrated Gradients. Default: 32.
        mask_quantile: Pixels above this quantile of a map form its segmentation.
        reshape: Maps the ``neuron`` layer's output to ``(N, D, h, w)`` for a model
            whose token layout is not detected. Default: ``None``.
        quality: Faithfulness scores of every map (docs/faithfulness.md): any of
            ``"deletion"``, ``"insertion"`` (Petsiuk et al. 2018), ``"randomization"``
            (Adebayo et al. 2018); scalars ``explain/<method>/deletion_auc``,
            ``explain/<method>/insertion_auc``, ``explain/<method>/randomization_corr``
            and each one's random-map baseline ``..._random``, the watched
            ``explain/<method>/deletion_margin`` (deletion AUC minus the random map's), figure
            ``explain/saliency/curves``. ``()`` turns scoring off. Default: all three.
        quality_steps: Steps of the deletion and insertion curves. Default: 8.
        quality_baseline: What deleted pixels become, ``"blur"`` or ``"mean"``.
            Default: ``"blur"``.
        tolerance: Rise of a method's deletion margin (its deletion AUC minus the
            random map's, image by image) above its best that is large enough to
            alert (paired exact sign test at ``alpha``, ``patience`` consecutive runs,
            once per episode). Default: 0.05.
        alpha: Significance level of the alert rule, as for ``AdversarialProbe``.
            Default: 0.01.
        warmup: Epochs at the start of fit that are never a reference, as for
            ``AdversarialProbe``.
            Default: 1.
        patience: Consecutive significant runs before an alert, as for
            ``AdversarialProbe``. Default: 2.
        baseline: A run whose scores are the reference, as for ``AdversarialProbe``.
            Default: ``None``.
        randomization_threshold: A mean randomization correlation above it alerts
            (the map barely depends on the model's top layer), once until it falls
            ``tolerance`` below it. Default: 0.5.
        quality_cost: Scoring costs at most this fraction of computing the maps,
            averaged over the fit: after a scored run that cost ``r`` times its maps,
            the next ``ceil(r / quality_cost) - 1`` due runs are not scored (the first
            due run always is). ``None``: score every run. Default: 0.5.
        **kwargs: The options every callback shares (see ``VizCallback``).
    """

    family = "saliency"
    needs_gradient = True

    def __init__(
        self,
        methods: str | Sequence[str] | None = None,
        target: int | Literal["predicted", "true"] = "predicted",
        neuron: tuple[str, int] | None = None,
        num_samples: int = 8,
        reduce: Literal["max", "sum"] = "max",
        smoothgrad_samples: int = 25,
        smoothgrad_noise: float = 0.15,
        ig_steps: int = 32,
        mask_quantile: float = 0.8,
        reshape: Callable[..., Any] | str | None = None,
        quality: str | Sequence[str] = QUALITY,
        quality_steps: int = 8,
        quality_baseline: Literal["blur", "mean"] = "blur",
        tolerance: float = 0.05,
        alpha: float = 0.01,
        warmup: int = 1,
        patience: int = 2,
        baseline: str | None = None,
        randomization_threshold: float = 0.5,
        quality_cost: float | None = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples=num_samples, **kwargs)
        self.init_quality(
            quality,
            quality_steps,
            quality_baseline,
            tolerance,
            alpha,
            warmup,
            patience,
            baseline,
            randomization_threshold,
            quality_cost,
        )
        self.explicit = methods is not None  # explicit methods raise where they do not apply
        self.methods = (
            DEFAULT_METHODS if methods is None else check_choices(methods, "methods", METHODS)
        )
        self.reshape = check_reshape(reshape, paths=True)
        self._active: tuple[str, ...] = self.methods  # those that apply, set at setup
        self.target = check_target(target)
        self.neuron = check_neuron(neuron)
        self.reduce = check_choice(reduce, "reduce", ("max", "sum"))
        self.smoothgrad_samples = check_int(smoothgrad_samples, "smoothgrad_samples", minimum=1)
        self.smoothgrad_noise = check_float(smoothgrad_noise, "smoothgrad_noise", minimum=0.0)
        self.ig_steps = check_int(ig_steps, "ig_steps", minimum=1)
        self.mask_quantile = check_float(mask_quantile, "mask_quantile", minimum=0.0, maximum=1.0)
        if self.mask_quantile in (0.0, 1.0):
            fail("mask_quantile", "in (0, 1)", mask_quantile)

    def key_args(self) -> dict[str, Any]:
        return {"methods": self.methods, "target": self.target, "neuron": self.neuron}

    def layout(self) -> dict[str, dict[str, list[str]]]:
        charts = self.quality_layout(self._active)
        if self._probe is None or self._probe.masks is not None:  # None: not set up yet
            charts["bias"] = {
                "saliency on the object": [self.tag("saliency_in_mask", family="bias")]
            }
        return charts

    def check(self, ctx: RunContext) -> None:
        ctx.check_target("SaliencyLogger", self.target)
        self.check_quality(ctx)
        ctx.check_neuron(self.neuron, self.reshape)
        reasons = self._not_applicable(ctx)
        if self.explicit and reasons:
            method, why = next(iter(reasons.items()))
            fail("methods", f"methods that apply to this model ({why})", method)
        self._active = tuple(m for m in self.methods if m not in reasons)
        if reasons and "skipped" not in self._said:
            self._said.add("skipped")
            grouped: dict[str, list[str]] = {}
            for method, why in reasons.items():
                grouped.setdefault(why, []).append(repr(method))
            rank_zero_info(
                "SaliencyLogger skips its default methods "
                + "; ".join(f"{', '.join(ms)} ({why})" for why, ms in grouped.items())
            )

    def _not_applicable(self, ctx: RunContext) -> dict[str, str]:
        """Each requested method that does not apply to the model, with the reason."""
        reasons = {}
        if any(m in self.methods for m in RELU_RULES):
            if (why := relu_rules_unusable(ctx.view, ctx.pixels[:1])) is not None:
                reasons.update({m: why for m in self.methods if m in RELU_RULES})
        if any(m in self.methods for m in ROLLOUTS) and not supports_rollout(
            ctx.view, ctx.pixels[:1]
        ):
            why = (
                "needs a Vision Transformer whose head reads a class token (torchvision, timm "
                "with global_pool='token', or transformers' ViT, DeiT, DINOv2), whose "
                "attention modules it reads"
            )
            reasons.update({m: why for m in self.methods if m in ROLLOUTS})
        elif any(m in self.methods for m in ROLLOUTS):  # a ViT by its type: tried on an image
            try:
                LF.attention_rollout(ctx.view, ctx.pixels[:1])
            except torch.cuda.OutOfMemoryError:
                raise  # a rank's memory, not the model: the same on no other rank
            except (ValueError, RuntimeError, TypeError, IndexError) as err:
                why = f"it failed on a probe image: {type(err).__name__}: {err}"
                reasons.update({m: why for m in self.methods if m in ROLLOUTS})
        return reasons

    def _map(
        self,
        method: str,
        view: nn.Module,
        x: Tensor,
        target: Tensor,
        generator: torch.Generator,
        rows: int,
    ) -> Tensor:
        """The maps of one method ``(N, 1, H, W)``, at most ``rows`` images (noisy and
        interpolated copies included) per forward and backward pass."""

        def chunked(fn: Any, *tensors: Tensor) -> Tensor:
            return torch.cat(
                [fn(*(t[i : i + rows] for t in tensors)) for i in range(0, x.shape[0], rows)]
            )

        if method == "smoothgrad":
            return LF.smoothgrad(
                view,
                x,
                target,
                samples=self.smoothgrad_samples,
                noise=self.smoothgrad_noise,
                reduce=self.reduce,
                generator=generator,
                chunk_size=rows,
            )
        if method == "integrated_gradients":
            return LF.integrated_gradients(
                view, x, target, steps=self.ig_steps, reduce=self.reduce, chunk_size=rows
            )
        if method == "rollout":
            return chunked(lambda xs: LF.attention_rollout(view, xs), x)
        if method == "grad_rollout":
            return chunked(lambda xs, ts: LF.grad_rollout(view, xs, ts), x, target)
        fn = {
            "vanilla": LF.saliency,
            "guided_backprop": LF.guided_backprop,
            "deconvnet": LF.deconvnet,
        }[method]
        return chunked(lambda xs, ts: fn(view, xs, ts, reduce=self.reduce), x, target)

    def _map_fn(self, method: str) -> Any:
        """``(model, inputs, target) -> maps`` for the randomization score. SmoothGrad's
        noise is drawn afresh from the callback's seed, as for the maps shown, so its
        maps depend on the batch: they are made on the whole probe in one call
        (``whole_probe``), and each image gets the noise its shown map got."""

        def fn(view: nn.Module, x: Tensor, target: Tensor) -> Tensor:
            generator = make_generator(self.seed, x.device)
            return self._map(method, view, x, target, generator, self._max_batch)

        fn.whole_probe = method == "smoothgrad"  # type: ignore[attr-defined]
        return fn

    def run(self, ctx: RunContext) -> None:
        target = ctx.target(self.target)
        caps = ctx.captions(self)
        images = ctx.pixels.float().cpu()
        start = time.perf_counter()
        maps = {
            m: self.finite_maps(ctx, m, self._map_fn(m)(ctx.view, ctx.pixels, target).float().cpu())
            for m in self._active
        }
        maps_seconds = time.perf_counter() - start  # .cpu() waited for the device
        for method, method_maps in maps.items():
            self._log_maps(ctx, self.tag(method), images, method_maps, caps)
        self.score_maps(ctx, maps, {m: self._map_fn(m) for m in maps}, target, maps_seconds)
        first = maps[self._active[0]]  # segmentation and the bias scalar use the first method
        mask = LF.saliency_mask(first, self.mask_quantile)
        rows = [images, render.to_rgb(mask.float())]
        row_labels = [CAPTION_LABEL, f"saliency > q{self.mask_quantile:g}"]
        if ctx.probe.masks is not None:
            rows.append(render.to_rgb(ctx.probe.masks.float().cpu()))
            row_labels.append("object mask")
            inside = LF.saliency_in_mask(first, ctx.probe.masks.cpu())
            looks = first.flatten(1).abs().amax(dim=1) > 0  # an all-zero map looks nowhere
            if bool(looks.any()):
                tag = self.tag("saliency_in_mask", family="bias")
                ctx.log.scalar(tag, inside[looks].mean().item())
            else:
                self.warn_once(
                    "zero_maps_in_mask",
                    f"every {self._active[0]} map is all zero at epoch {ctx.log.epoch} (the "
                    "class score has no gradient at the probe images): saliency_in_mask is "
                    "not written while that lasts",
                )
        ctx.log.image(
            self.tag("segmentation"),
            render.rows_grid(
                rows, captions=caps, row_labels=row_labels, scale=render.display_scale(images)
            ),
        )
        if self.neuron is not None:
            layer, channel = self.neuron
            _, module = resolve_layer(ctx.module, layer)
            neuron_maps = ctx.chunked(
                lambda xs: LF.neuron_gradient(
                    ctx.view, xs, neuron=(module, channel), reduce=self.reduce, reshape=self.reshape
                ),
                ctx.pixels,
            )
            tag = self.tag(f"neuron/{layer}/{channel}")
            neuron_maps = self.finite_maps(
                ctx, f"neuron {layer}/{channel}", neuron_maps.float().cpu()
            )
            self._log_maps(ctx, tag, images, neuron_maps, caps)

    def _log_maps(
        self, ctx: RunContext, tag: str, images: Tensor, maps: Tensor, caps: list[str]
    ) -> None:
        norm = render.normalize_maps(maps)
        rows = [images, render.colorize(norm), render.overlay(images, norm)]
        ctx.log.image(
            tag,
            render.rows_grid(
                rows,
                captions=caps,
                row_labels=[CAPTION_LABEL, "map", "overlay"],
                scale=render.display_scale(images),
            ),
        )
