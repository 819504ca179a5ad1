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

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_viz._guard import make_generator, preserve_state
from lightning_viz.functional._utils import check_images

__all__ = ["fgsm", "noise", "pgd", "robust_accuracy"]

_NORMS = ("linf", "l2")
_ATTACKS = ("fgsm", "pgd", "noise")
# Added to gradient norms before division (as torchattacks' ``eps_for_division``).
_DIV_EPS = 1e-10
_DEFAULT_SEED = 0


# --------------------------------------------------------------------------- checks
def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _check_number(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"`{name}` must be a {kind} finite number, got {value!r}")
    return v


def _check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value!r}")
    return int(value)


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")
    return value  # type: ignore[return-value]


def _check_labels(y: object, n: int) -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(f"`y` must be a torch.Tensor of class indices (N,), got {type(y).__name__}")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"`y` must be an integer tensor of class indices, got dtype {y.dtype}")
    if tuple(y.shape) != (n,):
        raise ValueError(f"`y` must have shape ({n},) for {n} images, got shape {tuple(y.shape)}")
    return y


def _check_clamp(clamp: object) -> tuple[float, float] | None:
    if clamp is None:
        return None
    if not isinstance(clamp, tuple | list) or len(clamp) != 2:
        raise TypeError(f"`clamp` must be a (min, max) pair or None, got {clamp!r}")
    lo, hi = clamp
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in (lo, hi)):
        raise TypeError(f"`clamp` must hold two real numbers, got {clamp!r}")
    if not float(lo) < float(hi):
        raise ValueError(f"`clamp` must satisfy min < max, got {clamp!r}")
    return float(lo), float(hi)


def _check_generator(generator: object, device: torch.device) -> torch.Generator:
    if generator is None:
        return make_generator(_DEFAULT_SEED, device)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {generator!r}")
    return generator


def _step_size(eps: float, steps: int, step_size: object) -> float:
    """The PGD step: ``step_size`` checked, or ``2.5 * eps / steps`` (Madry et al.)."""
    if step_size is None:
        return 2.5 * eps / steps
    return _check_number(step_size, "step_size", positive=True)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {value!r}")
    return value


# ------------------------------------------------------------------------- helpers
def _logits(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Forward with the output checked against the labels; ``(N, K)`` float logits."""
    out = model(x)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model must return logits of shape (N, K), got {got}")
    k = out.shape[1]
    if y.numel() and bool(((y < 0) | (y >= k)).any()):
        raise ValueError(f"`y` class indices must lie in [0, {k}), got {y.tolist()}")
    return out.float()


def _loss_grad(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Logits at ``x`` (detached) and the gradient of the summed CE loss w.r.t. ``x``."""
    x = x.detach().requires_grad_(True)
    logits = _logits(model, x, y)
    loss = F.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return logits.detach(), grad


def _flat_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm ``(N, 1, 1, 1)`` of ``(N, C, H, W)``."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, 1, 1, 1)


def _direction(grad: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction of unit Linf (sign) or unit L2 size."""
    if norm == "linf":
        return grad.sign()
    return grad / (_flat_norm(grad) + _DIV_EPS)


def _clamp(x: Tensor, clamp: tuple[float, float] | None) -> Tensor:
    return x if clamp is None else x.clamp(clamp[0], clamp[1])


def _project(
    x_adv: Tensor, x: Tensor, eps: float, norm: str, clamp: tuple[float, float] | None
) -> Tensor:
    """Projects ``x_adv`` onto the ``eps``-ball around ``x``, then into the pixel range."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = _flat_norm(delta)
        factor = torch.where(n > eps, eps / n.clamp_min(1e-30), torch.ones_like(n))
        delta = delta * factor
    return _clamp(x + delta, clamp)


def _rand(shape: torch.Size, like: Tensor, generator: torch.Generator, kind: str) -> Tensor:
    """Draws from ``generator`` on its own device, returned on ``like``'s device/dtype."""
    kwargs = {"generator": generator, "device": generator.device, "dtype": like.dtype}
    if kind == "uniform":
        t = torch.rand(shape, **kwargs)
    elif kind == "normal":
        t = torch.randn(shape, **kwargs)
    else:  # "sign": +-1 with probability 1/2 each
        t = torch.randint(0, 2, shape, **kwargs) * 2 - 1
    return t.to(like.device)


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


def _prepare(x: object, y: object, eps: object, norm: object) -> tuple[Tensor, Tensor, float]:
    x = check_images(x, "x")
    y = _check_labels(y, x.shape[0])
    eps_f = _check_number(eps, "eps")
    _check_choice(norm, "norm", _NORMS)
    return x, y.to(device=x.device, dtype=torch.long), eps_f


# -------------------------------------------------------------------------- public
def noise(
    x: Tensor,
    eps: float,
    *,
    norm: str = "linf",
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Random-noise control of the same size as an attack.

    Linf: every pixel moves by ``+eps`` or ``-eps`` with probability 1/2 (the corner of
    the Linf ball, like an FGSM step with a random sign). L2: a Gaussian direction
    scaled to L2 norm ``eps`` per sample (norm over ``C*H*W``). The result is clamped
    to ``clamp``. A model that loses accuracy under this noise is not attacked but
    just fragile; the gap to FGSM/PGD is the adversarial part.

    Args:
        x: Images ``(N, C, H, W)`` in pixel space, floating point.
        eps: Perturbation size (Linf: per pixel; L2: per image), non-negative.
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        generator: Private random generator; ``None`` uses a fresh one seeded with 0,
            so the call is reproducible. The global RNG is never used.
            Default: ``None``.
        clamp: ``(min, max)`` pixel range of the output, or ``None`` for no clamping.
            Default: ``(0.0, 1.0)``.

    Returns:
        Noisy images ``(N, C, H, W)``, detached, on ``x``'s device and dtype.

    Raises:
        TypeError: ``x`` is not a floating-point tensor, or an argument has a wrong type.
        ValueError: ``x`` is not 4-D, ``eps`` is negative or not finite, ``norm`` is
            unknown, or ``clamp`` has ``min >= max``.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> n = noise(x, 8 / 255)
        >>> bool(((n - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    x = check_images(x, "x")
    eps_f = _check_number(eps, "eps")
    _check_choice(norm, "norm", _NORMS)
    bounds = _check_clamp(clamp)
    gen = _check_generator(generator, x.device)
    with torch.no_grad():
        return _clamp(x.detach() + _noise_delta(x, eps_f, norm, gen), bounds).detach()


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    norm: str = "linf",
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Fast Gradient Sign Method.

    One step of size ``eps`` that increases the cross-entropy loss of the true class:
    Linf ``x + eps * sign(grad)``; L2 ``x + eps * grad / ||grad||_2`` per sample
    (norm over ``C*H*W``, plus ``1e-10`` against division by zero), then clamped to the
    pixel range. Equal to ``torchattacks.FGSM`` for Linf.

    Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples",
    ICLR 2015, https://arxiv.org/abs/1412.6572

    Args:
        model: Maps pixel-space images ``(N, C, H, W)`` to logits ``(N, K)``. It is
            run in eval mode with frozen parameters and left exactly as found.
        x: Images ``(N, C, H, W)`` in pixel space (``clamp`` range), floating point.
        y: True class indices ``(N,)``, integer, in ``[0, K)``.
        eps: Perturbation size (Linf: per pixel; L2: per image), non-negative.
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        clamp: ``(min, max)`` pixel range, or ``None`` for no clamping.
            Default: ``(0.0, 1.0)``.

    Returns:
        Adversarial images ``(N, C, H, W)``, detached, on ``x``'s device and dtype.

    Raises:
        TypeError: ``model`` is not a module, ``x``/``y`` are not tensors of the
            right dtype, or an argument has a wrong type.
        ValueError: ``x`` is not 4-D, ``y`` is not ``(N,)`` or out of range, ``eps`` is
            negative or not finite, ``norm`` is unknown, or ``clamp`` has ``min >= max``.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> fgsm(model, x, y, eps=8 / 255).shape
        torch.Size([4, 3, 8, 8])
    """
    _check_model(model)
    x, y, eps_f = _prepare(x, y, eps, norm)
    bounds = _check_clamp(clamp)
    with preserve_state(model) as m:
        x0 = x.detach().clone()
        _, grad = _loss_grad(m, x0, y)
        adv = _clamp(x0 + eps_f * _direction(grad, norm), bounds)
    return adv.detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Projected Gradient Descent (ascent on the loss), Linf or L2.

    From ``x`` (or a random start in the ``eps``-ball), ``steps`` times: step
    ``step_size`` along the steepest-ascent direction of the cross-entropy loss (Linf:
    ``sign(grad)``; L2: ``grad / (||grad||_2 + 1e-10)``), project back onto the
    ``eps``-ball around ``x`` (Linf: clip the perturbation; L2: rescale it to norm
    ``eps`` when larger) and clamp to the pixel range. Returns the last iterate, as
    ``torchattacks.PGD`` / ``torchattacks.PGDL2`` do; :func:`robust_accuracy` also
    counts a sample as broken when an earlier iterate fooled the model.

    Random start: Linf uniform in ``[-eps, eps]`` per pixel; L2 a Gaussian direction
    scaled to a radius drawn uniformly from ``[0, eps]`` per sample (as torchattacks).
    Drawn from ``generator`` only, never from the global RNG.

    Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant
    to Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083

    Args:
        model: Maps pixel-space images ``(N, C, H, W)`` to logits ``(N, K)``. It is
            run in eval mode with frozen parameters and left exactly as found.
        x: Images ``(N, C, H, W)`` in pixel space (``clamp`` range), floating point.
        y: True class indices ``(N,)``, integer, in ``[0, K)``.
        eps: Radius of the perturbation ball (Linf: per pixel; L2: per image over
            ``C*H*W``), non-negative.
        steps: Number of gradient steps, ``>= 1``. Default: ``10``.
        step_size: Size of each step (``alpha``), positive; ``None`` uses
            ``2.5 * eps / steps``. Default: ``None``.
        norm: ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        random_start: Start from a random point in the ball. Default: ``True``.
        generator: Private random generator for the start; ``None`` uses a fresh one
            seeded with 0. Default: ``None``.
        clamp: ``(min, max)`` pixel range, or ``None`` for no clamping.
            Default: ``(0.0, 1.0)``.

    Returns:
        Adversarial images ``(N, C, H, W)`` within ``eps`` of ``x``, detached, on
        ``x``'s device and dtype.

    Raises:
        TypeError: ``model`` is not a module, ``x``/``y`` are not tensors of the right
            dtype, or an argument has a wrong type.
        ValueError: ``x`` is not 4-D, ``y`` is not ``(N,)`` or out of range, ``eps`` or
            ``step_size`` is out of range, ``steps < 1``, ``norm`` is unknown, or
            ``clamp`` has ``min >= max``.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> adv = pgd(model, x, y, eps=8 / 255, steps=5)
        >>> bool(((adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """
    _check_model(model)
    x, y, eps_f = _prepare(x, y, eps, norm)
    steps = _check_int(steps, "steps")
    alpha = _step_size(eps_f, steps, step_size)
    _check_bool(random_start, "random_start")
    bounds = _check_clamp(clamp)
    gen = _check_generator(generator, x.device) if random_start else None
    with preserve_state(model) as m:
        x0 = x.detach().clone()
        adv = x0
        if gen is not None:
            adv = _clamp(x0 + _random_start(x0, eps_f, norm, gen), bounds)
        for _ in range(steps):
            _, grad = _loss_grad(m, adv, y)
            adv = _project(adv + alpha * _direction(grad, norm), x0, eps_f, norm, bounds)
    return adv.detach()


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
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
) -> float:
    """Accuracy under attack, with best-iterate tracking and early exit.

    A sample counts as robust only if the model classifies it correctly at the clean
    input and at every point the attack visits: for ``"pgd"`` the (random) start and
    every iterate, for ``"fgsm"`` and ``"noise"`` the perturbed image. A sample that
    is misclassified clean is broken at any ``eps``. With ``early_stop`` a broken
    sample leaves the batch at once, so PGD on a non-robust model costs a fraction of
    ``N * steps`` forward/backward passes; the result is the same as without it
    (samples are attacked independently). ``eps=0`` returns the clean accuracy
    exactly (no attack is run).

    Cost in sample-forwards without early exit: PGD ``N * (steps + 1)`` without and
    ``N * (steps + 2)`` with random start (the clean check shares the first gradient
    forward when there is no random start); FGSM ``2 N`` (the clean check shares the
    gradient forward); noise ``2 N``.

    The ``"noise"`` control perturbs by random noise of the same size (see
    :func:`noise`). See :func:`fgsm` and :func:`pgd` for the attacks (Goodfellow et al.
    2015; Madry et al. 2018).

    Args:
        model: Maps pixel-space images ``(N, C, H, W)`` to logits ``(N, K)``. It is
            run in eval mode with frozen parameters and left exactly as found.
        x: Images ``(N, C, H, W)`` in pixel space (``clamp`` range), floating point.
        y: True class indices ``(N,)``, integer, in ``[0, K)``.
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
        clamp: ``(min, max)`` pixel range, or ``None``. Default: ``(0.0, 1.0)``.

    Returns:
        The fraction of samples in ``[0, 1]`` that no visited point fooled.

    Raises:
        TypeError: ``model`` is not a module, ``x``/``y`` are not tensors of the right
            dtype, or an argument has a wrong type.
        ValueError: ``x`` is not 4-D, ``y`` is not ``(N,)`` or out of range, ``eps`` or
            ``step_size`` is out of range, ``steps < 1``, ``batch_size < 1``, or
            ``attack``/``norm`` is unknown.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> 0.0 <= robust_accuracy(model, x, y, eps=8 / 255) <= 1.0
        True
    """
    _check_model(model)
    x, y, eps_f = _prepare(x, y, eps, norm)
    _check_choice(attack, "attack", _ATTACKS)
    steps = _check_int(steps, "steps")
    alpha = _step_size(eps_f, steps, step_size)
    _check_bool(random_start, "random_start")
    _check_bool(early_stop, "early_stop")
    n = x.shape[0]
    chunk = n if batch_size is None else _check_int(batch_size, "batch_size")
    bounds = _check_clamp(clamp)
    gen = _check_generator(generator, x.device)
    robust = 0
    with preserve_state(model) as m:
        for start in range(0, n, chunk):
            xs = x[start : start + chunk].detach().clone()
            ys = y[start : start + chunk]
            robust += _robust_chunk(
                m,
                xs,
                ys,
                eps_f,
                attack,
                norm,
                steps,
                alpha,
                random_start,
                gen,
                early_stop,
                bounds,
            )
    return robust / n


def _robust_chunk(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    attack: str,
    norm: str,
    steps: int,
    alpha: float,
    random_start: bool,
    generator: torch.Generator,
    early_stop: bool,
    clamp: tuple[float, float] | None,
) -> int:
    """Number of robust samples in one chunk (see :func:`robust_accuracy`)."""
    robust = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    idx = torch.arange(x.shape[0], device=x.device)  # chunk rows still attacked

    def check(logits: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        """Marks fooled rows broken; with early exit drops them from ``idx`` and tensors."""
        nonlocal idx
        ok = logits.argmax(dim=-1) == y[idx]
        robust[idx] &= ok
        if not early_stop:
            return tensors
        idx = idx[ok]
        return tuple(t[ok] for t in tensors)

    if eps == 0.0:  # clean accuracy exactly
        with torch.no_grad():
            check(_logits(model, x, y))
        return int(robust.sum())

    if attack == "fgsm":
        logits, grad = _loss_grad(model, x, y)  # clean check and gradient in one pass
        xs, grad = check(logits, x, grad)
        if idx.numel():
            adv = _clamp(xs + eps * _direction(grad, norm), clamp)
            with torch.no_grad():
                check(_logits(model, adv, y[idx]))
        return int(robust.sum())

    # pgd and noise: draw the randomness for the whole chunk first, so the result does
    # not depend on early exit
    delta = None
    if attack == "noise":
        delta = _noise_delta(x, eps, norm, generator)
    elif random_start:
        delta = _random_start(x, eps, norm, generator)
    if delta is not None:  # clean check on its own
        with torch.no_grad():
            x, delta = check(_logits(model, x, y), x, delta)
        adv = _clamp(x + delta, clamp)
    else:
        adv = x
    if attack == "noise":
        if idx.numel():
            with torch.no_grad():
                check(_logits(model, adv, y[idx]))
        return int(robust.sum())

    for _ in range(steps):
        if not idx.numel():  # every sample broken (early exit)
            break
        logits, grad = _loss_grad(model, adv, y[idx])  # checks the current iterate too
        x, adv, grad = check(logits, x, adv, grad)
        if idx.numel():
            adv = _project(adv + alpha * _direction(grad, norm), x, eps, norm, clamp)
    if idx.numel():  # the last iterate
        with torch.no_grad():
            check(_logits(model, adv, y[idx]))
    return int(robust.sum())
