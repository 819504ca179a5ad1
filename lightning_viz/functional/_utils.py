"""Shared checks and small helpers for the functional methods."""

from __future__ import annotations

import difflib

import torch
from torch import Tensor, nn

__all__ = [
    "check_images",
    "conv_layers",
    "reduce_channels",
    "resolve_layer",
    "target_indices",
]


def check_images(inputs: object, name: str = "inputs") -> Tensor:
    """Validates a batch of images ``(N, C, H, W)``.

    Raises:
        TypeError: ``inputs`` is not a floating-point tensor.
        ValueError: ``inputs`` is not 4-D or is empty.
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"`{name}` must be a torch.Tensor (N, C, H, W), got {type(inputs).__name__}"
        )
    if inputs.dim() != 4:
        raise ValueError(
            f"`{name}` must be images of shape (N, C, H, W), got shape {tuple(inputs.shape)}"
        )
    if inputs.shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch, shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {inputs.dtype}")
    return inputs


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Finds a submodule by dotted name or identity.

    Args:
        model: The model to search.
        layer: A dotted module name (``"layer4.1.conv2"``) or the module itself.

    Returns:
        ``(name, module)``.

    Raises:
        ValueError: No such module; the message lists the available names and the
            closest match.
        TypeError: ``layer`` is neither a string nor a module.
    """
    named = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, m in named.items():
            if m is layer:
                return name, m
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or an nn.Module, got {layer!r}")
    if layer in named and layer != "":
        return layer, named[layer]
    names = [n for n in named if n]
    close = difflib.get_close_matches(layer, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
    raise ValueError(f"unknown layer {layer!r}.{hint} Available layers: {shown}")


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """All ``nn.Conv2d`` submodules with their dotted names, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def target_indices(target: int | Tensor | None, logits: Tensor) -> Tensor:
    """Class indices ``(N,)`` from an int, a tensor, or ``None`` (the prediction).

    Raises:
        ValueError: Wrong length or a class index outside ``[0, K)``.
    """
    n, k = logits.shape[0], logits.shape[-1]
    if target is None:
        return logits.argmax(dim=-1)
    if isinstance(target, int):
        idx = torch.full((n,), target, dtype=torch.long, device=logits.device)
    elif isinstance(target, Tensor):
        idx = target.to(device=logits.device, dtype=torch.long).flatten()
        if idx.numel() == 1 and n > 1:
            idx = idx.expand(n)
        if idx.numel() != n:
            raise ValueError(f"target has {idx.numel()} entries for a batch of {n} inputs")
    else:
        raise TypeError(f"target must be an int, a tensor of class indices or None, got {target!r}")
    if bool(((idx < 0) | (idx >= k)).any()):
        raise ValueError(f"target class indices must lie in [0, {k}), got {idx.tolist()}")
    return idx


def reduce_channels(attr: Tensor, reduce: str | None) -> Tensor:
    """``(N, C, H, W)`` signed attributions -> ``(N, 1, H, W)`` non-negative map.

    Args:
        attr: Attributions.
        reduce: ``"max"`` (max of abs over channels), ``"sum"`` (sum of abs) or
            ``None`` (return ``attr`` unchanged, signed).
    """
    if reduce is None:
        return attr
    if reduce == "max":
        return attr.abs().amax(dim=1, keepdim=True)
    if reduce == "sum":
        return attr.abs().sum(dim=1, keepdim=True)
    raise ValueError(f"reduce must be 'max', 'sum' or None, got {reduce!r}")
