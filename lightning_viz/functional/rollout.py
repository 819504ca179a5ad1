"""Attention rollout and gradient-weighted rollout for Vision Transformers.

Both follow the class token through the encoder: each block's attention, fused
over its heads, is mixed with the identity (the residual connection), its rows are
renormalized, and the blocks' matrices are multiplied from the first to the last.
The class token's row of the product, restricted to the patch tokens, is read as
the patch grid and upsampled to the input size.

The attention weights are read by :func:`lightning_viz._hooks.capture_attention`
(no change to the model's outputs, nothing left behind). Supported: torchvision's
``VisionTransformer``, timm's ViT/DeiT and Hugging Face transformers' ViT, DeiT
and DINOv2 (class token first; distillation and register tokens are skipped). Swin
and MaxViT attend within windows: no class token to roll out, so they are refused.

Examples:
    >>> import torch, torchvision, lightning_viz.functional as LF
    >>> vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8,
    ...     num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3)
    >>> LF.attention_rollout(vit, torch.rand(4, 3, 32, 32)).shape
    torch.Size([4, 1, 32, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._checks import check_choice, check_float, check_images, fail
from lightning_viz._guard import preserve_state
from lightning_viz._hooks import AttentionRecord, capture_attention
from lightning_viz.functional._grad import (
    forward_logits,
    in_model_dtype,
    score_sum,
    target_indices,
)
from lightning_viz.functional._transformers import children, submodule
from lightning_viz.functional.tokens import (
    FoundTransformer,
    find_transformer,
    hf_vit_parts,
    padded_size,
    timm_patch,
)

__all__ = ["attention_rollout", "grad_rollout", "supports_rollout"]

HEAD_FUSIONS = ("mean", "max", "min")
_ROLLOUT_FAMILIES = ("vit", "timm_vit", "hf_vit")


# ----------------------------------------------------------------------------- model access
def _attention_modules(
    net: nn.Module, inputs: Tensor
) -> tuple[FoundTransformer, dict[str, nn.Module]]:
    """The ViT inside ``net`` (the one ``inputs`` run through, of several) and its
    blocks' attention modules, in execution order."""
    found = find_transformer(net, inputs)
    if found is None or found.family not in _ROLLOUT_FAMILIES:
        what = type(found.module).__name__ if found is not None else type(net).__name__
        fail(
            "model",
            "a Vision Transformer with a class token (torchvision VisionTransformer, a "
            "timm ViT/DeiT or a transformers ViT/DeiT/DINOv2, or a module containing one)",
            f"<{what}>",
        )
    vit = found.module
    prefix = f"{found.prefix}." if found.prefix else ""
    if found.family == "vit":
        blocks = children(vit.encoder.layers)
        modules = {
            f"{prefix}encoder.layers.{n}.self_attention": b.self_attention for n, b in blocks
        }
    elif found.family == "hf_vit":
        if _hf_mean_pooled(vit):
            fail(
                "model",
                "a ViT whose head reads its class token; rollout to a class token the head "
                "never reads explains nothing",
                "<config.use_mean_pooling=True>",
            )
        blocks_name = hf_vit_parts(vit)[0]  # type: ignore[index]
        modules = {
            f"{prefix}{blocks_name}.{n}.attention": b.attention
            for n, b in children(submodule(vit, blocks_name))
        }
    else:
        if getattr(vit, "cls_token", None) is None:
            fail("model", "a ViT with a class token (timm class_token=True)", "<no class token>")
        pool = getattr(vit, "global_pool", "token")
        if pool != "token":  # the head reads pooled patch tokens, not the class token
            fail(
                "model",
                "a ViT whose head reads its class token (timm global_pool='token'); rollout "
                "to a class token the head never reads explains nothing",
                f"<global_pool={pool!r}>",
            )
        modules = {f"{prefix}blocks.{n}.attn": b.attn for n, b in children(vit.blocks)}
    return found, modules


def supports_rollout(model: nn.Module, inputs: Tensor | None = None) -> bool:
    """Whether :func:`attention_rollout` and :func:`grad_rollout` apply to ``model``:
    it is, or holds, a ViT whose head reads a class token (torchvision
    ``VisionTransformer``, a timm ViT/DeiT with ``global_pool="token"``, a transformers
    ViT/DeiT/DINOv2, a transformers BEiT with ``use_mean_pooling=False``). A timm ViT
    pooling its patch tokens (``"avg"``, ``"map"``) or a mean-pooled BEiT keeps a class
    token the head never reads: its rollout would explain nothing. Of several ViTs,
    the one ``inputs`` (example images) run through, as the rollouts take it."""
    found = find_transformer(model, inputs)
    if found is None or found.family not in _ROLLOUT_FAMILIES:
        return False
    if found.family == "hf_vit":  # the class token is the first prefix token
        embeddings = getattr(found.module, "embeddings", None)
        has_token = isinstance(getattr(embeddings, "cls_token", None), Tensor)
        return has_token and not _hf_mean_pooled(found.module)
    if found.family == "timm_vit":  # a class token the head reads (not avg/map pooling)
        pool = getattr(found.module, "global_pool", "token")
        return getattr(found.module, "cls_token", None) is not None and pool == "token"
    return True


def _hf_mean_pooled(vit: nn.Module) -> bool:
    """A transformers encoder whose pooler averages the patch tokens (BEiT's and
    Data2Vec-Vision's default, ``config.use_mean_pooling``): the head never reads the
    class token."""
    return bool(getattr(getattr(vit, "config", None), "use_mean_pooling", False))


def _patch_grid(found: FoundTransformer, size: tuple[int, int]) -> tuple[int, int, int]:
    """``(num_prefix_tokens, h, w)`` of the ViT for inputs of ``size``."""
    vit = found.module
    if found.family == "vit":
        p = vit.patch_size
        return 1, size[0] // p, size[1] // p
    if found.family == "hf_vit":
        _, prefix, (ph, pw) = hf_vit_parts(vit)  # type: ignore[misc]
        return prefix, size[0] // ph, size[1] // pw
    ph, pw = timm_patch(vit.patch_embed)
    size = padded_size(vit, size)
    return int(vit.num_prefix_tokens), size[0] // ph, size[1] // pw


# ----------------------------------------------------------------------------- rollout
def _fuse(weights: Tensor, head_fusion: str) -> Tensor:
    """``(N, heads, T, T)`` -> ``(N, T, T)``."""
    if head_fusion == "mean":
        return weights.mean(dim=1)
    if head_fusion == "max":
        return weights.amax(dim=1)
    return weights.amin(dim=1)


def _discard(a: Tensor, ratio: float) -> Tensor:
    """Zeroes the smallest ``ratio`` of each image's ``(T, T)`` entries, keeping ``[0, 0]``."""
    n, t, _ = a.shape
    k = int(t * t * ratio)
    if k == 0:
        return a
    flat = a.reshape(n, t * t).clone()
    keep = flat[:, 0].clone()  # the class token's attention to itself
    idx = flat.topk(k, dim=1, largest=False).indices
    flat.scatter_(1, idx, 0.0)
    flat[:, 0] = keep
    return flat.view(n, t, t)


def _roll(fused: list[Tensor]) -> Tensor:
    """``A_l -> (A_l + I) / rowsum``; the product ``A_L ... A_1``; ``(N, T, T)``."""
    eye = torch.eye(fused[0].shape[-1], device=fused[0].device, dtype=fused[0].dtype)
    joint = None
    for a in fused:
        a = a + eye
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else a @ joint
    return joint


def _to_map(joint: Tensor, found: FoundTransformer, size: tuple[int, int]) -> Tensor:
    """The class token's row over the patch tokens, ``(N, 1, H, W)``."""
    prefix, h, w = _patch_grid(found, size)
    row = joint[:, 0, prefix:]  # (N, h*w)
    if row.shape[1] != h * w:
        raise ValueError(
            f"{joint.shape[-1]} tokens do not fit {prefix} prefix tokens and a {h}x{w} grid "
            f"for inputs of size {size}"
        )
    grid = row.reshape(-1, 1, h, w)
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)


def _records(store: dict[str, AttentionRecord], names: list[str]) -> list[AttentionRecord]:
    missing = [n for n in names if n not in store]
    if missing:
        raise ValueError(f"attention modules {missing} did not run in the model's forward")
    return [store[n] for n in names]


def attention_rollout(
    model: nn.Module,
    inputs: Tensor,
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> Tensor:
    """Attention rollout: how much each patch flows into the class token.

    Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020. For
    each encoder block ``l`` the attention ``(heads, T, T)`` is fused over heads
    (``head_fusion``), the identity is added for the residual connection and the
    rows are renormalized: ``Â_l = (A_l + I) / rowsum(A_l + I)``. The rollout is
    ``Â_L ... Â_2 Â_1``; the class token's row over the patch tokens, reshaped to
    the patch grid and bilinearly upsampled, is the map. It does not depend on a
    class. With ``discard_ratio > 0`` the smallest entries of each fused matrix are
    set to zero first (the class token's attention to itself is kept), as in
    jacobgil's ``vit-explain``.

    Args:
        model: A torchvision ``VisionTransformer`` or a timm ViT/DeiT with a class
            token, or a module holding one (e.g. a ``LightningModule``).
        inputs: Images ``(N, C, H, W)``, float, in the model's input space.
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over heads.
            Default: ``"mean"``.
        discard_ratio: Fraction in ``[0, 1)`` of each image's fused attention
            entries set to zero. Default: ``0.0``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps on the inputs' device, not normalized
        (the class-token row sums to at most 1 over the patches).

    Raises:
        TypeError: Bad ``inputs``, ``head_fusion`` or ``discard_ratio`` type.
        ValueError: Bad values, or a model that is not a ViT with a class token.
    """
    check_images(inputs)
    check_choice(head_fusion, "head_fusion", HEAD_FUSIONS)
    discard_ratio = check_float(discard_ratio, "discard_ratio", minimum=0.0)
    if discard_ratio >= 1.0:
        fail("discard_ratio", "a number in [0, 1)", discard_ratio)
    with preserve_state(model) as net:
        found, modules = _attention_modules(net, inputs)
        x = inputs.detach().clone()
        with torch.no_grad(), capture_attention(modules) as store:
            net(in_model_dtype(net, x))
        records = _records(store, list(modules))
        fused = [_discard(_fuse(r.weights.float(), head_fusion), discard_ratio) for r in records]
        joint = _roll(fused)
        return _to_map(joint, found, tuple(x.shape[-2:])).to(inputs.dtype)


def grad_rollout(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
) -> Tensor:
    """Gradient-weighted attention rollout: class-specific attention flow.

    Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting
    Bi-Modal and Encoder-Decoder Transformers", ICCV 2021 (the gradient-weighted
    attention of their eq. 5, following "Transformer Interpretability Beyond
    Attention Visualization", CVPR 2021): each block's attention ``A_l`` is weighted
    by the gradient of the target score ``S``, ``Ā_l = mean_heads(relu(dS/dA_l ⊙
    A_l))``, then rolled out as in :func:`attention_rollout`: ``(Ā_l + I)`` with rows
    renormalized, multiplied from the first block to the last, the class token's
    row over the patches read as the grid and upsampled. (Chefer et al. accumulate
    ``R = R + Ā R`` without renormalizing; the renormalized product is the form of
    jacobgil's ``vit-explain`` ``grad_rollout``, which fuses heads before the relu.)
    All gradients come from one backward pass, w.r.t. the attention weights only.

    Args:
        model: As in :func:`attention_rollout`.
        inputs: Images ``(N, C, H, W)``, float.
        target: Class indices ``(N,)``, an int, or ``None`` (the predicted class;
            for a binary model with one logit ``z``, class 1 when ``z > 0``, whose
            score is ``z``, and class 0 scored by ``-z``). Default: ``None``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps on the inputs' device, not normalized.

    Raises:
        TypeError: Bad ``inputs`` or ``target`` type.
        ValueError: Bad class index, or a model that is not a ViT with a class token.
        RuntimeError: The attention weights could not be tied to the graph (an
            unsupported attention implementation).
    """
    check_images(inputs)
    with preserve_state(model) as net:
        found, modules = _attention_modules(net, inputs)
        x = inputs.detach().clone().requires_grad_(True)  # parameters are frozen: graph via x
        with capture_attention(modules) as store:
            logits = forward_logits(net, x)
        score = score_sum(logits, target_indices(target, logits))
        records = _records(store, list(modules))
        if any(r.source is None for r in records):
            raise RuntimeError(
                "the attention weights of this model are not on the autograd graph; "
                "grad_rollout supports nn.MultiheadAttention, timm's Attention and "
                "transformers' eager attention"
            )
        grads = torch.autograd.grad(score, [r.source for r in records], allow_unused=True)
        fused = []
        for r, g in zip(records, grads, strict=True):
            g = torch.zeros_like(r.weights) if g is None else g.reshape(r.weights.shape)
            fused.append(F.relu(g * r.weights).float().mean(dim=1))  # (N, T, T)
        joint = _roll(fused)
        return _to_map(joint, found, tuple(x.shape[-2:])).detach().to(inputs.dtype)
