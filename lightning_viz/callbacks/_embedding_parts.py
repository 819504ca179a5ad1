"""EmbeddingProjector's parts that need no callback state: merging the ranks' rows in
dataset order, and what the background worker builds (the projector embedding with its
metadata columns, the 2-D projection figure)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_viz import render
from lightning_viz._runtime.context import caption_names
from lightning_viz._runtime.distributed import interleave
from lightning_viz._runtime.projector import metadata_rows
from lightning_viz._runtime.writers import Embedding
from lightning_viz.functional import embedding as E

__all__ = ["embedding_with_metadata", "first_tensor", "merge_ranks", "projection_figure"]

METADATA_HEADER = ["label", "predicted", "correct"]


def projection_figure(
    features: Tensor,
    labels: Tensor,
    projection: str,
    class_names: list[str] | None,
    title: str,
    seed: int,
) -> Any:
    """Projects ``(N, D)`` features to 2-D and draws the scatter figure (worker thread)."""
    if projection == "tsne":
        points = E.tsne(features, seed=seed)
    else:
        points = E.pca(features, dim=2)
    names = None if class_names is None else caption_names(class_names)  # legend
    return render.scatter_figure(points, labels, class_names=names, title=title)


def embedding_with_metadata(
    features: Tensor,
    labels: Tensor | None,
    predicted: Tensor | None,
    class_names: list[str] | None,
    thumbs: Tensor,
) -> Embedding:
    """The embedding with its metadata columns (worker thread)."""
    rows = metadata_rows(labels, predicted, features.shape[0], class_names)
    return Embedding(features, list(METADATA_HEADER), rows, thumbs)


def first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


def merge_ranks(
    gathered: list[dict[str, Tensor | None]], total: int | None, num_samples: int
) -> dict[str, Tensor | None]:
    """Merges the samples of every rank into dataset order.

    A ``DistributedSampler`` (not shuffled) deals sample ``g`` of the dataset to rank
    ``g % world`` as its local sample ``g // world``, padding the last round with
    repeats of the first samples; so local row ``i`` of rank ``r`` is global sample
    ``i * world + r``, and rows at ``g >= total`` are padding.

    Args:
        gathered: One dict per rank, in rank order, with ``features``, ``thumbs``,
            ``labels``, ``predicted``: tensors with one row per local sample, or ``None``.
        total: Length of the dataset, or ``None`` when unknown (nothing is dropped).
        num_samples: How many samples to keep, the first in dataset order.

    Returns:
        The same keys, rows in dataset order (``None`` where a rank lacks the key).
    """
    counts = [0 if g["features"] is None else int(g["features"].shape[0]) for g in gathered]
    out: dict[str, Tensor | None] = {}
    for key in ("features", "thumbs", "labels", "predicted"):
        parts = [g[key] for g in gathered]
        if (
            num_samples == 0
            or not sum(counts)
            or any(p is None and c for p, c in zip(parts, counts, strict=True))
        ):
            out[key] = None
            continue
        empty = next(p for p in parts if p is not None)[:0]
        rows = interleave([empty if p is None else p for p in parts], total)
        out[key] = rows[:num_samples]
    return out
