"""Pinning tests for APGD's step-size schedule: on a 1-pixel bowl it has to home in."""

import torch
from torch import nn

from lightning_viz.functional.apgd import apgd, apgd_mask

C, DELTA = 0.637, 0.01


class _Well(nn.Module):
    """One logit 10 * ((x - C)^2 - DELTA^2): wrong (class 0) only within DELTA of C.
    For label 1 the BCE loss grows towards C, so an attack has to land in the well."""

    def forward(self, x):
        return 10 * ((x.flatten(1)[:, :1] - C) ** 2 - DELTA**2)


def test_apgd_step_halving_homes_in_on_a_narrow_well():
    x = torch.full((4, 1, 1, 1), 0.5)
    y = torch.ones(4, dtype=torch.long)
    # out of reach: robust
    assert bool(apgd_mask(_Well(), x, y, 0.1, steps=100, task="binary").all())
    # reachable but narrow (0.02 wide in a 0.6 wide ball, first step 0.6): only an
    # attack that halves its step at the checkpoints gets in
    mask = apgd_mask(_Well(), x, y, 0.3, steps=100, task="binary")
    assert not bool(mask.any()), mask
    adv = apgd(_Well(), x, y, 0.3, steps=100, task="binary")
    assert bool(((adv - C).abs() < DELTA).all()), adv.flatten()
    assert bool(((adv - x).abs() <= 0.3 + 1e-6).all())


class _WellAt(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return 10 * ((x.flatten(1)[:, :1] - self.c) ** 2 - DELTA**2)


def test_apgd_restarts_from_the_highest_loss_point():
    """At a step reduction APGD goes back to the point of *highest* loss seen; 20 steps
    then reach the narrow well from every start (seeded generator)."""
    x = torch.full((8, 1, 1, 1), 0.5)
    y = torch.ones(8, dtype=torch.long)
    for c in (0.541, 0.583):
        mask = apgd_mask(_WellAt(c), x, y, 0.3, steps=20, task="binary")
        assert not bool(mask.any()), (c, mask)


def _four_class():
    """z0 = 3, z1 = sum of the 4 pixels (2 at x = 0.5), z2 = 1 - sum, z3 = -2: class 0
    wins at x = 0.5, class 1 (ranked 2nd) wins once the pixels sum past 3."""
    lin = nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0] * 4, [1.0] * 4, [-1.0] * 4, [0.0] * 4]))
        lin.bias.copy_(torch.tensor([3.0, 0.0, 1.0, -2.0]))
    return nn.Sequential(nn.Flatten(), lin)


def test_apgd_t_first_target_is_the_runner_up_class():
    x = torch.full((4, 1, 2, 2), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    model = _four_class()
    # one target class: the runner-up (class 1), reachable at eps = 0.3 (sum up to 3.2)
    mask = apgd_mask(model, x, y, 0.3, loss="dlr", targeted=True, n_target_classes=1, steps=10)
    assert not bool(mask.any()), mask
    adv = apgd(model, x, y, 0.3, loss="dlr", targeted=True, n_target_classes=1, steps=10)
    assert bool((model(adv).argmax(1) == 1).all())


class _Recorder(nn.Module):
    """One logit 10 * (x - c)^2 + 1 (always right for label 1, never early-stopped);
    records every point it is run on."""

    def __init__(self, c):
        super().__init__()
        self.c, self.seen = c, []

    def forward(self, x):
        self.seen.append(x.detach().flatten().clone())
        return 10 * (x.flatten(1)[:, :1] - self.c) ** 2 + 1


def test_apgd_iterates_follow_the_momentum_recurrence_before_the_first_checkpoint():
    c, x0, eps = 0.6, 0.5, 0.3
    lo, hi = x0 - eps, x0 + eps
    model = _Recorder(c)
    x = torch.full((1, 1, 1, 1), x0)
    assert bool(
        apgd_mask(model, x, torch.ones(1, dtype=torch.long), eps, steps=100, task="binary").all()
    )
    pts = [float(p[0]) for p in model.seen[2:]]  # [0]: the task check, [1]: the clean check
    assert abs(abs(pts[0] - x0) - eps) < 1e-6  # the start: a corner of the ball
    eta = 2 * eps  # the first checkpoint comes after 22 iterations
    for k in range(0, 21):
        s = 1.0 if c > pts[k] else -1.0  # ascent direction of the loss: towards c
        z = min(max(pts[k] + eta * s, lo), hi)
        if k == 0:
            want = z
        else:
            want = pts[k] + 0.75 * (z - pts[k]) + 0.25 * (pts[k] - pts[k - 1])
        want = min(max(want, lo), hi)
        assert abs(pts[k + 1] - want) < 1e-5, (k, pts[: k + 2], want)


def test_apgd_t_tries_every_requested_target_down_to_the_last_class():
    lin = nn.Linear(4, 4)
    with (
        torch.no_grad()
    ):  # z0 = 3, z1 = 2.5, z2 = 2.4, z3 = 4 sum(x) - 6 (2 at x = 0.5: ranked last)
        lin.weight.copy_(torch.tensor([[0.0] * 4, [0.0] * 4, [0.0] * 4, [4.0] * 4]))
        lin.bias.copy_(torch.tensor([3.0, 2.5, 2.4, -6.0]))
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.full((4, 1, 2, 2), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    mask = apgd_mask(model, x, y, 0.3, loss="dlr", targeted=True, n_target_classes=3, steps=10)
    assert not bool(mask.any()), mask
