"""functional.apgd: hand-computed pieces, properties, and torchattacks as the oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_viz.functional import apgd, apgd_mask, robust_mask
from lightning_viz.functional.apgd import _checkpoints, dlr_loss, dlr_loss_targeted


class Scaled(nn.Module):
    """``model(x) * k``: a deterministic layer that saturates the softmax, so the
    cross-entropy gradient of a correct sample underflows to zero (gradient masking
    by scale); the DLR loss does not depend on the scale."""

    def __init__(self, model: nn.Module, k: float) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.k


def test_checkpoints_are_the_papers():
    # Croce & Hein 2020, Sec. 3.2: p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99
    assert sorted(_checkpoints(100)) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert sorted(_checkpoints(10)) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert sorted(_checkpoints(1)) == [1]


class _Recorder(nn.Module):
    """Logits ``[0.1 * sum(x) + 5, 0]``: class 0 at every point of the ball (a margin
    of 5 +- 1.6), its cross-entropy gradient the same sign at every pixel; keeps every
    input it is run on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        s = 0.1 * x.flatten(1).sum(1) + 5.0
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_the_first_iterate_takes_the_full_step_without_momentum():
    """Croce & Hein 2020, Alg. 1: x1 = P(x0 + eta sign(g)) with eta = 2 eps; momentum
    (0.75) only from the second iterate. From any start inside the ball, 2 eps along the
    sign lands on its face: every pixel of x1 is x0 -+ eps (with momentum on the first
    step it would be a mix with the random start)."""
    x0 = torch.full((1, 1, 4, 4), 0.5)
    model = _Recorder()
    assert bool(
        apgd_mask(
            model, x0, torch.tensor([0]), 0.1, steps=3, generator=torch.Generator().manual_seed(0)
        )
    )
    moved = [x for x in model.seen if not torch.equal(x, x0)]
    start, first = moved[0], moved[1]
    assert not torch.allclose((start - x0).abs(), torch.full_like(x0, 0.1))  # random start
    torch.testing.assert_close(
        first - x0, torch.full_like(x0, -0.1)
    )  # the loss rises as sum(x) falls


def test_dlr_losses_hand_computed():
    z = torch.tensor([[4.0, 1.0, 3.0, 0.0], [1.0, 5.0, 2.0, -1.0]])
    y = torch.tensor([0, 0])
    # row 0: y is top; -(4 - 3) / (4 - 1) ; row 1: -(1 - 5) / (5 - 1)
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-1 / 3, 1.0]), atol=1e-6)
    t = torch.tensor([2, 2])
    # row 0 sorted 4,3,1,0: -(4 - 3) / (4 - 0.5 - 0) ; row 1 sorted 5,2,1,-1: -(1 - 2) / (5 - 0)
    expect = torch.tensor([-1 / 3.5, 1 / 5.0])
    assert torch.allclose(dlr_loss_targeted(z, y, t), expect, atol=1e-6)
    # invariant to shift and scale of the logits
    assert torch.allclose(dlr_loss(3 * z + 7, y), dlr_loss(z, y), atol=1e-6)


def test_dlr_losses_read_the_top_logits_without_sorting_all_classes(monkeypatch):
    """H64: each step sorted all K logits (10000 classes: most of an attack's time); the
    values and gradients are those of the full sort's formula."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 1000, generator=gen).requires_grad_(True)
    y, t = torch.arange(6) * 7, torch.arange(6) * 11 + 1

    def reference(z):
        srt = z.sort(dim=1, descending=True).values
        z_y, z_t = z.gather(1, y.view(-1, 1))[:, 0], z.gather(1, t.view(-1, 1))[:, 0]
        other = torch.where(z.argmax(dim=1) == y, srt[:, 1], srt[:, 0])
        untargeted = -(z_y - other) / (srt[:, 0] - srt[:, 2] + 1e-12)
        return untargeted, -(z_y - z_t) / (srt[:, 0] - 0.5 * srt[:, 2] - 0.5 * srt[:, 3] + 1e-12)

    expected = reference(z)
    grads = torch.autograd.grad(sum(e.sum() for e in expected), z)[0]

    def no_sort(*args, **kwargs):
        raise AssertionError("sorted every class")

    monkeypatch.setattr(torch.Tensor, "sort", no_sort)
    ours = dlr_loss(z, y), dlr_loss_targeted(z, y, t)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, expected, strict=True))
    got = torch.autograd.grad(sum(o.sum() for o in ours), z)[0]
    assert torch.allclose(got, grads, atol=1e-6)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_adv_in_ball_fools_where_mask_false_and_model_untouched(digits_model, norm, eps):
    model, x, y = digits_model
    x, y = x[:64], y[:64]
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    adv = apgd(model, x, y, eps, steps=20, norm=norm)
    mask = apgd_mask(model, x, y, eps, steps=20, norm=norm)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all()) and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        fooled = model(adv).argmax(1) != y
    assert torch.equal(fooled, ~mask)  # broken exactly where the returned point fools
    assert 0 < int(mask.sum()) < 64
    # reproducible with the default generator
    assert torch.equal(apgd_mask(model, x, y, eps, steps=20, norm=norm), mask)


def test_known_broken_stay_broken_and_eps_zero_is_clean(digits_model):
    model, x, y = digits_model
    x, y = x[:32], y[:32]
    clean = model(x).argmax(1) == y
    assert torch.equal(apgd_mask(model, x, y, 0.0, steps=5), clean)
    known = clean.clone()
    known[:16] = False
    out = apgd_mask(model, x, y, 0.05, steps=5, known=known)
    assert not out[:16].any()


def test_binary_and_multilabel_ce():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    x = torch.rand(8, 1, 4, 4)
    y = (lin(x)[:, 0] > 0).long()  # all correct at the clean input
    assert apgd_mask(lin, x, y, 0.0).all()
    assert not apgd_mask(lin, x, y, 1.0, steps=5).any()  # a linear model falls at eps 1
    ml = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    yy = (ml(x) > 0).float()
    m = apgd_mask(ml, x, yy, 1.0, steps=5)
    assert m.shape == (8, 3) and not m.any()
    with pytest.raises(ValueError, match="loss"):
        apgd(lin, x, y, 0.1, loss="dlr")


def test_bad_options():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="loss"):
        apgd(model, x, y, 0.1, loss="hinge")
    with pytest.raises(ValueError, match="targeted"):
        apgd(model, x, y, 0.1, targeted=True)  # APGD-T needs the DLR loss
    with pytest.raises(ValueError, match="DLR needs >= 4"):
        apgd(model, x, y, 0.1, loss="dlr", targeted=True)
    with pytest.raises(ValueError, match="restarts"):
        apgd(model, x, y, 0.1, restarts=0)


def test_apgd_t_breaks_what_pgd10_leaves_on_a_saturated_model(digits_model):
    # Logits scaled by 1e4: the CE gradient of a correct sample underflows, so PGD-10 does
    # not move off its random start; the scale-invariant targeted DLR loss still works.
    model, x, y = digits_model
    sat = Scaled(model, 1e4).eval()
    pgd_ok = robust_mask(sat, x, y, 0.1)
    apgd_ok = apgd_mask(sat, x, y, 0.1, loss="dlr", targeted=True, n_target_classes=3, steps=20)
    only_apgd = int((pgd_ok & ~apgd_ok).sum())
    assert only_apgd >= 100, (int(pgd_ok.sum()), int(apgd_ok.sum()))
    assert not bool((apgd_ok & ~pgd_ok).any()) or int((apgd_ok & ~pgd_ok).sum()) <= 2


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_robust_accuracy_not_above_torchattacks(digits_model, eps):
    torchattacks = pytest.importorskip("torchattacks")  # the oracle: only this test skips
    model, x, y = digits_model
    ours = apgd_mask(model, x, y, eps, steps=20).float().mean().item()
    adv = torchattacks.APGD(model, eps=eps, steps=20, seed=0)(x, y)
    model.eval()
    ref = (model(adv).argmax(1) == y).float().mean().item()
    assert ours <= ref + 1 / 256, (ours, ref)
    ours_t = apgd_mask(model, x, y, eps, loss="dlr", targeted=True, steps=20).float().mean()
    adv_t = torchattacks.APGDT(model, eps=eps, steps=20, seed=0, n_classes=10)(x, y)
    model.eval()
    ref_t = (model(adv_t).argmax(1) == y).float().mean().item()
    assert ours_t.item() <= ref_t + 1 / 256, (ours_t.item(), ref_t)
    assert ours_t.item() < (model(x).argmax(1) == y).float().mean().item()  # it attacks
