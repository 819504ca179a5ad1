"""Image synthesis: Gram-matrix style transfer, cue-conflict images, class models.

* :func:`gram_matrix` and :func:`style_transfer` (Gatys et al. 2016) with a default
  feature extractor, :class:`RandomFeatureExtractor`, that needs no downloaded weights.
* :func:`cue_conflict` builds Geirhos et al. (2019) cue-conflict images: the shape of
  an image of class A with the texture of an image of class B != A.
* :func:`class_model` is the class-model visualization of Simonyan et al. (2014) with
  the regularizers of Yosinski et al. (2015).

Pure torch: no Lightning, numpy or PIL here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._guard import ModelView, make_generator, preserve_state
from lightning_viz._hooks import capture_outputs
from lightning_viz.functional._utils import check_images, resolve_layer

__all__ = [
    "RandomFeatureExtractor",
    "class_model",
    "cue_conflict",
    "gram_matrix",
    "style_transfer",
]

_RANGE_TOL = 1e-3


# --------------------------------------------------------------------------- helpers
def _check_pixels(x: Tensor, name: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(
            f"`{name}` must be pixel-space images in [0, 1], got values in [{lo:.3g}, {hi:.3g}]"
        )


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value!r}")
    return value


def _check_float(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"`{name}` must be a finite {kind} number, got {value!r}")
    return value


def _check_generator(generator: Any) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {generator!r}")


def _generator_for(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    return generator if generator is not None else make_generator(0, device)


def _tv_loss(x: Tensor) -> Tensor:  # (N, C, H, W) -> (N,)
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).flatten(1).mean(1)
    return dh + dw


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

    Example:
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
    conv = nn.utils.skip_init(_ReflectConv2d, cin, cout, k, padding=0, bias=True)
    std = math.sqrt(2.0 / (cin * k * k))  # He init: activations keep their scale
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
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
        _check_positive_int(in_channels, "in_channels")
        _check_positive_int(width, "width", minimum=2)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r}")
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
    init: str = "content",
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
        init: Start from ``"content"``, ``"style"`` (resized) or ``"noise"``
            (uniform, from ``generator``). Default: ``"content"``.
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

    Example:
        >>> out = style_transfer(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), steps=5)
        >>> out.shape
        torch.Size([2, 3, 32, 32])
    """
    check_images(content, "content")
    check_images(style, "style")
    if extractor is not None and not isinstance(extractor, nn.Module):
        raise TypeError(f"`extractor` must be an nn.Module or None, got {extractor!r}")
    _check_positive_int(steps, "steps", minimum=0)
    lr = _check_float(lr, "lr", positive=True)
    content_weight = _check_float(content_weight, "content_weight")
    style_weight = _check_float(style_weight, "style_weight")
    tv_weight = _check_float(tv_weight, "tv_weight")
    _check_generator(generator)
    if init not in ("content", "style", "noise"):
        raise ValueError(f"`init` must be 'content', 'style' or 'noise', got {init!r}")
    n, c, h, w = content.shape
    if style.shape[1] != c:
        raise ValueError(
            f"`style` has {style.shape[1]} channels but `content` has {c}: "
            f"shapes {tuple(style.shape)} and {tuple(content.shape)}"
        )
    if style.shape[0] not in (1, n):
        raise ValueError(f"`style` must hold 1 or N={n} images, got shape {tuple(style.shape)}")
    _check_pixels(content, "content")
    _check_pixels(style, "style")

    device = content.device
    if extractor is None:
        extractor = RandomFeatureExtractor(in_channels=c, seed=0).to(device)
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
                net(content)
                target_content = feats[content_layer].detach().float()
                net(style)
                target_grams = [gram_matrix(feats[s].detach().float()) for s in style_layers]
            c_norm = target_content.pow(2).flatten(1).sum(1).clamp_min(1e-12)  # (N,)
            g_norms = [g.pow(2).flatten(1).sum(1).clamp_min(1e-12) for g in target_grams]

            if init == "content":
                x0 = content.clone()
            elif init == "style":
                x0 = F.interpolate(style, size=(h, w), mode="bilinear", align_corners=False)
            else:
                gen = _generator_for(generator, device)
                x0 = torch.rand(content.shape, generator=gen, device=device)
            x = x0.clamp(0, 1).requires_grad_(True)
            # Adam on gradients in units of each image's first-step gradient RMS, with
            # eps=1e-3 in those units: pixels whose gradient is numerically zero stay put
            # (plain Adam would move them by +-lr on rounding noise), and the pairs stay
            # independent of one another.
            opt = torch.optim.Adam([x], lr=lr, eps=1e-3)
            scale: Tensor | None = None
            history: dict[str, list[Tensor]] = {"content": [], "style": [], "tv": [], "total": []}
            for _ in range(steps):
                net(x)
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


# ------------------------------------------------------------------------ cue conflict
def _pick_pairs(
    labels: Tensor, num_images: int, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Content/style indices and labels: round-robin over ordered class pairs."""
    classes = torch.unique(labels.cpu()).tolist()
    if len(classes) < 2:
        raise ValueError(
            f"cue-conflict images need images of at least 2 classes, got classes {classes}"
        )
    members = {}
    for k in classes:
        idx = torch.nonzero(labels.cpu() == k).flatten()
        members[k] = idx[torch.randperm(idx.numel(), generator=gen)].tolist()
    pairs = [(a, b) for a in classes for b in classes if a != b]
    available = sum(len(members[a]) * len(members[b]) for a, b in pairs)
    if num_images > available:
        raise ValueError(
            f"`num_images`={num_images} exceeds the {available} distinct cue-conflict "
            f"pairs (content of class A, style of class B != A) the {labels.numel()} "
            f"images of {len(classes)} classes allow"
        )
    order = torch.randperm(len(pairs), generator=gen).tolist()
    pairs = [pairs[i] for i in order]
    pos = {k: i for i, k in enumerate(classes)}
    ci, si, sl, tl = [], [], [], []
    j = 0
    while len(ci) < num_images:
        for a, b in pairs:
            na, nb = len(members[a]), len(members[b])
            if j >= na * nb:  # this pair is exhausted; the others go on
                continue
            q, r = divmod(j, na)  # (r, q) runs over all na*nb combinations exactly once
            ci.append(members[a][(r + pos[b]) % na])
            si.append(members[b][(q + pos[a]) % nb])
            sl.append(a)
            tl.append(b)
            if len(ci) == num_images:
                break
        j += 1
    as_long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return as_long(ci), as_long(si), as_long(sl), as_long(tl)


def cue_conflict(
    images: Tensor,
    labels: Tensor,
    num_images: int,
    *,
    extractor: nn.Module | None = None,
    steps: int = 50,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 160,
    masks: Tensor | None = None,
    **style_kwargs: Any,
) -> tuple[Tensor, Tensor, Tensor]:
    """Cue-conflict images: the shape of class A with the texture of class B != A
    (Geirhos et al., "ImageNet-trained CNNs are biased towards texture; increasing
    shape bias improves accuracy and robustness", ICLR 2019).

    Ordered class pairs ``(A, B)``, ``A != B``, are visited round-robin (in an order
    drawn from ``generator``), so every pair gets ``num_images / (K * (K - 1))``
    images, up to one. For each pair, content images of A and style images of B are
    drawn from per-class shuffles so that no (content, style) combination repeats;
    then :func:`style_transfer` (``init="content"``) runs batched.

    With object ``masks``, the stylized object is pasted onto the content image's
    own background (``mask * stylized + (1 - mask) * content``), so the silhouette
    survives at small image sizes where style transfer alone washes it out; this is
    close to Geirhos et al.'s silhouette-texture stimuli.

    Args:
        images: Source images ``(N, C, H, W)`` in ``[0, 1]``.
        labels: Their class indices ``(N,)``, integer.
        num_images: How many cue-conflict images to make (>= 1).
        extractor: Feature extractor for :func:`style_transfer`. Default: ``None``
            (a :class:`RandomFeatureExtractor` with ``seed=0``).
        steps: Style-transfer steps. Default: ``50``.
        generator: Private RNG for the pairing; the global RNG is never used.
            Default: a generator seeded with 0.
        progress: Called as ``progress(done, total)`` after each batch. Default:
            ``None``.
        batch_size: Pairs optimized at once. Default: ``160``.
        masks: Object masks ``(N, 1, H, W)`` (bool or ``[0, 1]``) of ``images``, or
            ``None`` for plain style transfer. Default: ``None``.
        **style_kwargs: Further keyword arguments of :func:`style_transfer`
            (``content_layer``, ``style_layers``, ``lr``, weights).

    Returns:
        ``(images, shape_labels, texture_labels)``: ``(num_images, C, H, W)`` in
        ``[0, 1]`` and two ``(num_images,)`` long tensors, all on the images' device;
        ``shape_labels != texture_labels`` everywhere.

    Raises:
        TypeError: Bad types.
        ValueError: Fewer than 2 classes, ``num_images`` above the available
            (content, style) combinations across different classes, mismatched
            lengths, images outside ``[0, 1]``.
    """
    check_images(images, "images")
    if not isinstance(labels, Tensor):
        raise TypeError(f"`labels` must be a tensor of class indices, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"`labels` must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.numel() != images.shape[0]:
        raise ValueError(
            f"`labels` must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
        )
    _check_positive_int(num_images, "num_images")
    _check_positive_int(batch_size, "batch_size")
    _check_generator(generator)
    if progress is not None and not callable(progress):
        raise TypeError(f"`progress` must be callable or None, got {progress!r}")
    _check_pixels(images, "images")
    if masks is not None:
        if not isinstance(masks, Tensor):
            raise TypeError(f"`masks` must be a tensor (N, 1, H, W), got {type(masks).__name__}")
        expected = (images.shape[0], 1, *images.shape[2:])
        if tuple(masks.shape) != expected:
            raise ValueError(f"`masks` must have shape {expected}, got {tuple(masks.shape)}")
    for key in ("init", "return_losses", "generator"):
        if key in style_kwargs:
            raise TypeError(f"cue_conflict() does not accept the style_transfer argument {key!r}")

    device = images.device
    gen = generator if generator is not None else make_generator(0)
    ci, si, shape_labels, texture_labels = _pick_pairs(labels, num_images, gen)
    if extractor is None:
        extractor = RandomFeatureExtractor(in_channels=images.shape[1], seed=0).to(device)
    out = []
    for start in range(0, num_images, batch_size):
        sl = slice(start, start + batch_size)
        content = images[ci[sl].to(device)]
        stylized = style_transfer(
            content,
            images[si[sl].to(device)],
            extractor,
            steps=steps,
            init="content",
            **style_kwargs,
        )
        if masks is not None:
            mask = masks[ci[sl].to(masks.device)].to(device=device, dtype=stylized.dtype)
            stylized = mask * stylized + (1 - mask) * content
        out.append(stylized)
        if progress is not None:
            progress(min(start + batch_size, num_images), num_images)
    return torch.cat(out), shape_labels.to(device), texture_labels.to(device)


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
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    grad_clip: float = 3.0,
    pixel_clip: float = 0.05,
    mean: Sequence[float] | Tensor | None = None,
    std: Sequence[float] | Tensor | None = None,
    neuron: tuple[str | nn.Module, int | Sequence[int]] | None = None,
    output_to_logits: Callable[[Any], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Class-model visualization: images that maximize a class score (Simonyan,
    Vedaldi and Zisserman, "Deep Inside Convolutional Networks", ICLR 2014 workshop),
    regularized as in Yosinski et al., "Understanding Neural Networks Through Deep
    Visualization", ICML 2015 DL workshop.

    All requested classes are optimized in one batch, in pixel space ``[0, 1]``,
    starting from ``center + 0.01 * noise`` (``center`` = ``mean`` if given, else
    0.5). Each step:

    1. jitter: the batch is rolled by a random shift in ``[-jitter, jitter]`` pixels;
    2. the unnormalized class score ``logits[k, classes[k]]`` (or, with ``neuron``,
       the mean activation of one channel) is differentiated w.r.t. the image only;
    3. gradient clipping: the gradient is divided by its per-image RMS and clipped
       to ``[-grad_clip, grad_clip]`` (suppresses a few dominating pixels);
    4. ascent ``x += lr * g``, then L2 decay ``x = center + (1 - l2_decay) * (x - center)``;
    5. every ``blur_every`` steps a Gaussian blur of ``blur_sigma`` pixels;
    6. small-pixel clipping: the fraction ``pixel_clip`` of pixels with the smallest
       norm ``||x - center||`` over channels is reset to ``center``; then ``x`` is
       clamped to ``[0, 1]``.

    Args:
        model: Classifier taking ``(N, C, H, W)`` inputs (normalized by ``mean``/
            ``std`` when given) and returning logits ``(N, K)``.
        classes: Class index or indices to visualize; ``None``: all ``K`` classes
            (must be ``None`` with ``neuron``).
        image_shape: ``(C, H, W)`` of the model's input.
        steps: Ascent steps. Default: ``200``.
        lr: Step size in pixel units per step (RMS of the update). Default: ``0.05``.
        l2_decay: Fraction of ``x - center`` removed per step, in ``[0, 1)``.
            Default: ``0.01``.
        jitter: Maximum random shift in pixels (0: none). Default: ``2``.
        blur_every: Blur every that many steps (0: never). Default: ``4``.
        blur_sigma: Blur standard deviation in pixels. Default: ``0.5``.
        grad_clip: Clip of the RMS-normalized gradient (> 0). Default: ``3.0``.
        pixel_clip: Fraction in ``[0, 1)`` of smallest-norm pixels reset to
            ``center`` each step. Default: ``0.05``.
        mean: Per-channel input mean in pixel units, or ``None``. Default: ``None``.
        std: Per-channel input standard deviation, or ``None``. Default: ``None``.
        neuron: ``(layer, channel)`` — maximize the mean activation of ``channel``
            (an int, or several channels: one image each) of ``layer`` (a module or
            its dotted name) instead of a class score. Default: ``None``.
        output_to_logits: Maps a non-tensor model output to logits. Default: ``None``.
        generator: Private RNG for the start noise and jitter; the global RNG is
            never used. Default: a generator seeded with 0.

    Returns:
        ``(K, C, H, W)`` images in ``[0, 1]`` (one per class, or per channel with
        ``neuron``) on the model's device.

    Raises:
        TypeError: Bad argument types.
        ValueError: Bad values, class indices outside ``[0, K)``, an unknown layer,
            a channel outside the layer's channels, ``classes`` given with ``neuron``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    if not isinstance(image_shape, Sequence | torch.Size) or isinstance(image_shape, str):
        raise TypeError(f"`image_shape` must be a sequence (C, H, W), got {image_shape!r}")
    if len(image_shape) != 3 or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in image_shape
    ):
        raise ValueError(f"`image_shape` must be 3 positive ints (C, H, W), got {image_shape!r}")
    _check_positive_int(steps, "steps", minimum=0)
    lr = _check_float(lr, "lr", positive=True)
    l2_decay = _check_float(l2_decay, "l2_decay")
    if l2_decay >= 1:
        raise ValueError(f"`l2_decay` must lie in [0, 1), got {l2_decay!r}")
    _check_positive_int(jitter, "jitter", minimum=0)
    _check_positive_int(blur_every, "blur_every", minimum=0)
    blur_sigma = _check_float(blur_sigma, "blur_sigma", positive=True)
    grad_clip = _check_float(grad_clip, "grad_clip", positive=True)
    pixel_clip = _check_float(pixel_clip, "pixel_clip")
    if pixel_clip >= 1:
        raise ValueError(f"`pixel_clip` must lie in [0, 1), got {pixel_clip!r}")
    _check_generator(generator)
    if neuron is not None:
        if classes is not None:
            raise ValueError(
                f"`classes` must be None when `neuron` is given, got classes={classes!r}"
            )
        if not isinstance(neuron, tuple | list) or len(neuron) != 2:
            raise TypeError(f"`neuron` must be a (layer, channel) pair, got {neuron!r}")

    c, h, w = (int(s) for s in image_shape)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    view = ModelView(model, mean, std, output_to_logits)
    center = (
        torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        if mean is not None
        else torch.full((1, 1, 1, 1), 0.5, device=device)
    )
    gen = _generator_for(generator, device)

    with preserve_state(model) as net:
        view.model = net
        layer_module = None
        if neuron is not None:
            _, layer_module = resolve_layer(net, neuron[0])
            chans = neuron[1]
            chans = [chans] if isinstance(chans, int) else list(chans)
            if not chans or any(isinstance(k, bool) or not isinstance(k, int) for k in chans):
                raise TypeError(f"`neuron` channel must be an int or ints, got {neuron[1]!r}")
            idx = torch.tensor(chans, dtype=torch.long, device=device)
        else:
            with torch.no_grad():
                k_total = view(torch.zeros(1, c, h, w, device=device)).shape[-1]
            if classes is None:
                idx = torch.arange(k_total, device=device)
            else:
                if isinstance(classes, Tensor):
                    idx = classes.to(device=device).flatten()
                    if idx.is_floating_point():
                        raise TypeError(f"`classes` must be integer, got dtype {idx.dtype}")
                elif isinstance(classes, int) and not isinstance(classes, bool):
                    idx = torch.tensor([classes], device=device)
                elif isinstance(classes, Sequence) and all(
                    isinstance(k, int) and not isinstance(k, bool) for k in classes
                ):
                    idx = torch.tensor(list(classes), dtype=torch.long, device=device)
                else:
                    raise TypeError(f"`classes` must be an int, ints or None, got {classes!r}")
                idx = idx.long()
                if idx.numel() == 0 or bool(((idx < 0) | (idx >= k_total)).any()):
                    raise ValueError(
                        f"`classes` must be non-empty indices in [0, {k_total}), got {idx.tolist()}"
                    )
        k = idx.numel()
        rows = torch.arange(k, device=device)
        noise = torch.randn((k, c, h, w), generator=gen, device=gen.device).to(device)
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
                logits = view(xr)
                if layer_module is not None:
                    act = feats["layer"]
                    if act.dim() < 2 or int(idx.max()) >= act.shape[1]:
                        raise ValueError(
                            f"channel {idx.tolist()} out of range for layer output of shape "
                            f"{tuple(act.shape)}"
                        )
                    score = act[rows, idx].float().flatten(1).mean(1)  # (K,)
                else:
                    score = logits[rows, idx]  # (K,)
                (g,) = torch.autograd.grad(score.sum(), xr)
                g = torch.roll(g, shifts=[-s for s in shifts], dims=(2, 3))
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
    return x.detach()
