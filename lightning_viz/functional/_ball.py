"""The eps-ball of the attacks: a step's direction, the projection back into the ball
and the pixel range, and the rounding of a half-precision result into the ball."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["_DIV_EPS", "_clamp", "_direction", "_flat_norm", "_into_ball", "_project", "_step"]

_DIV_EPS = 1e-10


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
    return _step(x, _within(x_adv - x, eps, norm), eps, norm, clamp)


def _within(delta: Tensor, eps: float, norm: str) -> Tensor:
    """``delta`` clamped (Linf), or scaled down to norm ``eps`` when longer (L2; at
    ``eps = 0`` every step becomes 0, not 0 / 0)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _flat_norm(delta)
    return delta * torch.where(n > eps, eps / n.clamp_min(1e-30), torch.ones_like(n))


def _step(
    x: Tensor, delta: Tensor, eps: float, norm: str, clamp: tuple[float, float] | None
) -> Tensor:
    """``x + delta`` (``delta`` within the ball) in the pixel range, and, in half
    precision, rounded into the ball (:func:`_into_ball`)."""
    return _into_ball(_clamp(x + delta, clamp), x, eps, norm)


def _into_ball(adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """``adv`` in a half-precision dtype (bfloat16, float16), where ``x + delta`` rounds
    up to half a step past ``eps``: the step is projected again in float64 and rounded,
    then what still lies outside the ball moves one representable value towards ``x``."""
    if adv.dtype not in (torch.bfloat16, torch.float16):
        return adv

    def outside(a: Tensor) -> Tensor:
        d = a.double() - x.double()
        if norm == "linf":
            return d.abs() > eps
        return (_flat_norm(d) > eps) & (d != 0)

    adv = (x.double() + _within(adv.double() - x.double(), eps, norm)).to(adv.dtype)
    for _ in range(8):
        over = outside(adv)
        if not bool(over.any()):
            break
        try:
            adv = torch.where(over, torch.nextafter(adv, x), adv)
        except RuntimeError:  # no nextafter for this dtype (float16 before torch 2.2)
            adv = torch.where(over, x, adv)
    return adv
