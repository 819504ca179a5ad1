"""Pinning tests for square_mask: the points tried stay in the eps-ball and the pixel range."""

import torch
from torch import nn

from lightning_viz.functional.square import square_mask


def _threshold_model(offset: float, thr: float) -> nn.Module:
    """logit0 = thr, logit1 = sum over the 16 pixels of (x - offset)."""
    lin = nn.Linear(16, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(16), torch.ones(16)]))
        lin.bias.copy_(torch.tensor([thr, -16 * offset]))
    return nn.Sequential(nn.Flatten(), lin)


def test_square_tries_only_points_in_the_eps_ball():
    # inside the ball sum(x - 0.5) <= 16 * 0.05 = 0.8 < 0.9: never fooled
    model = _threshold_model(0.5, 0.9)
    x = torch.full((8, 1, 4, 4), 0.5)
    y = torch.zeros(8, dtype=torch.long)
    assert bool(square_mask(model, x, y, 0.05, queries=60).all())
    # and a budget that can reach the threshold does break them (the check is live)
    assert not bool(square_mask(model, x, y, 0.2, queries=60).any())


def test_square_tries_only_points_in_the_pixel_range():
    # x = 1: inside [0, 1] the pixel sum is <= 16 < 16.1: never fooled
    model = _threshold_model(0.0, 16.1)
    x = torch.ones(8, 1, 4, 4)
    y = torch.zeros(8, dtype=torch.long)
    assert bool(square_mask(model, x, y, 0.05, queries=60).all())
    # without the pixel range, the same budget breaks them
    assert not bool(square_mask(model, x, y, 0.05, queries=60, clamp=None).any())


class _Corner(nn.Module):
    """z0 = 0.75, z1 = sum |x - 0.5| over 16 pixels: at eps = 0.05 only a corner of the
    ball (every pixel moved by eps, as Square Attack's initial stripes) breaks it."""

    def forward(self, x):
        z1 = (x - 0.5).abs().flatten(1).sum(1, keepdim=True)
        return torch.cat([torch.full_like(z1, 0.75), z1], dim=1)


def test_square_counts_its_initial_stripes_as_a_tried_point():
    x = torch.full((4, 1, 4, 4), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    for queries in (1, 5):
        assert not bool(square_mask(_Corner(), x, y, 0.05, queries=queries).any())
    assert bool(square_mask(_Corner(), x, y, 0.04, queries=5).all())  # 16 * 0.04 < 0.75


class _BinarySum(nn.Module):
    """One logit z = 0.7 - sum(x - 0.5) over 16 pixels: label 1 right at x = 0.5, broken
    once the pixels' sum rises by 0.7 (eps = 0.05: sum up to 0.8, near a corner)."""

    def forward(self, x):
        return 0.7 - (x - 0.5).flatten(1).sum(1, keepdim=True)


def test_square_on_a_binary_model_minimizes_the_true_class_margin():
    x = torch.full((8, 1, 4, 4), 0.5)
    y = torch.ones(8, dtype=torch.long)
    assert not bool(square_mask(_BinarySum(), x, y, 0.05, queries=200).any())
    assert bool(square_mask(_BinarySum(), x, y, 0.04, queries=50).all())  # 16 * 0.04 < 0.7
