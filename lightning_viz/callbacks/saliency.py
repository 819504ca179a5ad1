"""SaliencyLogger: which pixels the class score (or one neuron) is sensitive to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._checks import (
    check_choice,
    check_choices,
    check_float,
    check_int,
    check_neuron,
    check_target,
    fail,
)
from lightning_viz.callbacks._base import (
    CAPTION_LABEL,
    RunContext,
    VizCallback,
)
from lightning_viz.functional._grad import resolve_layer

__all__ = ["SaliencyLogger"]

METHODS = ("vanilla", "smoothgrad", "integrated_gradients", "guided_backprop", "deconvnet")


class SaliencyLogger(VizCallback):
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

    Args:
        methods: Any of ``"vanilla"``, ``"smoothgrad"``, ``"integrated_gradients"``,
            ``"guided_backprop"``, ``"deconvnet"``. Default: vanilla, smoothgrad,
            guided backprop, deconvnet.
        target: ``"predicted"`` (the predicted class), ``"true"`` (the label) or a
            class index. Default: ``"predicted"``.
        neuron: ``(layer_name, channel)`` to explain one channel too. Default: ``None``.
        num_samples: Probe images. Default: 8.
        reduce: Channel reduction of the abs gradient, ``"max"`` or ``"sum"``.
        smoothgrad_samples: Noisy copies per image for SmoothGrad. Default: 25.
        smoothgrad_noise: Noise std as a fraction of each image's range. Default: 0.15.
        ig_steps: Integration steps of Integrated Gradients. Default: 32.
        mask_quantile: Pixels above this quantile of a map form its segmentation.
        **kwargs: The options every callback shares (see ``VizCallback``).
    """

    family = "saliency"
    needs_gradient = True

    def __init__(
        self,
        methods: Sequence[str] = ("vanilla", "smoothgrad", "guided_backprop", "deconvnet"),
        target: str | int = "predicted",
        neuron: tuple[str, int] | None = None,
        num_samples: int = 8,
        reduce: str = "max",
        smoothgrad_samples: int = 25,
        smoothgrad_noise: float = 0.15,
        ig_steps: int = 32,
        mask_quantile: float = 0.8,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples=num_samples, **kwargs)
        self.methods = check_choices(methods, "methods", METHODS)
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

    def check(self, ctx: RunContext) -> None:
        ctx.check_target("SaliencyLogger", self.target)
        ctx.check_neuron(self.neuron)

    def _map(self, method: str, ctx: RunContext, target: Tensor) -> Tensor:
        x = ctx.pixels
        if method == "vanilla":
            return LF.saliency(ctx.view, x, target, reduce=self.reduce)
        if method == "smoothgrad":
            return LF.smoothgrad(
                ctx.view,
                x,
                target,
                samples=self.smoothgrad_samples,
                noise=self.smoothgrad_noise,
                reduce=self.reduce,
                generator=ctx.generator,
            )
        if method == "integrated_gradients":
            return LF.integrated_gradients(
                ctx.view, x, target, steps=self.ig_steps, reduce=self.reduce
            )
        if method == "guided_backprop":
            return LF.guided_backprop(ctx.view, x, target, reduce=self.reduce)
        return LF.deconvnet(ctx.view, x, target, reduce=self.reduce)

    def run(self, ctx: RunContext) -> None:
        target = ctx.target(self.target)
        caps = ctx.captions(self)
        images = ctx.pixels.float().cpu()
        maps = {m: self._map(m, ctx, target).float().cpu() for m in self.methods}
        for method, method_maps in maps.items():
            self._log_maps(ctx, self.tag(method), images, method_maps, caps)
        first = maps[self.methods[0]]  # segmentation and the bias scalar use the first method
        mask = LF.saliency_mask(first, self.mask_quantile)
        rows = [images, render.to_rgb(mask.float())]
        row_labels = [CAPTION_LABEL, f"saliency > q{self.mask_quantile:g}"]
        if ctx.probe.masks is not None:
            rows.append(render.to_rgb(ctx.probe.masks.float().cpu()))
            row_labels.append("object mask")
            inside = LF.saliency_in_mask(first, ctx.probe.masks.cpu())
            ctx.log.scalar(self.tag("saliency_in_mask", family="bias"), inside.mean().item())
        ctx.log.image(
            self.tag("segmentation"),
            render.rows_grid(
                rows, captions=caps, row_labels=row_labels, scale=render.display_scale(images)
            ),
        )
        if self.neuron is not None:
            layer, channel = self.neuron
            _, module = resolve_layer(ctx.module, layer)
            neuron_maps = LF.neuron_gradient(
                ctx.view, ctx.pixels, neuron=(module, channel), reduce=self.reduce
            )
            tag = self.tag(f"neuron/{layer}/{channel}")
            self._log_maps(ctx, tag, images, neuron_maps.float().cpu(), caps)

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
