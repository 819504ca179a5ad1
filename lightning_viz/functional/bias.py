"""Texture-vs-shape bias and object-focus measures.

* :func:`cue_conflict` builds Geirhos et al. cue-conflict images (the shape of class
  A with the texture of class B != A) by style transfer.
* :func:`decisions`, :func:`shape_bias` and :func:`per_class_shape_bias` score a
  model's decisions on them (Geirhos et al., "ImageNet-trained CNNs are biased
  towards texture; increasing shape bias improves accuracy and robustness", ICLR 2019).
* :func:`shape_only` removes texture (silhouettes or edge maps) and
  :func:`texture_only` destroys shape (patch shuffling), for the control accuracies.
* :func:`saliency_in_mask`: how much of a saliency map falls on the object.

Pure torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._checks import (
    check_callable,
    check_generator,
    check_images,
    check_int,
    check_labels,
    check_maps,
    check_pixels,
    fail,
)
from lightning_viz._guard import make_generator
from lightning_viz.functional.style import default_extractor, style_transfer

__all__ = [
    "OTHER",
    "SHAPE",
    "TEXTURE",
    "UNCOUNTED",
    "cue_conflict",
    "decisions",
    "per_class_shape_bias",
    "saliency_in_mask",
    "shape_bias",
    "shape_only",
    "stylize",
    "texture_only",
]

SHAPE, TEXTURE, OTHER, UNCOUNTED = 1, 0, -1, -2  # the values :func:`decisions` returns


def _predicted(predictions: object) -> tuple[Tensor, int | None]:
    """Predicted indices ``(N,)`` and the number of classes (``None`` for indices)."""
    if not isinstance(predictions, Tensor):
        fail(
            "predictions",
            "a tensor of predicted indices (N,) or logits (N, K)",
            f"<{type(predictions).__name__}>",
            TypeError,
        )
    if predictions.is_complex() or predictions.dtype == torch.bool:
        fail(
            "predictions",
            "integer indices or float logits",
            f"<dtype {predictions.dtype}>",
            TypeError,
        )
    if predictions.is_floating_point():
        if predictions.dim() != 2:
            fail(
                "predictions", "float logits of shape (N, K)", f"<shape {tuple(predictions.shape)}>"
            )
        if predictions.shape[1] == 1:  # one logit: a binary classifier, class 1 above 0
            pred, k = (predictions[:, 0] > 0).long(), 2
        else:
            pred, k = predictions.argmax(dim=1), int(predictions.shape[1])
        return pred.masked_fill(predictions.isnan().any(dim=1), OTHER), k
    if predictions.dim() != 1:
        fail(
            "predictions",
            "integer class indices of shape (N,)",
            f"<shape {tuple(predictions.shape)}>",
        )
    return predictions.long(), None


def decisions(predictions: Tensor, shape_labels: Tensor, texture_labels: Tensor) -> Tensor:
    """The decision a model made on each cue-conflict image.

    Args:
        predictions: Predicted class indices ``(N,)`` (integer) or logits ``(N, K)``
            (floating point; the argmax is taken; ``(N, 1)``: the logit of a binary
            classifier, class 1 where it is above 0). A row with a NaN logit is no
            decision for either cue (:data:`OTHER`).
        shape_labels: Class of the shape (content) of each image, ``(N,)`` integer.
        texture_labels: Class of the texture (style) of each image, ``(N,)`` integer.

    Returns:
        ``(N,)`` long on the predictions' device: :data:`SHAPE` (1) when the
        prediction is the shape class, :data:`TEXTURE` (0) when it is the texture
        class, :data:`OTHER` (-1) for any other class, :data:`UNCOUNTED` (-2) where
        shape and texture class agree (not a cue conflict).

    Raises:
        TypeError: Non-tensors, float labels, bool/complex predictions.
        ValueError: Wrong shapes or lengths, negative labels, labels ``>= K`` for logits.

    Examples:
        >>> decisions(torch.tensor([0, 2, 1]), torch.tensor([0, 1, 1]), torch.tensor([2, 2, 1]))
        tensor([ 1,  0, -2])
    """
    pred, k = _predicted(predictions)
    n = pred.shape[0]
    shape = check_labels(shape_labels, "shape_labels", n).to(pred.device)
    texture = check_labels(texture_labels, "texture_labels", n).to(pred.device)
    for name, lab in (("shape_labels", shape), ("texture_labels", texture)):
        if k is not None and lab.numel() and int(lab.max()) >= k:
            fail(name, f"class indices in [0, {k}) for logits of {k} classes", lab.tolist())
    out = torch.full_like(pred, OTHER)
    out[pred == texture] = TEXTURE
    out[pred == shape] = SHAPE
    out[shape == texture] = UNCOUNTED
    return out


def _summary(dec: Tensor) -> dict[str, float]:
    s, t = int((dec == SHAPE).sum()), int((dec == TEXTURE).sum())
    n = int((dec != UNCOUNTED).sum())
    return {
        "shape_bias": s / (s + t) if s + t else math.nan,
        "shape_acc": s / n if n else math.nan,
        "texture_acc": t / n if n else math.nan,
        "n_decisions": float(s + t),
        "n_images": float(n),
    }


def shape_bias(
    predictions: Tensor, shape_labels: Tensor, texture_labels: Tensor
) -> dict[str, float]:
    """Shape bias on cue-conflict images (Geirhos et al., ICLR 2019).

    Only images whose shape label differs from their texture label are *counted*
    (``n_images`` of them); among them a *shape decision* is a prediction equal to
    the shape label and a *texture decision* one equal to the texture label; other
    predictions (misses) are not decisions (see :func:`decisions`).

    * ``shape_bias = shape decisions / (shape decisions + texture decisions)``
    * ``shape_acc = shape decisions / n_images``
    * ``texture_acc = texture decisions / n_images``
    * ``n_decisions = shape decisions + texture decisions``; ``n_images``.

    A ratio with a zero denominator is ``nan``.

    Args:
        predictions: Predicted class indices ``(N,)`` or logits ``(N, K)``.
        shape_labels: Class of the shape (content) of each image, ``(N,)`` integer.
        texture_labels: Class of the texture (style) of each image, ``(N,)`` integer.

    Returns:
        ``{"shape_bias", "shape_acc", "texture_acc", "n_decisions", "n_images"}``, all
        Python floats (``shape_bias`` and the accuracies in ``[0, 1]`` or ``nan``).

    Raises:
        As :func:`decisions`.

    Examples:
        >>> out = shape_bias(torch.tensor([0, 2, 1]), torch.tensor([0, 1, 1]),
        ...                  torch.tensor([2, 2, 1]))
        >>> out["shape_bias"], out["shape_acc"], out["n_decisions"], out["n_images"]
        (0.5, 0.5, 2.0, 2.0)
    """
    return _summary(decisions(predictions, shape_labels, texture_labels))


def per_class_shape_bias(
    predictions: Tensor, shape_labels: Tensor, texture_labels: Tensor, num_classes: int
) -> dict[str, Tensor]:
    """Decision counts and shape bias per *shape* class.

    Args:
        predictions: Predicted indices ``(N,)`` or logits ``(N, K)``.
        shape_labels: ``(N,)`` integer shape classes in ``[0, num_classes)``.
        texture_labels: ``(N,)`` integer texture classes in ``[0, num_classes)``.
        num_classes: Number of classes ``K`` (>= 1).

    Returns:
        ``(num_classes,)`` float32 tensors on the predictions' device:
        ``"images"`` (counted cue-conflict images of that shape class), ``"shape"``
        and ``"texture"`` (decisions), ``"shape_bias"`` (shape / (shape + texture),
        ``nan`` for a class without decisions).

    Raises:
        ValueError: As :func:`decisions`; also ``num_classes`` not an int ``>= 1``
            or labels ``>= num_classes``.
    """
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    dec = decisions(predictions, shape_labels, texture_labels)
    shape = shape_labels.to(dec.device).long()
    if shape.numel() and (
        int(shape.max()) >= num_classes or int(texture_labels.max()) >= num_classes
    ):
        fail(
            "shape_labels/texture_labels",
            f"class indices in [0, {num_classes})",
            f"<max {max(int(shape.max()), int(texture_labels.max()))}>",
        )

    def count(mask: Tensor) -> Tensor:
        return torch.zeros(num_classes, device=dec.device, dtype=torch.float32).index_add_(
            0, shape, mask.float()
        )

    s, t, n = count(dec == SHAPE), count(dec == TEXTURE), count(dec != UNCOUNTED)
    total = s + t
    bias = torch.where(total > 0, s / total.clamp_min(1), torch.full_like(s, math.nan))
    return {"images": n, "shape": s, "texture": t, "shape_bias": bias}


def shape_only(images: Tensor, masks: Tensor | None = None) -> Tensor:
    """Removes texture and keeps shape: silhouettes or edge maps (as in Geirhos et
    al., ICLR 2019: black shapes or black edges on white).

    With ``masks``: the silhouette, ``0`` (black) on the object and ``1`` (white)
    elsewhere. Without: the Sobel gradient magnitude of the grayscale image (channel
    mean), divided by its per-image maximum, shown as ``1 - magnitude`` (dark edges
    on white). Both are replicated over the ``C`` channels.

    Args:
        images: ``(N, C, H, W)`` floating point, pixel space ``[0, 1]``.
        masks: Object masks ``(N, 1, H, W)`` or ``(N, H, W)``, boolean or float
            (``> 0.5`` is the object), or ``None``. Default: ``None``.

    Returns:
        ``(N, C, H, W)`` images in ``[0, 1]``, the images' dtype and device.

    Raises:
        TypeError: Non-tensor or non-float images; a non-tensor mask.
        ValueError: Bad shapes; masks not matching the images.
    """
    check_images(images, "images")
    n, c, h, w = images.shape
    if masks is not None:
        if not isinstance(masks, Tensor):
            fail("masks", "a tensor or None", f"<{type(masks).__name__}>", TypeError)
        m = masks.unsqueeze(1) if masks.dim() == 3 else masks
        if m.dim() != 4 or m.shape[0] != n or m.shape[1] != 1 or m.shape[2:] != (h, w):
            fail(
                "masks",
                f"of shape ({n}, 1, {h}, {w}) or ({n}, {h}, {w})",
                f"<shape {tuple(masks.shape)}>",
            )
        obj = m > 0.5 if m.dtype != torch.bool else m
        sil = 1.0 - obj.to(device=images.device, dtype=images.dtype)
        return sil.expand(n, c, h, w).clone()
    gray = images.mean(dim=1, keepdim=True)  # (N, 1, H, W)
    kx = torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
        device=images.device,
        dtype=images.dtype,
    )
    k = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    pad = "replicate" if min(h, w) > 1 else "constant"
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode=pad), k)  # (N, 2, H, W)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    mag = mag / mag.flatten(1).amax(1).clamp_min(1e-12).view(n, 1, 1, 1)
    return (1.0 - mag).clamp(0, 1).expand(n, c, h, w).clone()


def texture_only(
    images: Tensor, patch: int = 8, *, generator: torch.Generator | None = None
) -> Tensor:
    """Destroys shape and keeps texture: each image is cut into ``patch x patch``
    tiles that are shuffled (a different permutation per image).

    When ``H`` or ``W`` is not a multiple of ``patch``, the full tiles are shuffled
    and the remaining bottom/right border stays in place, so every image keeps its
    exact multiset of pixel values.

    Args:
        images: ``(N, C, H, W)`` floating point.
        patch: Tile side in pixels, ``1 <= patch <= min(H, W)``. Default: ``8``.
        generator: Private RNG for the permutations (the global RNG is never used).
            Default: a generator seeded with 0.

    Returns:
        ``(N, C, H, W)`` shuffled images (a new tensor), same dtype and device.

    Raises:
        TypeError: Non-tensor or non-float images; ``patch`` not an int; a bad generator.
        ValueError: Bad shapes; ``patch`` outside ``[1, min(H, W)]``.
    """
    check_images(images, "images")
    n, c, h, w = images.shape
    check_int(patch, "patch", minimum=1, maximum=min(h, w))
    check_generator(generator)
    gen = generator if generator is not None else make_generator(0)
    gh, gw = h // patch, w // patch
    t = gh * gw
    core = images[:, :, : gh * patch, : gw * patch]
    tiles = core.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(n, t, c, patch, patch)
    perm = torch.rand((n, t), generator=gen, device=gen.device, dtype=torch.float32).argsort(dim=1)
    perm = perm.to(images.device)
    tiles = tiles[torch.arange(n, device=images.device).unsqueeze(1), perm]
    tiles = tiles.reshape(n, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    out = images.clone()
    out[:, :, : gh * patch, : gw * patch] = tiles.reshape(n, c, gh * patch, gw * patch)
    return out


def saliency_in_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """Fraction of each map's total saliency that falls inside its object mask.

    ``sum(maps * masks) / sum(maps)`` per image: 1 when all saliency is on the
    object, near the mask's area fraction when saliency is spread evenly (a model
    that looks at the background scores low). An image whose map is all zero gets 0.

    Args:
        maps: Non-negative saliency maps ``(N, 1, H, W)``, float.
        masks: Boolean object masks ``(N, 1, H, W)`` (``(N, H, W)`` is accepted).

    Returns:
        Float fractions ``(N,)`` in ``[0, 1]``, on the maps' device.

    Raises:
        TypeError: ``maps`` is not a float tensor or ``masks`` is not a bool tensor.
        ValueError: Shapes differ, or ``maps`` has negative values.
    """
    check_maps(maps)
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool:
        shown = f"<dtype {masks.dtype}>" if isinstance(masks, Tensor) else masks
        fail("masks", "a bool tensor (use masks > 0)", shown, TypeError)
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if masks.shape != maps.shape:
        fail("masks", f"of the maps' shape {tuple(maps.shape)}", f"<shape {tuple(masks.shape)}>")
    m = maps.detach()
    if bool((m < 0).any()):
        fail("maps", "non-negative (use reduce='max' or 'sum')", f"<min {m.min().item():.4g}>")
    total = m.flatten(1).sum(dim=1)
    inside = (m * masks.to(device=m.device, dtype=m.dtype)).flatten(1).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(m.dtype).tiny), 0.0)


def _pick_pairs(
    labels: Tensor, num_images: int, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Content/style indices and labels: round-robin over ordered class pairs."""
    classes = torch.unique(labels.cpu()).tolist()
    if len(classes) < 2:
        fail("labels", "images of at least 2 classes for cue-conflict images", classes)
    members = {}
    for k in classes:
        idx = torch.nonzero(labels.cpu() == k).flatten()
        members[k] = idx[torch.randperm(idx.numel(), generator=gen)].tolist()
    pairs = [(a, b) for a in classes for b in classes if a != b]
    available = sum(len(members[a]) * len(members[b]) for a, b in pairs)
    if num_images > available:
        fail(
            "num_images",
            f"at most the {available} distinct cue-conflict pairs (content of class A, style "
            f"of class B != A) that {labels.numel()} images of {len(classes)} classes allow",
            num_images,
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


def pyramid_sizes(size: tuple[int, int], style_size: int | None) -> list[tuple[int, int]]:
    """Sizes ``(H, W)`` of the coarse-to-fine pyramid, coarsest first, ending at ``size``.

    Example:
        >>> pyramid_sizes((224, 224), 64)
        [(56, 56), (112, 112), (224, 224)]
    """
    sizes = [tuple(size)]
    while style_size is not None and max(sizes[-1]) > style_size:
        h, w = sizes[-1]
        sizes.append((-(-h // 2), -(-w // 2)))
    return sizes[::-1]  # type: ignore[return-value]


def _resized(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    smaller = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=smaller)
    return out.clamp(0, 1)


def stylize(
    content: Tensor,
    style: Tensor,
    extractor: nn.Module | None = None,
    *,
    steps: int = 50,
    style_size: int | None = 64,
    refine_steps: int = 5,
    **style_kwargs: Any,
) -> Tensor:
    """Coarse-to-fine :func:`style_transfer` (see :func:`cue_conflict`).

    Args:
        content: Content images ``(N, C, H, W)`` in ``[0, 1]``.
        style: Style images ``(N, C, H', W')`` in ``[0, 1]``.
        extractor: As for :func:`style_transfer`.
        steps: Steps at the coarsest level. Default: ``50``.
        style_size: Largest side of the coarsest level (``None``: one level).
            Default: ``64``.
        refine_steps: Steps at each finer level. Default: ``5``.
        **style_kwargs: Further :func:`style_transfer` options.

    Returns:
        ``(N, C, H, W)`` images in ``[0, 1]``.

    Raises:
        TypeError: ``content`` or ``style`` is not a float image batch.
        ValueError: ``style_size`` below 8, or bad steps.
    """
    check_images(content, "content")
    check_images(style, "style")
    if style_size is not None:
        check_int(style_size, "style_size", minimum=8)  # smaller never ends halving
    check_int(refine_steps, "refine_steps", minimum=0)
    sizes = pyramid_sizes(tuple(content.shape[-2:]), style_size)  # type: ignore[arg-type]
    x: Tensor | None = None
    for level, size in enumerate(sizes):
        init = "content" if x is None else _resized(x, size)
        x = style_transfer(  # type: ignore[assignment]
            _resized(content, size),
            _resized(style, size),
            extractor,
            steps=steps if level == 0 else refine_steps,
            init=init,
            **style_kwargs,
        )
    return x  # type: ignore[return-value]


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
    part: Tensor | None = None,
    style_size: int | None = 64,
    refine_steps: int = 5,
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

    Coarse to fine: images larger than ``style_size`` are stylized on a pyramid of
    sizes halving down to at most ``style_size`` (224 px: 56, 112, 224). The coarsest
    level gets ``steps`` optimization steps from the content; each finer level starts
    from the coarser result, upsampled, and adds the finer texture in
    ``refine_steps`` steps (content and style both resized to that level). A step
    at 224 px costs about 16 steps at 56 px, so this is several times cheaper than
    ``steps`` steps at full size, and memory stays that of ``batch_size`` pairs at
    full size for ``refine_steps`` steps.

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
        part: Positions (a long tensor) among the ``num_images`` pairs to make; the
            pairing is the same, only these are stylized and returned, in this order
            (to split the work across processes). Default: ``None`` (all).
        style_size: Largest side optimized for ``steps`` steps (>= 8); ``None``: all
            steps at full size. Default: ``64``.
        refine_steps: Steps at each finer level of the pyramid (>= 0). Default: ``5``.
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
    check_labels(labels, "labels", images.shape[0])
    check_int(num_images, "num_images", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    if style_size is not None:
        check_int(style_size, "style_size", minimum=8)
    check_int(refine_steps, "refine_steps", minimum=0)
    check_generator(generator)
    check_callable(progress, "progress")
    check_pixels(images, "images")
    if masks is not None:
        expected = (images.shape[0], 1, *images.shape[2:])
        if not isinstance(masks, Tensor) or tuple(masks.shape) != expected:
            shown = f"<shape {tuple(masks.shape)}>" if isinstance(masks, Tensor) else masks
            fail("masks", f"None or a tensor of shape {expected}", shown)
    for key in ("init", "return_losses", "generator"):
        if key in style_kwargs:
            fail(
                "style_kwargs",
                "style_transfer options other than init, return_losses and generator",
                key,
                TypeError,
            )

    device = images.device
    gen = generator if generator is not None else make_generator(0)
    ci, si, shape_labels, texture_labels = _pick_pairs(labels, num_images, gen)
    if part is not None:
        if not isinstance(part, Tensor) or part.dtype != torch.long or part.dim() != 1:
            fail("part", "None or a 1-D long tensor of pair positions", part, TypeError)
        if part.numel() and (int(part.min()) < 0 or int(part.max()) >= num_images):
            fail("part", f"positions in [0, {num_images})", part.tolist())
        part = part.cpu()
        ci, si, shape_labels, texture_labels = (
            t[part] for t in (ci, si, shape_labels, texture_labels)
        )
        num_images = int(part.numel())
        if not num_images:
            shape = (0, *images.shape[1:])
            empty = torch.empty(0, dtype=torch.long, device=device)
            return images.new_empty(shape), empty, empty.clone()
    if extractor is None:
        extractor = default_extractor(images.shape[1], device)
    out = []
    for start in range(0, num_images, batch_size):
        sl = slice(start, start + batch_size)
        content = images[ci[sl].to(device)]
        stylized = stylize(
            content,
            images[si[sl].to(device)],
            extractor,
            steps=steps,
            style_size=style_size,
            refine_steps=refine_steps,
            **style_kwargs,
        )
        if masks is not None:
            mask = masks[ci[sl].to(masks.device)].to(device=device, dtype=stylized.dtype)
            stylized = mask * stylized + (1 - mask) * content
        out.append(stylized)
        if progress is not None:
            progress(min(start + batch_size, num_images), num_images)
    return torch.cat(out), shape_labels.to(device), texture_labels.to(device)
