"""Default-layer picks shared by the callbacks: the convs a forward runs, in order and
without side branches (``ActivationLogger``, ``FilterLogger``), and the warning when a
default layer is the stem of a model whose later blocks are not feature maps
(``ActivationLogger``, ``GradCAMLogger``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lightning_viz._hooks import record_inputs
from lightning_viz._runtime.context import RunContext
from lightning_viz.functional._grad import adapter_base, layers_after

__all__ = ["EARLY_SHARE", "main_path_convs", "warn_if_early"]


def main_path_convs(view: nn.Module, image: Tensor, convs: Mapping[str, nn.Module]) -> list[str]:
    """The convs of ``convs`` that run on ``image``, in execution order, without side
    branches: of the convs that read one same tensor (a residual block's first conv
    and its shortcut conv) only one is kept, the one with the largest kernel, then the
    smallest stride, then the first to run. So a ResNet's ``downsample`` conv is not a
    pick, whether it runs after its block's branch (torchvision) or before it (a
    pre-activation ResNet, RegNet), or reads the tensor through a pooling module (the
    average pool of a ResNet-D shortcut: timm's ``resnet50d``, ``resnet10t``).

    Args:
        view: The model (a ``ModelView``), run once without gradients.
        image: ``(1, C, H, W)`` pixel-space input (what the view takes).
        convs: Name -> conv layer (or a wrapper holding one) to consider.
    """
    pools = [m for m in view.modules() if isinstance(m, _POOLS)]
    with (
        torch.no_grad(),
        record_inputs({**convs, **{f"\0{i}": m for i, m in enumerate(pools)}}) as calls,
    ):
        view(image)
    readers: dict[tuple[Any, ...], list[str]] = {}
    pooled: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # a pool's output -> what it read
    order: list[str] = []
    for name, x, out in calls:
        key = pooled.get(_key(x), _key(x)) if isinstance(x, Tensor) else None
        if name not in convs:  # a pool: its output counts as the tensor it read
            if key is not None and isinstance(out, Tensor):
                pooled[_key(out)] = key
            continue
        if name in order:  # a conv run twice counts at its first call
            continue
        order.append(name)
        if key is not None:
            readers.setdefault(key, []).append(name)
    side: set[str] = set()
    for names in readers.values():
        keep = min(names, key=lambda n: _side_rank(convs[n]))  # min: the first of equals
        side.update(n for n in names if n != keep)
    return [n for n in order if n not in side]


_POOLS = (nn.AvgPool2d, nn.MaxPool2d)


def _key(x: Tensor) -> tuple[Any, ...]:
    """One tensor's identity while it is held (memory, shape and strides)."""
    return (x.data_ptr(), tuple(x.shape), x.stride())


def _side_rank(module: nn.Module) -> tuple[int, int]:
    """Sorts the convs reading one tensor, the main path's first: the largest kernel,
    then the smallest stride (a downsampling shortcut is a strided ``1x1`` conv)."""
    conv = module if isinstance(module, nn.Conv2d) else adapter_base(module)
    kernel = getattr(conv, "kernel_size", (1, 1))
    stride = getattr(conv, "stride", (1, 1))
    return -int(kernel[0]) * int(kernel[-1]), int(stride[0]) * int(stride[-1])


EARLY_SHARE = 0.9  # parameters run after a default layer that make it "early"


def warn_if_early(callback: Any, ctx: RunContext, name: str, what: str) -> None:
    """Warns (once per run) when no conv runs after the default layer ``name`` and the
    layers after it that read tokens hold nearly all the parameters: a stem, in a model
    whose later blocks are not feature maps (LeViT, MLP-Mixer: transformers
    lightning-viz does not know). A CNN whose last stage is too small to pick still runs
    convs after it; a CNN's head (AlexNet's, VGG's, a 1000-class ``Linear``) reads the
    flat ``(N, D)`` pooled features and does not count."""
    after = layers_after(ctx.view, ctx.pixels[:1], name, skip_flat=True)
    if any(isinstance(m, nn.Conv2d) for m in after.values()):
        return
    total = sum(p.numel() for p in ctx.module.parameters())
    held = sum(p.numel() for m in after.values() for p in m.parameters(recurse=False))
    if total and held / total > EARLY_SHARE:
        callback.warn_once(
            "early layer",
            f"its default layer {name!r} is early in the model: {held / total:.0%} of the "
            "parameters run after it, in blocks whose outputs are not feature maps (a "
            f"transformer or MLP model lightning-viz does not know), so {what} shows "
            "little of what the model learned; pass a later layer (and `reshape=` for its "
            "tokens)",
        )
