"""FilterLogger: the learned weights themselves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_viz import render
from lightning_viz._checks import check_int, check_layer_names
from lightning_viz._hooks import record_io
from lightning_viz.callbacks._base import NotApplicableError, RunContext, VizCallback
from lightning_viz.callbacks._layer_picks import main_path_convs
from lightning_viz.functional._grad import (
    adapted_layer,
    adapter_base,
    feature_conv_layers,
    named_layers,
    resolve_layer,
)

__all__ = ["FilterLogger"]


def _group_captions(layer: nn.Module, shown: int, image_channels: int) -> list[str] | None:
    """For a grouped conv with one input channel a group (``groups`` > 1): the input
    channel each of the first ``shown`` filters reads (``R``/``G``/``B`` of an RGB
    image); ``None`` for other layers."""
    groups = int(getattr(layer, "groups", 1))
    out_channels = int(getattr(layer, "out_channels", 0))
    if groups <= 1 or int(getattr(layer, "in_channels", 0)) != groups:
        return None
    names = list("RGB") if image_channels == 3 == groups else [f"in {g}" for g in range(groups)]
    per_group = out_channels // groups
    return [names[o // per_group] for o in range(shown)]


class FilterLogger(VizCallback):
    """Logs conv filters (and pixel-level ``Linear`` class templates) as images.

    The first conv layer's filters are shown as RGB (or gray) tiles, 8 a row; a
    deeper conv as gray tiles, one row per output filter (``filter <o>``) and one
    column per input channel (``in <i>``), as many whole filters as fit in
    ``max_filters`` tiles (wrapped into blocks when wider than 1000 px); a
    ``Linear`` whose ``in_features`` equals ``C*H*W`` of the input is reshaped to
    one image template per class. Each tile is normalized symmetrically, so a zero
    weight is mid-gray.

    Writes image ``filters/<layer>``, scalars ``filters/<layer>/norm`` (Frobenius
    norm of the weight) and ``filters/<layer>/change``
    (``||W - W_prev|| / ||W_prev||`` since the previous run; at the first run, since the
    start of the fit). A PEFT adapter layer (LoRA
    on a conv) is shown with the weight it computes with: the frozen base plus each
    active adapter's delta; a conv standardizing its weight in ``forward`` (timm's
    ``StdConv2d``) with the standardized weight.

    Args:
        layers: Dotted names of ``Conv2d``/``Linear`` layers. Default: the first
            conv layer to run on a probe image (not the first defined: a lateral
            conv or a GAN's generator may be defined before the stem) and any
            pixel-level ``Linear``.
        max_filters: Most tiles per layer. Default: 64.
        num_samples: Probe images (only their shape is used). Default: 1.
        **kwargs: The options every callback shares (see ``VizCallback``).
    """

    family = "filters"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        max_filters: int = 64,
        num_samples: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples=num_samples, **kwargs)
        self.layers = check_layer_names(layers, "layers")
        self.max_filters = check_int(max_filters, "max_filters", minimum=1)
        self._previous: dict[str, Tensor] = {}
        self._chosen: list[str] = []

    def key_args(self) -> dict[str, Any]:
        return {"layers": self.layers}

    def layout(self) -> dict[str, dict[str, list[str]]]:
        charts: dict[str, list[str]] = {}
        for name in self._chosen:  # two charts: a norm of 2.3 flattened a change of 0.05
            charts[f"{name}: weight norm"] = [self.tag(f"{name}/norm")]
            charts[f"{name}: relative change"] = [self.tag(f"{name}/change")]
        return {"filters": charts}

    @staticmethod
    def _pixel_linears(
        module: nn.Module, pixels: int, view: nn.Module, images: Tensor
    ) -> list[str]:
        """The ``Linear`` layers whose input is the flattened image (checked on one
        probe image): not a deeper ``Linear`` that only happens to have ``C*H*W``
        inputs (a transformer's MLP projection, a head over conv features)."""
        sized = {
            n: m
            for n, m in named_layers(module)
            if isinstance(m, nn.Linear) and m.in_features == pixels
        }
        if not sized:
            return []
        image = images[:1].float()
        with torch.no_grad(), record_io(sized, lambda: True, tuple(sized)) as calls:
            view(view.to_pixels(image))
            inputs = {n: c[0][0] for n, c in calls.items() if c}
        return [
            n
            for n in sized
            if isinstance(inputs.get(n), Tensor)
            and inputs[n].numel() == image.numel()
            and torch.allclose(inputs[n].reshape(-1).float(), image.reshape(-1), atol=1e-5)
        ]

    def _choose(
        self, module: nn.Module, image_shape: tuple[int, ...], view: nn.Module, images: Tensor
    ) -> list[str]:
        pixels = math.prod(image_shape)
        if self.layers is not None:
            chosen = []
            for name in self.layers:
                name, layer = resolve_layer(module, name)
                layer = adapter_base(layer) or layer  # a PEFT adapter: its base's kind
                if not isinstance(layer, nn.Conv2d | nn.Linear):
                    raise ValueError(
                        f"FilterLogger shows Conv2d or Linear weights; layer {name!r} is a "
                        f"{type(layer).__name__}"
                    )
                if isinstance(layer, nn.Linear) and layer.in_features != pixels:
                    raise ValueError(
                        f"Linear layer {name!r} has in_features={layer.in_features}, not the "
                        f"C*H*W={pixels} of the input images {image_shape}: "
                        "it has no image template"
                    )
                chosen.append(name)
            return chosen
        convs = dict(feature_conv_layers(module))  # a PEFT adapter counts as its conv
        ran = main_path_convs(view, view.to_pixels(images[:1].float()), convs) if convs else []
        chosen = ran[:1] or list(convs)[:1]  # the first to run (else: the first defined)
        chosen += self._pixel_linears(module, pixels, view, images)
        if not chosen:
            raise NotApplicableError(
                "FilterLogger found no Conv2d layer and no Linear layer over the input pixels "
                f"(C*H*W={pixels}); pass `layers=` with the names of the layers to show"
            )
        return chosen

    def check(self, ctx: RunContext) -> None:
        images = ctx.probe.images
        self._chosen = self._choose(ctx.module, tuple(images.shape[1:]), ctx.view, images)
        for name in self._chosen:  # the first run's change is since the start of the fit
            if name not in self._previous:  # (a resumed fit has the last run's weights)
                self._previous[name] = self._weight(ctx.module, name)[1]

    @staticmethod
    def _weight(module: nn.Module, name: str) -> tuple[nn.Module, Tensor]:
        """The layer ``name`` and a copy of the weight it computes with, float on the CPU."""
        layer, weight = adapted_layer(resolve_layer(module, name)[1])
        return layer, weight.detach().to("cpu", torch.float32, copy=True)

    def _image(self, layer: nn.Module, weight: Tensor, image_shape: tuple[int, ...]) -> Tensor:
        weight = weight.detach().float().cpu()
        if isinstance(layer, nn.Linear):
            tiles = render.linear_templates(weight, image_shape)[: self.max_filters]
            # a unit is a class only in a layer of one unit per class (not a hidden layer)
            named = len(self._names_in_use() or ())
            per_class = named == weight.shape[0]
            captions = [self.class_name(i) if per_class else str(i) for i in range(len(tiles))]
            if named == 2 and weight.shape[0] == 1:  # one logit: class 1 above 0, not "0"
                captions = [f"{self.class_name(1)} vs {self.class_name(0)}"]
            scale = render.display_scale(tiles, target=48)
            return render.image_grid(tiles, nrow=8, captions=captions, scale=scale)
        out_channels, in_channels, kh, kw = weight.shape
        scale = render.display_scale(kw, target=48)
        if in_channels in (1, 3):  # a first layer: one RGB (or gray) tile per filter
            tiles = render.filter_tiles(weight, max_filters=self.max_filters)
            captions = _group_captions(layer, tiles.shape[0], image_shape[0])
            return render.image_grid(tiles, nrow=8, captions=captions, scale=scale)
        # a deeper conv: one row per output filter, one gray tile per input channel; with
        # more inputs than half the budget, 8 filters and the first inputs of each
        n_rows = min(out_channels, max(1, self.max_filters // in_channels))
        if n_rows == 1 and out_channels > 1:
            n_rows = min(out_channels, 8)
        per_row = min(in_channels, max(1, self.max_filters // n_rows))
        shown = "" if per_row == in_channels else f" (in 0-{per_row - 1} of {in_channels})"
        of = "" if n_rows == out_channels else f" of {out_channels}"  # the rest left out
        tiles = render.filter_tiles(
            weight[:, :per_row], max_filters=n_rows * per_row, per_input_channel=True
        )
        return render.rows_grid(
            list(tiles.view(n_rows, per_row, 1, kh, kw)),
            captions=[f"in {i}" for i in range(per_row)],
            row_labels=[f"filter {o}{of}{shown}" for o in range(n_rows)],
            scale=scale,
        )

    def run(self, ctx: RunContext) -> None:
        image_shape = tuple(ctx.probe.images.shape[1:])
        for name in self._chosen:
            layer, weight = self._weight(ctx.module, name)
            ctx.log.image(self.tag(name), self._image(layer, weight, image_shape))
            norm = torch.linalg.vector_norm(weight)
            ctx.log.scalar(self.tag(f"{name}/norm"), norm.item())
            previous = self._previous.get(name)
            if previous is not None and previous.shape == weight.shape:
                change = torch.linalg.vector_norm(weight - previous) / torch.linalg.vector_norm(
                    previous
                ).clamp_min(1e-12)
                ctx.log.scalar(self.tag(f"{name}/change"), change.item())
            self._previous[name] = weight

    def extra_state(self) -> dict[str, Any]:
        return {"previous": {k: v.clone() for k, v in self._previous.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._previous = {k: v.clone() for k, v in (state.get("previous") or {}).items()}
