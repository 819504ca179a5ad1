"""Classification tasks: what a prediction, a class score and a correct answer are.

Like torchmetrics' ``task``, three kinds of classifier are told apart:

* ``"multiclass"``: logits ``(N, K)``, ``K >= 2``, one class per image (argmax);
  labels are class indices ``(N,)``, or one-hot / soft rows ``(N, K)`` (CutMix,
  label smoothing), read as their argmax.
* ``"binary"``: one logit ``(N, 1)``; the decision is ``logit > 0`` (class 1), the
  class-1 score is the logit and the class-0 score ``-logit``; labels are 0/1.
* ``"multilabel"``: logits ``(N, K)``, each label decided on its own
  (``logit > 0``); labels are multi-hot rows ``(N, K)``. Methods that explain one
  class explain the top label (the largest logit) unless told otherwise.

Pure torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_viz._checks import TASKS, fail

__all__ = [
    "TASKS",
    "check_task_fits",
    "class_scores",
    "correct",
    "detect_task",
    "normalize_labels",
    "num_classes",
    "predict",
    "task_loss",
]


def num_classes(logits: Tensor) -> int:
    """Number of classes a target index may name: 2 for one logit, else ``K``."""
    k = int(logits.shape[-1])
    return 2 if k == 1 else k


def _is_distribution(labels: Tensor) -> bool:
    """Rows that are one-hot or soft probabilities (non-negative, summing to 1)."""
    if labels.numel() == 0:
        return True
    lab = labels.float()
    return bool((lab >= 0).all()) and bool(
        torch.allclose(lab.sum(dim=1), torch.ones(lab.shape[0], device=lab.device), atol=1e-3)
    )


def detect_task(num_outputs: int, labels: Tensor | None = None) -> str:
    """Detects the task from the number of logits and the labels.

    One logit is ``"binary"``; labels ``(N, K)`` with ``K`` the number of logits
    whose rows are not one-hot or soft probabilities are ``"multilabel"``; all else
    is ``"multiclass"`` (a multi-label probe whose images happen to carry one label
    each reads as multiclass: pass ``task="multilabel"`` then).

    Args:
        num_outputs: Number of logits ``K`` the model returns per image.
        labels: Labels of some images, ``(N,)`` or ``(N, K)``, or ``None``.

    Returns:
        ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
    """
    if num_outputs == 1:
        return "binary"
    if (
        labels is not None
        and labels.dim() == 2
        and labels.shape[1] == num_outputs
        and not _is_distribution(labels)
    ):
        return "multilabel"
    return "multiclass"


def check_task_fits(task: str | None, num_outputs: int, name: str) -> None:
    """Raises a ``ValueError`` (naming ``name``, the caller) when a given ``task`` cannot
    be the task of a model of ``num_outputs`` logits: ``"binary"`` is one logit,
    ``"multiclass"`` one per class (two or more)."""
    if task == "binary" and num_outputs != 1 or task == "multiclass" and num_outputs == 1:
        binary = task == "binary"
        raise ValueError(
            f"{name}: task={task!r} is a model with "
            + ("one logit (N, 1)" if binary else "one logit per class (N, K >= 2)")
            + f", but this one gives {num_outputs} per image; pass task="
            + (
                "'multiclass' (one class each, softmax) or 'multilabel' (a sigmoid per label)"
                if binary
                else "'binary' (0/1 labels, a sigmoid)"
            )
            + ", or task=None to detect it"
        )


def saveable(t: Tensor) -> Tensor:
    """``t``, or a copy of it that autograd can save when ``t`` is an inference tensor
    (made under ``torch.inference_mode``, as Lightning's validation batches are)."""
    if not t.is_inference():
        return t
    with torch.inference_mode(False):
        return t.clone()


def normalize_labels(labels: Tensor, task: str, num_outputs: int, name: str = "labels") -> Tensor:
    """Labels in the form a task uses (a copy autograd can save: :func:`saveable`).

    Multiclass: class indices ``(N,)`` long (rows ``(N, K)`` by argmax). Binary: 0/1
    ``(N,)`` long (``(N, 1)`` and float labels thresholded at 0.5). Multilabel:
    ``(N, K)`` float 0/1 (thresholded at 0.5).

    Raises:
        ValueError: The labels do not fit the task and the number of logits.
    """
    return saveable(_labels_for(labels, task, num_outputs, name))


def _labels_for(labels: Tensor, task: str, num_outputs: int, name: str) -> Tensor:
    if task == "multilabel":
        if labels.dim() != 2 or labels.shape[1] != num_outputs:
            fail(
                name,
                f"multi-hot rows (N, {num_outputs}) for a multilabel model with "
                f"{num_outputs} logits",
                f"<shape {tuple(labels.shape)}>",
            )
        return (labels.float() > 0.5).float()
    if labels.dim() == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if task == "binary":
        if labels.dim() != 1:
            fail(name, "0/1 labels (N,) for a binary model", f"<shape {tuple(labels.shape)}>")
        out = (labels.float() > 0.5).long() if labels.is_floating_point() else labels.long()
        if out.numel() and (int(out.min()) < 0 or int(out.max()) > 1):
            fail(name, "0/1 labels for a binary model (one logit)", sorted(set(out.tolist())))
        return out
    if labels.dim() == 2:
        if labels.shape[1] != num_outputs:
            fail(
                name,
                f"class indices (N,) or rows (N, {num_outputs})",
                f"<shape {tuple(labels.shape)}>",
            )
        return labels.float().argmax(dim=1)
    if labels.dim() != 1:
        fail(name, "class indices (N,)", f"<shape {tuple(labels.shape)}>")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        fail(name, "integer class indices (N,)", f"<dtype {labels.dtype}>", TypeError)
    out = labels.long()
    if out.numel() and (int(out.min()) < 0 or int(out.max()) >= num_outputs):
        fail(
            name,
            f"class indices in [0, {num_outputs}) for a model with {num_outputs} logits",
            f"<values in [{int(out.min())}, {int(out.max())}]>",
        )
    return out


def predict(logits: Tensor) -> Tensor:
    """Predicted (or top) class ``(N,)``: ``logit > 0`` for one logit, else the argmax."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).long()
    return logits.argmax(dim=-1)


def class_scores(logits: Tensor, idx: Tensor) -> Tensor:
    """Each row's score for class ``idx[i]`` ``(N,)``; for one logit ``+logit``/``-logit``."""
    if logits.shape[-1] == 1:
        return logits[:, 0] * (2 * idx.to(logits.dtype) - 1)
    return logits.gather(1, idx.view(-1, 1))[:, 0]


def task_loss(logits: Tensor, labels: Tensor, task: str) -> Tensor:
    """Per-sample loss ``(N,)`` an attack ascends: cross entropy, or BCE for binary/multilabel."""
    if task == "multiclass":
        return F.cross_entropy(logits, labels, reduction="none")
    target = labels.float().view_as(logits) if task == "binary" else labels.float()
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss.flatten(1).sum(dim=1)


def correct(logits: Tensor, labels: Tensor, task: str) -> Tensor:
    """Correct decisions: ``(N,)`` bool, or ``(N, K)`` per label for multilabel. A
    NaN output is never correct (the argmax of a row holding NaN is that NaN's class)."""
    if task == "multilabel":
        return ((logits > 0) == (labels > 0.5)) & ~torch.isnan(logits)
    return (predict(logits) == labels) & ~torch.isnan(logits).any(dim=-1)
