"""Which class a gradient view explains, and captions for the probe images."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_viz.callbacks._probe import Probe

__all__ = [
    "CAPTION_LABEL",
    "captions",
    "check_methods",
    "check_neuron",
    "check_target",
    "require_labels",
    "resolve_target",
]

_TARGETS = ("predicted", "true")


def check_methods(methods: Any, valid: Any, what: str) -> list[str]:
    """A non-empty list of known method names (a single name is accepted)."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in valid]
    if bad or not methods:
        raise ValueError(f"unknown {what} methods {bad or methods!r}; valid: {list(valid)}")
    return methods


def check_neuron(neuron: Any) -> tuple[str, int] | None:
    """``None`` or a ``(layer_name, channel >= 0)`` pair (a 2-list from YAML too)."""
    if neuron is None:
        return None
    if (
        not isinstance(neuron, tuple | list)
        or len(neuron) != 2
        or not isinstance(neuron[0], str)
        or isinstance(neuron[1], bool)
        or not isinstance(neuron[1], int)
        or neuron[1] < 0
    ):
        raise ValueError(f"`neuron` must be (layer_name, channel >= 0), got {neuron!r}")
    return (neuron[0], int(neuron[1]))


def check_target(target: Any) -> str | int:
    """Validates ``target``: ``"predicted"``, ``"true"`` or a class index >= 0."""
    if isinstance(target, bool) or not isinstance(target, str | int):
        raise TypeError(f"`target` must be 'predicted', 'true' or a class index, got {target!r}")
    if isinstance(target, str) and target not in _TARGETS:
        raise ValueError(f"`target` must be 'predicted', 'true' or a class index, got {target!r}")
    if isinstance(target, int) and target < 0:
        raise ValueError(f"`target` class index must be >= 0, got {target!r}")
    return target


def require_labels(target: str | int, probe: Probe, owner: str) -> None:
    """Raises when ``target="true"`` but the probe has no labels."""
    if target == "true" and probe.labels is None:
        raise ValueError(
            f"{owner}(target='true') needs labels, but the probe has none; use "
            "target='predicted' or give labels with `probe=(images, labels)`"
        )


def resolve_target(target: str | int, probe: Probe, predicted: Tensor) -> Tensor:
    """Class indices ``(N,)`` to explain."""
    if target == "predicted":
        return predicted
    if target == "true":
        return probe.labels.to(predicted.device)  # type: ignore[union-attr]
    return torch.full_like(predicted, int(target))


CAPTION_LABEL = "true / pred"


def captions(probe: Probe, predicted: Tensor, name: Any) -> list[str]:
    """``"X / Y"`` (true / predicted class) per probe image, ``"? / Y"`` without labels.

    ``name`` maps a class index to its caption. The image row is labelled
    :data:`CAPTION_LABEL`, so the captions stay short enough for small tiles.
    """
    out = []
    for i, p in enumerate(predicted.tolist()):
        true = "?" if probe.labels is None else name(int(probe.labels[i]))
        out.append(f"{true} / {name(p)}")
    return out
