"""Gradient attributions: what in the input the class score is sensitive to.

Every method runs the model inside :func:`~lightning_viz._guard.preserve_state`
(eval mode, parameters frozen, gradients enabled even under ``inference_mode``)
and takes gradients with :func:`torch.autograd.grad` with respect to the inputs
only, so the model is left exactly as it was found and no parameter ``.grad`` is
ever written. Noisy or interpolated copies of the inputs are batched in chunks.

Examples:
    >>> import torch, lightning_viz.functional as LF
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
    ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))
    >>> x = torch.rand(8, 3, 32, 32)
    >>> LF.saliency(model, x).shape
    torch.Size([8, 1, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._checks import (
    check_choice,
    check_float,
    check_generator,
    check_images,
    check_int,
    check_maps,
    check_reduce,
    check_reshape,
    check_target_type,
    fail,
)
from lightning_viz._guard import make_generator, preserve_state
from lightning_viz._hooks import capture_outputs, relu_backward
from lightning_viz.functional._grad import (
    chunked_rows,
    forward_logits,
    fresh,
    grad_of,
    in_model_dtype,
    input_grad,
    reduce_channels,
    resolve_layer,
    row_noise,
    score_sum,
    target_indices,
)
from lightning_viz.functional._task import predict
from lightning_viz.functional.relu_rules import require_relu_family
from lightning_viz.functional.tokens import Reshape, grid_reader

__all__ = [
    "activation_maps",
    "deconvnet",
    "guided_backprop",
    "integrated_gradients",
    "neuron_gradient",
    "saliency",
    "saliency_mask",
    "smoothgrad",
]

_IG_METHODS = ("gausslegendre", "riemann_trapezoid")


def _check_attribution(inputs: Any, target: Any, reduce: Any) -> None:
    """The arguments every attribution method shares: images, a target, a reduction."""
    check_images(inputs)
    check_reduce(reduce)
    check_target_type(target)


def _generator(generator: object, device: torch.device) -> torch.Generator:
    check_generator(generator)
    if generator is None:
        return make_generator(0, device)
    if generator.device.type != device.type:  # type: ignore[union-attr]
        raise ValueError(
            f"`generator` is on {generator.device} but the inputs are on {device}; "  # type: ignore[union-attr]
            "create it on the inputs' device"
        )
    return generator  # type: ignore[return-value]


def _clean_target(net: nn.Module, x: Tensor, target: int | Tensor | None) -> Tensor:
    """Class indices ``(N,)`` resolved once, on the clean inputs."""
    with torch.no_grad():
        if target is None:
            return predict(forward_logits(net, x))
        logits = forward_logits(net, x[:1])  # the number of classes, for the checks
        return target_indices(target, logits.expand(x.shape[0], -1))


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
    _check_attribution(inputs, target, reduce)
    with preserve_state(model) as net:
        grad, _ = input_grad(net, fresh(inputs), target)
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
        chunk_size: Rows per forward/backward pass, ``>= 1`` (the noise does not depend
            on it). Default: ``64``.
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
    _check_attribution(inputs, target, reduce)
    samples = check_int(samples, "samples", minimum=1)
    noise = check_float(noise, "noise", minimum=0.0)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    gen = _generator(generator, inputs.device)

    n = inputs.shape[0]
    with preserve_state(model) as net:
        x = fresh(inputs)  # (N, C, H, W)
        idx = _clean_target(net, x, target)
        flat = x.flatten(1)
        scale = noise * (flat.amax(dim=1) - flat.amin(dim=1))  # (N,)
        total = torch.zeros_like(x)
        for start, end in chunked_rows(samples * n, chunk_size):
            rows = torch.arange(start, end, device=x.device) % n  # sample-major rows
            xs = x[rows]
            if noise > 0:
                eps = row_noise(xs.shape, gen, x)  # the same noise whatever the chunk size
                xs = xs + eps * scale[rows].view(-1, 1, 1, 1)
            xs.requires_grad_(True)
            g = grad_of(score_sum(forward_logits(net, xs), idx[rows]), xs)
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
        method: ``"gausslegendre"`` (Captum's default, equal to it) or
            ``"riemann_trapezoid"``: the trapezoid rule on ``steps`` equally spaced
            points, whose weights sum to 1 (completeness holds). Captum's method of the
            same name weighs the same points by ``1/steps`` (halved at the ends, summing
            to ``(steps - 1)/steps``), so its map is ``(steps - 1)/steps`` of this one.
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
    _check_attribution(inputs, target, reduce)
    check_choice(method, "method", _IG_METHODS)
    steps = check_int(steps, "steps", minimum=2 if method == "riemann_trapezoid" else 1)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    if baseline is None:
        base = torch.zeros_like(inputs)
    elif isinstance(baseline, Tensor):
        try:
            base = torch.broadcast_to(baseline.to(inputs.device, inputs.dtype), inputs.shape)
        except RuntimeError:
            fail(
                "baseline",
                f"a tensor that broadcasts to the inputs' shape {tuple(inputs.shape)}",
                f"<shape {tuple(baseline.shape)}>",
            )
    elif isinstance(baseline, int | float) and not isinstance(baseline, bool):
        base = torch.full_like(inputs, float(baseline))
    else:
        fail("baseline", "a tensor, a float or None", baseline, TypeError)

    n = inputs.shape[0]
    with preserve_state(model) as net:
        x = fresh(inputs)
        base = fresh(base)
        delta = x - base  # (N, C, H, W)
        alphas, weights = _ig_nodes(steps, method, x.device)
        idx = _clean_target(net, x, target)
        total = torch.zeros_like(x)
        for start, end in chunked_rows(steps * n, chunk_size):
            r = torch.arange(start, end, device=x.device)
            rows, step = r % n, r // n  # step-major rows
            a = alphas[step].to(x.dtype).view(-1, 1, 1, 1)
            xs = (base[rows] + a * delta[rows]).requires_grad_(True)
            g = grad_of(score_sum(forward_logits(net, xs), idx[rows]), xs)
            total.index_add_(0, rows, g * weights[step].to(g.dtype).view(-1, 1, 1, 1))
        attr = delta * total
    return reduce_channels(attr, reduce)


def _relu_rule_gradient(
    model: nn.Module, inputs: Tensor, target: int | Tensor | None, mode: str, reduce: str | None
) -> Tensor:
    _check_attribution(inputs, target, reduce)
    with preserve_state(model) as net, relu_backward(mode) as rule:
        grad, _ = input_grad(net, fresh(inputs), target)
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

    Arguments, return value and errors as :func:`guided_backprop`.
    """
    return _relu_rule_gradient(model, inputs, target, "deconvnet", reduce)


def neuron_gradient(
    model: nn.Module,
    inputs: Tensor,
    *,
    neuron: tuple[str | nn.Module, int],
    reduce: str | None = "max",
    reshape: Reshape | None = None,
) -> Tensor:
    """Gradient of one channel's mean activation with respect to the input.

    What in the image drives a feature of an inner layer (the gradient analogue
    of Erhan et al. 2009 / Simonyan et al. 2014). The objective is the **mean**
    over spatial positions of channel ``channel`` of ``layer``'s output, so its
    scale does not depend on the feature-map size; for a 2-D output (``Linear``)
    it is the single unit ``channel``. The value is read before any in-place op
    that follows the layer. There is no class target. On a transformer's token
    layer ``(N, T, D)`` the output is first read as a grid
    (:mod:`~lightning_viz.functional.tokens`), so the objective is the mean over the
    *patch* tokens of channel ``d`` (prefix tokens such as the class token excluded).

    Args:
        model: Any ``nn.Module`` taking ``inputs``.
        inputs: Images ``(N, C, H, W)``, float.
        neuron: ``(layer, channel)``: the layer as a module or its dotted name
            (``"layer3.1.conv2"``) and a channel (or unit) index in ``[0, C_layer)``.
        reduce: ``"max"``, ``"sum"`` or ``None`` (signed). Default: ``"max"``.
        reshape: Maps the layer's output to ``(N, D, h, w)``; ``None`` detects the
            token layers of known transformers (:func:`~lightning_viz.functional.
            token_layout`) and uses other outputs as they are. Default: ``None``.

    Returns:
        ``(N, 1, H, W)`` non-negative maps, or ``(N, C, H, W)`` when ``reduce=None``.

    Raises:
        TypeError: Bad ``inputs``, ``neuron`` or ``reshape`` type.
        ValueError: Unknown layer (the message lists the layers and the closest
            match), a layer not run by the forward, or a channel out of range.
        NoGradientError: The channel does not depend on the input (``no_grad``).
    """
    check_images(inputs)
    check_reduce(reduce)
    if isinstance(neuron, str) or not isinstance(neuron, Sequence) or len(neuron) != 2:
        fail("neuron", "a (layer, channel) pair", neuron, TypeError)
    layer, channel = neuron
    channel = check_int(channel, "neuron channel", minimum=0)
    check_reshape(reshape)
    with preserve_state(model) as net:
        name, module = resolve_layer(net, layer)
        x = fresh(inputs).requires_grad_(True)
        with capture_outputs({name: module}, detach=False) as store:
            net(in_model_dtype(net, x.clone()))  # a forward may change its input in place
        if name not in store:
            raise ValueError(f"layer {name!r} did not run (or returned no tensor) in the forward")
        act = store.pop(name)
        to_grid = grid_reader(net, name, tuple(x.shape[-2:]), reshape)
        if to_grid is not None:  # tokens (N, T, D) -> (N, D, h, w): channel = token feature
            act = to_grid(act)
        if act.dim() < 2 or act.shape[0] != x.shape[0]:
            raise ValueError(f"layer {name!r} output has shape {tuple(act.shape)}, not (N, C, ...)")
        if channel >= act.shape[1]:
            fail("neuron channel", f"in [0, {act.shape[1]}) for layer {name!r}", channel)
        objective = act[:, channel].reshape(act.shape[0], -1).mean(dim=1).sum()
        grad = grad_of(objective, x, f"activation of {name!r}")
    return reduce_channels(grad.detach(), reduce)


def activation_maps(
    model: nn.Module,
    inputs: Tensor,
    layers: Sequence[str | nn.Module] | str | nn.Module,
    *,
    reshape: Reshape | None = None,
) -> dict[str, Tensor]:
    """Output (feature) maps of the given layers, from one forward pass (no class target).

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
    if not isinstance(layers, Sequence) or not layers:
        fail("layers", "a non-empty list of layer names or modules", layers, TypeError)
    check_reshape(reshape)
    with preserve_state(model) as net:
        named = dict(resolve_layer(net, layer) for layer in layers)
        with torch.no_grad(), capture_outputs(named) as store:
            net(in_model_dtype(net, fresh(inputs)))
        missing = [name for name in named if name not in store]
        if missing:
            raise ValueError(f"layers {missing} did not run (or returned no tensor) in the forward")
        size = tuple(inputs.shape[-2:])
        readers = {name: grid_reader(net, name, size, reshape) for name in named}
        return {n: store[n] if readers[n] is None else readers[n](store[n]) for n in named}


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
    check_maps(maps)
    quantile = check_float(quantile, "quantile", minimum=0.0, maximum=1.0)
    smooth = check_int(smooth, "smooth", minimum=0)
    m = maps.detach().float()
    if smooth > 0:
        k = 2 * smooth + 1
        m = F.avg_pool2d(m, k, stride=1, padding=smooth, count_include_pad=False)
    flat = m.flatten(1)  # (N, H*W)
    thresh = torch.quantile(flat, quantile, dim=1, keepdim=True)  # (N, 1)
    return (flat > thresh).view_as(maps)
