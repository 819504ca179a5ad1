"""``EmbeddingProjector``'s scores: k-NN accuracy and silhouette of the labelled classes.

They are computed on the samples with a class (a negative ``ignore_index`` label such as
-100 is no class, as for the probe), each once when the validation sampler draws with
replacement: a repeated sample is its own nearest neighbour, so leave-one-out k-NN
accuracy read 0.35 where 0.09 was right.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_viz._runtime.loaders import first_loader
from lightning_viz.functional import embedding as E

__all__ = ["log_scores"]


def _first_of_each(feats: Tensor) -> Tensor:
    """Indices ``(u,)`` of the first occurrence of each distinct row of ``feats``."""
    _, inverse = torch.unique(feats, dim=0, return_inverse=True)
    n = feats.shape[0]
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long)
    first.scatter_reduce_(0, inverse.cpu(), torch.arange(n), reduce="amin")
    return first.sort().values


def _draws_with_replacement(trainer: Any) -> bool:
    """Whether the first validation loader's sampler draws with replacement (a
    ``WeightedRandomSampler``, a ``RandomSampler(replacement=True)``): only then are equal
    feature rows repeats of a sample, not distinct samples a collapsed model maps alike."""
    loader = first_loader(getattr(trainer, "val_dataloaders", None))
    return bool(getattr(getattr(loader, "sampler", None), "replacement", False))


def log_scores(callback: Any, ctx: Any, feats: Tensor, labels: Tensor | None) -> None:
    """Logs ``embedding/knn_acc`` and ``embedding/silhouette`` of ``feats`` ``(N, D)``
    with ``labels`` ``(N,)``, or says once why they are not written."""
    if labels is None:
        return
    if labels.dim() == 2:
        callback.warn_once(
            "multilabel",
            "k-NN accuracy and silhouette need one class per sample; with multi-label data "
            "only the projector and the figure (colored by prediction) are written",
        )
        return
    labelled = labels >= 0
    feats, labels = feats[labelled], labels[labelled]
    if feats.shape[0] > 1 and bool((feats == feats[:1]).all()):  # collapsed: distances 0
        callback.warn_once(  # (before the repeats: every sample would look drawn again)
            "collapsed",
            f"the {feats.shape[0]} embedded validation samples all have the same features at "
            f"epoch {ctx.log.epoch} (a collapsed model): k-NN accuracy would be decided by "
            "tie order and the silhouette is 0/0, so they are not written while that lasts",
        )
        return
    if feats.shape[0] > 1 and _draws_with_replacement(ctx.trainer):
        once = _first_of_each(feats)  # a repeated sample: the same features again
        if len(once) < feats.shape[0]:
            callback.warn_once(
                "repeats",
                f"the validation sampler draws with replacement: {feats.shape[0] - len(once)} "
                f"of the {feats.shape[0]} embedded samples came again, and k-NN accuracy and "
                "silhouette count each sample once",
            )
            feats, labels = feats[once], labels[once]
    n = feats.shape[0]
    if n < 2 or (classes := labels.unique().numel()) in (1, n):
        one = n < 2 or classes == 1  # one class, or one sample a class: nothing to compare
        why = (
            "are too few"
            if n < 2
            else f"all have label {int(labels[0])}"
            if one
            else "each have a class of their own"
        )
        callback.warn_once(
            "one class" if one else "singletons",
            f"the {n} embedded, labelled validation samples {why}: k-NN accuracy and "
            "silhouette compare classes of several samples, so they are not written while "
            "that lasts",
        )
        return
    ctx.log.scalar(callback.tag("knn_acc"), E.knn_accuracy(feats, labels, k=min(callback.k, n - 1)))
    ctx.log.scalar(callback.tag("silhouette"), E.silhouette(feats, labels))
