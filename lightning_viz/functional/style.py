"""Neural style transfer with a feature extractor that needs no downloaded weights.

* :func:`gram_matrix` — channel co-activations, the texture statistic of Gatys et al.
* :class:`RandomFeatureExtractor` — a fixed, seeded random-filter conv network.
* :func:`style_transfer` — image optimization matching content features and
  style Gram matrices (Gatys, Ecker and Bethge, CVPR 2016).

Pure torch: no Lightning, numpy or PIL here.
"""

from __future__ import annotations

import math
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
    check_pixels,
    fail,
)
from lightning_viz._guard import in_model_dtype, make_generator, preserve_state
from lightning_viz._hooks import capture_outputs
from lightning_viz.functional._grad import resolve_layer

__all__ = ["RandomFeatureExtractor", "gram_matrix", "style_transfer"]


def _tv_loss(x: Tensor) -> Tensor:  # (N, C, H, W) -> (N,)
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).flatten(1).mean(1)
    return dh + dw


# ---------------------------------------------------------------------- style transfer
def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrices of feature maps (Gatys et al., "Image Style Transfer Using
    Convolutional Neural Networks", CVPR 2016).

    ``G[n, i, j] = sum_{h,w} F[n, i, h, w] * F[n, j, h, w] / (C * H * W)``: the
    uncentered channel co-activation, normalized by the number of feature values so
    that layers of different size are comparable.

    Args:
        features: Feature maps ``(N, C, H, W)``, floating point.

    Returns:
        ``(N, C, C)`` symmetric Gram matrices, same dtype and device.

    Raises:
        TypeError: ``features`` is not a floating-point tensor.
        ValueError: ``features`` is not 4-D or is empty.

    Examples:
        >>> gram_matrix(torch.ones(1, 2, 2, 2))
        tensor([[[0.5000, 0.5000],
                 [0.5000, 0.5000]]])
    """
    check_images(features, "features")
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


class _ReflectConv2d(nn.Conv2d):
    """'Same' convolution with reflect padding, zero padding on maps too small to reflect."""

    def forward(self, x: Tensor) -> Tensor:
        p = self.kernel_size[0] // 2
        mode = "reflect" if min(x.shape[-2:]) > p else "constant"
        return self._conv_forward(F.pad(x, (p, p, p, p), mode=mode), self.weight, self.bias)


def _conv(cin: int, cout: int, k: int, gen: torch.Generator) -> nn.Conv2d:
    # skip_init: no draw from the global RNG; weights come from the private generator.
    # float32 whatever torch's default dtype: the same filters under set_default_dtype
    conv = nn.utils.skip_init(
        _ReflectConv2d, cin, cout, k, padding=0, bias=True, dtype=torch.float32
    )
    std = math.sqrt(2.0 / (cin * k * k))  # He init: activations keep their scale
    with torch.no_grad():
        draw = torch.randn(conv.weight.shape, generator=gen, dtype=torch.float32)
        conv.weight.copy_(draw * std)
        conv.bias.zero_()
    return conv


class RandomFeatureExtractor(nn.Module):
    """A fixed, seeded multi-scale conv network with random filters.

    The default feature extractor of :func:`style_transfer`: it needs no downloaded
    weights. Random, untrained convolutional networks already describe texture well
    through the Gram matrices of their features (Ulyanov et al., "Texture Networks",
    ICML 2016; He, Wang and Hopcroft, "A Powerful Generative Model Using Random
    Weights for the Deep Image Representation", NeurIPS 2016).

    Four blocks, each ``conv -> ReLU``, named ``block1`` ... ``block4``; ``block1``
    works at full resolution with 3x3 and 5x5 filters, each further block average-
    pools by 2 and applies 3x3 filters, so the Gram matrices describe texture at four
    scales. The input (pixels in ``[0, 1]``) is centered inside the forward.

    Attributes:
        style_layers: Default style layers, ``("block1", "block2", "block3", "block4")``.
        content_layer: Default content layer, ``"block3"`` (quarter resolution:
            keeps the shape and leaves the texture free).

    Args:
        in_channels: Image channels. Default: ``3``.
        seed: Seed of the private generator the filters are drawn from (the global
            RNG is not touched). Default: ``0``.
        width: Channels of ``block1``; the later blocks have ``2*width``,
            ``4*width``, ``4*width``. Default: ``32``.
    """

    style_layers: tuple[str, ...] = ("block1", "block2", "block3", "block4")
    content_layer: str = "block3"

    def __init__(self, in_channels: int = 3, seed: int = 0, width: int = 32) -> None:
        super().__init__()
        check_int(in_channels, "in_channels", minimum=1)
        check_int(width, "width", minimum=2)
        check_int(seed, "seed")
        gen = make_generator(seed)
        half = width // 2
        self.block1 = _MultiKernel(
            _conv(in_channels, half, 3, gen), _conv(in_channels, width - half, 5, gen)
        )
        self.block2 = nn.Sequential(
            nn.AvgPool2d(2, ceil_mode=True), _conv(width, 2 * width, 3, gen), nn.ReLU()
        )
        self.block3 = nn.Sequential(
            nn.AvgPool2d(2, ceil_mode=True), _conv(2 * width, 4 * width, 3, gen), nn.ReLU()
        )
        self.block4 = nn.Sequential(
            nn.AvgPool2d(2, ceil_mode=True), _conv(4 * width, 4 * width, 3, gen), nn.ReLU()
        )
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) in [0, 1] -> (N, 4w, H/8, W/8)
        x = (x - 0.5) / 0.25
        x = self.block1(x)  # (N, w, H, W)
        x = self.block2(x)  # (N, 2w, H/2, W/2)
        x = self.block3(x)  # (N, 4w, H/4, W/4)
        return self.block4(x)  # (N, 4w, H/8, W/8)


def default_extractor(channels: int, device: torch.device) -> RandomFeatureExtractor:
    """The default :class:`RandomFeatureExtractor` on ``device``, made outside
    ``torch.inference_mode`` (the optimisation differentiates through its filters)."""
    with torch.inference_mode(False):
        return RandomFeatureExtractor(in_channels=channels, seed=0).to(device)


class _MultiKernel(nn.Module):
    """Two parallel convolutions of different kernel size, concatenated, then ReLU."""

    def __init__(self, small: nn.Conv2d, large: nn.Conv2d) -> None:
        super().__init__()
        self.small = small
        self.large = large

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(torch.cat([self.small(x), self.large(x)], dim=1))


def _layer_names(extractor: nn.Module, value: Any, attr: str, what: str) -> Any:
    if value is not None:
        return value
    default = getattr(extractor, attr, None)
    if default is None:
        raise ValueError(
            f"`{what}` is required for an extractor of type {type(extractor).__name__} "
            f"(it has no `{attr}` attribute)"
        )
    return default


def style_transfer(
    content: Tensor,
    style: Tensor,
    extractor: nn.Module | None = None,
    *,
    content_layer: str | None = None,
    style_layers: Sequence[str] | None = None,
    steps: int = 100,
    lr: float = 0.1,
    content_weight: float = 2.0,
    style_weight: float = 1.0,
    tv_weight: float = 1.0,
    init: str | Tensor = "content",
    generator: torch.Generator | None = None,
    return_losses: bool = False,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Neural style transfer by image optimization (Gatys, Ecker and Bethge, "Image
    Style Transfer Using Convolutional Neural Networks", CVPR 2016).

    Optimizes images ``x`` (pixel space, clamped to ``[0, 1]`` after every Adam step)
    so that, for every pair ``n``,

    ``loss_n = content_weight * Lc + style_weight * Ls + tv_weight * Ltv`` with

    * ``Lc = ||F(x) - F(content)||^2 / ||F(content)||^2`` on ``content_layer``,
    * ``Ls = sum_l ||G_l(x) - G_l(style)||^2 / ||G_l(style)||^2`` over ``style_layers``
      (``G`` = :func:`gram_matrix`),
    * ``Ltv = mean((x[h+1] - x[h])^2) + mean((x[w+1] - x[w])^2)``.

    The relative (self-normalized) losses make the weights independent of the
    extractor's feature scale. All pairs are optimized at once; the pairs do not
    interact (the summed loss separates and Adam acts per pixel), so a batched run
    gives the per-pair results.

    Args:
        content: Content images ``(N, C, H, W)`` in ``[0, 1]``.
        style: Style images ``(N, C, H', W')`` or ``(1, C, H', W')`` (one style for
            all) in ``[0, 1]``; the size may differ from the content's.
        extractor: Any ``nn.Module`` taking ``(N, C, H, W)`` images in ``[0, 1]``
            (wrap a network that expects normalized inputs); its parameters are
            frozen and its train/eval flags restored. ``None``: a
            :class:`RandomFeatureExtractor` with ``seed=0``. Default: ``None``.
        content_layer: Dotted name of the content layer. Default: the extractor's
            ``content_layer`` attribute.
        style_layers: Dotted names of the style layers. Default: the extractor's
            ``style_layers`` attribute.
        steps: Adam steps. Default: ``100``.
        lr: Adam learning rate (pixel units). Default: ``0.1``.
        content_weight: Weight of ``Lc``. Default: ``2.0``.
        style_weight: Weight of ``Ls``. Default: ``1.0``.
        tv_weight: Weight of ``Ltv``. Default: ``1.0``.
        init: Start from ``"content"``, ``"style"`` (resized), ``"noise"``
            (uniform, from ``generator``) or given images ``(N, C, H, W)`` in ``[0, 1]``
            (e.g. a coarser result, upsampled). Default: ``"content"``.
        generator: Private RNG for ``init="noise"``; the global RNG is never used.
            Default: a generator seeded with 0.
        return_losses: Also return the per-step losses. Default: ``False``.

    Returns:
        Images ``(N, C, H, W)`` in ``[0, 1]`` on the content's device (detached). With
        ``return_losses=True``, ``(images, losses)`` where ``losses`` maps
        ``"content"``, ``"style"``, ``"tv"``, ``"total"`` to ``(steps, N)`` tensors
        (unweighted terms, total weighted), measured before each step.

    Raises:
        TypeError: Non-tensor or non-float images, a bad argument type.
        ValueError: Bad shapes, values outside ``[0, 1]``, mismatched batch or
            channels, unknown layer names (the message lists the available layers
            and the closest match), bad argument values.

    Examples:
        >>> out = style_transfer(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), steps=5)
        >>> out.shape
        torch.Size([2, 3, 32, 32])
    """
    check_images(content, "content")
    check_images(style, "style")
    if extractor is not None and not isinstance(extractor, nn.Module):
        fail("extractor", "an nn.Module or None", extractor, TypeError)
    check_int(steps, "steps", minimum=0)
    lr = check_float(lr, "lr", positive=True)
    content_weight = check_float(content_weight, "content_weight", minimum=0.0)
    style_weight = check_float(style_weight, "style_weight", minimum=0.0)
    tv_weight = check_float(tv_weight, "tv_weight", minimum=0.0)
    check_generator(generator)
    if isinstance(init, Tensor):
        check_images(init, "init")
        if init.shape != content.shape:
            fail(
                "init",
                f"images of the content's shape {tuple(content.shape)}",
                f"<shape {tuple(init.shape)}>",
            )
    else:
        check_choice(init, "init", ("content", "style", "noise"))
    n, c, h, w = content.shape
    if style.shape[1] != c:
        raise ValueError(
            f"`style` has {style.shape[1]} channels but `content` has {c}: "
            f"shapes {tuple(style.shape)} and {tuple(content.shape)}"
        )
    if style.shape[0] not in (1, n):
        raise ValueError(f"`style` must hold 1 or N={n} images, got shape {tuple(style.shape)}")
    check_pixels(content, "content")
    check_pixels(style, "style")

    device = content.device
    if extractor is None:
        extractor = default_extractor(c, device)
    content_layer = _layer_names(extractor, content_layer, "content_layer", "content_layer")
    style_layers = _layer_names(extractor, style_layers, "style_layers", "style_layers")
    if isinstance(style_layers, str):
        style_layers = [style_layers]
    style_layers = list(style_layers)
    if not style_layers:
        raise ValueError("`style_layers` must name at least one layer, got []")
    if not isinstance(content_layer, str):
        raise TypeError(f"`content_layer` must be a layer name (str), got {content_layer!r}")
    for name in style_layers:
        if not isinstance(name, str):
            raise TypeError(f"`style_layers` must hold layer names (str), got {name!r}")

    content = content.detach().float()
    style = style.detach().float().to(device)
    if style.shape[0] == 1 and n > 1:
        style = style.expand(n, -1, -1, -1)

    with preserve_state(extractor) as net:
        watched = {name: resolve_layer(net, name)[1] for name in [content_layer, *style_layers]}
        with capture_outputs(watched, detach=False) as feats:
            with torch.no_grad():
                net(in_model_dtype(net, content))
                target_content = feats[content_layer].detach().float()
                net(in_model_dtype(net, style))
                target_grams = [gram_matrix(feats[s].detach().float()) for s in style_layers]
            c_norm = target_content.pow(2).flatten(1).sum(1).clamp_min(1e-12)  # (N,)
            g_norms = [g.pow(2).flatten(1).sum(1).clamp_min(1e-12) for g in target_grams]

            if isinstance(init, Tensor):
                x0 = init.detach().float().to(device).clone()
            elif init == "content":
                x0 = content.clone()
            elif init == "style":
                x0 = F.interpolate(style, size=(h, w), mode="bilinear", align_corners=False)
            else:
                gen = generator if generator is not None else make_generator(0, device)
                x0 = torch.rand(content.shape, generator=gen, device=device, dtype=torch.float32)
            x = x0.clamp(0, 1).requires_grad_(True)
            # Adam on gradients in units of each image's first-step gradient RMS, with
            # eps=1e-3 in those units: pixels whose gradient is numerically zero stay put
            # (plain Adam would move them by +-lr on rounding noise), and the pairs stay
            # independent of one another.
            opt = torch.optim.Adam([x], lr=lr, eps=1e-3)
            scale: Tensor | None = None
            history: dict[str, list[Tensor]] = {"content": [], "style": [], "tv": [], "total": []}
            for _ in range(steps):
                net(in_model_dtype(net, x))
                lc = (feats[content_layer].float() - target_content).pow(2).flatten(1).sum(1)
                lc = lc / c_norm
                ls = torch.zeros(n, device=device)
                for name, tg, gn in zip(style_layers, target_grams, g_norms, strict=True):
                    ls = ls + (gram_matrix(feats[name].float()) - tg).pow(2).flatten(1).sum(1) / gn
                ltv = _tv_loss(x)
                total = content_weight * lc + style_weight * ls + tv_weight * ltv  # (N,)
                (grad,) = torch.autograd.grad(total.sum(), x)
                if scale is None:
                    scale = grad.pow(2).flatten(1).mean(1).sqrt().clamp_min(1e-12)
                    scale = scale.view(-1, 1, 1, 1)
                opt.zero_grad(set_to_none=True)
                x.grad = grad / scale
                opt.step()
                with torch.no_grad():
                    x.clamp_(0, 1)
                if return_losses:
                    history["content"].append(lc.detach())
                    history["style"].append(ls.detach())
                    history["tv"].append(ltv.detach())
                    history["total"].append(total.detach())
            feats.clear()
    out = x.detach()
    if not return_losses:
        return out
    losses = {
        k: torch.stack(v) if v else torch.zeros(0, n, device=device) for k, v in history.items()
    }
    return out, losses
