"""GradCAMLogger: where in the image the evidence for a class sits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import lightning_viz.functional as LF
from lightning_viz import render
from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.callbacks._probe import Probe
from lightning_viz.callbacks._targets import (
    CAPTION_LABEL,
    captions,
    check_methods,
    check_target,
    require_labels,
    resolve_target,
)
from lightning_viz.functional._utils import conv_layers, resolve_layer

__all__ = ["GradCAMLogger"]

METHODS = {
    "gradcam": LF.grad_cam,
    "gradcam++": LF.grad_cam_pp,
    "guided_gradcam": LF.guided_grad_cam,
}


class GradCAMLogger(VizCallback):
    """Logs Grad-CAM overlays of the probe images.

    Image ``gradcam/<method>`` has two rows, the image and the CAM overlaid on it,
    captioned with the true and predicted class. The backward pass runs only from
    the class score down to ``layer``.

    Args:
        layer: Dotted name of the layer to explain. Default: the last conv layer
            whose output still has spatial extent (found at ``setup``).
        methods: Any of ``"gradcam"``, ``"gradcam++"``, ``"guided_gradcam"``.
            Default: ``("gradcam",)``.
        target: ``"predicted"``, ``"true"`` or a class index. Default: ``"predicted"``.
        num_samples: Probe images. Default: 8.
        **kwargs: The options every callback shares (see ``VizCallback``).
    """

    family = "gradcam"
    default_num_samples = 8

    def __init__(
        self,
        layer: str | None = None,
        methods: Sequence[str] = ("gradcam",),
        target: str | int = "predicted",
        num_samples: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples=num_samples, **kwargs)
        if layer is not None and not isinstance(layer, str):
            raise TypeError(f"`layer` must be a layer name (str) or None, got {layer!r}")
        methods = check_methods(methods, METHODS, "Grad-CAM")
        self.layer = layer
        self.methods = methods
        self.target = check_target(target)
        self._layer_name: str | None = None

    def key_args(self) -> dict[str, Any]:
        return {"layer": self.layer, "methods": self.methods, "target": self.target}

    def check(self, module: nn.Module, probe: Probe) -> None:
        require_labels(self.target, probe, type(self).__name__)
        if not conv_layers(module):
            names = [n for n, _ in module.named_modules() if n]
            raise ValueError(
                "GradCAMLogger needs a convolutional layer (nn.Conv2d) and the model has none; "
                f"its layers are: {', '.join(names[:30])}"
            )
        if self.layer is not None:
            self._layer_name = resolve_layer(module, self.layer)[0]
        else:
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
            self._layer_name = LF.default_cam_layer(module, probe.images[:1].to(device))

    def run(self, ctx: RunContext) -> None:
        if self._layer_name is None:
            self.check(ctx.module, ctx.probe)
        _, layer = resolve_layer(ctx.module, self._layer_name)
        with torch.no_grad():
            predicted = ctx.view(ctx.pixels).argmax(dim=1)
        target = resolve_target(self.target, ctx.probe, predicted)
        caps = captions(ctx.probe, predicted, self.class_name)
        images = ctx.pixels.float().cpu()
        scale = max(1, 96 // max(images.shape[-1], 1))
        for method in self.methods:
            maps = METHODS[method](ctx.view, ctx.pixels, target, layer=layer).float().cpu()
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
