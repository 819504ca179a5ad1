"""TensorBoard projector files, written so that a run's log does not grow more than needed.

``SummaryWriter.add_embedding`` writes the tensors, the metadata and the thumbnail
sprite again at every step. The sprite shows the same images every epoch (the first
validation samples), so here it is written once per run, under
``<log_dir>/lightning_viz/projector/``, and every epoch's entry of
``projector_config.pbtxt`` refers to it. The tensors are written with 3 significant
digits (the projector's PCA and t-SNE need no more); the metadata (labels,
predictions, correctness: they change) every epoch.
"""

from __future__ import annotations

import io
import math
import os
import re
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lightning_viz._checks import check_int, fail
from lightning_viz._io import atomic_write, fingerprint
from lightning_viz._runtime.context import distinct_names
from lightning_viz.render.grids import to_uint8
from lightning_viz.render.maps import picture, to_rgb

__all__ = [
    "metadata_rows",
    "sprite_images",
    "sprite_png",
    "sprite_thumb_size",
    "square_thumbnails",
    "stretched_outside_pixels",
    "write_embedding",
]

_CONFIG = "projector_config.pbtxt"
_PIXEL_SLACK = 0.1  # values this far outside [0, 1] still count as pixels (a resize's overshoot)


# --------------------------------------------------------------------------- sprite
def sprite_thumb_size(
    n: int, image_hw: tuple[int, int], *, max_sprite_px: int = 8192, max_thumb: int = 64
) -> tuple[int, int]:
    """Thumbnail ``(h, w)`` so that a square sprite of ``n`` thumbnails fits the limit.

    The projector lays ``n`` thumbnails out in a ``ceil(sqrt(n))`` square; the
    thumbnail's longer side is ``min(max(H, W), max_thumb, max_sprite_px //
    ceil(sqrt(n)))`` and the aspect ratio is kept (never upscaled).

    Raises:
        ValueError: ``n < 1`` or the sprite limit leaves less than one pixel.
    """
    n = check_int(n, "n", minimum=1)
    max_sprite_px = check_int(max_sprite_px, "max_sprite_px", minimum=1)
    max_thumb = check_int(max_thumb, "max_thumb", minimum=1)
    h, w = int(image_hw[0]), int(image_hw[1])
    per_side = math.ceil(math.sqrt(n))
    side = min(max(h, w), max_thumb, max_sprite_px // per_side)
    if side < 1:
        fail("max_sprite_px", f">= {per_side} to fit {n} thumbnails", max_sprite_px)
    ratio = side / max(h, w)
    return max(1, math.floor(h * ratio + 1e-9)), max(1, math.floor(w * ratio + 1e-9))


# ------------------------------------------------------------------------- metadata
_CONTROL = re.compile(r"[\t\r\n\v\f]+")


def metadata_rows(
    labels: Tensor | None, predicted: Tensor | None, n: int, class_names: list[str] | None
) -> list[list[str]]:
    """Rows ``[label, predicted, correct]`` (class names when given, ``?`` when unknown).

    A multi-hot label row is shown as its positive labels joined by ``+``; its
    prediction (the top label) is correct when it is one of them. Tabs and line breaks
    in a class name become one space (the metadata is one TSV row per point).
    """

    if class_names is not None:
        class_names = distinct_names(class_names)  # "crane #134", "crane #517"

    def name(index: Any) -> str:
        if index is None:
            return "?"
        if isinstance(index, list):  # a multi-hot row
            return "+".join(name(i) for i, v in enumerate(index) if v > 0.5) or "-"
        if class_names is not None and 0 <= index < len(class_names):
            # a tab or line break would split the TSV row: the labels would shift
            return _CONTROL.sub(" ", class_names[index])
        return str(index)

    labs = [None] * n if labels is None else labels.tolist()
    preds = [None] * n if predicted is None else predicted.tolist()
    rows = []
    for lab, pred in zip(labs, preds, strict=True):
        if lab is None or pred is None:
            correct = "?"
        elif isinstance(lab, list):
            correct = str(lab[pred] > 0.5).lower()
        else:
            correct = str(lab == pred).lower()
        rows.append([name(lab), name(pred), correct])
    return rows


def stretched_outside_pixels(images: Tensor) -> tuple[Tensor, tuple[float, float] | None]:
    """``(n, C, H, W)`` images, each with values well outside ``[0, 1]`` (0-255 data, or
    normalized by an unknown normalization: clamped, they show white or saturated)
    stretched from its own minimum and maximum to ``[0, 1]``, and the range of those
    found; images within ``[0, 1]`` up to a slack as they are (and ``None``)."""
    if not images.numel():
        return images, None
    flat = images.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    outside = ((lo < -_PIXEL_SLACK) | (hi > 1 + _PIXEL_SLACK)).flatten()
    if not bool(outside.any()):
        return images, None
    stretched = (flat - lo) / (hi - lo).clamp_min(1e-12)
    out = torch.where(outside[:, None], stretched, flat).view_as(images)
    return out, (float(lo[outside].min()), float(hi[outside].max()))


def square_thumbnails(pixels: Tensor, side: int) -> Tensor:
    """``(n, 1|3, H, W)`` pixels in ``[0, 1]`` -> ``(n, 1|3, side, side)`` uint8
    thumbnails, centred on black: the projector's sprite assumes square ones."""
    thumbs = sprite_images(pixels, max_thumb=side)
    h, w = thumbs.shape[-2:]
    if (h, w) != (side, side):
        top, left = (side - h) // 2, (side - w) // 2
        thumbs = F.pad(thumbs, (left, side - w - left, top, side - h - top))
    return (thumbs * 255).round().to(torch.uint8)


def sprite_images(images: Tensor, *, max_sprite_px: int = 8192, max_thumb: int = 64) -> Tensor:
    """Thumbnails for TensorBoard's embedding projector (its sprite is at most 8192 px).

    Args:
        images: Float images ``(N, C, H, W)`` in ``[0, 1]``, ``C`` 1 or 3.
        max_sprite_px: Side of the square sprite that must hold all thumbnails.
            Default: ``8192`` (TensorBoard's limit).
        max_thumb: Longest thumbnail side. Default: ``64``.

    Returns:
        Float thumbnails ``(N, C, h, w)`` in ``[0, 1]`` (antialiased resize, aspect
        kept, never upscaled) with ``ceil(sqrt(N)) * max(h, w) <= max_sprite_px``.

    Raises:
        TypeError: ``images`` is not a float tensor; bad argument types.
        ValueError: Wrong shape, values outside ``[0, 1]``, too many images for the
            sprite.
    """
    images = picture(images)
    h, w = sprite_thumb_size(
        images.shape[0], tuple(images.shape[-2:]), max_sprite_px=max_sprite_px, max_thumb=max_thumb
    )
    if (h, w) == tuple(images.shape[-2:]):
        return images.detach().clone()
    out = F.interpolate(
        images.detach().float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True
    )
    return out.clamp(0.0, 1.0).to(images.dtype)


def sprite_png(thumbs: Tensor) -> bytes:
    """The projector's sprite: ``ceil(sqrt(N))`` square thumbnails a row, as a PNG file.

    Args:
        thumbs: ``(N, C, s, s)`` uint8 (or ``[0, 1]`` float) square thumbnails, ``C`` 1
            or 3; the sprite is ``ceil(sqrt(N)) * s`` pixels square, black where empty.

    Returns:
        The PNG bytes.
    """
    thumbs = to_rgb(to_uint8(picture(thumbs, "thumbs", allow_uint8=True)))
    n, _, s, _ = thumbs.shape
    per_side = math.ceil(math.sqrt(n))
    canvas = torch.zeros((per_side * per_side, 3, s, s), dtype=torch.uint8)
    canvas[:n] = thumbs.cpu()
    grid = canvas.view(per_side, per_side, 3, s, s).permute(0, 3, 1, 4, 2)
    out = io.BytesIO()
    Image.fromarray(grid.reshape(per_side * s, per_side * s, 3).numpy()).save(
        out, format="PNG", compress_level=9
    )
    return out.getvalue()


# --------------------------------------------------------------------------- files
def _encode(tag: str) -> str:
    """The folder name of a tag, as ``SummaryWriter.add_embedding`` writes it.

    A copy of ``SummaryWriter._encode``: TensorBoard has no public helper for it.
    """
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def write_embedding(
    log_dir: str,
    tag: str,
    step: int,
    features: Tensor,
    metadata: list[list[str]],
    header: list[str],
    thumbs: Tensor,
) -> str:
    """Writes one epoch's embedding for TensorBoard's projector.

    Args:
        log_dir: The run's log directory (the one holding the event file).
        tag: The embedding's name, e.g. ``"embedding/model.fc"``.
        step: The step it belongs to.
        features: ``(N, D)`` float features.
        metadata: One row of strings per sample.
        header: The metadata columns.
        thumbs: ``(N, C, s, s)`` uint8 square thumbnails (the same images every epoch:
            their sprite is written once and shared).

    Returns:
        The folder of this step's tensors and metadata.
    """
    from google.protobuf import text_format  # TensorBoard's, imported only to write for it
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    folder = os.path.join(log_dir, f"{int(step):05d}", _encode(tag))
    rows = ("\t".join(f"{v:.3g}" for v in row) for row in features.float().tolist())
    atomic_write(os.path.join(folder, "tensors.tsv"), ("\n".join(rows) + "\n").encode())
    lines = ["\t".join(header), *("\t".join(r) for r in metadata)]
    atomic_write(os.path.join(folder, "metadata.tsv"), ("\n".join(lines) + "\n").encode())
    thumbs = thumbs.contiguous().cpu()
    digest = fingerprint(thumbs, digits=12)
    sprite = os.path.join("lightning_viz", "projector", _encode(tag), f"{digest}.png")
    if not os.path.exists(os.path.join(log_dir, sprite)):  # written once per run
        atomic_write(os.path.join(log_dir, sprite), sprite_png(thumbs))
    config_path = os.path.join(log_dir, _CONFIG)
    config = ProjectorConfig()
    if os.path.exists(config_path):
        with open(config_path) as f:
            text_format.Merge(f.read(), config)
    name = f"{tag}:{int(step):05d}"
    entry = ProjectorConfig().embeddings.add()
    entry.tensor_name = name
    entry.tensor_path = os.path.relpath(os.path.join(folder, "tensors.tsv"), log_dir)
    entry.metadata_path = os.path.relpath(os.path.join(folder, "metadata.tsv"), log_dir)
    entry.sprite.image_path = sprite
    entry.sprite.single_image_dim.extend([int(thumbs.shape[-1]), int(thumbs.shape[-2])])
    steps = {e.tensor_name: _step_of(e.tensor_name, tag) for e in config.embeddings}
    steps[name] = int(step)
    others = [e for e in config.embeddings if steps[e.tensor_name] is None]
    mine = [  # this tag's earlier steps (not its alias, -1; not a later step of a run
        e  # resumed here from an earlier checkpoint: that future was abandoned), then this
        for e in config.embeddings
        if steps[e.tensor_name] not in (None, -1) and steps[e.tensor_name] < int(step)
    ] + [entry]
    # the projector opens the first name in sorted order: an alias of the latest step
    # sorts before "<tag>:00000", so a run opens on its trained features
    latest = max(mine, key=lambda e: steps[e.tensor_name])
    alias = type(entry)()
    alias.CopyFrom(latest)
    alias.tensor_name = f"{tag} (latest, step {steps[latest.tensor_name]})"
    del config.embeddings[:]
    config.embeddings.extend([*others, *mine, alias])
    atomic_write(config_path, text_format.MessageToString(config).encode())
    return folder


def _step_of(name: str, tag: str) -> int | None:
    """The step of ``tag``'s entry ``"<tag>:<step>"``; ``-1`` for its latest-step alias
    ``"<tag> (latest, step <step>)"``; ``None`` for another tag's entry."""
    if name.startswith(f"{tag}:") and name[len(tag) + 1 :].isdigit():
        return int(name[len(tag) + 1 :])
    if name.startswith(f"{tag} (latest, step "):
        return -1
    return None
