"""GradCAMLogger: where in the image the evidence for a class sits."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import Tensor, nn

import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz._checks import check_choices, check_reshape, check_target, fail
from lightning_viz.callbacks._base import (
    CAPTION_LABEL,
    NotApplicableError,
    RunContext,
    VizCallback,
)
from lightning_viz.callbacks._layer_picks import warn_if_early
from lightning_viz.callbacks._quality import QUALITY, ScoresMaps
from lightning_viz.functional._grad import (
    NoGradientError,
    conv_layers,
    named_layers,
    resolve_layer,
)
from lightning_viz.functional.relu_rules import relu_rules_unusable

__all__ = ["GradCAMLogger"]

METHODS = {
    "gradcam": LF.grad_cam,
    "gradcam++": LF.grad_cam_pp,
    "guided_gradcam": LF.guided_grad_cam,
}


class GradCAMLogger(ScoresMaps, VizCallback):
    """Logs Grad-CAM overlays of the probe images.

    Image ``gradcam/<method>`` has two rows, the image and the CAM overlaid on it,
    captioned with the true and predicted class. The backward pass runs only from
    the class score down to ``layer``. Each map is scored (see ``quality``).

    On a Vision Transformer (torchvision ViT/Swin/MaxViT, timm ViT/DeiT) the
    layer's token output ``(N, T, D)`` is read as a grid of patches (class and
    register tokens dropped) and the default layer is the first norm of the last
    encoder block, never the patch embedding (``conv_proj``).

    Args:
        layer: Dotted name of the layer to explain. Default: the last conv layer
            whose output still has spatial extent, or on a transformer
            :func:`~lightning_viz.functional.default_transformer_cam_layer` (found at
            ``setup``).
        methods: Any of ``"gradcam"``, ``"gradcam++"``, ``"guided_gradcam"``.
            Default: ``("gradcam",)``.
        target: ``"predicted"``, ``"true"`` or a class index. Default: ``"predicted"``.
        num_samples: Probe images. Default: 8.
        reshape: Maps ``layer``'s output to ``(N, D, h, w)`` for a model whose token
            layout is not detected (as pytorch-grad-cam's ``reshape_transform``).
            Default: ``None``.
        quality: Faithfulness scores of the maps, as for
            :class:`~lightning_viz.SaliencyLogger` (tags ``explain/<method>/...``, figure
            ``explain/gradcam/curves``). Default: all three.
        quality_steps: Steps of the deletion and insertion curves. Default: 8.
        quality_baseline: What deleted pixels become. Default: ``"blur"``.
        tolerance: Rise of the deletion margin that alerts, as for ``SaliencyLogger``.
            Default: 0.05.
        alpha: Significance level of the alert rule. Default: 0.01.
        warmup: Epochs at the start of fit that are never a reference. Default: 1.
        patience: Consecutive significant runs before an alert. Default: 2.
        baseline: A run whose scores are the reference. Default: ``None``.
        randomization_threshold: A mean randomization correlation above it alerts,
            once until it falls ``tolerance`` below it. Default: 0.5.
        quality_cost: Scoring costs at most this fraction of computing the maps, as
            for ``SaliencyLogger``. Default: 0.5.
        **kwargs: The options every callback shares (see ``VizCallback``).
    """

    family = "gradcam"

    @property
    def needs_gradient(self) -> bool:  # type: ignore[override]
        """Only guided Grad-CAM needs the input gradient (guided backprop's); Grad-CAM and
        Grad-CAM++ need a gradient path to their layer (checked at ``setup``)."""
        return "guided_gradcam" in self.methods

    def __init__(
        self,
        layer: str | None = None,
        methods: str | Sequence[str] = ("gradcam",),
        target: int | Literal["predicted", "true"] = "predicted",
        num_samples: int = 8,
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
        if layer is not None and not isinstance(layer, str):
            fail("layer", "a layer name (str) or None", layer, TypeError)
        self.layer = layer
        self.methods = check_choices(methods, "methods", METHODS)
        self.target = check_target(target)
        self.reshape = check_reshape(reshape, paths=True)
        self._layer_name: str | None = None

    def key_args(self) -> dict[str, Any]:
        return {"layer": self.layer, "methods": self.methods, "target": self.target}

    def layout(self) -> dict[str, dict[str, list[str]]]:
        return self.quality_layout(self.methods)

    def _map_fn(self, method: str) -> Any:
        """``(model, inputs, target) -> maps`` at the layer of that name in ``model``."""

        def fn(view: nn.Module, x: Tensor, target: Tensor) -> Tensor:
            _, layer = resolve_layer(view, self._layer_name)
            return METHODS[method](view, x, target, layer=layer, reshape=self.reshape)

        return fn

    def check(self, ctx: RunContext) -> None:
        ctx.check_target("GradCAMLogger", self.target)
        self.check_quality(ctx)
        if "guided_gradcam" in self.methods:  # never a default: asked for
            if (why := relu_rules_unusable(ctx.view, ctx.pixels[:1])) is not None:
                fail("methods", f"methods that apply to this model ({why})", "guided_gradcam")
        if self.layer is not None:
            self._layer_name = resolve_layer(ctx.module, self.layer)[0]
        elif not conv_layers(ctx.module) and not LF.is_transformer(ctx.module):
            names = [n for n, _ in named_layers(ctx.module) if n]
            raise NotApplicableError(
                "GradCAMLogger needs a convolutional layer (nn.Conv2d) and the model has none; "
                f"pass `layer=` with a layer whose output is (N, C, h, w); layers: "
                f"{', '.join(names[:30])}"
            )
        else:
            try:  # the model has no layer the default picks (a transformer read wrongly)
                self._layer_name = LF.default_cam_layer(ctx.view, ctx.pixels[:1])
            except ValueError as err:
                raise NotApplicableError(f"it has no default layer on this model: {err}") from err
            if not LF.is_transformer(ctx.module):
                warn_if_early(self, ctx, self._layer_name, "Grad-CAM")
        ctx.check_layer_maps(
            "GradCAMLogger", [self._layer_name], "Grad-CAM", self.reshape, self.layer is None
        )
        _, layer = resolve_layer(ctx.module, self._layer_name)
        try:  # a frozen backbone run under no_grad: its layers get no gradient
            LF.grad_cam(ctx.view, ctx.pixels[:1], 0, layer=layer, reshape=self.reshape)
        except NoGradientError as err:
            raise NotApplicableError(
                f"{err}; pass `layer=` with a layer computed with autograd "
                "(after the part of the model run under torch.no_grad)"
            ) from err

    def run(self, ctx: RunContext) -> None:
        _, layer = resolve_layer(ctx.module, self._layer_name)
        target = ctx.target(self.target)
        caps = ctx.captions(self)
        images = ctx.pixels.float().cpu()
        scale = render.display_scale(images)
        scored, maps_seconds = {}, 0.0
        for method in self.methods:
            start = time.perf_counter()
            fn = METHODS[method]
            maps = ctx.chunked(  # at most ctx.max_batch images per forward and backward
                lambda xs, ts, fn=fn: fn(ctx.view, xs, ts, layer=layer, reshape=self.reshape),
                ctx.pixels,
                target,
            )
            maps = scored[method] = self.finite_maps(ctx, method, maps.float().cpu())  # waits
            maps_seconds += time.perf_counter() - start
            norm = render.normalize_maps(maps)
            second = (
                render.overlay(images, norm)
                if method != "guided_gradcam"
                else render.colorize(norm)
            )
            ctx.log.image(
                self.tag(method),
                render.rows_grid(
                    [images, second],
                    captions=caps,
                    row_labels=[CAPTION_LABEL, f"{method} @ {self._layer_name}"],
                    scale=scale,
                ),
            )
        self.score_maps(ctx, scored, {m: self._map_fn(m) for m in scored}, target, maps_seconds)
