"""Which transformer a model is: the families :mod:`~lightning_viz.functional.tokens`
knows, found by class (torchvision) or by duck typing (timm, Hugging Face transformers:
never imported here), anywhere inside the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_viz._checks import fail
from lightning_viz._guard import in_model_dtype, unwrap_model
from lightning_viz._hooks import record_order
from lightning_viz.functional._grad import named_layers

__all__ = ["FoundTransformer", "find_transformer", "hf_vit_parts", "is_transformer"]


@dataclass(frozen=True)
class FoundTransformer:
    # "vit", "swin", "maxvit" (torchvision), "timm_vit", "timm_swin", "hf_vit" (transformers)
    family: str
    prefix: str  # dotted name of the transformer inside the model; "" at the root
    module: nn.Module


def _family(module: nn.Module) -> str | None:
    # torchvision by class (import is cheap: torchvision is a dependency); timm by duck
    # typing on its module path, so timm is never imported here.
    from torchvision.models import MaxVit, SwinTransformer, VisionTransformer

    if isinstance(module, VisionTransformer):
        return "vit"
    if isinstance(module, SwinTransformer):
        return "swin"
    if isinstance(module, MaxVit):
        return "maxvit"
    if _is_timm_vit(module):
        return "timm_vit"
    if _is_timm_swin(module):
        return "timm_swin"
    if type(module).__module__.startswith("transformers.") and hf_vit_parts(module) is not None:
        return "hf_vit"
    return None


def _is_timm_vit(module: nn.Module) -> bool:
    """timm's ``VisionTransformer`` family, by duck typing (a 2-D patch size, ``blocks``
    carrying ``num_prefix_tokens``); not CaiT (``blocks_token_only``) nor XCiT."""
    if not type(module).__module__.startswith("timm."):
        return False
    patch = getattr(getattr(module, "patch_embed", None), "patch_size", None)
    return (
        isinstance(getattr(module, "blocks", None), nn.Module)
        and isinstance(getattr(module, "num_prefix_tokens", None), int)
        and isinstance(patch, tuple | list)
        and len(patch) == 2
        and not hasattr(module, "blocks_token_only")
    )


def _is_timm_swin(module: nn.Module) -> bool:
    """timm's Swin Transformers (v1, v2), by duck typing: ``output_fmt`` ``"NHWC"``, a
    ``patch_embed`` and stages in ``layers``, each holding ``blocks``."""
    layers = getattr(module, "layers", None)
    return (
        type(module).__module__.startswith("timm.")
        and getattr(module, "output_fmt", None) == "NHWC"
        and isinstance(getattr(module, "patch_embed", None), nn.Module)
        and isinstance(layers, nn.Sequential)
        and len(layers) > 0
        and all(isinstance(getattr(stage, "blocks", None), nn.Module) for stage in layers)
    )


_HF_BLOCK_LISTS = ("encoder.layer", "layers", "encoder.layers")  # transformers 4, 5


def hf_vit_parts(module: nn.Module) -> tuple[str, int, tuple[int, int]] | None:
    """A transformers ViT-style encoder's block list, prefix token count and patch size
    (``None`` for anything else), by duck typing: transformers is never imported. A
    hierarchical encoder (Swin, Swin V2, FocalNet: ``config.depths``) is none: its
    stages merge patches, and their outputs are tuples."""
    embeddings = getattr(module, "embeddings", None)
    config = getattr(module, "config", None)
    patch = getattr(config, "patch_size", None)
    if not isinstance(getattr(embeddings, "patch_embeddings", None), nn.Module) or not patch:
        return None
    if getattr(config, "depths", None) is not None:
        return None
    blocks = next(
        (
            name
            for name in _HF_BLOCK_LISTS
            if isinstance(_get(module, name), nn.ModuleList) and len(_get(module, name)) > 0
        ),
        None,
    )
    if blocks is None:
        return None
    prefix = sum(
        1
        for attr in ("cls_token", "distillation_token")
        if isinstance(getattr(embeddings, attr, None), Tensor)
    )
    registers = getattr(embeddings, "register_tokens", None)
    if isinstance(registers, Tensor) and registers.dim() == 3:
        prefix += registers.shape[1]
    size = tuple(patch) if isinstance(patch, tuple | list) else (patch, patch)
    return blocks, prefix, (int(size[0]), int(size[1]))


def _get(module: nn.Module, name: str) -> nn.Module | None:
    return dict(named_layers(module)).get(name)


def submodule(module: nn.Module, name: str) -> nn.Module:
    """``module.get_submodule(name)`` through ``torch.compile``'d parts (see
    :func:`~lightning_viz.functional._grad.named_layers`)."""
    found = _get(module, name)
    if found is None:
        raise AttributeError(f"{type(module).__name__} has no submodule {name!r}")
    return found


def children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``module.named_children()``, of the compiled module's own when compiled."""
    return list(unwrap_model(module).named_children())


def find_transformer(
    model: nn.Module, inputs: Tensor | None = None, *, layer: str | None = None
) -> FoundTransformer | None:
    """The known transformer inside ``model`` (a :class:`ModelView` looked through).

    With several (a frozen teacher beside the student, as in DeiT's distillation): the
    one holding ``layer``; else the last whose forward runs on ``inputs`` (one image,
    no gradients), the one that feeds the logits; else the first defined.
    """
    found: list[FoundTransformer] = []
    for name, module in named_layers(model):
        inside = any(_within(name, f.prefix) for f in found)
        family = None if inside else _family(module)
        if family is not None:
            found.append(FoundTransformer(family, name, module))
    if len(found) < 2:
        return found[0] if found else None
    if layer is not None:
        return next((f for f in found if _within(layer, f.prefix)), found[0])
    if inputs is not None:
        with torch.no_grad(), record_order({f.prefix: f.module for f in found}) as ran:
            model(in_model_dtype(model, inputs[:1].detach()))
        if ran:
            return next(f for f in found if f.prefix == ran[-1])
    return found[0]


def _within(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(f"{prefix}.")


def is_transformer(model: nn.Module) -> bool:
    """True when ``model`` is, or contains, a transformer this module knows.

    Known: torchvision ``VisionTransformer``, ``SwinTransformer`` and ``MaxVit``,
    timm's ``VisionTransformer`` family (ViT, DeiT, distilled DeiT) and Swin
    Transformers (v1, v2), and Hugging Face
    transformers' ViT-style encoders (``ViTModel``, ``DeiTModel``, ``Dinov2Model``, ...).
    The search covers submodules, so a ``LightningModule`` holding a ViT counts.

    Args:
        model: Any ``nn.Module``.

    Returns:
        Whether a known transformer was found.
    """
    if not isinstance(model, nn.Module):
        fail("model", "an nn.Module", f"<{type(model).__name__}>", TypeError)
    return find_transformer(model) is not None
