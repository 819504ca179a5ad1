"""Tiny random-initialised transformers for the token, rollout and non-ReLU tests (32 px)."""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn


def tiny_vit(num_classes: int = 3, num_layers: int = 2) -> torchvision.models.VisionTransformer:
    """The issue's 2-layer torchvision ViT: 32 px, 8 px patches (4x4 grid + class token)."""
    return torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=num_classes,
    )


def nontrivial(model: nn.Module) -> nn.Module:
    """Random affine LayerNorms, class token and head (torchvision starts them at 1/0/0/0).

    With the zero head every gradient is zero; with identity LayerNorms the ViT's
    Grad-CAM maps of a random model are often all negative, hence flat after the ReLU.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.5)
                m.bias.normal_(0.0, 0.5)
            if isinstance(m, nn.Linear) and m.weight.abs().sum() == 0:  # the zero head
                m.weight.normal_(0.0, 0.5)
                m.bias.normal_(0.0, 0.1)
        for name in ("class_token", "cls_token"):
            if isinstance(getattr(model, name, None), nn.Parameter):
                getattr(model, name).normal_()
    return model


def tiny_timm_vit(distilled: bool = False, num_classes: int = 3) -> nn.Module:
    """A 2-block timm ViT (or distilled DeiT: class + distillation token) at 32 px."""
    import timm.models.deit as deit
    import timm.models.vision_transformer as vt

    cls = deit.VisionTransformerDistilled if distilled else vt.VisionTransformer
    return cls(
        img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=num_classes
    )


def tiny_swin(num_classes: int = 3) -> nn.Module:
    """A 2-stage torchvision Swin: 32 px -> 8x8 (stage 1) -> 4x4 (stage 2), channels-last."""
    return torchvision.models.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=[4, 4],
        num_classes=num_classes,
    )


def tiny_maxvit(num_classes: int = 3) -> nn.Module:
    """A 2-block torchvision MaxViT at 32 px (blocks at 8x8 and 4x4)."""
    return torchvision.models.MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=2,
        block_channels=[16, 16],
        block_layers=[1, 1],
        head_dim=8,
        stochastic_depth_prob=0.0,
        num_classes=num_classes,
    )


class Holder(nn.Module):
    """A LightningModule-like wrapper: the transformer is ``self.model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def vit_tokens(vit: torchvision.models.VisionTransformer, x: Tensor) -> list[Tensor]:
    """Each encoder block's input tokens, then the last block's output, by hand.

    torchvision's forward written out: patch embedding, class token, position embedding,
    the blocks (run as modules). ``len = num_layers + 1``.
    """
    n = x.shape[0]
    t = vit.conv_proj(x).flatten(2).transpose(1, 2)  # (N, h*w, D)
    t = torch.cat([vit.class_token.expand(n, -1, -1), t], dim=1) + vit.encoder.pos_embedding
    out = [t]
    for block in vit.encoder.layers:
        t = block(t)
        out.append(t)
    return out


def mha_weights(attn: nn.MultiheadAttention, tokens: Tensor) -> Tensor:
    """Per-head softmax attention ``(N, heads, T, T)`` from ``in_proj_weight``, by hand."""
    n, t, d = tokens.shape
    h = attn.num_heads
    q, k, _ = nn.functional.linear(tokens, attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)
    q = q.view(n, t, h, d // h).transpose(1, 2)  # (N, heads, T, d_h)
    k = k.view(n, t, h, d // h).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)


class HFLogits(nn.Module):
    """A transformers image classifier as the callbacks see it (``output_to_logits``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.hf = model

    def forward(self, x: Tensor) -> Tensor:
        return self.hf(pixel_values=x).logits


def tiny_hf(kind: str, **overrides: object) -> nn.Module:
    """A 2-block transformers ViT (``"vit"``), distilled DeiT (``"deit_distilled"``) or
    DINOv2 (``"dinov2"``): 32 px, 8 px patches (a 4x4 grid), 3 classes."""
    import pytest

    transformers = pytest.importorskip("transformers")
    config = dict(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=3,
    )
    config.update(overrides)
    if kind == "vit":
        return transformers.ViTForImageClassification(transformers.ViTConfig(**config))
    if kind == "deit_distilled":
        cls = transformers.DeiTForImageClassificationWithTeacher
        return cls(transformers.DeiTConfig(**config))
    return transformers.Dinov2ForImageClassification(transformers.Dinov2Config(**config))
