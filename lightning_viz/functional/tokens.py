"""Transformer layers read as feature maps: tokens ``(N, T, D)`` -> grids ``(N, D, h, w)``.

A Vision Transformer's blocks output *tokens*: ``(N, T, D)`` with ``T`` = prefix
tokens (class, distillation, register tokens) + ``h * w`` patch tokens in row-major
order. Swin's stages output channels-last grids ``(N, h, w, D)``. The CAM pipeline,
activation maps and neuron gradients need ``(N, D, h, w)``; this module says how to
read each layer of a known transformer (:func:`token_layout`) and which layers to
explain by default (:func:`default_transformer_cam_layer`,
:func:`default_transformer_activation_layers`).

Known models (random-initialised or trained, found anywhere inside the model, e.g.
as ``LightningModule.model``):

- torchvision ``VisionTransformer``: class token first, then ``(H / p) x (W / p)``
  patch tokens (``patch_size`` attribute); every layer under ``encoder`` outputs
  tokens; ``conv_proj`` already outputs ``(N, D, h, w)``.
- torchvision ``SwinTransformer`` (v1 and v2): everything under ``features`` (except
  the patch-embedding conv ``features.0.0``) and ``norm`` output ``(N, h, w, D)``.
- timm's Swin Transformers (``swin_*``, ``swinv2_*``): the patch embedding's output,
  everything under ``layers`` (the stages) and ``norm`` output ``(N, h, w, D)``.
- torchvision ``MaxVit``: its blocks, layers and ``PartitionAttentionLayer`` outputs
  are already ``(N, C, H, W)`` (no reshape); the modules *inside* a
  ``PartitionAttentionLayer`` see window-partitioned tokens ``(N, G, P*P, C)``, which
  are not a grid: they are refused with a clear error.
- timm ``VisionTransformer`` and its subclasses (DeiT, distilled DeiT, register
  tokens): ``patch_embed.patch_size``, ``num_prefix_tokens``; the patch embedding's
  own output has no prefix tokens.
- Hugging Face ``transformers`` ViT-style encoders (``ViTModel``, ``DeiTModel``,
  ``Dinov2Model``, ... inside ``*ForImageClassification``): ``config.patch_size``,
  prefix tokens from the embeddings' class, distillation and register tokens; the
  blocks are ``encoder.layer`` (transformers 4) or ``layers`` (transformers 5).

Anything else: pass ``reshape=`` a callable ``(Tensor) -> (N, D, h, w)`` (as
pytorch-grad-cam's ``reshape_transform``), or a :class:`TokenLayout`.

Examples:
    >>> import torch, torchvision, lightning_viz.functional as LF
    >>> vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8,
    ...     num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3)
    >>> LF.token_layout(vit, "encoder.layers.encoder_layer_1", (32, 32))
    TokenLayout(input_size=(32, 32), patch_size=(8, 8), num_prefix_tokens=1, channels_last=False)
    >>> LF.tokens_to_grid(torch.rand(2, 17, 16), input_size=(32, 32), patch_size=8).shape
    torch.Size([2, 16, 4, 4])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_viz._checks import check_images, check_int, fail
from lightning_viz._guard import preserve_state
from lightning_viz._hooks import record_calls
from lightning_viz.functional._grad import in_model_dtype, resolve_layer
from lightning_viz.functional._transformers import (
    FoundTransformer,
    children,
    find_transformer,
    hf_vit_parts,
    is_transformer,
    submodule,
)

__all__ = [
    "TokenLayout",
    "default_transformer_activation_layers",
    "default_transformer_cam_layer",
    "is_transformer",
    "timm_patch",
    "token_layout",
    "tokens_to_grid",
]

Reshape = Callable[[Tensor], Tensor]  # layer output -> (N, D, h, w)

_CHANNELS_LAST = ("swin", "timm_swin")  # stage outputs (N, h, w, D)
_MAX_INFERRED_PREFIX = 16  # prefix tokens tried when neither patch size nor prefix count is given


# ----------------------------------------------------------------------------- reshaping
def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(value, tuple | list):
        if len(value) != 2:
            fail(name, "an int or a pair (height, width) of ints >= 1", value)
        return (check_int(value[0], name, minimum=1), check_int(value[1], name, minimum=1))
    v = check_int(value, name, minimum=1)
    return (v, v)


def _infer_grid(t: int, size: tuple[int, int], prefix: int | None) -> tuple[int, int, int] | None:
    """Smallest prefix count ``k`` with ``T - k = (H / p) * (W / p)`` for a common divisor ``p``."""
    h_in, w_in = size
    divisors = [p for p in range(1, min(size) + 1) if h_in % p == 0 and w_in % p == 0]
    grids = [(h_in // p, w_in // p) for p in divisors]
    prefixes = [prefix] if prefix is not None else range(min(t, _MAX_INFERRED_PREFIX + 1))
    for k in prefixes:
        for h, w in grids:
            if h * w == t - k:
                return k, h, w
    return None


def tokens_to_grid(
    output: Tensor,
    *,
    input_size: tuple[int, int] | int,
    patch_size: int | tuple[int, int] | None = None,
    num_prefix_tokens: int | None = None,
    channels_last: bool = False,
) -> Tensor:
    """Reads a transformer layer's output as a feature grid ``(N, D, h, w)``.

    Tokens ``(N, T, D)``: the first ``num_prefix_tokens`` tokens (class,
    distillation, register tokens) are dropped and the ``h * w`` patch tokens,
    row-major as a ViT's patch embedding flattens them, are reshaped to the grid
    ``h = H // p_h``, ``w = W // p_w`` (as pytorch-grad-cam's ViT
    ``reshape_transform``). Channels-last grids ``(N, h, w, D)`` (Swin) are permuted.

    When ``patch_size`` is ``None`` the grid is inferred: the smallest prefix count
    ``k`` (``num_prefix_tokens`` when given, else ``0 .. 16``) such that ``T - k``
    patches tile the input with square patches ``p`` dividing both ``H`` and ``W``.
    That guess can be ambiguous; pass ``patch_size`` when you know it.

    Args:
        output: ``(N, T, D)`` tokens, or ``(N, h, w, D)`` when ``channels_last``.
        input_size: ``(H, W)`` of the model's input images (an int for square).
        patch_size: Patch side ``p`` or ``(p_h, p_w)`` in input pixels; ``None``
            infers it. With ``channels_last`` it only checks the grid size.
            Default: ``None``.
        num_prefix_tokens: Tokens before the patch tokens, ``>= 0``; ``None``: the
            ones left over by the grid. Default: ``None``.
        channels_last: ``output`` is ``(N, h, w, D)``. Default: ``False``.

    Returns:
        ``(N, D, h, w)``, a view of ``output`` where possible (same device, dtype
        and autograd graph).

    Raises:
        TypeError: ``output`` is not a tensor, or bad argument types.
        ValueError: ``output`` has the wrong rank, or its token count does not fit
            the grid (the message gives ``T``, the grid and the prefix count).
    """
    if not isinstance(output, Tensor):
        fail(
            "output", "a torch.Tensor of tokens (N, T, D)", f"<{type(output).__name__}>", TypeError
        )
    size = _pair(input_size, "input_size")
    if not isinstance(channels_last, bool):
        fail("channels_last", "a bool", channels_last, TypeError)
    patch = None if patch_size is None else _pair(patch_size, "patch_size")
    if num_prefix_tokens is not None:
        check_int(num_prefix_tokens, "num_prefix_tokens", minimum=0)
    if channels_last:
        if output.dim() != 4:
            fail("output", "a channels-last grid (N, h, w, D)", f"<shape {tuple(output.shape)}>")
        if patch is not None and tuple(output.shape[1:3]) != (
            size[0] // patch[0],
            size[1] // patch[1],
        ):
            raise ValueError(
                f"a ({output.shape[1]}, {output.shape[2]}) grid does not match input size {size} "
                f"with patch size {patch}"
            )
        return output.permute(0, 3, 1, 2)  # (N, D, h, w)
    if output.dim() != 3:
        fail("output", "tokens of shape (N, T, D)", f"<shape {tuple(output.shape)}>")
    n, t, d = output.shape
    if patch is not None:
        h, w = size[0] // patch[0], size[1] // patch[1]
        k = t - h * w if num_prefix_tokens is None else num_prefix_tokens
        if k < 0 or t != k + h * w:
            prefix = "" if num_prefix_tokens is None else f" plus {num_prefix_tokens} prefix tokens"
            raise ValueError(
                f"{t} tokens do not fit a {h}x{w} patch grid{prefix} (input {size[0]}x{size[1]}, "
                f"patch {patch[0]}x{patch[1]}); pass the right `patch_size`/`num_prefix_tokens` "
                "or a `reshape` callable"
            )
    else:
        found = _infer_grid(t, size, num_prefix_tokens)
        if found is None:
            prefix = (
                "" if num_prefix_tokens is None else f" after {num_prefix_tokens} prefix tokens"
            )
            raise ValueError(
                f"{t} tokens{prefix} do not form a patch grid of the {size[0]}x{size[1]} input; "
                "pass `patch_size` and `num_prefix_tokens`, or a `reshape` callable"
            )
        k, h, w = found
    return output[:, k:].transpose(1, 2).reshape(n, d, h, w)


@dataclass(frozen=True)
class TokenLayout:
    """How one layer's output is read as a grid; calling it applies :func:`tokens_to_grid`.

    Attributes:
        input_size: ``(H, W)`` of the model's input.
        patch_size: ``(p_h, p_w)``, or ``None`` (channels-last grids need none).
        num_prefix_tokens: Tokens before the patch tokens (1 for a class token).
        channels_last: The output is ``(N, h, w, D)`` (Swin).
    """

    input_size: tuple[int, int]
    patch_size: tuple[int, int] | None = None
    num_prefix_tokens: int = 0
    channels_last: bool = False

    def __call__(self, output: Tensor) -> Tensor:
        """``(N, T, D)`` tokens or ``(N, h, w, D)`` -> ``(N, D, h, w)``."""
        return tokens_to_grid(
            output,
            input_size=self.input_size,
            patch_size=self.patch_size,
            num_prefix_tokens=None if self.channels_last else self.num_prefix_tokens,
            channels_last=self.channels_last,
        )


# ----------------------------------------------------------------------------- layouts
def padded_size(vit: nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """The input size a timm ViT's patch embedding sees: with ``dynamic_img_pad`` it pads
    the input up to whole patches (a 70x100 input is 80x112 with 16 px patches, a 5x7
    grid), else ``size``."""
    embed = getattr(vit, "patch_embed", None)
    if not getattr(embed, "dynamic_img_pad", False):
        return size
    ph, pw = timm_patch(embed)  # type: ignore[arg-type]
    return -(-size[0] // ph) * ph, -(-size[1] // pw) * pw


def timm_patch(embed: nn.Module) -> tuple[int, int]:
    """The input pixels per token of a timm ViT's patch embedding: its ``patch_size``,
    times the backbone's stride for a hybrid ViT (a ResNet stem, whose ``patch_size``
    is the patch on the backbone's feature map), as its ``feat_ratio`` says."""
    ratio = getattr(embed, "feat_ratio", None)
    if callable(ratio):
        try:
            return _pair(tuple(ratio(as_scalar=False)), "patch_size")
        except (TypeError, ValueError):
            pass
    return _pair(tuple(embed.patch_size), "patch_size")  # type: ignore[arg-type]


def _relative(found: FoundTransformer, name: str) -> str | None:
    if not found.prefix:
        return name
    if name == found.prefix:
        return ""
    if name.startswith(found.prefix + "."):
        return name[len(found.prefix) + 1 :]
    return None


def _under(rel: str, root: str) -> bool:
    return rel == root or rel.startswith(root + ".")


def _maxvit_partitioned(found: FoundTransformer, rel: str) -> str | None:
    """The ``PartitionAttentionLayer`` whose window-partitioned inside ``rel`` is, if any."""
    from torchvision.models.maxvit import PartitionAttentionLayer

    parts = rel.split(".")
    for i in range(1, len(parts)):
        owner = ".".join(parts[:i])
        module = submodule(found.module, owner)
        if isinstance(module, PartitionAttentionLayer) and parts[i] != "departition_op":
            return owner
    return None


def token_layout(
    model: nn.Module, layer: str | nn.Module, input_size: tuple[int, int] | int
) -> TokenLayout | None:
    """How a known transformer's layer output is read as a grid, or ``None`` if it is one.

    Args:
        model: The model (a known transformer, or a module containing one).
        layer: The layer, as a module or its dotted name in ``model``.
        input_size: ``(H, W)`` of the input images (an int for square).

    Returns:
        A :class:`TokenLayout` for token and channels-last layers; ``None`` when the
        model holds no known transformer, the layer lies outside it, or its output
        is already ``(N, C, h, w)`` (torchvision ViT's ``conv_proj``, every MaxViT
        block) or not spatial (heads).

    Raises:
        TypeError: Bad ``layer`` or ``input_size`` type.
        ValueError: Unknown layer (the message lists the layers), or a MaxViT layer
            inside a ``PartitionAttentionLayer`` (window-partitioned tokens, no grid).
    """
    size = _pair(input_size, "input_size")
    name, _ = resolve_layer(model, layer)
    found = find_transformer(model, layer=name)
    if found is None:
        return None
    rel = _relative(found, name)
    if rel is None or rel == "":
        return None
    net = found.module
    if found.family == "vit":
        if _under(rel, "encoder"):
            return TokenLayout(size, _pair(net.patch_size, "patch_size"), num_prefix_tokens=1)
        return None
    if found.family == "swin":
        if _under(rel, "features.0.0"):  # the patch-embedding conv: (N, C, h, w)
            return None
        if _under(rel, "features") or rel == "norm":
            return TokenLayout(size, channels_last=True)
        return None
    if found.family == "timm_swin":  # NHWC from the patch embedding on, but its conv
        if _under(rel, "patch_embed.proj"):
            return None
        if _under(rel, "patch_embed") or _under(rel, "layers") or rel == "norm":
            return TokenLayout(size, channels_last=True)
        return None
    if found.family == "maxvit":
        owner = _maxvit_partitioned(found, rel)
        if owner is not None:
            raise ValueError(
                f"MaxViT layer {name!r} sees window-partitioned tokens (N, G, P*P, C), not a "
                f"grid; use the output of {owner!r} or of a MaxViT block (already (N, C, H, W)), "
                "or pass `reshape=`"
            )
        return None
    if found.family == "hf_vit":
        blocks, prefix, patch = hf_vit_parts(net)  # type: ignore[misc]
        if rel == "embeddings.patch_embeddings":  # flattened patches, no prefix tokens yet
            return TokenLayout(size, patch, num_prefix_tokens=0)
        if _under(rel, "embeddings.patch_embeddings"):
            return None  # the conv: (N, D, h, w)
        if rel in ("embeddings", "layernorm") or _under(rel, blocks.split(".")[0]):
            return TokenLayout(size, patch, num_prefix_tokens=prefix)
        return None
    # timm VisionTransformer family
    patch = timm_patch(net.patch_embed)
    size = padded_size(net, size)
    if _under(rel, "patch_embed"):
        if rel == "patch_embed.proj" or _under(rel, "patch_embed.backbone"):
            return None  # the conv, a hybrid's backbone: (N, D, h, w)
        fmt = str(getattr(getattr(net.patch_embed, "output_fmt", None), "value", "NCHW"))
        if not getattr(net.patch_embed, "flatten", True) and fmt == "NHWC":
            return TokenLayout(size, channels_last=True)
        return TokenLayout(size, patch, num_prefix_tokens=0)  # no class token yet
    if rel in ("pos_drop", "patch_drop", "norm_pre", "norm") or _under(rel, "blocks"):
        return TokenLayout(size, patch, num_prefix_tokens=int(net.num_prefix_tokens))
    return None


def grid_reader(
    model: nn.Module, name: str, input_size: tuple[int, int], reshape: Reshape | None
) -> Reshape | None:
    """The step that turns layer ``name``'s output into ``(N, D, h, w)``, checked.

    ``reshape`` when given, else :func:`token_layout` of ``model``; ``None`` when the
    layer needs none (its output is used as it is).
    """
    fn = reshape if reshape is not None else token_layout(model, name, input_size)
    if fn is None:
        return None

    def read(output: Tensor) -> Tensor:
        grid = fn(output)
        if not isinstance(grid, Tensor) or grid.dim() != 4 or grid.shape[0] != output.shape[0]:
            got = tuple(grid.shape) if isinstance(grid, Tensor) else type(grid).__name__
            raise ValueError(
                f"reshape of layer {name!r} must give (N, D, h, w) with N = {output.shape[0]}, "
                f"got {got} from an output of shape {tuple(output.shape)}"
            )
        return grid

    return read


# ----------------------------------------------------------------------------- default layers
def _spread(names: list[str]) -> list[str]:
    """Early, middle and late entries of ``names`` (fewer when there are fewer)."""
    if not names:
        return []
    picks = [names[0], names[len(names) // 2], names[-1]]
    return list(dict.fromkeys(picks))


def _join(prefix: str, rel: str) -> str:
    return f"{prefix}.{rel}" if prefix else rel


def _grids(net: nn.Module, names: list[str], x: Tensor, channels_last: bool) -> dict[str, int]:
    """Spatial size ``h * w`` of each named layer's output (one forward, no gradients)."""
    modules = dict(resolve_layer(net, name) for name in names)
    with torch.no_grad(), record_calls(modules) as calls:
        net(in_model_dtype(net, x))
    # Swin stages: (N, h, w, C); MaxViT layers: (N, C, h, w)
    return {
        name: shape[1] * shape[2] if channels_last else shape[2] * shape[3]
        for name, shape in calls
        if len(shape) == 4
    }


def _blocks(found: FoundTransformer) -> list[str]:
    """The transformer's blocks in execution order, as dotted names relative to it."""
    net = found.module
    if found.family == "vit":
        return [f"encoder.layers.{n}" for n, _ in children(net.encoder.layers)]
    if found.family == "timm_vit":
        return [f"blocks.{n}" for n, _ in children(net.blocks)]
    if found.family == "hf_vit":
        root = hf_vit_parts(net)[0]  # type: ignore[index]
        return [f"{root}.{n}" for n, _ in children(submodule(net, root))]
    if found.family == "timm_swin":
        return [f"layers.{n}" for n, _ in children(net.layers)]
    if found.family == "swin":  # stages: Sequentials of Swin blocks (odd features entries)
        return [
            f"features.{n}"
            for n, stage in children(net.features)
            if isinstance(stage, nn.Sequential)
            and any(type(b).__name__.startswith("SwinTransformerBlock") for b in stage)
        ]
    # maxvit: every MaxVitLayer of every block
    return [
        f"blocks.{b}.layers.{n}"
        for b, block in children(net.blocks)
        for n, _ in children(block.layers)
    ]


def _require(model: nn.Module, inputs: Tensor) -> FoundTransformer:
    found = find_transformer(model, inputs)
    if found is None:
        fail(
            "model",
            "a torchvision VisionTransformer/SwinTransformer/MaxVit, a timm ViT/DeiT or a "
            "transformers ViT-style encoder (or a module containing one)",
            f"<{type(model).__name__}>",
        )
    return found


def transformer_cam_layer(net: nn.Module, x: Tensor) -> str:
    """:func:`default_transformer_cam_layer` without the guard (``net`` already guarded)."""
    found = _require(net, x)
    blocks = _blocks(found)
    if found.family == "vit":
        rel = f"{blocks[-1]}.ln_1"
    elif found.family == "timm_vit":
        rel = f"{blocks[-1]}.norm1"
    elif found.family == "hf_vit":  # its first norm (layernorm_before, norm1)
        last = submodule(found.module, blocks[-1])
        norms = [n for n, m in children(last) if isinstance(m, nn.LayerNorm)]
        if not norms:
            raise ValueError(
                f"the last block {blocks[-1]!r} of this {type(found.module).__name__} has no "
                "LayerNorm to explain; pass `layer=`"
            )
        rel = f"{blocks[-1]}.{norms[0]}"
    else:  # Swin stages / MaxViT layers: the last one with a grid larger than 1x1
        names = [_join(found.prefix, b) for b in blocks]
        cells = _grids(net, names, x, channels_last=found.family in _CHANNELS_LAST)
        spatial = [n for n in names if cells.get(n, 0) > 1]
        if not spatial:
            raise ValueError(
                f"no block of this {type(found.module).__name__} has output larger than 1x1 "
                f"for inputs of shape {tuple(x.shape)}"
            )
        return spatial[-1]
    return _join(found.prefix, rel)


def default_transformer_cam_layer(model: nn.Module, inputs: Tensor) -> str:
    """The layer a CAM explains by default in a transformer.

    - ViT (torchvision / timm / transformers, DeiT): the first norm of the last encoder
      block, ``encoder.layers.encoder_layer_{L-1}.ln_1`` / ``blocks.{L-1}.norm1`` /
      ``layers.{L-1}.layernorm_before`` (its first ``LayerNorm``). Its patch
      tokens feed the last attention, so they carry the gradient of the class token.
      Never the patch embedding (``conv_proj``/``patch_embed``: what a patch looks
      like, not what the transformer attends to), and never the last block's output
      or the final norm: after them only the class token is read, so their patch
      tokens get exactly zero gradient.
    - Swin (torchvision, timm): the output of the last stage whose grid is larger
      than ``1x1``.
    - MaxViT: the output of the last ``MaxVitLayer`` whose grid is larger than ``1x1``.

    Args:
        model: A known transformer (see :func:`is_transformer`) or a module holding one.
        inputs: Example images ``(N, C, H, W)``, float (one is enough; Swin and MaxViT
            run one forward pass without gradients to measure the grids).

    Returns:
        The dotted layer name in ``model``.

    Raises:
        TypeError: ``inputs`` is not a float tensor.
        ValueError: ``model`` holds no known transformer, or no block output is
            larger than ``1x1``.
    """
    check_images(inputs)
    with preserve_state(model) as net:
        return transformer_cam_layer(net, inputs.detach().clone())


def default_transformer_activation_layers(model: nn.Module, inputs: Tensor) -> list[str]:
    """An early, a middle and a late block of a transformer, for activation maps.

    The outputs of encoder blocks (ViT), stages (Swin) or ``MaxVitLayer``s (MaxViT):
    the first, the middle and the last one (deduplicated, so fewer for fewer
    blocks); for Swin and MaxViT only blocks whose grid is larger than ``1x1``.

    Args:
        model: A known transformer (see :func:`is_transformer`) or a module holding one.
        inputs: Example images ``(N, C, H, W)``, float.

    Returns:
        Dotted layer names in ``model``, in execution order.

    Raises:
        TypeError: ``inputs`` is not a float tensor.
        ValueError: ``model`` holds no known transformer, or (Swin/MaxViT) no block
            output is larger than ``1x1``.
    """
    check_images(inputs)
    with preserve_state(model) as net:
        found = _require(net, inputs)
        names = [_join(found.prefix, b) for b in _blocks(found)]
        if found.family in ("swin", "timm_swin", "maxvit"):
            channels_last = found.family in _CHANNELS_LAST
            cells = _grids(net, names, inputs.detach().clone(), channels_last)
            names = [n for n in names if cells.get(n, 0) > 1]
            if not names:
                raise ValueError(
                    f"no block of this {type(found.module).__name__} has output larger than "
                    f"1x1 for inputs of shape {tuple(inputs.shape)}"
                )
        return _spread(names)
