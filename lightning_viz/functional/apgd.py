"""Auto-PGD (APGD-CE, APGD-DLR, targeted APGD-T) in pixel space.

Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020, https://arxiv.org/abs/2003.01690 — the
two gradient attacks of AutoAttack, the attack RobustBench ranks by.

The conventions are those of :mod:`lightning_viz.functional.attacks`: the model takes
pixel-space images and is run inside :func:`lightning_viz._guard.preserve_state`,
gradients are taken w.r.t. the input only (``torch.autograd.grad``, parameter
``.grad`` never touched), random numbers come only from a private generator, the
loss is summed over the batch so every sample's trajectory is its own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_viz._checks import (
    check_choice,
    check_clamp,
    check_float,
    check_int,
    check_known,
    fail,
)
from lightning_viz._guard import preserve_state
from lightning_viz.functional._ball import _DIV_EPS, _clamp, _flat_norm, _project
from lightning_viz.functional._grad import grad_of
from lightning_viz.functional._task import correct, task_loss
from lightning_viz.functional.attacks import _generator, _logits, _prepare, _rand

__all__ = ["apgd", "apgd_mask"]

_LOSSES = ("ce", "dlr")
# fractions of the iterations at which checkpoints are placed (Croce & Hein 2020, Sec. 3.2):
# p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
_P1, _P_DECR, _P_MIN = 0.22, 0.03, 0.06
_MOMENTUM = 0.75  # alpha of the momentum step (weight of the new gradient step)
_DENOM_EPS = 1e-12  # in the DLR denominators, as the reference implementation


# ------------------------------------------------------------------------ losses
def _largest(logits: Tensor, k: int) -> Tensor:
    """The ``k`` largest logits of each row ``(N, k)``, in decreasing order (the first
    ``k`` of a full sort, without sorting all ``K``: 10000 classes made the sort most of
    an attack's time)."""
    return logits.topk(min(k, logits.shape[1]), dim=1).values


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Untargeted Difference-of-Logits-Ratio loss ``(N,)`` (to be maximized).

    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` with ``z_pi`` the logits sorted in
    decreasing order; invariant to shifting and scaling the logits.
    """
    srt = _largest(logits, 3)
    z_y = logits.gather(1, y.view(-1, 1))[:, 0]
    top_is_y = logits.argmax(dim=1) == y
    other = torch.where(top_is_y, srt[:, 1], srt[:, 0])
    return -(z_y - other) / (srt[:, 0] - srt[:, 2] + _DENOM_EPS)


def dlr_loss_targeted(logits: Tensor, y: Tensor, t: Tensor) -> Tensor:
    """Targeted DLR loss ``(N,)``: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``."""
    srt = _largest(logits, 4)
    z_y = logits.gather(1, y.view(-1, 1))[:, 0]
    z_t = logits.gather(1, t.view(-1, 1))[:, 0]
    return -(z_y - z_t) / (srt[:, 0] - 0.5 * srt[:, 2] - 0.5 * srt[:, 3] + _DENOM_EPS)


def _checkpoints(steps: int) -> set[int]:
    """Iterations after which the step size is checked: the reference implementation's
    integer form of the paper's ``p_j`` (first after ``max(int(0.22 steps), 1)``
    iterations, then gaps shrinking by ``max(int(0.03 steps), 1)`` down to
    ``max(int(0.06 steps), 1)``)."""
    gap = max(int(_P1 * steps), 1)
    decr, least = max(int(_P_DECR * steps), 1), max(int(_P_MIN * steps), 1)
    out, at = set(), 0
    while at + gap <= steps:
        at += gap
        out.add(at)
        gap = max(gap - decr, least)
    return out


# --------------------------------------------------------------------- geometry
def _start(x: Tensor, eps: float, norm: str, gen: torch.Generator) -> Tensor:
    """AutoAttack's random start: Linf ``eps * t / ||t||_inf`` with ``t ~ U[-1, 1]``
    (one pixel at the corner of the ball), L2 a Gaussian direction of norm ``eps``."""
    if norm == "linf":
        t = _rand(x.shape, x, gen, "uniform") * 2 - 1
        return eps * t / t.flatten(1).abs().amax(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
    t = _rand(x.shape, x, gen, "normal")
    return eps * t / (_flat_norm(t) + _DENOM_EPS)


def _ascent(grad: Tensor, norm: str) -> Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / (_flat_norm(grad) + _DIV_EPS)


# ------------------------------------------------------------------------ one run
def _run_loss(logits: Tensor, y: Tensor, loss: str, task: str, targets: Tensor | None) -> Tensor:
    """Per-sample loss ``(N,)`` of one run: CE (BCE), DLR, or targeted DLR."""
    if targets is not None:
        return dlr_loss_targeted(logits, y, targets)
    if loss == "dlr":
        return dlr_loss(logits, y)
    return task_loss(logits, y, task)


def _single_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str,
    steps: int,
    rho: float,
    loss: str,
    targets: Tensor | None,
    task: str,
    gen: torch.Generator,
    clamp: tuple[float, float] | None,
    early_stop: bool,
) -> tuple[Tensor, Tensor]:
    """One APGD run from a random start on samples correct at the clean input.

    Returns ``(robust, adv)``: robust mask (no visited point fooled the model; per
    label for multilabel) and, for broken samples, the first point that fooled the
    model (the input elsewhere).
    """
    n = x.shape[0]
    multilabel = task == "multilabel"
    robust = torch.ones(y.shape if multilabel else (n,), dtype=torch.bool, device=x.device)
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    x_out = x.clone()
    x_adv = _clamp(x + _start(x, eps, norm, gen), clamp)
    idx = torch.arange(n, device=x.device)
    checkpoints = _checkpoints(steps)

    def evaluate(pts: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        pts = pts.detach().requires_grad_(True)
        logits = _logits(model, pts)
        per = _run_loss(logits, y[rows], loss, task, None if targets is None else targets[rows])
        grad = grad_of(per.sum(), pts, "APGD loss")
        ok = correct(logits.detach(), y[rows], task)
        fooled = ~ok.all(dim=1) if multilabel else ~ok
        robust[rows] &= ok
        newly = fooled & ~found[rows]
        x_out[rows[newly]] = pts.detach()[newly]
        found[rows[newly]] = True
        return per.detach(), grad

    loss_cur, grad = evaluate(x_adv, idx)
    x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss_cur.clone()
    x0 = x
    step = torch.full((n, 1, 1, 1), 2.0 * eps, dtype=x.dtype, device=x.device)
    x_prev = x_adv.clone()
    increases = torch.zeros(n, device=x.device)
    loss_at_check = loss_best.clone()
    reduced_last = torch.ones(n, dtype=torch.bool, device=x.device)
    since = 0

    def keep(mask: Tensor) -> None:
        nonlocal idx, x0, x_adv, x_prev, grad, x_best, grad_best, loss_best, loss_cur
        nonlocal step, increases, loss_at_check, reduced_last
        idx, x0, x_adv, x_prev, grad = idx[mask], x0[mask], x_adv[mask], x_prev[mask], grad[mask]
        x_best, grad_best, loss_best = x_best[mask], grad_best[mask], loss_best[mask]
        loss_cur, step, increases = loss_cur[mask], step[mask], increases[mask]
        loss_at_check, reduced_last = loss_at_check[mask], reduced_last[mask]

    for i in range(steps):
        if early_stop:
            alive = robust[idx].any(dim=1) if multilabel else robust[idx]
            if not bool(alive.all()):
                keep(alive)
        if not idx.numel():
            break
        with torch.no_grad():
            a = _MOMENTUM if i > 0 else 1.0
            z = _project(x_adv + step * _ascent(grad, norm), x0, eps, norm, clamp)
            x_new = _project(
                x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev), x0, eps, norm, clamp
            )
            x_prev = x_adv
            x_adv = x_new
        loss_new, grad = evaluate(x_adv, idx)
        increases += (loss_new > loss_cur).float()
        loss_cur = loss_new
        better = loss_new > loss_best
        x_best[better], grad_best[better], loss_best[better] = (
            x_adv[better],
            grad[better],
            loss_new[better],
        )
        since += 1
        if i + 1 in checkpoints:
            # condition 1: the loss increased in less than a fraction rho of the steps;
            # condition 2: the step size was not reduced last time and the best loss
            # did not improve since
            reduce = (increases <= since * rho) | (~reduced_last & (loss_at_check >= loss_best))
            reduced_last, loss_at_check = reduce, loss_best.clone()
            step[reduce] /= 2.0
            x_adv = torch.where(reduce.view(-1, 1, 1, 1), x_best, x_adv)
            grad = torch.where(reduce.view(-1, 1, 1, 1), grad_best, grad)
            increases.zero_()
            since = 0
    return robust, x_out


# -------------------------------------------------------------------------- core
def _check_options(
    loss: object,
    targeted: object,
    n_target_classes: object,
    steps: object,
    restarts: object,
    rho: object,
) -> tuple[str, bool, int, int, int, float]:
    check_choice(loss, "loss", _LOSSES)
    if not isinstance(targeted, bool):
        fail("targeted", "True or False", targeted, TypeError)
    n_t = check_int(n_target_classes, "n_target_classes", minimum=1)
    steps_i = check_int(steps, "steps", minimum=1)
    restarts_i = check_int(restarts, "restarts", minimum=1)
    rho_f = check_float(rho, "rho", minimum=0.0, maximum=1.0)
    if targeted and loss != "dlr":
        fail("loss", "'dlr' with targeted=True (APGD-T uses the targeted DLR loss)", loss)
    return loss, targeted, n_t, steps_i, restarts_i, rho_f  # type: ignore[return-value]


def _check_task_loss(task: str, loss: str, targeted: bool, k: int) -> None:
    if loss == "dlr" and task != "multiclass":
        fail("loss", f"'ce' for a {task} model (DLR needs class logits)", loss)
    need, kind = (4, "targeted DLR") if targeted else (3, "DLR")
    if loss == "dlr" and k < need:
        fail(
            "loss",
            f"'ce' for a model with {k} classes ({kind} needs >= {need})",
            loss,
        )


def _apgd_core(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str,
    loss: str,
    targeted: bool,
    n_target_classes: int,
    steps: int,
    restarts: int,
    rho: float,
    gen: torch.Generator,
    clamp: tuple[float, float] | None,
    task: str,
    early_stop: bool,
    known: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """``(robust, adv)`` of the whole attack (restarts, target classes) on a batch."""
    multilabel = task == "multilabel"
    with torch.no_grad():
        clean_logits = _logits(model, x)
    ok = correct(clean_logits, y, task)
    if known is not None:
        ok = ok & known  # known-broken samples are not attacked again
    robust = ok.clone()
    adv = x.clone()
    if eps == 0.0:
        return robust, adv
    k = clean_logits.shape[1]
    _check_task_loss(task, loss, targeted, k)
    order = clean_logits.argsort(dim=1, descending=True) if targeted else None
    n_targets = min(n_target_classes, k - 1) if targeted else 1
    for t in range(n_targets):
        for _ in range(restarts):
            alive = robust.any(dim=1) if multilabel else robust
            rows = alive.nonzero()[:, 0]
            if not rows.numel():
                return robust, adv
            targets = None if order is None else order[rows, t + 1]
            r, a = _single_run(
                model,
                x[rows],
                y[rows],
                eps,
                norm,
                steps,
                rho,
                loss,
                targets,
                task,
                gen,
                clamp,
                early_stop,
            )
            robust[rows] &= r
            broken = ~(r.all(dim=1) if multilabel else r)
            adv[rows[broken]] = a[broken]
    return robust, adv


# ------------------------------------------------------------------------ public
def apgd(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    eps: float,
    *,
    loss: str = "ce",
    targeted: bool = False,
    n_target_classes: int = 9,
    steps: int = 100,
    restarts: int = 1,
    norm: str = "linf",
    rho: float = 0.75,
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    task: str | None = None,
) -> Tensor:
    """Auto-PGD: PGD with momentum and a step size that adapts itself, no tuning.

    Per sample, from AutoAttack's random start (Linf: ``eps * t / ||t||_inf``,
    ``t ~ U[-1, 1]``; L2: Gaussian direction of norm ``eps``), ``steps`` iterations
    of ``z = P(x_k + eta * s(grad))``,
    ``x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1}))`` (the first step without
    momentum), ``s`` the sign (Linf) or the unit L2 direction, ``P`` the projection on
    the ``eps``-ball and the pixel range. The step ``eta`` starts at ``2 eps`` and is
    halved at a checkpoint (after ``0.22 steps`` iterations, then at gaps shrinking by
    ``0.03 steps`` to at least ``0.06 steps``) where the loss rose in at most a
    fraction ``rho`` of the steps since the last one, or where it was not halved last
    time and the best loss did not improve; the iterate then restarts at the best
    point. Restarts and target classes attack only the samples not yet broken.

    Losses: ``"ce"`` the cross entropy (binary cross entropy for a binary or
    multilabel model); ``"dlr"`` the Difference of Logits Ratio
    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` (multiclass, ``K >= 3``), or with
    ``targeted=True`` (APGD-T) ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` for the
    target classes ``t`` ranked 2nd to ``n_target_classes + 1``-th by the clean
    logits (``K >= 4``), one run each.

    Returns, for every sample fooled, the first point that fooled the model (the
    attack stops on a sample once it is broken); for the others the input unchanged,
    as ``torchattacks.APGD``. Use :func:`apgd_mask` for robust accuracy.

    Croce and Hein, ICML 2020, https://arxiv.org/abs/2003.01690

    Args:
        model: Maps pixel-space images ``(N, C, H, W)`` to logits ``(N, K)``. Run in
            eval mode with frozen parameters and left exactly as found.
        inputs: Images ``(N, C, H, W)`` in pixel space (``clamp`` range), floating point.
        target: True labels: class indices ``(N,)`` or multi-hot rows ``(N, K)``.
        eps: Radius (Linf: per pixel; L2: per image), non-negative.
        loss: ``"ce"`` or ``"dlr"``. Default: ``"ce"``.
        targeted: Targeted DLR (APGD-T); needs ``loss="dlr"``. Default: ``False``.
        n_target_classes: Target classes tried by APGD-T (at most ``K - 1``), ``>= 1``.
            Default: ``9``.
        steps: Iterations per run, ``>= 1``. Default: ``100``.
        restarts: Random restarts (per target class), ``>= 1``. Default: ``1``.
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        rho: Fraction of increasing steps below which the step is halved, in ``[0, 1]``.
            Default: ``0.75``.
        generator: Private random generator for the starts; ``None`` uses a fresh one
            seeded with 0. Default: ``None``.
        clamp: ``(min, max)`` pixel range, or ``None``. Default: ``(0.0, 1.0)``.
        task: ``"multiclass"``, ``"binary"``, ``"multilabel"`` or ``None`` (detected).

    Returns:
        Adversarial images ``(N, C, H, W)`` within ``eps`` of the inputs, detached.

    Raises:
        TypeError, ValueError: As :func:`lightning_viz.functional.pgd`; unknown
            ``loss``; ``targeted`` without ``loss="dlr"``; DLR on a binary or
            multilabel model or with too few classes.
        NoGradientError: The loss does not depend on the inputs.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> adv = apgd(model, x, y, 8 / 255, steps=10)
        >>> bool(((adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    x, y, eps_f, task = _prepare(model, inputs, target, eps, norm, task)
    opts = _check_options(loss, targeted, n_target_classes, steps, restarts, rho)
    bounds = check_clamp(clamp, x)
    gen = _generator(generator, x.device)
    with preserve_state(model) as m:
        _, adv = _apgd_core(
            m, x.detach().clone(), y, eps_f, norm, *opts, gen, bounds, task, True, None
        )
    return adv.detach()


def apgd_mask(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    eps: float,
    *,
    loss: str = "ce",
    targeted: bool = False,
    n_target_classes: int = 9,
    steps: int = 100,
    restarts: int = 1,
    norm: str = "linf",
    rho: float = 0.75,
    generator: torch.Generator | None = None,
    early_stop: bool = True,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    task: str | None = None,
    known: Tensor | None = None,
) -> Tensor:
    """Which samples (per label for multilabel) no point APGD visits fools.

    The robust mask of :func:`apgd` (same options): ``True`` where the model is
    correct at the clean input and at every iterate of every restart and target
    class. ``known`` as for :func:`lightning_viz.functional.robust_mask` (decisions
    known to be correct; the others count as broken and are not attacked), for an
    ``eps`` sweep. With ``early_stop`` a broken sample leaves the batch at once (the
    result is the same; random starts are drawn for the whole batch per run).

    Returns:
        Bool ``(N,)`` (``(N, K)`` for multilabel) on the inputs' device.

    Raises:
        As :func:`apgd`; ``known`` not a bool tensor of the result's shape.
    """
    x, y, eps_f, task = _prepare(model, inputs, target, eps, norm, task)
    opts = _check_options(loss, targeted, n_target_classes, steps, restarts, rho)
    bounds = check_clamp(clamp, x)
    gen = _generator(generator, x.device)
    shape = tuple(y.shape) if task == "multilabel" else (x.shape[0],)
    check_known(known, shape)
    with preserve_state(model) as m:
        robust, _ = _apgd_core(
            m,
            x.detach().clone(),
            y,
            eps_f,
            norm,
            *opts,
            gen,
            bounds,
            task,
            bool(early_stop),
            None if known is None else known.to(x.device),
        )
    return robust
