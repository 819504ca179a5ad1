"""Square Attack (Andriushchenko et al. 2020), L-infinity: a black-box check.

A score-based attack that uses no gradient: it starts from vertical stripes of
``+-eps`` and, each query, changes the perturbation on one random square window (side
shrinking on AutoAttack's schedule of ``p``), keeping the change where the margin loss
(the true class's logit minus the best other, to minimize) improves. AutoAttack runs it
beside the white-box attacks: when it breaks samples that the gradient attacks leave
correct, the gradients mislead the attacks (gradient masking) and the white-box robust
accuracy overstates the real robustness. As in AutoAttack's ``square.py``, one window
position and sign per channel are drawn per query for the whole batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_viz._checks import check_clamp, check_float, check_int, check_known, fail
from lightning_viz._guard import preserve_state
from lightning_viz.functional._grad import forward_logits
from lightning_viz.functional._task import class_scores, correct
from lightning_viz.functional.attacks import _generator, _prepare

__all__ = ["square_mask"]

# AutoAttack's schedule of the window's share of the image: (upper end of the
# query share in 1/10000, divisor of p_init).
_SCHEDULE = (
    (10, 1),
    (50, 2),
    (200, 4),
    (500, 8),
    (1000, 16),
    (2000, 32),
    (4000, 64),
    (6000, 128),
    (8000, 256),
)


def square_share(p_init: float, query: int, queries: int) -> float:
    """The share ``p`` of the image a window covers at ``query`` (AutoAttack's schedule).

    Args:
        p_init: The share at the start, in ``(0, 1]``.
        query: The query, ``0 <= query < queries``.
        queries: The query budget (the schedule is rescaled to it, as AutoAttack's
            ``resc_schedule``).

    Returns:
        ``p_init`` divided by 1, 2, 4, ..., 512 as ``query / queries`` passes 0.1 %,
        0.5 %, 2 %, 5 %, 10 %, 20 %, 40 %, 60 % and 80 %.

    Examples:
        >>> square_share(0.8, 0, 1000), square_share(0.8, 999, 1000)
        (0.8, 0.0015625)
    """
    at = int(query / queries * 10000)
    for upper, divisor in _SCHEDULE:
        if at <= upper:
            return p_init / divisor
    return p_init / 512


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    """The margin to minimize ``(N,)``: the true class's score minus the best other
    (for one logit, the signed logit of the true class)."""
    if logits.shape[1] == 1:
        return class_scores(logits, y)
    true = logits.gather(1, y.view(-1, 1))[:, 0]
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return true - others.amax(dim=1)


def square_mask(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    eps: float,
    *,
    queries: int = 1000,
    p_init: float = 0.8,
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    task: str | None = None,
    known: Tensor | None = None,
) -> Tensor:
    """Which samples Square Attack (L-infinity, margin loss) leaves correct.

    Args:
        model: Maps pixel images ``(N, C, H, W)`` to logits ``(N, K)``; run in eval
            mode without touching its state (:func:`~lightning_viz._guard.preserve_state`).
        inputs: Pixel images ``(N, C, H, W)`` within ``clamp``.
        target: True class indices ``(N,)`` (multiclass, or binary with one logit).
        eps: L-infinity radius, ``>= 0`` (pixel units: ``8/255``).
        queries: Forward passes per sample at most, ``>= 1`` (AutoAttack: 5000). Each
            query forwards only the samples not broken yet.
        p_init: The window's share of the image at the start, in ``(0, 1]``.
        generator: Private random numbers; ``None`` uses a fixed seed.
        clamp: The valid pixel range, or ``None``.
        task: ``"multiclass"`` or ``"binary"``; ``None`` detects it.
        known: Bool ``(N,)`` of samples known to be correct (the others count as
            broken and are not attacked), or ``None``.

    Returns:
        Bool ``(N,)``: ``True`` where the model is correct at the clean input and at
        every point the attack tried.

    Raises:
        TypeError: A wrong type (as :func:`lightning_viz.functional.pgd`).
        ValueError: ``queries < 1``, ``p_init`` outside ``(0, 1]``, a multilabel task.

    Examples:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> square_mask(model, x, y, 8 / 255, queries=20).shape
        torch.Size([4])
    """
    x, y, eps_f, task = _prepare(model, inputs, target, eps, "linf", task)
    if task == "multilabel":
        fail("task", '"multiclass" or "binary" (Square Attack has no multilabel loss)', task)
    n_queries = check_int(queries, "queries", minimum=1)
    p0 = check_float(p_init, "p_init", minimum=0.0)
    if not 0 < p0 <= 1:
        fail("p_init", "a share in (0, 1]", p_init)
    bounds = check_clamp(clamp, x)
    gen = _generator(generator, x.device)
    check_known(known, y.shape)
    low, high = bounds if bounds is not None else (-math.inf, math.inf)
    x = x.detach()
    _, c, h, w = x.shape

    def sign(shape: tuple[int, ...]) -> Tensor:
        draw = torch.randint(0, 2, shape, generator=gen, device=gen.device)
        return (2.0 * draw - 1.0).to(x.device, x.dtype)

    with preserve_state(model) as m, torch.no_grad():
        logits = forward_logits(m, x).float()
        robust = correct(logits, y, task)
        if known is not None:
            robust &= known.to(x.device)
        best = (x + eps_f * sign((x.shape[0], c, 1, w))).clamp(low, high)
        logits = forward_logits(m, best).float()
        robust &= correct(logits, y, task)
        loss = _margin(logits, y)
        for query in range(n_queries - 1):
            live = robust.nonzero().flatten()
            if not len(live):
                break
            p = square_share(p0, query, n_queries)
            side = min(max(round(math.sqrt(p * h * w)), 1), min(h, w) - 1) or 1
            top = int(torch.randint(0, h - side + 1, (1,), generator=gen, device=gen.device))
            left = int(torch.randint(0, w - side + 1, (1,), generator=gen, device=gen.device))
            step = torch.zeros(c, h, w, device=x.device, dtype=x.dtype)
            step[:, top : top + side, left : left + side] = 2 * eps_f * sign((c, 1, 1))
            origin = x[live]
            trial = torch.minimum(torch.maximum(best[live] + step, origin - eps_f), origin + eps_f)
            trial = trial.clamp(low, high)
            out = forward_logits(m, trial).float()
            trial_loss = _margin(out, y[live])
            better = trial_loss < loss[live]
            loss[live] = torch.where(better, trial_loss, loss[live])
            best[live] = torch.where(better.view(-1, 1, 1, 1), trial, best[live])
            robust[live] &= correct(out, y[live], task)
    return robust
