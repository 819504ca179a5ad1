"""Gradient attributions: what in the input the class score is sensitive to.

Every method runs the model inside :func:`~lightning_viz._guard.preserve_state`
(eval mode, parameters frozen, gradients enabled even under ``inference_mode``)
and takes gradients with :func:`torch.autograd.grad` with respect to the inputs
only, so the model is left exactly as it was found and no parameter ``.grad`` is
ever written. Noisy or interpolated copies of the inputs are batched in chunks.

Example:
    >>> import torch, lightning_viz.functional as LF
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
    ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))
    >>> x = torch.rand(8, 3, 32, 32)
    >>> LF.saliency(model, x).shape
    torch.Size([8, 1, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._guard import make_generator, preserve_state
from lightning_viz._hooks import capture_outputs, relu_backward
from lightning_viz.functional._utils import (
    check_images,
    reduce_channels,
    resolve_layer,
    target_indices,
)
from lightning_viz.functional.relu_rules import require_relu_family
from lightning_viz.functional.tokens import Reshape, check_reshape, grid_reader

__all__ = [
    "activation_maps",
    "deconvnet",
    "guided_backprop",
    "integrated_gradients",
    "neuron_gradient",
    "saliency",
    "saliency_in_mask",
    "saliency_mask",
    "smoothgrad",
]

_REDUCES = ("max", "sum", None)
_IG_METHODS = ("gausslegendre", "riemann_trapezoid")


# ----------------------------------------------------------------------------- checks
def _check_reduce(reduce: object) -> None:
    if reduce not in _REDUCES:
        raise ValueError(f"reduce must be 'max', 'sum' or None, got {reduce!r}")


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value


def _check_float(value: object, name: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a float, got {value!r}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"`{name}` must be a finite number >= {minimum}, got {value}")
    return float(value)


def _check_target_type(target: object) -> None:
    if target is not None and not isinstance(target, int | Tensor):
        raise TypeError(f"target must be an int, a tensor of class indices or None, got {target!r}")


def _check_generator(generator: object, device: torch.device) -> torch.Generator:
    if generator is None:
        return make_generator(0, device)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {generator!r}")
    if generator.device.type != device.type:
        raise ValueError(
            f"`generator` is on {generator.device} but the inputs are on {device}; "
            "create it on the inputs' device"
        )
    return generator


# ----------------------------------------------------------------------------- helpers
def _fresh(inputs: Tensor) -> Tensor:
    """A graph-free copy of ``inputs`` usable by autograd (also for inference tensors)."""
    return inputs.detach().clone()


def _logits(net: nn.Module, x: Tensor) -> Tensor:
    out = net(x)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the model must return a tensor of logits (N, K), got {type(out).__name__}; "
            "wrap it in lightning_viz.functional.ModelView(model, output_to_logits=...)"
        )
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"the model must return logits of shape (N, K) = ({x.shape[0]}, K), "
            f"got shape {tuple(out.shape)}"
        )
    return out


def _indices_for(target: int | Tensor, n: int, k: int, device: torch.device) -> Tensor:
    """Validated class indices ``(n,)`` for a given (non-None) target and ``k`` classes."""
    return target_indices(target, torch.zeros((), device=device).expand(n, k))


def _predicted(net: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return _logits(net, x).argmax(dim=-1)


def _score(logits: Tensor, idx: Tensor) -> Tensor:
    """Sum over the batch of each row's target logit (rows are independent in eval)."""
    return logits.gather(1, idx.view(-1, 1)).sum()


def _input_grad(net: nn.Module, x: Tensor, target: int | Tensor | None) -> tuple[Tensor, Tensor]:
    """Gradient of each row's target logit w.r.t. ``x`` and the class indices used."""
    x = x.requires_grad_(True)
    logits = _logits(net, x)
    idx = target_indices(target, logits)
    score = _score(logits, idx)
    if not score.requires_grad:  # the output does not depend on the input
        return torch.zeros_like(x), idx
    (grad,) = torch.autograd.grad(score, x)
    return grad, idx


def _chunked_rows(total: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, chunk_size):
        yield start, min(start + chunk_size, total)


# ----------------------------------------------------------------------------- methods
def saliency(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    reduce: str | None = "max",
) -> Tensor:
    """Vanilla gradient saliency map.

    The gradient of the target class score with respect to the input pixels
    (Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", 2014).

    Args:
        model: Classifier returning logits ``(N, K)``.
        inputs: Images ``(N, C, H, W)``, float, in the model's input space.
        target: Class indices ``(N,)``, one int for all images, or ``None`` for the
            predicted class. Default: ``None``.
        reduce: ``"max"`` (max of ``|grad|`` over channels), ``"sum"`` (sum of
            ``|grad|``) or ``None`` (raw signed gradient). Default: ``"max"``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps, or ``(N, C, H, W)`` signed gradients
        when ``reduce=None``; on the inputs' device.

    Raises:
        TypeError: ``inputs`` is not a float tensor, or ``target`` has a bad type.
        ValueError: ``inputs`` is not 4-D, ``reduce`` is unknown or a class index
            is out of range.
    """
    check_images(inputs)
    _check_reduce(reduce)
    _check_target_type(target)
    with preserve_state(model) as net:
        grad, _ = _input_grad(net, _fresh(inputs), target)
    return reduce_channels(grad, reduce)


def smoothgrad(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    samples: int = 25,
    noise: float = 0.15,
    reduce: str | None = "max",
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SmoothGrad: the gradient averaged over noisy copies of each input.

    Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017. Each input
    gets ``samples`` copies with Gaussian noise of standard deviation
    ``noise * (max(x) - min(x))`` (per image). All ``samples * N`` copies are run in
    batches of at most ``chunk_size`` rows. The target class is resolved once, on
    the clean input. With ``reduce`` set the result is the mean over samples of
    ``|grad|`` reduced over channels (as captum's ``NoiseTunnel(Saliency)`` with
    ``abs=True``); with ``reduce=None`` it is the mean signed gradient.

    Args:
        model: Classifier returning logits ``(N, K)``.
        inputs: Images ``(N, C, H, W)``, float.
        target: Class indices ``(N,)``, an int, or ``None`` (predicted class on the
            clean input). Default: ``None``.
        samples: Noisy copies per image, ``>= 1``. Default: ``25``.
        noise: Noise level relative to each image's value range, ``>= 0``
            (``0`` gives :func:`saliency`). Default: ``0.15``.
        reduce: ``"max"``, ``"sum"`` or ``None``. Default: ``"max"``.
        chunk_size: Rows per forward/backward pass, ``>= 1``. Default: ``64``.
        generator: Private ``torch.Generator`` on the inputs' device for the noise;
            ``None`` uses a fresh one seeded with 0. The global RNG is never used.
            Default: ``None``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps, or ``(N, C, H, W)`` signed mean
        gradients when ``reduce=None``.

    Raises:
        TypeError: Bad ``inputs``, ``target``, ``samples``, ``noise``,
            ``chunk_size`` or ``generator`` type.
        ValueError: Bad shapes or values (the received value is in the message).
    """
    check_images(inputs)
    _check_reduce(reduce)
    _check_target_type(target)
    samples = _check_int(samples, "samples", 1)
    noise = _check_float(noise, "noise", 0.0)
    chunk_size = _check_int(chunk_size, "chunk_size", 1)
    gen = _check_generator(generator, inputs.device)

    n = inputs.shape[0]
    with preserve_state(model) as net:
        x = _fresh(inputs)  # (N, C, H, W)
        idx = _predicted(net, x) if target is None else None
        flat = x.flatten(1)
        scale = noise * (flat.amax(dim=1) - flat.amin(dim=1))  # (N,)
        total = torch.zeros_like(x)
        for start, end in _chunked_rows(samples * n, chunk_size):
            rows = torch.arange(start, end, device=x.device) % n  # sample-major rows
            xs = x[rows]
            if noise > 0:
                eps = torch.randn(xs.shape, generator=gen, device=x.device, dtype=x.dtype)
                xs = xs + eps * scale[rows].view(-1, 1, 1, 1)
            xs.requires_grad_(True)
            logits = _logits(net, xs)
            if idx is None:
                idx = _indices_for(target, n, logits.shape[1], x.device)
            score = _score(logits, idx[rows])
            if score.requires_grad:
                (g,) = torch.autograd.grad(score, xs)
                total.index_add_(0, rows, g.abs() if reduce is not None else g)
        mean = total / samples
    return reduce_channels(mean, reduce)


def _ig_nodes(steps: int, method: str, device: torch.device) -> tuple[Tensor, Tensor]:
    """Nodes ``alpha`` in [0, 1] and weights (summing to 1) of the path integral rule."""
    if method == "riemann_trapezoid":
        alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[0] = weights[-1] = 0.5 / (steps - 1)
    else:  # Gauss-Legendre by Golub-Welsch: eigen-decomposition of the Jacobi matrix
        k = torch.arange(1, steps, dtype=torch.float64)
        off = k / torch.sqrt(4 * k**2 - 1)
        jacobi = torch.diag(off, 1) + torch.diag(off, -1)
        nodes, vecs = torch.linalg.eigh(jacobi)
        alphas = (nodes + 1) / 2
        weights = vecs[0] ** 2  # 2 v0^2 on [-1, 1], halved for [0, 1]
    return alphas.to(device), weights.to(device)


def integrated_gradients(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    baseline: Tensor | float | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    reduce: str | None = "max",
    chunk_size: int = 64,
) -> Tensor:
    """Integrated Gradients along the straight path from a baseline to the input.

    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", 2017:
    ``(x - b) * integral_0^1 grad f(b + a (x - b)) da``, the integral taken by
    Gauss-Legendre quadrature or the trapezoid rule with ``steps`` points. All
    ``steps * N`` path points are batched in chunks of ``chunk_size`` rows.

    With ``reduce=None`` the signed attributions satisfy *completeness*: their sum
    over ``(C, H, W)`` approximates ``f_t(x) - f_t(b)`` (the target logit
    difference), increasingly exactly with more steps. The default map
    (``reduce="max"``) is ``|attr|`` reduced over channels, for display; it does not
    sum to the logit difference.

    Args:
        model: Classifier returning logits ``(N, K)``.
        inputs: Images ``(N, C, H, W)``, float.
        target: Class indices ``(N,)``, an int, or ``None`` (predicted class on the
            input). Default: ``None``.
        baseline: A tensor broadcastable to ``inputs`` or a float; ``None`` is all
            zeros (black). Default: ``None``.
        steps: Points on the path, ``>= 1`` (``>= 2`` for the trapezoid rule).
            Default: ``50``.
        method: ``"gausslegendre"`` or ``"riemann_trapezoid"``.
            Default: ``"gausslegendre"``.
        reduce: ``"max"``, ``"sum"`` or ``None``. Default: ``"max"``.
        chunk_size: Rows per forward/backward pass, ``>= 1``. Default: ``64``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps, or ``(N, C, H, W)`` signed attributions
        when ``reduce=None``.

    Raises:
        TypeError: Bad ``inputs``, ``target``, ``baseline``, ``steps`` or
            ``chunk_size`` type.
        ValueError: Bad shapes or values, an unknown ``method`` or a baseline that
            does not broadcast to ``inputs``.
    """
    check_images(inputs)
    _check_reduce(reduce)
    _check_target_type(target)
    if method not in _IG_METHODS:
        raise ValueError(f"method must be one of {_IG_METHODS}, got {method!r}")
    steps = _check_int(steps, "steps", 2 if method == "riemann_trapezoid" else 1)
    chunk_size = _check_int(chunk_size, "chunk_size", 1)
    if baseline is None:
        base = torch.zeros_like(inputs)
    elif isinstance(baseline, Tensor):
        try:
            base = torch.broadcast_to(baseline.to(inputs.device, inputs.dtype), inputs.shape)
        except RuntimeError:
            raise ValueError(
                f"baseline of shape {tuple(baseline.shape)} does not broadcast to the "
                f"inputs' shape {tuple(inputs.shape)}"
            ) from None
    elif isinstance(baseline, int | float) and not isinstance(baseline, bool):
        base = torch.full_like(inputs, float(baseline))
    else:
        raise TypeError(f"baseline must be a tensor, a float or None, got {baseline!r}")

    n = inputs.shape[0]
    with preserve_state(model) as net:
        x = _fresh(inputs)
        base = _fresh(base)
        delta = x - base  # (N, C, H, W)
        alphas, weights = _ig_nodes(steps, method, x.device)
        idx = _predicted(net, x) if target is None else None
        total = torch.zeros_like(x)
        for start, end in _chunked_rows(steps * n, chunk_size):
            r = torch.arange(start, end, device=x.device)
            rows, step = r % n, r // n  # step-major rows
            a = alphas[step].to(x.dtype).view(-1, 1, 1, 1)
            xs = (base[rows] + a * delta[rows]).requires_grad_(True)
            logits = _logits(net, xs)
            if idx is None:
                idx = _indices_for(target, n, logits.shape[1], x.device)
            score = _score(logits, idx[rows])
            if score.requires_grad:
                (g,) = torch.autograd.grad(score, xs)
                total.index_add_(0, rows, g * weights[step].to(g.dtype).view(-1, 1, 1, 1))
        attr = delta * total
    return reduce_channels(attr, reduce)


def _relu_rule_gradient(
    model: nn.Module, inputs: Tensor, target: int | Tensor | None, mode: str, reduce: str | None
) -> Tensor:
    check_images(inputs)
    _check_reduce(reduce)
    _check_target_type(target)
    with preserve_state(model) as net, relu_backward(mode) as rule:
        grad, _ = _input_grad(net, _fresh(inputs), target)
        require_relu_family(net, rule)  # else `grad` is the plain gradient
    return reduce_channels(grad, reduce)


def guided_backprop(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    reduce: str | None = "max",
) -> Tensor:
    """Guided backpropagation.

    Springenberg et al., "Striving for Simplicity: The All Convolutional Net", 2015:
    the input gradient where every ReLU passes back only positive gradients at
    positions where its input was positive. Every ReLU is caught — ``nn.ReLU``
    modules (also ``inplace=True``) and functional ``F.relu``/``torch.relu``/
    ``Tensor.relu`` calls — because the rule is applied by a ``TorchFunctionMode``,
    not by module hooks (captum's ``GuidedBackprop`` silently skips functional
    ReLUs).

    Beyond ReLU (a rule of this library, not of the paper): every ReLU6,
    LeakyReLU, ELU, GELU, SiLU, Hardswish and Mish unit (modules, functional and
    in-place calls) passes back ``relu(g) * [x > 0] * f'(x)`` — only positive
    gradients, only through units with positive input ``x``, times the unit's own
    derivative ``f'``. Other functions (tanh, sigmoid, hardsigmoid gates, ...) keep
    their ordinary gradient. A model whose forward runs none of these units raises
    instead of returning the plain gradient (see
    :func:`~lightning_viz.functional.relu_rule_counts`).

    Args:
        model: Classifier returning logits ``(N, K)``.
        inputs: Images ``(N, C, H, W)``, float.
        target: Class indices ``(N,)``, an int, or ``None`` (predicted class).
            Default: ``None``.
        reduce: ``"max"``, ``"sum"`` or ``None`` (signed). Default: ``"max"``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps, or ``(N, C, H, W)`` when ``reduce=None``.

    Raises:
        TypeError: Bad ``inputs`` or ``target`` type.
        ValueError: Bad ``inputs`` shape, ``reduce`` or class index, or the forward
            ran no ReLU-family unit (the message names the model's activations).
    """
    return _relu_rule_gradient(model, inputs, target, "guided", reduce)


def deconvnet(
    model: nn.Module,
    inputs: Tensor,
    target: int | Tensor | None = None,
    *,
    reduce: str | None = "max",
) -> Tensor:
    """Deconvnet attribution.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", 2014:
    the input gradient where every ReLU passes back the positive part of the
    incoming gradient, whatever the sign of its forward input. ReLUs are caught as
    in :func:`guided_backprop` (modules, in-place and functional calls alike).

    Beyond ReLU (a rule of this library, not of the paper): every ReLU6,
    LeakyReLU, ELU, GELU, SiLU, Hardswish and Mish unit passes back
    ``relu(g) * f'(x)`` — the positive part of the gradient times the unit's own
    derivative at its input ``x``, whatever the sign of ``x``. Other functions keep
    their ordinary gradient; a model whose forward runs none of these units raises.

    Args:
        model: Classifier returning logits ``(N, K)``.
        inputs: Images ``(N, C, H, W)``, float.
        target: Class indices ``(N,)``, an int, or ``None`` (predicted class).
            Default: ``None``.
        reduce: ``"max"``, ``"sum"`` or ``None`` (signed). Default: ``"max"``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps, or ``(N, C, H, W)`` when ``reduce=None``.

    Raises:
        TypeError: Bad ``inputs`` or ``target`` type.
        ValueError: Bad ``inputs`` shape, ``reduce`` or class index, or the forward
            ran no ReLU-family unit (the message names the model's activations).
    """
    return _relu_rule_gradient(model, inputs, target, "deconvnet", reduce)


def neuron_gradient(
    model: nn.Module,
    inputs: Tensor,
    layer: str | nn.Module,
    channel: int,
    *,
    reduce: str | None = "max",
    reshape: Reshape | None = None,
) -> Tensor:
    """Gradient of one channel's mean activation with respect to the input.

    What in the image drives a feature of an inner layer (the gradient analogue
    of Erhan et al. 2009 / Simonyan et al. 2014). The objective is the **mean**
    over spatial positions of channel ``channel`` of ``layer``'s output, so its
    scale does not depend on the feature-map size; for a 2-D output (``Linear``)
    it is the single unit ``channel``. The value is read before any in-place op
    that follows the layer. On a transformer's token layer ``(N, T, D)`` the output
    is first read as a grid (:mod:`~lightning_viz.functional.tokens`), so the
    objective is the mean over the *patch* tokens of channel ``d`` (prefix tokens
    such as the class token excluded).

    Args:
        model: Any ``nn.Module`` taking ``inputs``.
        inputs: Images ``(N, C, H, W)``, float.
        layer: The layer, as a module or its dotted name (``"layer3.1.conv2"``).
        channel: Channel (or unit) index in ``[0, C_layer)``.
        reduce: ``"max"``, ``"sum"`` or ``None`` (signed). Default: ``"max"``.
        reshape: Maps the layer's output to ``(N, D, h, w)``; ``None`` detects the
            token layers of known transformers (:func:`~lightning_viz.functional.
            token_layout`) and uses other outputs as they are. Default: ``None``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps, or ``(N, C, H, W)`` when ``reduce=None``.

    Raises:
        TypeError: Bad ``inputs``, ``layer``, ``channel`` or ``reshape`` type.
        ValueError: Unknown layer (the message lists the layers and the closest
            match), a layer not run by the forward, or ``channel`` out of range.
    """
    check_images(inputs)
    _check_reduce(reduce)
    channel = _check_int(channel, "channel", 0)
    check_reshape(reshape)
    with preserve_state(model) as net:
        name, module = resolve_layer(net, layer)
        x = _fresh(inputs).requires_grad_(True)
        with capture_outputs({name: module}, detach=False) as store:
            net(x)
        if name not in store:
            raise ValueError(f"layer {name!r} did not run (or returned no tensor) in the forward")
        act = store.pop(name)
        to_grid = grid_reader(net, name, tuple(x.shape[-2:]), reshape)
        if to_grid is not None:  # tokens (N, T, D) -> (N, D, h, w): channel = token feature
            act = to_grid(act)
        if act.dim() < 2 or act.shape[0] != x.shape[0]:
            raise ValueError(f"layer {name!r} output has shape {tuple(act.shape)}, not (N, C, ...)")
        if channel >= act.shape[1]:
            raise ValueError(
                f"channel must lie in [0, {act.shape[1]}) for layer {name!r}, got {channel}"
            )
        objective = act[:, channel].flatten(1).mean(dim=1).sum()
        if objective.requires_grad:
            (grad,) = torch.autograd.grad(objective, x)
        else:
            grad = torch.zeros_like(x)
    return reduce_channels(grad.detach(), reduce)


def activation_maps(
    model: nn.Module,
    inputs: Tensor,
    layers: Sequence[str | nn.Module] | str | nn.Module,
    *,
    reshape: Reshape | None = None,
) -> dict[str, Tensor]:
    """Output (feature) maps of the given layers, from one forward pass.

    Args:
        model: Any ``nn.Module`` taking ``inputs``.
        inputs: Images ``(N, C, H, W)``, float.
        layers: Layers as modules or dotted names (a single one is accepted too).
        reshape: Maps every listed layer's output to ``(N, D, h, w)``; ``None``
            reads the token layers of known transformers as grids
            (:func:`~lightning_viz.functional.token_layout`: ViT tokens without the
            class token, Swin channels-last permuted) and returns other outputs as
            they are. Default: ``None``.

    Returns:
        Dotted layer name -> detached copy of the layer's output, e.g.
        ``(N, C_l, H_l, W_l)`` for a conv or ``(N, D, h, w)`` for a ViT block;
        values as the layer produced them, unaffected by in-place ops that follow
        it. On the inputs' device.

    Raises:
        TypeError: Bad ``inputs``, ``layers`` or ``reshape`` type.
        ValueError: ``layers`` is empty, names an unknown layer (the message lists
            the layers and the closest match) or a layer that does not run.
    """
    check_images(inputs)
    if isinstance(layers, str | nn.Module):
        layers = [layers]
    if not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a list of layer names or modules, got {layers!r}")
    if len(layers) == 0:
        raise ValueError("layers must name at least one layer, got an empty list")
    check_reshape(reshape)
    with preserve_state(model) as net:
        named = dict(resolve_layer(net, layer) for layer in layers)
        with torch.no_grad(), capture_outputs(named) as store:
            net(_fresh(inputs))
        missing = [name for name in named if name not in store]
        if missing:
            raise ValueError(f"layers {missing} did not run (or returned no tensor) in the forward")
        size = tuple(inputs.shape[-2:])
        readers = {name: grid_reader(net, name, size, reshape) for name in named}
        return {n: store[n] if readers[n] is None else readers[n](store[n]) for n in named}


# ----------------------------------------------------------------------------- masks
def _check_maps(maps: object, name: str = "maps") -> Tensor:
    if not isinstance(maps, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor (N, 1, H, W), got {type(maps).__name__}")
    if not maps.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {maps.dtype}")
    if maps.dim() != 4 or maps.shape[1] != 1 or maps.shape[0] == 0:
        raise ValueError(f"`{name}` must have shape (N, 1, H, W), got {tuple(maps.shape)}")
    return maps


def saliency_mask(maps: Tensor, quantile: float = 0.8, *, smooth: int = 0) -> Tensor:
    """Segments the most salient pixels of each map.

    A pixel is in the mask when its (optionally box-smoothed) value is strictly
    above the ``quantile`` of its own image's values, so about ``1 - quantile`` of
    the pixels are kept (fewer on ties; an all-constant map gives an empty mask).

    Args:
        maps: Non-negative saliency maps ``(N, 1, H, W)``, float.
        quantile: Per-image threshold quantile in ``[0, 1]``. Default: ``0.8``.
        smooth: Radius ``r`` of a ``(2r+1)x(2r+1)`` box filter applied before
            thresholding; ``0`` disables it. Default: ``0``.

    Returns:
        Boolean masks ``(N, 1, H, W)`` on the maps' device.

    Raises:
        TypeError: ``maps`` is not a float tensor, or bad ``quantile``/``smooth`` type.
        ValueError: ``maps`` is not ``(N, 1, H, W)``, ``quantile`` outside
            ``[0, 1]`` or ``smooth < 0``.
    """
    _check_maps(maps)
    quantile = _check_float(quantile, "quantile", 0.0)
    if quantile > 1.0:
        raise ValueError(f"`quantile` must lie in [0, 1], got {quantile}")
    smooth = _check_int(smooth, "smooth", 0)
    m = maps.detach().float()
    if smooth > 0:
        k = 2 * smooth + 1
        m = F.avg_pool2d(m, k, stride=1, padding=smooth, count_include_pad=False)
    flat = m.flatten(1)  # (N, H*W)
    thresh = torch.quantile(flat, quantile, dim=1, keepdim=True)  # (N, 1)
    return (flat > thresh).view_as(maps)


def saliency_in_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """Fraction of each map's total saliency that falls inside its object mask.

    ``sum(maps * masks) / sum(maps)`` per image: 1 when all saliency is on the
    object, near the mask's area fraction when saliency is spread evenly. An image
    whose map is all zero gets 0.

    Args:
        maps: Non-negative saliency maps ``(N, 1, H, W)``, float.
        masks: Boolean object masks ``(N, 1, H, W)`` (``(N, H, W)`` is accepted).

    Returns:
        Float fractions ``(N,)`` in ``[0, 1]``, on the maps' device.

    Raises:
        TypeError: ``maps`` is not a float tensor or ``masks`` is not a bool tensor.
        ValueError: Shapes differ, or ``maps`` has negative values.
    """
    _check_maps(maps)
    if not isinstance(masks, Tensor):
        raise TypeError(f"`masks` must be a bool torch.Tensor, got {type(masks).__name__}")
    if masks.dtype != torch.bool:
        raise TypeError(f"`masks` must be a bool tensor (use masks > 0), got dtype {masks.dtype}")
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if masks.shape != maps.shape:
        raise ValueError(
            f"masks of shape {tuple(masks.shape)} do not match maps of shape {tuple(maps.shape)}"
        )
    m = maps.detach()
    if bool((m < 0).any()):
        raise ValueError(
            f"maps must be non-negative (use reduce='max' or 'sum'), min is {m.min().item():.4g}"
        )
    total = m.flatten(1).sum(dim=1)
    inside = (m * masks.to(device=m.device, dtype=m.dtype)).flatten(1).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(m.dtype).tiny), 0.0)
