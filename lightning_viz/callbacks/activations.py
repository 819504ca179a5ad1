"""ActivationLogger: what the feature maps of a few conv layers look like."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lightning_viz import render
from lightning_viz._checks import check_int, check_layer_names, check_reshape
from lightning_viz._runtime.rows import blank_nonfinite
from lightning_viz.callbacks._base import NotApplicableError, RunContext, VizCallback
from lightning_viz.callbacks._layer_picks import main_path_convs, warn_if_early
from lightning_viz.functional._grad import feature_conv_layers, resolve_layer
from lightning_viz.functional.cam import default_cam_layer
from lightning_viz.functional.saliency import activation_maps
from lightning_viz.functional.tokens import (
    default_transformer_activation_layers,
    is_transformer,
)

__all__ = ["ActivationLogger"]

COLUMNS = 8  # channels per row of a probe image's block
TILE = 48  # px: maps narrower than this are upscaled (nearest) to at least this width


def default_layers(
    module: nn.Module,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    order: Sequence[str] | None = None,
) -> list[str]:
    """An early, a middle and a late conv layer (fewer when the model has fewer).

    Args:
        module: The model.
        shapes: Output shape of the conv layers for one image (``RunContext.layer_outputs``).
            When given, only convs with feature maps larger than ``1x1`` are picked
            (not a squeeze-and-excitation conv, nor the last stage of a deep network
            on 32 px images), unless no conv has one.
        order: The convs to pick from in execution order (:func:`main_path_convs`);
            default: every conv, in definition order.
    """
    names = [n for n, _ in feature_conv_layers(module)]
    if order is not None:
        known = set(names)
        names = [n for n in order if n in known] or names
    if shapes is not None:
        spatial = [n for n in names if len(shapes.get(n, ())) == 4 and _area(shapes[n]) > 1]
        names = spatial or names
    if not names:
        return []
    picks = [names[0], names[len(names) // 2], names[-1]]
    return list(dict.fromkeys(picks))


def _whole_block(ctx: RunContext, late: str, order: Sequence[str]) -> str:
    """The late pick, or the block around it when the pick is one branch of a
    concatenation (Inception, DenseNet): the block Grad-CAM explains by default holds
    the pick, with as large a map but more channels. A residual block's last conv has
    all of its block's channels and is kept. A pick that runs after that block (a conv
    inside a last stage whose output collapsed to ``1x1``: the expansion conv of its
    first block, one branch of a later Inception module) gives way to the block."""
    try:
        block = default_cam_layer(ctx.view, ctx.pixels[:1])
    except ValueError:  # no conv map Grad-CAM would explain by default: the pick stands
        return late
    inside = [n for n in order if n == block or n.startswith(f"{block}.")]
    if late in order and inside and order.index(late) > order.index(inside[-1]):
        return block
    if not late.startswith(f"{block}."):
        return late
    layers = {n: resolve_layer(ctx.module, n)[1] for n in (late, block)}
    shapes = ctx.layer_outputs(layers)
    a, b = shapes.get(late, ()), shapes.get(block, ())
    if len(a) == 4 and len(b) == 4 and a[-2:] == b[-2:] and a[1] < b[1]:
        return block
    return late


def _area(shape: tuple[int, ...]) -> int:
    return shape[-2] * shape[-1]


class ActivationLogger(VizCallback):
    """Logs the output (feature) maps of conv layers for each probe image.

    Writes image ``activations/<layer>``: per probe image one block, the input
    image first (captioned with its label) and up to ``max_channels`` channels in
    rows of 8 beside it (``ch<j>`` under channel ``j``), each min-max normalized
    on its own and upscaled (nearest) to tiles at least 48 px wide (see
    :func:`lightning_viz.render.feature_map_grid`). A transformer's token layer
    ``(N, T, D)`` is shown as its grid of patches, one tile per feature ``d``.

    Args:
        layers: Dotted layer names. Default: an early, a middle and a late conv, or
            on a transformer an early, a middle and a late encoder block
            (:func:`~lightning_viz.functional.default_transformer_activation_layers`).
        num_samples: Probe images. Default: 2.
        max_channels: Most channels shown per layer. Default: 32.
        reshape: Maps every listed layer's output to ``(N, D, h, w)`` for a model
            whose token layout is not detected. Default: ``None``.
        **kwargs: The options every callback shares (see ``VizCallback``).
    """

    family = "activations"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        num_samples: int = 2,
        max_channels: int = 32,
        reshape: Callable[..., Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples=num_samples, **kwargs)
        self.layers = check_layer_names(layers, "layers")
        self.max_channels = check_int(max_channels, "max_channels", minimum=1)
        self.reshape = check_reshape(reshape, paths=True)
        self._chosen: list[str] = []

    def key_args(self) -> dict[str, Any]:
        return {"layers": self.layers}

    def check(self, ctx: RunContext) -> None:
        if self.layers is None and is_transformer(ctx.module):
            self._chosen = default_transformer_activation_layers(ctx.view, ctx.pixels[:1])
        elif self.layers is None:
            convs = dict(feature_conv_layers(ctx.module))
            order = main_path_convs(ctx.view, ctx.pixels[:1], convs)
            self._chosen = default_layers(ctx.module, ctx.layer_outputs(convs), order)
            if not self._chosen:
                raise NotApplicableError(
                    "ActivationLogger found no Conv2d layer in the model; pass `layers=` "
                    "with the names of the layers whose outputs to show"
                )
            self._chosen[-1] = _whole_block(ctx, self._chosen[-1], order)
            self._chosen = list(dict.fromkeys(self._chosen))  # the block may be the middle
            warn_if_early(self, ctx, self._chosen[-1], "its late layer")
        else:
            self._chosen = [resolve_layer(ctx.module, n)[0] for n in self.layers]
        ctx.check_layer_maps(
            "ActivationLogger",
            self._chosen,
            "a feature-map view",
            self.reshape,
            self.layers is None,
        )

    def run(self, ctx: RunContext) -> None:
        layers = {n: resolve_layer(ctx.module, n)[1] for n in self._chosen}
        maps = ctx.chunked(  # at most ctx.max_batch images per forward
            lambda xs: activation_maps(ctx.view, xs, list(layers.values()), reshape=self.reshape),
            ctx.pixels,
        )
        # keys are names inside the view; the order is that of `layers`
        for name, act in zip(layers, maps.values(), strict=True):
            if act.dim() != 4:
                raise ValueError(
                    f"layer {name!r} outputs shape {tuple(act.shape)}, "
                    "not (N, C, H, W) feature maps"
                )
            act, _ = blank_nonfinite(  # NaN outputs on some images
                self,
                f"nonfinite_{name}",
                act,
                0.0,
                f"probe images give NaN or inf in {name!r} at epoch {ctx.log.epoch}: their "
                "feature maps are drawn blank",
            )
            channels = torch.stack(
                [
                    render.feature_maps(act[i].float().cpu(), max_channels=self.max_channels)[:, 0]
                    for i in range(act.shape[0])
                ]
            )  # (N, M, H, W)
            labels = ctx.probe.labels
            shown = channels.shape[1]  # the first max_channels: say so when there are more
            more = f"\nch 0-{shown - 1} of {act.shape[1]}" if shown < act.shape[1] else ""
            captions = [
                ("input" if labels is None else self.label_name(labels[i])) + more
                for i in range(act.shape[0])
            ]
            ctx.log.image(
                self.tag(name),
                render.feature_map_grid(
                    ctx.pixels.float().cpu(),
                    channels,
                    ncol=COLUMNS,
                    captions=captions,
                    scale=math.ceil(TILE / channels.shape[-1]),
                ),
            )
