"""Texture-vs-shape bias: the decision counts and the cue-removing image transforms.

* :func:`shape_bias` and :func:`per_class_shape_bias` score a model's decisions on
  cue-conflict images (Geirhos et al., "ImageNet-trained CNNs are biased towards
  texture; increasing shape bias improves accuracy and robustness", ICLR 2019).
* :func:`shape_only` removes texture (silhouettes or edge maps) and
  :func:`texture_only` destroys shape (patch shuffling), for the control accuracies.

Pure torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_viz._guard import make_generator
from lightning_viz.functional._utils import check_images

__all__ = ["per_class_shape_bias", "shape_bias", "shape_only", "texture_only"]


def _check_labels(labels: object, name: str, n: int | None = None) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"`{name}` must be a tensor of class indices, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"`{name}` must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"`{name}` must be 1-D (N,), got shape {tuple(labels.shape)}")
    if n is not None and labels.numel() != n:
        raise ValueError(f"`{name}` must have {n} entries, got shape {tuple(labels.shape)}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"`{name}` must be non-negative class indices, got {labels.tolist()}")
    return labels.long()


def _decisions(
    predictions: Tensor, shape_labels: Tensor, texture_labels: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Validated ``(pred, shape, texture, is_shape, is_texture)`` over counted images."""
    if not isinstance(predictions, Tensor):
        raise TypeError(
            "`predictions` must be a tensor of predicted indices (N,) or logits (N, K), "
            f"got {type(predictions).__name__}"
        )
    num_classes = None
    if predictions.is_floating_point():
        if predictions.dim() != 2:
            raise ValueError(
                "floating-point `predictions` must be logits (N, K), "
                f"got shape {tuple(predictions.shape)}"
            )
        num_classes = predictions.shape[1]
        pred = predictions.argmax(dim=1)
    elif predictions.is_complex() or predictions.dtype == torch.bool:
        raise TypeError(
            f"`predictions` must be integer indices or float logits, got dtype {predictions.dtype}"
        )
    else:
        if predictions.dim() != 1:
            raise ValueError(
                "integer `predictions` must be class indices (N,), "
                f"got shape {tuple(predictions.shape)}"
            )
        pred = predictions.long()
    n = pred.shape[0]
    shape = _check_labels(shape_labels, "shape_labels", n).to(pred.device)
    texture = _check_labels(texture_labels, "texture_labels", n).to(pred.device)
    if num_classes is not None:
        for name, lab in (("shape_labels", shape), ("texture_labels", texture)):
            if lab.numel() and int(lab.max()) >= num_classes:
                raise ValueError(
                    f"`{name}` must lie in [0, {num_classes}) for logits of {num_classes} "
                    f"classes, got max {int(lab.max())}"
                )
    counted = shape != texture
    pred, shape, texture = pred[counted], shape[counted], texture[counted]
    return pred, shape, texture, pred == shape, pred == texture


def shape_bias(
    predictions: Tensor, shape_labels: Tensor, texture_labels: Tensor
) -> dict[str, float]:
    """Shape bias on cue-conflict images (Geirhos et al., ICLR 2019).

    Only images whose shape label differs from their texture label are *counted*
    (``n_images`` of them); among them a *shape decision* is a prediction equal to
    the shape label and a *texture decision* one equal to the texture label; other
    predictions (misses) are not decisions.

    * ``shape_bias = shape decisions / (shape decisions + texture decisions)``
    * ``shape_acc = shape decisions / n_images``
    * ``texture_acc = texture decisions / n_images``
    * ``n_decisions = shape decisions + texture decisions``; ``n_images``.

    A ratio with a zero denominator is ``nan``.

    Args:
        predictions: Predicted class indices ``(N,)`` (integer) or logits ``(N, K)``
            (floating point; the argmax is taken).
        shape_labels: Class of the shape (content) of each image, ``(N,)`` integer.
        texture_labels: Class of the texture (style) of each image, ``(N,)`` integer.

    Returns:
        ``{"shape_bias", "shape_acc", "texture_acc", "n_decisions", "n_images"}``, all
        Python floats (``shape_bias`` and the accuracies in ``[0, 1]`` or ``nan``).

    Raises:
        TypeError: Non-tensors, float labels, bool/complex predictions.
        ValueError: Wrong shapes or lengths, negative labels, labels ``>= K`` for
            logits.

    Example:
        >>> out = shape_bias(torch.tensor([0, 2, 1]), torch.tensor([0, 1, 1]),
        ...                  torch.tensor([2, 2, 1]))
        >>> out["shape_bias"], out["shape_acc"], out["n_decisions"], out["n_images"]
        (0.5, 0.5, 2.0, 2.0)
    """
    _, _, _, is_shape, is_texture = _decisions(predictions, shape_labels, texture_labels)
    s, t, n = int(is_shape.sum()), int(is_texture.sum()), int(is_shape.numel())
    return {
        "shape_bias": s / (s + t) if s + t else math.nan,
        "shape_acc": s / n if n else math.nan,
        "texture_acc": t / n if n else math.nan,
        "n_decisions": float(s + t),
        "n_images": float(n),
    }


def per_class_shape_bias(
    predictions: Tensor, shape_labels: Tensor, texture_labels: Tensor, num_classes: int
) -> Tensor:
    """Shape bias per shape class: :func:`shape_bias` over the counted cue-conflict
    images whose *shape* label is ``k``, for each ``k``.

    Args:
        predictions: Predicted indices ``(N,)`` or logits ``(N, K)``.
        shape_labels: ``(N,)`` integer shape classes in ``[0, num_classes)``.
        texture_labels: ``(N,)`` integer texture classes in ``[0, num_classes)``.
        num_classes: Number of classes ``K`` (>= 1).

    Returns:
        ``(num_classes,)`` float32 tensor on the predictions' device: shape decisions
        / (shape + texture decisions) per shape class, ``nan`` for a class without
        decisions.

    Raises:
        TypeError: As :func:`shape_bias`; ``num_classes`` not an int.
        ValueError: As :func:`shape_bias`; labels ``>= num_classes``; ``num_classes < 1``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"`num_classes` must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes!r}")
    _, shape, texture, is_shape, is_texture = _decisions(predictions, shape_labels, texture_labels)
    for name, lab in (("shape_labels", shape), ("texture_labels", texture)):
        if lab.numel() and int(lab.max()) >= num_classes:
            raise ValueError(f"`{name}` must lie in [0, {num_classes}), got max {int(lab.max())}")
    s = torch.zeros(num_classes, device=shape.device).index_add_(0, shape, is_shape.float())
    t = torch.zeros(num_classes, device=shape.device).index_add_(0, shape, is_texture.float())
    total = s + t
    return torch.where(total > 0, s / total.clamp_min(1), torch.full_like(s, math.nan))


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
            raise TypeError(f"`masks` must be a tensor or None, got {type(masks).__name__}")
        m = masks.unsqueeze(1) if masks.dim() == 3 else masks
        if m.dim() != 4 or m.shape[0] != n or m.shape[1] != 1 or m.shape[2:] != (h, w):
            raise ValueError(
                f"`masks` must have shape ({n}, 1, {h}, {w}) or ({n}, {h}, {w}), "
                f"got {tuple(masks.shape)}"
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
    images: Tensor, patch: int = 8, generator: torch.Generator | None = None
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
    if isinstance(patch, bool) or not isinstance(patch, int):
        raise TypeError(f"`patch` must be an int, got {patch!r}")
    n, c, h, w = images.shape
    if not 1 <= patch <= min(h, w):
        raise ValueError(f"`patch` must lie in [1, {min(h, w)}] for {h}x{w} images, got {patch}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {generator!r}")
    gen = generator if generator is not None else make_generator(0)
    gh, gw = h // patch, w // patch
    t = gh * gw
    core = images[:, :, : gh * patch, : gw * patch]
    tiles = core.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(n, t, c, patch, patch)
    perm = torch.rand((n, t), generator=gen, device=gen.device).argsort(dim=1)
    perm = perm.to(images.device)
    tiles = tiles[torch.arange(n, device=images.device).unsqueeze(1), perm]
    tiles = tiles.reshape(n, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    out = images.clone()
    out[:, :, : gh * patch, : gw * patch] = tiles.reshape(n, c, gh * patch, gw * patch)
    return out
