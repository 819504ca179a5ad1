"""Signs that ``AdversarialProbe``'s robust accuracy overstates the real robustness.

:class:`AttackChecks` is a base of
:class:`~lightning_viz.callbacks.robustness.AdversarialProbe`: whether APGD-T can run
(else APGD-CE in its place), AutoAttack's sanity checks on the model (Croce & Hein
2020: probabilities for logits, a randomized forward, zero input gradients) and the
signs of gradient masking in the measured accuracies (PGD weaker than FGSM, accuracy
rising with eps, noise stronger than the attack). Each kind is warned at most once
per run (``self._masking_warned``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_viz._guard import preserve_state
from lightning_viz._runtime.compat import rank_zero_warn
from lightning_viz._runtime.context import RunContext
from lightning_viz.functional import attacks as A
from lightning_viz.functional._grad import NoGradientError
from lightning_viz.functional.square import square_mask
from lightning_viz.monitoring.stats import sign_test

__all__ = ["AttackChecks"]

SANITY_SUBSET = 32  # probe samples of AutoAttack's sanity checks
ZERO_GRADIENT_SHARE = 0.1  # share of samples with an all-zero input gradient that is flagged


def _masking_flips(
    masks: dict[str, dict[float, Tensor]], attacks: Sequence[str], eps: Sequence[float]
) -> dict[tuple[str, str, float], tuple[int, int]]:
    """For the masking check: per ``("pgd", "fgsm", eps)``, the samples robust under
    PGD and broken by FGSM, and the reverse (``masks``: robust masks, True = correct)."""
    if "pgd" not in attacks or "fgsm" not in attacks:
        return {}
    out = {}
    for e in eps:
        pgd, fgsm = masks["pgd"][e], masks["fgsm"][e]
        out[("pgd", "fgsm", e)] = (int((pgd & ~fgsm).sum()), int((~pgd & fgsm).sum()))
    return out


class AttackChecks:
    """The sanity and gradient-masking checks of ``AdversarialProbe`` (a base class)."""

    def _first_time(self, found: dict[str, str]) -> dict[str, str]:
        """The kinds of ``found`` not warned yet in this run, now marked as warned."""
        new = {kind: text for kind, text in found.items() if kind not in self._masking_warned}
        self._masking_warned.update(new)
        return new

    # ------------------------------------------------------------ APGD-T, sanity
    def _targeted_possible(self, ctx: RunContext) -> bool:
        """APGD-T needs a multiclass model with at least 4 classes (the targeted DLR
        loss); otherwise APGD-CE runs in its place, said once per run."""
        if ctx.task == "multiclass" and ctx.num_classes >= 4:
            return True
        for text in self._first_time(
            {
                "apgd_t_fallback": (
                    f"AdversarialProbe: 'apgd-t' needs a multiclass model with >= 4 classes "
                    f"(the targeted DLR loss); this {ctx.task} model has {ctx.num_classes}, so "
                    "APGD-CE runs in its place under the name 'apgd-t'."
                )
            }
        ).values():
            rank_zero_warn(text)
        return False

    def _sanity_messages(
        self, ctx: RunContext, x: Tensor, y: Tensor, worst: Tensor, start: Tensor
    ) -> list[str]:
        """AutoAttack's checks (Croce & Hein 2020, ``autoattack/checks.py``) on the first
        probe samples, each kind warned at most once per run: outputs that already sum
        to one, outputs that change between two forwards of the same inputs, a large
        share of samples whose input gradient is exactly zero and, with
        ``black_box_queries``, Square Attack (no gradients) leaving fewer of them correct
        than the white-box attacks (``worst``: their robust mask at the largest eps)."""
        n = min(SANITY_SUBSET, x.shape[0])
        xs, ys = x[:n], y[:n]
        found: dict[str, str] = {}
        logits = ctx.logits[:n].float()
        if ctx.task == "multiclass" and logits.shape[1] > 1:
            sums = logits.sum(dim=1)
            if bool((logits >= 0).all()) and bool(((sums - 1).abs() < 1e-4).all()):
                found["probabilities"] = (
                    "the model's outputs are non-negative and sum to one on every probe "
                    "sample: they look like probabilities (a softmax inside the model), while "
                    "the attacks' losses expect logits; a saturated softmax hides the gradient"
                )
        with torch.no_grad():
            first = ctx.chunked(ctx.view, xs).float()  # at most max_batch rows a forward
            second = ctx.chunked(ctx.view, xs).float()
        spread = float((first - second).abs().max())
        if spread > 1e-4 * (1.0 + float(first.abs().max())):
            found["randomized"] = (
                f"two forwards of the same probe images differ (by up to {spread:.3g}): a "
                "randomized model (random transforms, dropout at eval) makes one attack run "
                "see a different function than the evaluation; robustness is inflated "
                "unless the attack averages over the randomness (EOT)"
            )
        try:
            with preserve_state(ctx.view) as m:
                grad = ctx.chunked(lambda xc, yc: A._loss_grad(m, xc, yc, ctx.task)[1], xs, ys)
            flat = grad.flatten(1)  # NaN or inf (logits that overflow) moves nothing either
            zero = int(((flat.abs().amax(dim=1) == 0) | ~torch.isfinite(flat).all(dim=1)).sum())
        except NoGradientError:
            zero = n
        if zero / n >= ZERO_GRADIENT_SHARE:
            found["zero_gradients"] = (
                f"{zero} of {n} probe samples have an input gradient that is exactly zero "
                "or not finite: gradient attacks cannot move them (gradient masking by "
                "saturation, quantization, a non-differentiable step, or logits that "
                "overflow to inf)"
            )
        if self.black_box_queries:
            found.update(self._black_box(ctx, xs, ys, worst[:n], start))
        return [
            f"AdversarialProbe: sanity check failed ({kind}): {text}. The robust "
            "accuracy likely overstates the real robustness."
            for kind, text in self._first_time(found).items()
        ]

    def _black_box(
        self, ctx: RunContext, x: Tensor, y: Tensor, white: Tensor, start: Tensor
    ) -> dict[str, str]:
        """Square Attack at the largest eps on the sanity subset against ``white`` (the
        white-box attacks' robust mask there): found when it breaks significantly more
        samples that they leave correct than the reverse (exact sign test below
        ``alpha``), not the few a black-box search finds beside a 10-step attack."""
        if ctx.task == "multilabel":  # Square Attack has no multilabel loss
            for text in self._first_time(
                {
                    "black_box_multilabel": "AdversarialProbe: the black-box check (Square "
                    "Attack) has no multilabel loss; it is skipped for this multilabel model"
                }
            ).values():
                rank_zero_warn(text)
            return {}
        eps = max(self.eps)
        gen = torch.Generator(device=ctx.generator.device)
        gen.set_state(start)
        square = ctx.chunked(
            lambda xc, yc: square_mask(
                ctx.view, xc, yc, eps, queries=self.black_box_queries, generator=gen, task=ctx.task
            ),
            x,
            y,
        )
        only_black = int((white & ~square).sum())
        only_white = int((~white & square).sum())
        p = sign_test(only_black, only_white)
        if p >= self.alpha:
            return {}
        n = int(x.shape[0])
        return {
            "black_box": (
                f"Square Attack ({self.black_box_queries} queries, no gradients) leaves "
                f"{int(square.sum())} of {n} probe samples correct at eps {self._eps(eps)}, the "
                f"white-box attacks {int(white.sum())}: it breaks {only_black} that they leave "
                f"correct ({only_white} the other way; sign test p = "
                f"{p:.2g}), so their gradients mislead them"
            )
        }

    # ---------------------------------------------------------- gradient masking
    def _masking_messages(
        self,
        results: dict[str, dict[float, float]],
        clean: float,
        n: int,
        independent: tuple[dict[str, dict[float, float]], float, int] | None = None,
        flips: dict[tuple[str, str, float], tuple[int, int]] | None = None,
    ) -> list[str]:
        """Warnings of signs of gradient masking, each kind at most once per run.

        ``independent`` (accuracies, clean accuracy, samples) is where "accuracy rises
        with eps" is looked for; without it, in ``results``. ``flips[("pgd", "fgsm",
        eps)]`` holds the probe samples PGD left correct and FGSM broke (``b``) and the
        reverse (``c``): PGD above FGSM by more than one sample must then also be
        significant (exact sign test of ``b`` against ``c`` below ``alpha``), not the
        noise of PGD's random start on a few samples at the decision boundary. Noise
        that breaks more than the attack needs no test: a healthy attack breaks at
        least what random noise of its size breaks.
        """
        margin = 1.0 / max(n, 1) + 1e-9

        def significant(key: tuple[str, str, float]) -> bool:
            if flips is None or key not in flips:
                return True
            return sign_test(*flips[key]) < self.alpha

        found: dict[str, str] = {}
        if "pgd" in results and "fgsm" in results:
            for eps in self.eps:
                pgd, fgsm = results["pgd"][eps], results["fgsm"][eps]
                if pgd > fgsm + margin and significant(("pgd", "fgsm", eps)):
                    found.setdefault(
                        "pgd_weaker",
                        f"PGD accuracy {pgd:.4f} is above FGSM accuracy {fgsm:.4f} at eps "
                        f"{self._eps(eps)}: a multi-step attack should not be weaker than one "
                        "step",
                    )
        order = sorted(self.eps)
        rising, base, m = independent if independent is not None else (results, clean, n)
        for attack in self.attacks:
            points = [(0.0, base), *((e, rising[attack][e]) for e in order if e > 0)]
            for (e0, a0), (e1, a1) in zip(points, points[1:], strict=False):
                if a1 > a0 + 1.0 / max(m, 1) + 1e-9:
                    found.setdefault(
                        "not_decreasing",
                        f"{attack} accuracy rises with eps: {a0:.4f} at {self._eps(e0)}, "
                        f"{a1:.4f} at {self._eps(e1)}",
                    )
        for attack in self.attacks:
            for eps in self.eps:
                noise, acc = results["noise"][eps], results[attack][eps]
                if noise < acc - margin:
                    found.setdefault(
                        "noise_stronger",
                        f"random noise ({noise:.4f}) hurts more than {attack} ({acc:.4f}) at "
                        f"eps {self._eps(eps)}",
                    )
        return [
            f"AdversarialProbe: possible gradient masking: {text}. The gradients mislead "
            "the attack (e.g. quantized, saturated or non-differentiable inputs), so the "
            "robust accuracy overstates the real robustness."
            for text in self._first_time(found).values()
        ]
