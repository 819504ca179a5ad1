"""functional.square: the schedule by hand, properties, a masked model, torchattacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_viz.functional import robust_mask, square_mask
from lightning_viz.functional.square import square_share


def test_window_share_follows_autoattacks_schedule():
    # p_init / 1, 2, 4, ..., 512 past 0.1 %, 0.5 %, 2 %, 5 %, 10 %, 20 %, 40 %, 60 %, 80 %
    at = {0: 1, 10: 1, 11: 2, 50: 2, 51: 4, 201: 8, 501: 16, 1001: 32, 2001: 64}
    at.update({4001: 128, 6001: 256, 8000: 256, 8001: 512, 9999: 512})
    for query, divisor in at.items():
        assert square_share(0.8, query, 10000) == pytest.approx(0.8 / divisor), query
    assert square_share(0.5, 50, 1000) == pytest.approx(0.5 / 8)  # rescaled to the budget


class Recording(nn.Module):
    """A linear classifier that keeps every input it is given."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.linear(x.flatten(1))


def test_linear_model_by_hand():
    # Two classes on the mean of a 1x4x4 image: logit_1 - logit_0 = 2 (mean - 0.5).
    # Sample 0 (mean 0.49) is class 0 by 0.02; any perturbation that raises the mean by
    # > 0.01 breaks it, and eps = 0.05 does. Sample 1 (mean 0.1) is class 0 by 0.8 and
    # no point of the ball (mean <= 0.15) can break it. Sample 2 is known broken.
    w = torch.stack([torch.zeros(16), torch.full((16,), 2 / 16)])
    model = Recording(w, torch.tensor([0.0, -1.0]))
    x = torch.stack([torch.full((1, 4, 4), 0.49), torch.full((1, 4, 4), 0.1), torch.rand(1, 4, 4)])
    y = torch.tensor([0, 0, 0])
    known = torch.tensor([True, True, False])
    mask = square_mask(model, x, y, 0.05, queries=200, known=known)
    assert mask.tolist() == [False, True, False]
    # forwards: the task check on one image, the clean images, the stripes, the queries
    for batch in model.seen[2:]:  # every point tried: inside the eps-ball of its image
        for row in batch:
            assert any(bool(((row - o).abs() <= 0.05 + 1e-6).all()) for o in x)
        assert batch.min() >= 0 and batch.max() <= 1
    # the stripes start: every pixel of sample 1 is moved by exactly eps (0.15 or 0.05)
    start = model.seen[2][1]
    assert {round(v, 4) for v in start.flatten().tolist()} <= {0.05, 0.15}
    assert bool((start == start[:, :1, :]).all())  # vertical stripes: one value a column


def test_only_unbroken_samples_are_queried_and_eps_zero_is_clean():
    w = torch.stack([torch.zeros(16), torch.full((16,), 2 / 16)])
    model = Recording(w, torch.tensor([0.0, -1.0]))
    x = torch.stack([torch.full((1, 4, 4), 0.49), torch.full((1, 4, 4), 0.1)])
    y = torch.tensor([1, 0])  # sample 0 is wrong at the clean image: never queried
    assert square_mask(model, x, y, 0.05, queries=50).tolist() == [False, True]
    # the task check, the clean images, the stripes (all), then 49 queries of sample 1
    assert len(model.seen) == 3 + 49 and {b.shape[0] for b in model.seen[3:]} == {1}
    clean = square_mask(model, x, y, 0.0, queries=5)
    assert clean.tolist() == [False, True]


def test_bad_options():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="`queries` must be an int >= 1"):
        square_mask(model, x, y, 0.1, queries=0)
    with pytest.raises(ValueError, match="`p_init`"):
        square_mask(model, x, y, 0.1, p_init=1.5)
    with pytest.raises(ValueError, match="multilabel"):
        square_mask(model, x, torch.tensor([[1.0, 0, 1], [0, 1, 0]]), 0.1, task="multilabel")
    with pytest.raises(TypeError, match="`known`"):
        square_mask(model, x, y, 0.1, known=torch.tensor([1, 0]))


class Quantized(nn.Module):
    """The model on inputs rounded to 1/8: the same decisions, zero input gradients
    (gradient masking by a non-differentiable step)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 8) / 8)


def test_square_breaks_what_gradients_cannot_on_a_masked_model(digits_model):
    model, x, y = digits_model
    masked = Quantized(model)
    pgd_ok = robust_mask(masked, x, y, 0.15)
    square_ok = square_mask(masked, x, y, 0.15, queries=300)
    assert int(square_ok.sum()) < int(pgd_ok.sum()) - 50, (int(square_ok.sum()), int(pgd_ok.sum()))
    # on the model itself the gradients work: the two are within 8 samples (3 %)
    pgd, square = (
        int(robust_mask(model, x, y, 0.15).sum()),
        int(square_mask(model, x, y, 0.15).sum()),
    )
    assert abs(pgd - square) <= 8, (pgd, square)


def test_robust_accuracy_not_above_torchattacks(digits_model):
    torchattacks = pytest.importorskip("torchattacks")  # the oracle (the `oracles` extra)
    model, x, y = digits_model
    ours = square_mask(model, x, y, 0.1, queries=300).float().mean().item()
    adv = torchattacks.Square(model, eps=0.1, n_queries=300, seed=0)(x, y)
    model.eval()
    ref = (model(adv).argmax(1) == y).float().mean().item()
    clean = (model(x).argmax(1) == y).float().mean().item()
    assert ours < clean - 0.1  # it attacks
    assert ours <= ref + 1 / 256, (ours, ref)  # as strong or stronger (0.41 vs 0.50 here)
