"""Adversarial attacks and robust accuracy in pixel space.

The ``model`` given to these functions takes images in pixel space (by default
``[0, 1]``) and returns logits ``(N, K)``; callbacks wrap input normalization with
:class:`lightning_viz._guard.ModelView`. Every function runs the model inside
:func:`lightning_viz._guard.preserve_state` (eval mode, parameters frozen, gradients on
even under ``inference_mode``), takes gradients with ``torch.autograd.grad`` w.r.t.
the input only and draws random numbers only from a private ``torch.Generator``.

The cross-entropy loss is summed over the batch, so every sample's gradient is its
own and does not depend on the batch size or on which other samples are attacked;
the step directions (sign for Linf, unit L2 direction) are the same as with the
mean-reduced loss of torchattacks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_viz._checks import (
    check_bool,
    check_choice,
    check_clamp,
    check_float,
    check_generator,
    check_images,
    check_int,
    check_known,
    check_model,
    check_task,
    fail,
)
from lightning_viz._guard import make_generator, preserve_state
from lightning_viz.functional._ball import (
    _DIV_EPS,
    _clamp,
    _direction,
    _flat_norm,
    _project,
    _step,
)
from lightning_viz.functional._grad import forward_logits, grad_of
from lightning_viz.functional._task import correct, detect_task, normalize_labels, task_loss

__all__ = ["fgsm", "noise", "pgd", "robust_accuracy", "robust_mask"]

_NORMS = ("linf", "l2")
_ATTACKS = ("fgsm", "pgd", "noise")
# Added to gradient norms before division (as torchattacks' ``eps_for_division``).
_DEFAULT_SEED = 0


# --------------------------------------------------------------------------- checks
def _generator(generator: object, device: torch.device) -> torch.Generator:
    check_generator(generator)
    return generator if generator is not None else make_generator(_DEFAULT_SEED, device)  # type: ignore[return-value]


def _step_size(eps: float, steps: int, step_size: object) -> float:
    """The PGD step: ``step_size`` checked, or ``2.5 * eps / steps`` (Madry et al.)."""
    if step_size is None:
        return 2.5 * eps / steps
    return check_float(step_size, "step_size", positive=True)


def _prepare(
    model: object, inputs: object, target: object, eps: object, norm: object, task: object
) -> tuple[Tensor, Tensor, float, str]:
    """Checked ``(inputs, labels, eps, task)``; one forward (no grad) tells the task."""
    check_model(model)
    # a copy: a forward that changes its input in place (x /= 255) changes it, not theirs
    x = check_images(inputs).detach().clone()
    if not isinstance(target, Tensor) or target.dim() == 0:
        fail(
            "target",
            "a tensor of true labels (N,) or (N, K)",
            f"<{type(target).__name__}{' of 0 dimensions' if isinstance(target, Tensor) else ''}>",
            TypeError,
        )
    if target.is_complex() or (target.dtype == torch.bool and target.dim() == 1):  # type: ignore[union-attr]
        fail("target", "class indices or label rows", f"<dtype {target.dtype}>", TypeError)  # type: ignore[union-attr]
    if target.shape[0] != x.shape[0] or target.dim() not in (1, 2):  # type: ignore[union-attr]
        fail(
            "target",
            f"labels for the {x.shape[0]} inputs, (N,) or (N, K)",
            f"<shape {tuple(target.shape)}>",
        )  # type: ignore[union-attr]
    eps_f = check_float(eps, "eps", minimum=0.0)
    check_choice(norm, "norm", _NORMS)
    task = check_task(task)
    with preserve_state(model) as m, torch.no_grad():
        k = int(forward_logits(m, x[:1].clone()).shape[1])  # an in-place forward: not x
    task = task or detect_task(k, target)  # type: ignore[arg-type]
    labels = normalize_labels(target.to(x.device), task, k, "target")  # type: ignore[union-attr]
    return x, labels, eps_f, task


# ------------------------------------------------------------------------- helpers
def _logits(model: nn.Module, x: Tensor) -> Tensor:
    """Forward with the output checked; ``(N, K)`` float logits."""
    return forward_logits(model, x).float()


def _loss_grad(model: nn.Module, x: Tensor, y: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """Logits at ``x`` (detached) and the gradient of the summed loss w.r.t. ``x``."""
    x = x.detach().requires_grad_(True)
    logits = _logits(model, x)
    grad = grad_of(task_loss(logits, y, task).sum(), x, "attack loss")
    return logits.detach(), grad


def _rand(shape: torch.Size, like: Tensor, generator: torch.Generator, kind: str) -> Tensor:
    """Draws from ``generator`` on its own device in float32 (the same draws for every
    input dtype), returned on ``like``'s device and dtype."""
    kwargs = {"generator": generator, "device": generator.device, "dtype": torch.float32}
    if kind == "uniform":
        t = torch.rand(shape, **kwargs)
    elif kind == "normal":
        t = torch.randn(shape, **kwargs)
    else:  # "sign": +-1 with probability 1/2 each
        t = torch.randint(0, 2, shape, **kwargs) * 2 - 1
    return t.to(like)


def _random_start(x: Tensor, eps: float, norm: str, generator: torch.Generator) -> Tensor:
    """Random start delta: uniform in the Linf ball, or for L2 a Gaussian direction
    scaled to a radius drawn uniformly from ``[0, eps]``."""
    if norm == "linf":
        return (_rand(x.shape, x, generator, "uniform") * 2 - 1) * eps
    direction = _rand(x.shape, x, generator, "normal")
    radius = _rand(torch.Size((x.shape[0], 1, 1, 1)), x, generator, "uniform") * eps
    return direction / (_flat_norm(direction) + _DIV_EPS) * radius


def _noise_delta(x: Tensor, eps: float, norm: str, generator: torch.Generator) -> Tensor:
    """Random perturbation of exactly size ``eps`` (before clamping)."""
    if norm == "linf":
        return _rand(x.shape, x, generator, "sign") * eps
    direction = _rand(x.shape, x, generator, "normal")
    return direction / (_flat_norm(direction) + _DIV_EPS) * eps


# -------------------------------------------------------------------------- public
def noise(
    inputs: Tensor,
    eps: float,
    *,
    norm: str = "linf",
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Random-noise control of the same size as an attack (no model, no target).

    Linf: every pixel moves by ``+eps`` or ``-eps`` with probability 1/2 (the corner of
    the Linf ball, like an FGSM step with a random sign). L2: a Gaussian direction
    scaled to L2 norm ``eps`` per sample (norm over ``C*H*W``). The result is clamped
    to ``clamp``. A model that loses accuracy under this noise is not attacked but
    just fragile; the gap to FGSM/PGD is the adversarial part.

    Args:
        inputs: Images ``(N, C, H, W)`` in pixel space, floating point.
        eps: Perturbation size (Linf: per pixel; L2: per image), non-negative.
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        generator: Private random generator; ``None`` uses a fresh one seeded with 0,
            so the call is reproducible. The global RNG is never used.
            Default: ``None``.
        clamp: ``(min, max)`` pixel range of the output, or ``None`` for no clamping.
            Default: ``(0.0, 1.0)``.

    Returns:
        Noisy images ``(N, C, H, W)``, detached, on the inputs' device and dtype.

    Raises:
        TypeError: ``inputs`` is not a floating-point tensor, or an argument has a
            wrong type.
        ValueError: ``inputs`` is not 4-D, ``eps`` is negative or not finite, ``norm``
            is unknown, or ``clamp`` has ``min >= max``.

    Examples:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> n = noise(x, 8 / 255)
        >>> bool(((n - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    x = check_images(inputs)
    eps_f = check_float(eps, "eps", minimum=0.0)
    check_choice(norm, "norm", _NORMS)
    bounds = check_clamp(clamp, x)
    gen = _generator(generator, x.device)
    with torch.no_grad():  # (rounded in half precision: pulled back into the ball)
        x0 = x.detach()
        return _step(x0, _noise_delta(x, eps_f, norm, gen), eps_f, norm, bounds)


def fgsm(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    eps: float,
    *,
    norm: str = "linf",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    task: str | None = None,
) -> Tensor:
    """Fast Gradient Sign Method.

    One step of size ``eps`` that increases the loss of the true labels (cross
    entropy; binary cross entropy for a binary or multilabel model): Linf
    ``x + eps * sign(grad)``; L2 ``x + eps * grad / ||grad||_2`` per sample (norm
    over ``C*H*W``, plus ``1e-10`` against division by zero), then clamped to the
    pixel range. Equal to ``torchattacks.FGSM`` for Linf.

    Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples",
    ICLR 2015, https://arxiv.org/abs/1412.6572

    Args:
        model: Maps pixel-space images ``(N, C, H, W)`` to logits ``(N, K)`` (wrap a
            model that takes normalized inputs in ``ModelView(model, mean, std)``).
            It is run in eval mode with frozen parameters and left exactly as found.
        inputs: Images ``(N, C, H, W)`` in pixel space (``clamp`` range), floating point.
        target: True labels: class indices ``(N,)`` (0/1 for a binary model with one
            logit), or multi-hot rows ``(N, K)`` for a multilabel model.
        eps: Perturbation size (Linf: per pixel; L2: per image), non-negative.
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        clamp: ``(min, max)`` pixel range, or ``None`` for no clamping. The inputs
            must lie in it (within 10 % of its width; ``ValueError`` otherwise: images
            in 0-255 or normalized units would be moved far more than ``eps``).
            Default: ``(0.0, 1.0)``.
        task: ``"multiclass"``, ``"binary"``, ``"multilabel"`` or ``None`` (detected
            from the logits and ``target``). Default: ``None``.

    Returns:
        Adversarial images ``(N, C, H, W)``, detached, on the inputs' device and dtype.

    Raises:
        TypeError: ``model`` is not a module, ``inputs``/``target`` are not tensors of
            the right dtype, or an argument has a wrong type.
        ValueError: ``inputs`` is not 4-D, ``target`` does not fit the inputs or the
            logits, ``eps`` is negative or not finite, ``norm`` is unknown, or
            ``clamp`` has ``min >= max``.
        NoGradientError: The loss does not depend on the inputs (``no_grad`` forward).

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> fgsm(model, x, y, eps=8 / 255).shape
        torch.Size([4, 3, 8, 8])
    """
    x, y, eps_f, task = _prepare(model, inputs, target, eps, norm, task)
    bounds = check_clamp(clamp, x)
    with preserve_state(model) as m:
        x0 = x.detach().clone()
        _, grad = _loss_grad(m, x0, y, task)
        adv = _step(x0, eps_f * _direction(grad, norm), eps_f, norm, bounds)
    return adv.detach()


def pgd(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    task: str | None = None,
) -> Tensor:
    """Projected Gradient Descent (ascent on the loss), Linf or L2.

    From ``inputs`` (or a random start in the ``eps``-ball), ``steps`` times: step
    ``step_size`` along the steepest-ascent direction of the loss of the true labels
    (Linf: ``sign(grad)``; L2: ``grad / (||grad||_2 + 1e-10)``), project back onto the
    ``eps``-ball around the input (Linf: clip the perturbation; L2: rescale it to
    norm ``eps`` when larger) and clamp to the pixel range. Returns the last iterate,
    as ``torchattacks.PGD`` / ``torchattacks.PGDL2`` do; :func:`robust_accuracy` also
    counts a sample as broken when an earlier iterate fooled the model.

    Random start: Linf uniform in ``[-eps, eps]`` per pixel; L2 a Gaussian direction
    scaled to a radius drawn uniformly from ``[0, eps]`` per sample (as torchattacks).
    Drawn from ``generator`` only, never from the global RNG.

    Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant
    to Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083

    Args:
        model: Maps pixel-space images ``(N, C, H, W)`` to logits ``(N, K)``. It is
            run in eval mode with frozen parameters and left exactly as found.
        inputs: Images ``(N, C, H, W)`` in pixel space (``clamp`` range), floating point.
        target: True labels, as for :func:`fgsm`.
        eps: Radius of the perturbation ball (Linf: per pixel; L2: per image over
            ``C*H*W``), non-negative.
        steps: Number of gradient steps, ``>= 1``. Default: ``10``.
        step_size: Size of each step (``alpha``), positive; ``None`` uses
            ``2.5 * eps / steps``. Default: ``None``.
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        random_start: Start from a random point in the ball. Default: ``True``.
        generator: Private random generator for the start; ``None`` uses a fresh one
            seeded with 0. Default: ``None``.
        clamp: ``(min, max)`` pixel range, or ``None`` for no clamping. The inputs
            must lie in it (within 10 % of its width; ``ValueError`` otherwise: images
            in 0-255 or normalized units would be moved far more than ``eps``).
            Default: ``(0.0, 1.0)``.
        task: As for :func:`fgsm`. Default: ``None`` (detected).

    Returns:
        Adversarial images ``(N, C, H, W)`` within ``eps`` of the inputs, detached, on
        the inputs' device and dtype.

    Raises:
        TypeError: ``model`` is not a module, ``inputs``/``target`` are not tensors of
            the right dtype, or an argument has a wrong type.
        ValueError: As :func:`fgsm`; ``step_size`` out of range, ``steps < 1``.
        NoGradientError: The loss does not depend on the inputs.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> adv = pgd(model, x, y, eps=8 / 255, steps=5)
        >>> bool(((adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    x, y, eps_f, task = _prepare(model, inputs, target, eps, norm, task)
    steps = check_int(steps, "steps", minimum=1)
    alpha = _step_size(eps_f, steps, step_size)
    check_bool(random_start, "random_start")
    bounds = check_clamp(clamp, x)
    gen = _generator(generator, x.device) if random_start else None
    with preserve_state(model) as m:
        x0 = x.detach().clone()
        adv = x0
        if gen is not None:
            adv = _clamp(x0 + _random_start(x0, eps_f, norm, gen), bounds)
        for _ in range(steps):
            _, grad = _loss_grad(m, adv, y, task)
            adv = _project(adv + alpha * _direction(grad, norm), x0, eps_f, norm, bounds)
    return adv.detach()


def robust_mask(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    eps: float,
    *,
    attack: str = "pgd",
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    early_stop: bool = True,
    batch_size: int | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    task: str | None = None,
    known: Tensor | None = None,
) -> Tensor:
    """Which samples (or, multilabel, which labels) no point the attack visits fools.

    A sample counts as robust only if the model is correct at the clean input and at
    every point the attack visits: for ``"pgd"`` the (random) start and every
    iterate, for ``"fgsm"`` and ``"noise"`` the perturbed image. A sample wrong at
    the clean input is broken at any ``eps``. With ``early_stop`` a broken sample
    leaves the batch at once, so PGD on a non-robust model costs a fraction of
    ``N * steps`` forward/backward passes; the result is the same as without it
    (samples are attacked independently; the random start or noise of the whole
    batch is drawn first). ``eps=0`` gives the clean decisions (no attack runs).

    Multilabel models: each label is its own decision (``logit > 0``); the result is
    per label, and a sample leaves the batch once all its labels are broken.

    Cost in sample-forwards without early exit: PGD ``N * (steps + 1)`` without and
    ``N * (steps + 2)`` with random start; FGSM ``2 N`` (the clean check shares the
    gradient forward); noise ``2 N``.

    Args:
        model: Maps pixel-space images ``(N, C, H, W)`` to logits ``(N, K)``. It is
            run in eval mode with frozen parameters and left exactly as found.
        inputs: Images ``(N, C, H, W)`` in pixel space (``clamp`` range), floating point.
        target: True labels, as for :func:`fgsm`.
        eps: Perturbation size (Linf: per pixel; L2: per image), non-negative.
        attack: ``"pgd"``, ``"fgsm"`` or ``"noise"``. Default: ``"pgd"``.
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        steps: PGD steps, ``>= 1``. Default: ``10``.
        step_size: PGD step size; ``None`` uses ``2.5 * eps / steps``. Default: ``None``.
        random_start: PGD random start. Default: ``True``.
        generator: Private random generator (PGD start, noise); ``None`` uses a fresh
            one seeded with 0. Default: ``None``.
        early_stop: Drop broken samples from the batch. Default: ``True``.
        batch_size: Attack at most this many samples at once; ``None`` attacks all
            together. Default: ``None``.
        clamp: ``(min, max)`` pixel range, or ``None``; the inputs must lie in it (as
            for :func:`fgsm`). Default: ``(0.0, 1.0)``.
        task: As for :func:`fgsm`. Default: ``None`` (detected).
        known: Bool ``(N,)`` (``(N, K)`` for multilabel): decisions already known to be
            correct — at the clean inputs, or robust at a smaller ``eps`` of the same
            norm. The others count as broken without a forward pass (a sample broken
            inside a smaller ball is broken inside every larger one), and the clean
            check is skipped: give the clean decisions, or the robust mask of a
            smaller ``eps``, to sweep ``eps`` cheaply. The random draws do not depend
            on it. Default: ``None`` (check every sample at the clean input).

    Returns:
        Bool ``(N,)`` (``(N, K)`` for multilabel) on the inputs' device: ``True``
        where no visited point fooled the model.

    Raises:
        TypeError, ValueError: As :func:`pgd`; ``batch_size < 1``; unknown ``attack``;
            ``known`` not a bool tensor of the result's shape.
        NoGradientError: The loss does not depend on the inputs (FGSM and PGD).
    """
    x, y, eps_f, task = _prepare(model, inputs, target, eps, norm, task)
    check_choice(attack, "attack", _ATTACKS)
    steps = check_int(steps, "steps", minimum=1)
    alpha = _step_size(eps_f, steps, step_size)
    check_bool(random_start, "random_start")
    check_bool(early_stop, "early_stop")
    n = x.shape[0]
    chunk = n if batch_size is None else check_int(batch_size, "batch_size", minimum=1)
    bounds = check_clamp(clamp, x)
    gen = _generator(generator, x.device)
    shape = tuple(y.shape) if task == "multilabel" else (n,)
    check_known(known, shape)
    with preserve_state(model) as m:
        shape = y.shape if task == "multilabel" else (n,)
        robust = torch.zeros(shape, dtype=torch.bool, device=x.device)
        # the randomness of the whole batch first: the result does not depend on the
        # chunks, on early exit or on which samples are attacked
        delta = None
        if eps_f > 0 and attack == "noise":
            delta = _noise_delta(x, eps_f, norm, gen)
        elif eps_f > 0 and attack == "pgd" and random_start:
            delta = _random_start(x, eps_f, norm, gen)
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            attacked = None if known is None else known[rows].to(x.device)
            robust[rows] = _robust_chunk(
                m,
                x[rows].detach().clone(),
                y[rows],
                eps_f,
                attack,
                norm,
                steps,
                alpha,
                None if delta is None else delta[rows],
                early_stop,
                bounds,
                task,
                attacked,
            )
    return robust


def robust_accuracy(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    eps: float,
    **kwargs: object,
) -> float:
    """Accuracy under attack, with best-iterate tracking and early exit.

    The mean of :func:`robust_mask` (which takes the same keyword arguments):
    the fraction of samples no visited point fooled, or for a multilabel model the
    fraction of (sample, label) decisions. ``eps=0`` returns the clean accuracy.
    See :func:`fgsm` and :func:`pgd` for the attacks (Goodfellow et al. 2015; Madry et
    al. 2018).

    Returns:
        A float in ``[0, 1]``.

    Raises:
        As :func:`robust_mask`.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> 0.0 <= robust_accuracy(model, x, y, eps=8 / 255) <= 1.0
        True
    """
    mask = robust_mask(model, inputs, target, eps, **kwargs)  # type: ignore[arg-type]
    return int(mask.sum()) / mask.numel()


def _robust_chunk(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    attack: str,
    norm: str,
    steps: int,
    alpha: float,
    delta: Tensor | None,
    early_stop: bool,
    clamp: tuple[float, float] | None,
    task: str,
    known: Tensor | None,
) -> Tensor:
    """Robust mask of one chunk (see :func:`robust_mask`); ``delta``: its rows of the
    noise or random start drawn for the whole batch."""
    multilabel = task == "multilabel"
    robust = torch.ones(y.shape if multilabel else (x.shape[0],), dtype=torch.bool, device=x.device)
    idx = torch.arange(x.shape[0], device=x.device)  # chunk rows still attacked

    def check(logits: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        """Marks fooled rows broken; with early exit drops them from ``idx`` and tensors."""
        nonlocal idx
        ok = correct(logits, y[idx], task)
        robust[idx] &= ok
        if not early_stop:
            return tensors
        alive = robust[idx].any(dim=1) if multilabel else robust[idx]
        idx = idx[alive]
        return tuple(t[alive] for t in tensors)

    if known is not None:  # already decided: the clean check is skipped
        robust &= known
        alive = known.any(dim=1) if multilabel else known
        idx, x = idx[alive], x[alive]
        delta = None if delta is None else delta[alive]
        if not idx.numel() or eps == 0.0:
            return robust

    if eps == 0.0:  # clean decisions exactly
        with torch.no_grad():
            check(_logits(model, x))
        return robust

    if attack == "fgsm":
        logits, grad = _loss_grad(model, x, y[idx], task)  # clean check and gradient at once
        xs, grad = check(logits, x, grad)
        if idx.numel():
            adv = _step(xs, eps * _direction(grad, norm), eps, norm, clamp)
            with torch.no_grad():
                check(_logits(model, adv))
        return robust

    if delta is not None and known is None:  # clean check on its own
        with torch.no_grad():
            x, delta = check(_logits(model, x), x, delta)
    if delta is not None:
        adv = _step(x, delta, eps, norm, clamp)
    else:
        adv = x
    if attack == "noise":
        if idx.numel():
            with torch.no_grad():
                check(_logits(model, adv))
        return robust

    for _ in range(steps):
        if not idx.numel():  # every sample broken (early exit)
            break
        logits, grad = _loss_grad(model, adv, y[idx], task)  # checks the current iterate too
        x, adv, grad = check(logits, x, adv, grad)
        if idx.numel():
            adv = _project(adv + alpha * _direction(grad, norm), x, eps, norm, clamp)
    if idx.numel():  # the last iterate
        with torch.no_grad():
            check(_logits(model, adv))
    return robust
