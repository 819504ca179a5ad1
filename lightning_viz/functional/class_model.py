"""Class-model images: what input a class (or one channel) responds to most.

Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks", ICLR 2014
workshop, with the regularizers of Yosinski et al., "Understanding Neural Networks
Through Deep Visualization", ICML 2015 DL workshop. Pure torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._checks import (
    check_float,
    check_generator,
    check_int,
    check_int_list,
    check_reshape,
    fail,
)
from lightning_viz._guard import ModelView, make_generator, model_dtype, preserve_state
from lightning_viz._hooks import capture_outputs
from lightning_viz.functional._grad import forward_logits, grad_of, resolve_layer
from lightning_viz.functional._task import class_scores, num_classes
from lightning_viz.functional.tokens import Reshape, grid_reader

__all__ = ["class_model"]


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with reflect padding."""
    radius = max(1, int(math.ceil(2 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    kh = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kh, groups=c)
    return F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kw, groups=c)


# ------------------------------------------------------------------------- class model
def class_model(
    model: nn.Module,
    classes: int | Sequence[int] | Tensor | None,
    image_shape: Sequence[int],
    *,
    steps: int = 200,
    lr: float = 0.05,
    l2_decay: float = 0.01,
    jitter: int = 2,
    generator: torch.Generator | None = None,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    grad_clip: float = 3.0,
    pixel_clip: float = 0.05,
    neuron: tuple[str | nn.Module, int | Sequence[int]] | None = None,
    reshape: Reshape | None = None,
) -> Tensor:
    """Class-model visualization: images that maximize a class score (Simonyan,
    Vedaldi and Zisserman, "Deep Inside Convolutional Networks", ICLR 2014 workshop),
    regularized as in Yosinski et al., "Understanding Neural Networks Through Deep
    Visualization", ICML 2015 DL workshop. A method without a class target: the
    images are made from noise.

    All requested classes are optimized in one batch, in pixel space ``[0, 1]``
    (give a model that takes normalized inputs as ``ModelView(model, mean, std)``),
    starting from ``center + 0.01 * noise`` (``center``: the view's ``mean``, else
    0.5). Each step:

    1. jitter: the batch is rolled by a random shift in ``[-jitter, jitter]`` pixels;
    2. the unnormalized class score (the logit; ``-logit`` for class 0 of a binary
       model with one logit) or, with ``neuron``, the mean activation of one channel
       is differentiated w.r.t. the image only;
    3. gradient clipping: the gradient is divided by its per-image RMS and clipped
       to ``[-grad_clip, grad_clip]`` (suppresses a few dominating pixels);
    4. ascent ``x += lr * g``, then L2 decay ``x = center + (1 - l2_decay) * (x - center)``;
    5. every ``blur_every`` steps a Gaussian blur of ``blur_sigma`` pixels;
    6. small-pixel clipping: the fraction ``pixel_clip`` of pixels with the smallest
       norm ``||x - center||`` over channels is reset to ``center``; then ``x`` is
       clamped to ``[0, 1]``.

    Args:
        model: Classifier taking pixel-space images ``(N, C, H, W)`` and returning
            logits ``(N, K)``.
        classes: Class index or indices to visualize; ``None``: all classes (must be
            ``None`` with ``neuron``).
        image_shape: ``(C, H, W)`` of the model's input.
        steps: Ascent steps. Default: ``200``.
        lr: Step size in pixel units per step (RMS of the update). Default: ``0.05``.
        l2_decay: Fraction of ``x - center`` removed per step, in ``[0, 1)``.
            Default: ``0.01``.
        jitter: Maximum random shift in pixels (0: none). Default: ``2``.
        generator: Private RNG for the start noise and jitter; the global RNG is
            never used. Default: a generator seeded with 0.
        blur_every: Blur every that many steps (0: never). Default: ``4``.
        blur_sigma: Blur standard deviation in pixels. Default: ``0.5``.
        grad_clip: Clip of the RMS-normalized gradient (> 0). Default: ``3.0``.
        pixel_clip: Fraction in ``[0, 1)`` of smallest-norm pixels reset to
            ``center`` each step. Default: ``0.05``.
        neuron: ``(layer, channel)`` — maximize the mean activation of ``channel``
            (an int, or several channels: one image each) of ``layer`` (a module or
            its dotted name) instead of a class score; a known transformer's token
            layer ``(N, T, D)`` is read as a grid first, so ``channel`` is a token
            feature over the patch tokens (as in :func:`neuron_gradient`). Default:
            ``None``.
        reshape: Maps the ``neuron`` layer's output to ``(N, D, h, w)`` for a model
            whose token layout is not detected (as in :func:`neuron_gradient`); only
            with ``neuron``. Default: ``None``.

    Returns:
        ``(K, C, H, W)`` images in ``[0, 1]`` (one per class, or per channel with
        ``neuron``) on the model's device.

    Raises:
        TypeError: Bad argument types.
        ValueError: Bad values, class indices outside ``[0, K)``, an unknown layer,
            a channel outside the layer's channels, ``classes`` given with ``neuron``,
            ``reshape`` without it.
        NoGradientError: The score does not depend on the image.
    """
    return class_model_run(
        model,
        classes,
        image_shape,
        steps=steps,
        lr=lr,
        l2_decay=l2_decay,
        jitter=jitter,
        generator=generator,
        blur_every=blur_every,
        blur_sigma=blur_sigma,
        grad_clip=grad_clip,
        pixel_clip=pixel_clip,
        neuron=neuron,
        reshape=reshape,
    )["images"]


def class_model_run(
    model: nn.Module,
    classes: int | Sequence[int] | Tensor | None,
    image_shape: Sequence[int],
    *,
    steps: int = 200,
    lr: float = 0.05,
    l2_decay: float = 0.01,
    jitter: int = 2,
    generator: torch.Generator | None = None,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    grad_clip: float = 3.0,
    pixel_clip: float = 0.05,
    neuron: tuple[str | nn.Module, int | Sequence[int]] | None = None,
    reshape: Reshape | None = None,
) -> dict[str, Tensor]:
    """:func:`class_model`'s images (``"images"``) and, ``"flat"`` ``(K,)`` bool, which
    of them no step moved: their score's gradient was zero at every step (a dead or
    saturated model), so they are the start noise, decayed and blurred to grey."""
    if not isinstance(model, nn.Module):
        fail("model", "an nn.Module", f"<{type(model).__name__}>", TypeError)
    if not isinstance(image_shape, Sequence | torch.Size) or isinstance(image_shape, str):
        fail("image_shape", "a sequence (C, H, W)", image_shape, TypeError)
    if len(image_shape) != 3:
        fail("image_shape", "3 positive ints (C, H, W)", image_shape)
    for value in image_shape:
        check_int(value, "image_shape", minimum=1)
    check_int(steps, "steps", minimum=0)
    lr = check_float(lr, "lr", positive=True)
    l2_decay = check_float(l2_decay, "l2_decay", minimum=0.0)
    if l2_decay >= 1:
        fail("l2_decay", "in [0, 1)", l2_decay)
    check_int(jitter, "jitter", minimum=0)
    check_int(blur_every, "blur_every", minimum=0)
    blur_sigma = check_float(blur_sigma, "blur_sigma", positive=True)
    grad_clip = check_float(grad_clip, "grad_clip", positive=True)
    pixel_clip = check_float(pixel_clip, "pixel_clip", minimum=0.0)
    if pixel_clip >= 1:
        fail("pixel_clip", "in [0, 1)", pixel_clip)
    check_generator(generator)
    check_reshape(reshape)
    if neuron is not None:
        if classes is not None:
            fail("classes", "None when `neuron` is given", classes)
        if isinstance(neuron, str) or not isinstance(neuron, Sequence) or len(neuron) != 2:
            fail("neuron", "a (layer, channel) pair", neuron, TypeError)
    elif reshape is not None:
        fail("reshape", "None when no `neuron` is given", reshape)

    c, h, w = (int(s) for s in image_shape)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = model_dtype(model) or torch.get_default_dtype()  # float64, bfloat16 models too
    mean = getattr(model, "mean", None) if isinstance(model, ModelView) else None
    center = (
        mean.to(device).view(1, -1, 1, 1)
        if isinstance(mean, Tensor)
        else torch.full((1, 1, 1, 1), 0.5, device=device, dtype=torch.float32)
    )
    gen = generator if generator is not None else make_generator(0, device)

    with preserve_state(model) as net:
        layer_module = to_grid = None
        if neuron is not None:
            name, layer_module = resolve_layer(net, neuron[0])
            # a transformer's tokens (N, T, D) read as a grid: channel = token feature
            to_grid = grid_reader(net, name, (h, w), reshape)
            idx = torch.tensor(
                check_int_list(neuron[1], "neuron channel", minimum=0), device=device
            )
        else:
            with torch.no_grad():
                k_total = num_classes(
                    forward_logits(net, torch.zeros(1, c, h, w, device=device, dtype=dtype))
                )
            if classes is None:
                idx = torch.arange(k_total, device=device)
            else:
                idx = torch.tensor(check_int_list(classes, "classes", minimum=0), device=device)
                if bool((idx >= k_total).any()):
                    fail("classes", f"class indices in [0, {k_total})", idx.tolist())
        k = idx.numel()
        rows = torch.arange(k, device=device)
        moved = torch.zeros(k, dtype=torch.bool, device=device)
        noise = torch.randn((k, c, h, w), generator=gen, device=gen.device, dtype=torch.float32)
        noise = noise.to(device)  # float32 draws, whatever the default dtype
        x = (center + 0.01 * noise).clamp(0, 1)

        watched = {"layer": layer_module} if layer_module is not None else {}
        with capture_outputs(watched, detach=False) as feats:
            for step in range(steps):
                shifts = (
                    torch.randint(
                        -jitter, jitter + 1, (2,), generator=gen, device=gen.device
                    ).tolist()
                    if jitter > 0
                    else [0, 0]
                )
                xr = torch.roll(x, shifts=shifts, dims=(2, 3)).requires_grad_(True)
                logits = forward_logits(net, xr.to(dtype))  # x itself stays float32
                if layer_module is not None:
                    if "layer" not in feats:  # a layer beside the forward's path
                        said = "(layer, channel) with a layer the model's forward runs"
                        fail("neuron", said, (name, neuron[1]))
                    act = feats["layer"] if to_grid is None else to_grid(feats["layer"])
                    if act.dim() < 2 or int(idx.max()) >= act.shape[1]:
                        fail(
                            "neuron channel",
                            f"in [0, {act.shape[1] if act.dim() >= 2 else 0}) for the layer's "
                            f"output of shape {tuple(act.shape)}",
                            idx.tolist(),
                        )
                    score = act[rows, idx].float().reshape(k, -1).mean(1)  # (K,); (K,) of a Linear
                else:
                    score = class_scores(logits.float(), idx)  # (K,)
                g = grad_of(score.sum(), xr, "class score" if layer_module is None else "channel")
                g = torch.roll(g, shifts=[-s for s in shifts], dims=(2, 3))
                moved |= g.flatten(1).ne(0).any(1)
                g = g / g.pow(2).flatten(1).mean(1).sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
                g = g.clamp(-grad_clip, grad_clip)
                with torch.no_grad():
                    x = x + lr * g
                    x = center + (1 - l2_decay) * (x - center)
                    if blur_every and (step + 1) % blur_every == 0:
                        x = _gaussian_blur(x, blur_sigma)
                    if pixel_clip > 0:
                        norm = (x - center).pow(2).sum(1, keepdim=True).sqrt()  # (K,1,H,W)
                        thr = torch.quantile(norm.flatten(1), pixel_clip, dim=1)
                        small = norm < thr.view(-1, 1, 1, 1)
                        x = torch.where(small, center.expand_as(x), x)
                    x = x.clamp(0, 1)
            feats.clear()
    return {"images": x.detach(), "flat": ~moved if steps else moved}
