"""Which class a gradient view explains, and captions for the probe images."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_viz._checks import fail
from lightning_viz.callbacks._base import RunContext
from lightning_viz.functional._grad import resolve_layer

__all__ = ["CAPTION_LABEL", "captions", "check_neuron_at_setup", "check_target_at_setup"]

CAPTION_LABEL = "true / pred"


def check_target_at_setup(owner: Any, ctx: RunContext) -> None:
    """Raises for a class index ``target`` the model does not have."""
    target = owner.target
    if isinstance(target, int) and target >= ctx.num_classes:
        fail(
            "target",
            f"'predicted', 'true' or a class index in [0, {ctx.num_classes}) for this model",
            target,
        )


def check_neuron_at_setup(ctx: RunContext, neuron: tuple[str, int] | None) -> None:
    """Raises for an unknown neuron layer or a channel beyond the layer's channels."""
    if neuron is None:
        return
    layer, channel = neuron
    name, module = resolve_layer(ctx.module, layer)
    shape = ctx.layer_outputs({name: module}).get(name)
    channels = shape[1] if shape is not None and len(shape) >= 2 else 0
    if channel >= channels:
        fail(
            "neuron",
            f"(layer, channel) with a channel in [0, {channels}) for layer {name!r}",
            neuron,
        )


def captions(ctx: RunContext, owner: Any, predicted: Tensor | None = None) -> list[str]:
    """``"X / Y"`` (true / predicted) per probe image, ``"? / Y"`` without labels."""
    predicted = ctx.predicted if predicted is None else predicted
    labels = ctx.probe.labels
    out = []
    for i, p in enumerate(predicted.tolist()):
        true = "?" if labels is None else owner.label_name(labels[i])
        out.append(f"{true} / {owner.class_name(p)}")
    return out
