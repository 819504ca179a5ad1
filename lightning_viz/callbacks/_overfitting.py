"""Catastrophic overfitting (Wong, Rice and Kolter, "Fast is better than free", ICLR
2020), watched by :class:`~lightning_viz.callbacks.robustness.AdversarialProbe`.

:class:`WatchesOverfitting` is a base of ``AdversarialProbe``: with ``"fgsm"`` and
``"pgd"`` both run, it warns once per fit when PGD accuracy falls while FGSM accuracy
at the same eps holds, the samples FGSM leaves correct and PGD breaks grew
significantly to at least a fifth of the probe (:data:`GAP`), and the model classifies
the probe better than chance (a model at chance has no robustness to lose: its
predictions, and with them both attacks' accuracies, move at random).
"""

from __future__ import annotations

from typing import Any

import torch
from scipy import stats
from torch import Tensor

from lightning_viz._runtime.context import RunContext
from lightning_viz.monitoring.stats import sign_test

__all__ = ["GAP", "WatchesOverfitting", "chance_accuracy"]

GAP = 0.2  # share of the probe FGSM leaves correct and PGD breaks, at least, to warn


def chance_accuracy(labels: Tensor, task: str) -> float:
    """The accuracy of the best constant prediction on a probe's labels.

    Args:
        labels: ``(N,)`` class indices (multiclass, binary) or ``(N, K)`` 0/1 targets
            (multilabel, scored per label).
        task: ``"multiclass"``, ``"binary"`` or ``"multilabel"``.

    Returns:
        The share of the most frequent class; for multilabel the mean over labels of the
        share of each label's more frequent value. In ``[0, 1]``; ``0.0`` for no labels.

    Examples:
        >>> chance_accuracy(torch.tensor([0, 1, 1, 2]), "multiclass")
        0.5
        >>> chance_accuracy(torch.tensor([[1, 0], [1, 1], [1, 0], [0, 0]]), "multilabel")
        0.75
    """
    if labels.numel() == 0:
        return 0.0
    if task == "multilabel":
        positive = (labels > 0.5).float().mean(0)
        return float(torch.maximum(positive, 1 - positive).mean())
    _, counts = torch.unique(labels.flatten(), return_counts=True)
    return float(counts.max()) / labels.numel()


class WatchesOverfitting:
    """The catastrophic-overfitting warning of ``AdversarialProbe`` (a base class).

    Needs ``self.attacks``, ``self.eps``, ``self.tolerance``, ``self.alpha`` and
    ``self._eps`` (the eps as text) from the probe.
    """

    def _reset_overfitting(self) -> None:
        # per eps: the reference run (smallest FGSM-PGD gap so far) and where growth began
        self._co_ref: dict[float, tuple[Tensor, Tensor, int]] = {}
        self._co_start: dict[float, int | None] = {}
        self.catastrophic_overfitting: dict[str, Any] | None = None

    def _better_than_chance(self, clean: Tensor, labels: Tensor, task: str) -> bool:
        """Whether the clean accuracy is above the best constant prediction's: exact
        one-sided binomial test at ``alpha`` (``clean``: correct decisions, ``(N,)`` or
        ``(N, K)``)."""
        n, hits = clean.numel(), int(clean.sum())
        rate = chance_accuracy(labels, task)
        if n == 0 or rate >= 1.0:
            return False
        test = stats.binomtest(hits, n, rate, alternative="greater")
        return float(test.pvalue) < self.alpha

    def _overfitting_messages(
        self,
        ctx: RunContext,
        masks: dict[str, dict[float, Tensor]],
        clean: Tensor,
        labels: Tensor,
    ) -> list[str]:
        """Catastrophic overfitting (Wong, Rice and Kolter 2020): PGD accuracy falls far
        below FGSM accuracy at the same eps, which holds or rises.

        Per eps, the reference is the run with the smallest number of probe samples
        FGSM leaves correct and PGD breaks (the gap). A later run is flagged when PGD
        accuracy is below the reference's, the gap is at least :data:`GAP` of the probe
        (standard training also lets PGD accuracy decline while FGSM's holds, with a
        gap of a few samples), FGSM accuracy is not lower by more than ``tolerance``,
        the gap grew significantly (the exact paired sign test of the samples that
        entered the gap against those that left it, below ``alpha``), and
        the clean accuracy ``clean`` (correct decisions on the whole probe, whose labels
        are ``labels``) is significantly above chance. The alert names the epoch the gap
        began to grow; once per fit.
        """
        if "fgsm" not in self.attacks or "pgd" not in self.attacks:
            return []
        epoch = int(ctx.trainer.current_epoch)
        for eps in sorted(self.eps):
            if eps <= 0:
                continue
            fgsm, pgd = masks["fgsm"][eps].flatten(), masks["pgd"][eps].flatten()
            gap = fgsm & ~pgd
            ref = self._co_ref.get(eps)
            if ref is None or int(gap.sum()) <= int((ref[0] & ~ref[1]).sum()):
                self._co_ref[eps], self._co_start[eps] = (fgsm, pgd, epoch), None
                continue
            if self._co_start.get(eps) is None:
                self._co_start[eps] = epoch
            ref_f, ref_p, ref_epoch = ref
            ref_gap = ref_f & ~ref_p
            f_now, f_ref = fgsm.float().mean().item(), ref_f.float().mean().item()
            p_now, p_ref = pgd.float().mean().item(), ref_p.float().mean().item()
            entered, left = int((gap & ~ref_gap).sum()), int((~gap & ref_gap).sum())
            p_value = sign_test(entered, left)
            if (
                p_now < p_ref
                and float(gap.float().mean()) >= GAP
                and f_now >= f_ref - self.tolerance
                and p_value < self.alpha
                and self.catastrophic_overfitting is None
                and self._better_than_chance(clean, labels, ctx.task)
            ):
                started = self._co_start[eps]
                self.catastrophic_overfitting = {
                    "epoch": epoch,
                    "started": started,
                    "eps": eps,
                    "reference_epoch": ref_epoch,
                    "p_value": p_value,
                }
                return [
                    f"AdversarialProbe: catastrophic overfitting at eps {self._eps(eps)}, "
                    f"started at epoch {started}: PGD accuracy fell from {p_ref:.4f} (epoch "
                    f"{ref_epoch}) to {p_now:.4f} (epoch {epoch}) while FGSM accuracy went "
                    f"from {f_ref:.4f} to {f_now:.4f}; the samples FGSM leaves correct and "
                    f"PGD breaks grew from {int(ref_gap.sum())} to {int(gap.sum())} (paired "
                    f"sign test p = {p_value:.2g}). The model defeats the single-step attack "
                    "only; in single-step (FGSM) adversarial training this is catastrophic "
                    "overfitting (Wong et al. 2020), cured by a random start and a step near "
                    "1.25 eps, or a multi-step attack. Read PGD's accuracy, not FGSM's."
                ]
        return []
