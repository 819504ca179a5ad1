"""Class activation maps: which regions of a conv layer's feature maps a class uses.

One private pipeline (:func:`_cam`) does the work, as in pytorch-grad-cam's
``BaseCAM``; each variant only says how channel weights are computed from the
layer's activations ``A`` and gradients ``dS/dA``:

1. forward with the layer's output made the start of the graph
   (:func:`~lightning_viz._hooks.gradient_leaf`), so backward runs from the class
   scores down to the layer only, never through the earlier layers or parameters;
2. ``autograd.grad`` of the summed target scores w.r.t. the activation;
3. channel weights by the variant, weighted sum over channels, ReLU;
4. bilinear upsampling to the input size. Maps are *not* normalized.

Examples:
    >>> import torch, lightning_viz.functional as LF
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
    ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))
    >>> x = torch.rand(8, 3, 32, 32)
    >>> LF.grad_cam(model, x, layer="0").shape
    torch.Size([8, 1, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._checks import check_images, check_reduce, check_reshape, check_target_type
from lightning_viz._guard import ModelView, preserve_state
from lightning_viz._hooks import gradient_leaf, record_outputs
from lightning_viz.functional._grad import (
    feature_conv_layers,
    forward_logits,
    fresh,
    grad_of,
    in_model_dtype,
    named_layers,
    reduce_channels,
    resolve_layer,
    score_sum,
    target_indices,
)
from lightning_viz.functional.saliency import guided_backprop
from lightning_viz.functional.tokens import (
    Reshape,
    grid_reader,
    is_transformer,
    transformer_cam_layer,
)

__all__ = ["default_cam_layer", "grad_cam", "grad_cam_pp", "guided_grad_cam"]

WeightFn = Callable[[Tensor, Tensor], Tensor]  # (A, dS/dA) (N, K, h, w) -> weights (N, K)


# ----------------------------------------------------------------------------- layer choice
def _default_layer(net: nn.Module, x: Tensor) -> str:
    if is_transformer(net):  # its last conv is the patch embedding: explain the encoder instead
        return transformer_cam_layer(net, x)
    convs = dict(feature_conv_layers(net))
    if not convs:
        names = ", ".join(n for n, _ in named_layers(net) if n) or "(no submodules)"
        raise ValueError(
            f"GradCAM needs a convolutional layer; the model has none. Layers: {names}"
        )
    root = net.model if isinstance(net, ModelView) else net  # names as feature_conv_layers'
    modules = {name: m for name, m in named_layers(root) if name}
    calls = _image_outputs(net, modules, x)
    spatial = [name for name, out in calls if name in convs and _is_grid(out)]
    if not spatial:
        raise ValueError(
            "GradCAM needs a convolutional layer with spatial output larger than 1x1, one "
            "output (N, C, h, w) per image that depends on the image; none of the model's "
            f"conv layers ({', '.join(convs)}) produced one for inputs of shape "
            f"{tuple(x.shape)}: pass `layer=` (and `reshape=` for a token layer)"
        )
    return _feature_map_layer(modules, calls, convs) or spatial[-1]


def _image_outputs(
    net: nn.Module, modules: dict[str, nn.Module], x: Tensor
) -> list[tuple[str, Tensor]]:
    """``(name, output)`` of every module call of one forward on ``x`` whose output has
    one row per image (a batch dimension of ``N``) and depends on the image: a second
    forward on random images in the range of ``x`` leaves it unchanged otherwise (a
    positional encoding, computed from the grid size alone, is no feature map)."""
    with torch.no_grad(), record_outputs(modules) as calls:
        net(in_model_dtype(net, x))
    lo, hi = float(x.min()), float(x.max())
    lo, hi = (lo, hi) if hi - lo > 1e-3 else (lo - 0.5, hi + 0.5)
    image = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    image = image * (hi - lo) + lo
    with torch.no_grad(), record_outputs(modules) as moved:
        net(in_model_dtype(net, image.to(x.device, x.dtype)))  # the same range, another image
    if [name for name, _ in moved] != [name for name, _ in calls]:
        moved = [(name, None) for name, _ in calls]  # not comparable call by call: keep all
    return [
        (name, out)
        for (name, out), (_, other) in zip(calls, moved, strict=True)
        if out.dim() > 0 and out.shape[0] == x.shape[0] and not _fixed(out, other)
    ]


def _fixed(out: Tensor, other: Tensor | None) -> bool:
    """The same varying output for another image: a pattern the image does not enter.
    A constant output tells nothing (an uncalibrated quantized layer rounds all to 0)."""
    return other is not None and torch.equal(out, other) and bool(out.amax() > out.amin())


def _is_grid(out: Tensor) -> bool:
    return out.dim() == 4 and out.shape[-2] * out.shape[-1] > 1


def _feature_map_layer(
    modules: dict[str, nn.Module], calls: list[tuple[str, Tensor]], convs: dict[str, nn.Module]
) -> str | None:
    """The layer whose output is the last feature map the head reads, at the level of
    a block: the last conv, or module holding a conv, to complete with a
    ``(N, C, h, w)`` output larger than ``1x1`` (pooling, ``Identity`` or an attention
    map do not count), then down through what produced that same output: the last block of a
    ``Sequential`` stage, a wrapper's backbone. A block with a forward of its own (a
    residual block, an Inception module, a dense block's concatenation) is the
    answer; a plain chain of layers (conv, norm, activation) gives its last conv.
    ``None`` when no module qualifies.
    """
    last: dict[str, Tensor] = {}
    order: dict[str, int] = {}
    for i, (name, out) in enumerate(calls):
        last[name], order[name] = out, i

    def holds(n: str) -> bool:  # a conv, or a module holding one (not an attention map)
        return any(c == n or c.startswith(f"{n}.") for c in convs)

    name = _last_grid_child(modules, last, order, holds)
    if name is None:
        held = [n for n, out in calls if _is_grid(out) and holds(n)]
        if not held:
            return None
        name = held[-1]
    while True:
        module, out = modules[name], last[name]
        children = sorted(
            (f"{name}.{c}" for c, _ in module.named_children() if f"{name}.{c}" in last),
            key=order.__getitem__,
        )
        if not children or name in convs:
            return name
        if all(not any(True for _ in modules[c].children()) for c in children):  # a chain
            chained = [c for c in children if c in convs and _is_grid(last[c])]
            return chained[-1] if chained and _plain(module) else name
        same = [
            c for c in children if last[c] is out or (_plain(module) and last[c].shape == out.shape)
        ]
        same = [c for c in same if any(True for _ in modules[c].children()) or c in convs]
        if not same:
            return name
        name = same[-1]


def _last_grid_child(
    modules: dict[str, nn.Module],
    last: dict[str, Tensor],
    order: dict[str, int],
    holds: Callable[[str], bool],
    prefix: str = "",
) -> str | None:
    """From the root down: the last child of ``prefix`` (holding a conv) whose output is
    a grid larger than ``1x1``, looking inside a later child first when it is a wrapper
    (its output is not ``(N, C, h, w)``: a backbone returning features or logits) or a
    ``Sequential`` stage. A block whose output collapsed to ``1x1`` is passed over, not
    entered: when the last stage of an ImageNet network is ``1x1`` on 32 px images the
    answer is the stage before it, not the expansion conv inside the last stage's first
    block (which runs before its strided conv)."""
    kids = sorted(
        (n for n in _run_children(modules, last, prefix) if holds(n)), key=order.__getitem__
    )
    for name in reversed(kids):
        if _is_grid(last[name]):
            return name
        if last[name].dim() != 4 or _plain(modules[name]):
            found = _last_grid_child(modules, last, order, holds, name)
            if found is not None:
                return found
    return None


def _run_children(modules: dict[str, nn.Module], last: dict[str, Tensor], prefix: str) -> list[str]:
    """The children of ``prefix`` that ran; a container that never runs itself (an
    ``nn.ModuleList`` of blocks looped over in ``forward``) stands for its children."""
    found: list[str] = []
    for name in modules:
        if name.rpartition(".")[0] != prefix:
            continue
        if name in last:
            found.append(name)
        elif any(n.startswith(f"{name}.") for n in last):
            found.extend(_run_children(modules, last, name))
    return found


def _plain(module: nn.Module) -> bool:
    """A ``Sequential`` (or subclass) running its children one after the other."""
    return type(module).forward is nn.Sequential.forward


def default_cam_layer(model: nn.Module, inputs: Tensor) -> str:
    """The layer Grad-CAM uses by default: the block whose output is the last
    feature map the head reads.

    One forward pass (no gradients) records every module's output in the order the
    calls complete, a second on random images in their range which outputs depend on
    the image (one row per image, changed by another image: not a positional encoding). The
    last such module with parameters whose output is ``(N, C, h, w)`` larger than
    ``1x1`` holds the last feature map; from there the choice goes down
    through what produced that same output (the last block of a ``Sequential`` stage,
    a wrapper's backbone) and stops at a block with a forward of its own (a residual
    block, an Inception module, a dense block) or, for a plain chain of layers, at the
    chain's last conv. So a ResNet gets its last block (``"layer4.1"``), never the
    shortcut conv that runs after the block's branch convs, and a concatenating model
    the concatenation, not its last branch. Without such a block it is the last conv
    run whose output is larger than ``1x1``. For a known
    transformer (:func:`~lightning_viz.functional.is_transformer`) it is
    :func:`~lightning_viz.functional.defaulttransformer_cam_layer` instead (for a
    ViT the first norm of the last encoder block, never the patch embedding).

    Args:
        model: The classifier.
        inputs: Example images ``(N, C, H, W)``, float (one image is enough).

    Returns:
        The dotted name of the layer, e.g. ``"layer4.1"`` or ``"block3.conv"``.

    Raises:
        TypeError: ``inputs`` is not a float tensor.
        ValueError: ``inputs`` is not 4-D, the model has no ``nn.Conv2d`` (the
            message lists its layers), or no conv output is larger than ``1x1``.
    """
    check_images(inputs)
    with preserve_state(model) as net:
        return _default_layer(net, fresh(inputs))


# ----------------------------------------------------------------------------- pipeline
def _cam(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None,
    layer: str | nn.Module | None,
    weights: WeightFn,
    upsample: bool = True,
    reshape: Reshape | None = None,
) -> tuple[Tensor, Tensor]:
    """The shared CAM pipeline. Returns ``(cam, class indices)``.

    ``cam`` is ``relu(sum_k w_k A_k)``, ``(N, 1, H, W)`` (or ``(N, 1, h, w)`` at the
    layer's resolution when ``upsample`` is False). Token layers: ``A`` and ``dS/dA``
    are both read as grids ``(N, D, h, w)`` (``reshape``, or the detected layout of a
    known transformer) before the channel weights, as pytorch-grad-cam's
    ``reshape_transform``.
    """
    check_images(inputs)
    check_target_type(target)
    check_reshape(reshape)
    with preserve_state(model) as net:
        x = fresh(inputs)
        if layer is None:
            name, module = resolve_layer(net, _default_layer(net, x))
        else:
            name, module = resolve_layer(net, layer)
        with gradient_leaf(module) as store:
            logits = forward_logits(net, x)
        if "leaf" not in store:
            raise ValueError(f"layer {name!r} did not run in the model's forward")
        act = store.pop("leaf")  # (N, K, h, w) or tokens, a leaf: backward stops here
        to_grid = grid_reader(net, name, tuple(x.shape[-2:]), reshape)  # None: used as it is
        if to_grid is None and (act.dim() != 4 or act.shape[0] != x.shape[0]):
            why = (
                f"its first dimension is {act.shape[0]}, not the batch size {x.shape[0]}"
                if act.dim() == 4
                else "pass `reshape=` to read its tokens as a grid"
            )
            raise ValueError(
                f"CAMs need a layer with (N, C, h, w) output; {name!r} returns shape "
                f"{tuple(act.shape)} for {x.shape[0]} image(s): {why}"
            )
        idx = target_indices(target, logits)
        grad = grad_of(score_sum(logits, idx), act, name=f"layer {name!r}")
        # at least float32 (a bf16 layer), returned in the inputs' dtype like every map
        work = torch.promote_types(act.dtype, torch.float32)
        act, grad = act.detach().to(work), grad.to(work)
        if to_grid is not None:  # (N, T, D) tokens / (N, h, w, D) -> (N, D, h, w)
            act, grad = to_grid(act), to_grid(grad)
        w = weights(act, grad)  # (N, K)
        cam = F.relu((w[:, :, None, None] * act).sum(dim=1, keepdim=True))  # (N, 1, h, w)
        if upsample:
            cam = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return cam.to(inputs.dtype), idx


def _gradcam_weights(act: Tensor, grad: Tensor) -> Tensor:
    return grad.mean(dim=(2, 3))


def _gradcam_pp_weights(act: Tensor, grad: Tensor, eps: float = 1e-6) -> Tensor:
    # Chattopadhay et al. eq. 19 with exp(S) folded in (as pytorch-grad-cam):
    # alpha = g^2 / (2 g^2 + sum_ij(A) g^3), zero where g == 0; w = sum_ij relu(g) alpha
    g2 = grad.pow(2)
    g3 = g2 * grad
    sum_act = act.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_act * g3 + eps)
    alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
    return (F.relu(grad) * alpha).sum(dim=(2, 3))


# ----------------------------------------------------------------------------- variants
def grad_cam(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    layer: str | nn.Module | None = None,
    reshape: Reshape | None = None,
) -> Tensor:
    """Grad-CAM: class activation map weighted by spatially averaged gradients.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", 2017: ``relu(sum_k mean_ij(dS/dA_k) A_k)``,
    bilinearly upsampled to the input size.

    Args:
        model: Classifier returning logits ``(N, K)``.
        inputs: Images ``(N, C, H, W)``, float.
        target: Class indices ``(N,)``, an int, or ``None`` (predicted class).
            Default: ``None``.
        layer: The layer (module or dotted name) whose output is used; ``None``
            picks :func:`default_cam_layer` (one extra forward pass). A module the
            forward calls more than once (torchvision's ``BasicBlock`` calls its one
            ``relu`` twice) is read at its last call; pytorch-grad-cam reads the first.
            Default: ``None``.
        reshape: Maps the layer's output (and its gradient) to ``(N, D, h, w)``, as
            pytorch-grad-cam's ``reshape_transform`` (a callable or a
            :class:`~lightning_viz.functional.TokenLayout`); ``None`` detects the
            token layers of known transformers (ViT tokens without the class token,
            Swin channels-last) and uses other outputs as they are. Default: ``None``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps at the input size, not normalized.

    Raises:
        TypeError: Bad ``inputs``, ``target``, ``layer`` or ``reshape`` type.
        ValueError: Bad ``inputs`` shape or class index, unknown layer (the message
            lists the layers and the closest match), a layer without ``(N, C, h, w)``
            output, or (``layer=None``) a model without ``nn.Conv2d``.
    """
    return _cam(model, inputs, target, layer, _gradcam_weights, reshape=reshape)[0]


def grad_cam_pp(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    layer: str | nn.Module | None = None,
    reshape: Reshape | None = None,
) -> Tensor:
    """Grad-CAM++: channel weights from positive gradients with pixel-wise alphas.

    Chattopadhay et al., "Grad-CAM++: Improved Visual Explanations for Deep
    Convolutional Networks", WACV 2018, eq. 19 with the exponential folded into the
    score, as in pytorch-grad-cam's ``GradCAMPlusPlus``:
    ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3 + 1e-6)`` (0 where ``g = 0``),
    ``w_k = sum_ij relu(g) alpha``. Arguments (``reshape`` included), return value
    and errors as :func:`grad_cam`.
    """
    return _cam(model, inputs, target, layer, _gradcam_pp_weights, reshape=reshape)[0]


def guided_grad_cam(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    layer: str | nn.Module | None = None,
    reduce: str | None = "max",
    reshape: Reshape | None = None,
) -> Tensor:
    """Guided Grad-CAM: guided backprop gradients times the upsampled Grad-CAM.

    Selvaraju et al. 2017, sec. 3.1 (as captum's ``GuidedGradCam`` with bilinear
    interpolation): the element-wise product of the signed guided-backprop input
    gradient ``(N, C, H, W)`` and the Grad-CAM map, then reduced over channels.
    The class is resolved once and used by both passes.

    Args:
        model: Classifier returning logits ``(N, K)``.
        inputs: Images ``(N, C, H, W)``, float.
        target: Class indices ``(N,)``, an int, or ``None`` (predicted class).
            Default: ``None``.
        layer: Module or dotted name; ``None`` picks :func:`default_cam_layer`.
            Default: ``None``.
        reduce: ``"max"``, ``"sum"`` (of ``|.|`` over channels) or ``None`` (signed
            ``(N, C, H, W)``). Default: ``"max"``.
        reshape: As in :func:`grad_cam`. Default: ``None``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps, or ``(N, C, H, W)`` when ``reduce=None``.

    Raises:
        TypeError: Bad ``inputs``, ``target``, ``layer`` or ``reshape`` type.
        ValueError: As :func:`grad_cam`, or a bad ``reduce``.
    """
    check_images(inputs)
    check_reduce(reduce)
    cam, idx = _cam(model, inputs, target, layer, _gradcam_weights, reshape=reshape)
    guided = guided_backprop(model, inputs, idx, reduce=None)  # (N, C, H, W)
    return reduce_channels(guided * cam, reduce)
