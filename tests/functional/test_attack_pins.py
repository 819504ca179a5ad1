"""Pinning tests for lightning_viz.functional attacks (mutation testing round six)."""

import torch
from torch import nn

import lightning_viz.functional as LF
from lightning_viz.functional.attacks import fgsm, noise, pgd, robust_mask


def _edge_model() -> nn.Module:
    """logit0 = 4.5, logit1 = sum of the 4 pixels: correct (class 0) at x = 1 inside
    [0, 1], wrong once the pixels' sum passes 4.5 (only possible outside [0, 1])."""
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0] * 4, [1.0] * 4]))
        lin.bias.copy_(torch.tensor([4.5, 0.0]))
    return nn.Sequential(nn.Flatten(), lin)


def test_robust_mask_judges_points_inside_the_pixel_range():
    model = _edge_model()
    x = torch.ones(16, 1, 2, 2)
    y = torch.zeros(16, dtype=torch.long)
    for attack in ("fgsm", "pgd", "noise"):
        for norm in ("linf", "l2"):
            eps = 0.3 if norm == "linf" else 0.6
            mask = robust_mask(model, x, y, eps, attack=attack, norm=norm, steps=3)
            # every point of [0, 1]^4 has pixel sum <= 4 < 4.5: nothing can fool it
            assert bool(mask.all()), (attack, norm, mask)


def test_attacks_return_points_in_the_pixel_range():
    model = _edge_model()
    x = torch.ones(16, 1, 2, 2)
    y = torch.zeros(16, dtype=torch.long)
    for out in (
        fgsm(model, x, y, 0.3),
        fgsm(model, x, y, 0.6, norm="l2"),
        pgd(model, x, y, 0.3, steps=2),
        pgd(model, x, y, 0.6, steps=2, norm="l2"),
        noise(x, 0.3),
        noise(x, 0.6, norm="l2"),
    ):
        assert float(out.max()) <= 1.0 and float(out.min()) >= 0.0


class _Bowl(nn.Module):
    """One logit 10 * (x - 0.6)^2: for label 1 the BCE loss grows as x nears 0.6, so
    the Linf PGD step alternates around 0.6."""

    def forward(self, x):
        return 10 * (x.flatten(1)[:, :1] - 0.6) ** 2


def test_pgd_default_step_is_2_5_eps_over_steps():
    x = torch.full((1, 1, 1, 1), 0.5)
    y = torch.ones(1, dtype=torch.long)
    # alpha = 2.5 * 0.4 / 3 = 1/3: 0.5 -> 0.8333 -> 0.5 -> 0.8333 (inside [0.1, 0.9])
    adv = pgd(_Bowl(), x, y, 0.4, steps=3, random_start=False, task="binary")
    assert abs(float(adv) - (0.5 + 1 / 3)) < 1e-5, float(adv)
    adv = pgd(_Bowl(), x, y, 0.4, steps=3, step_size=0.3, random_start=False, task="binary")
    assert abs(float(adv) - 0.8) < 1e-5, float(adv)
    # a step past the ball is clipped to it: 0.5 + 0.4
    adv = pgd(_Bowl(), x, y, 0.4, steps=1, step_size=0.35, random_start=False, task="binary")
    assert abs(float(adv) - 0.85) < 1e-5
    adv = pgd(_Bowl(), x, y, 0.2, steps=1, step_size=0.35, random_start=False, task="binary")
    assert abs(float(adv) - 0.7) < 1e-5


def _linear(k=3, d=3 * 8 * 8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k))


def test_pgd_random_start_fills_the_ball():
    """With a negligible step the result is the random start: uniform in the Linf
    ball (both signs, reaching near +-eps), and for L2 radii uniform in [0, eps]."""
    model = _linear()
    x = torch.full((64, 3, 8, 8), 0.5)
    y = torch.zeros(64, dtype=torch.long)
    eps = 0.1
    d = pgd(model, x, y, eps, steps=1, step_size=1e-7) - x
    assert float(d.min()) < -0.9 * eps and float(d.max()) > 0.9 * eps
    assert abs(float(d.mean())) < 0.01
    r = pgd(model, x, y, 1.0, steps=1, step_size=1e-7, norm="l2") - x
    radii = r.flatten(1).norm(dim=1)
    assert float(radii.max()) <= 1.0 + 1e-4
    assert float(radii.min()) < 0.3 and 0.3 < float(radii.mean()) < 0.7


def test_noise_is_a_corner_of_the_ball():
    x = torch.full((4, 3, 8, 8), 0.5)
    n = noise(x, 0.1)
    assert torch.allclose((n - x).abs(), torch.full_like(x, 0.1), atol=1e-6)
    n2 = noise(x, 0.5, norm="l2")
    assert torch.allclose((n2 - x).flatten(1).norm(dim=1), torch.full((4,), 0.5), atol=1e-5)


def _sum_logits(weights, biases):
    lin = nn.Linear(4, len(biases))
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[w] * 4 for w in weights]))
        lin.bias.copy_(torch.tensor(biases))
    return nn.Sequential(nn.Flatten(), lin)


def test_binary_attacks_ascend_the_loss_of_the_true_label():
    """One logit z = sum(x) - 1.5 (0.5 at x = 0.5: class 1, right). The loss of label 1
    grows as z falls: FGSM/PGD move every pixel down by eps and break it."""
    model = _sum_logits([1.0], [-1.5])
    x = torch.full((2, 1, 2, 2), 0.5)
    y = torch.ones(2, dtype=torch.long)
    assert torch.allclose(fgsm(model, x, y, 0.3), torch.full_like(x, 0.2))
    assert torch.allclose(pgd(model, x, y, 0.3, steps=3), torch.full_like(x, 0.2), atol=1e-6)
    for attack in ("fgsm", "pgd"):
        assert not bool(robust_mask(model, x, y, 0.3, attack=attack).any())
    # label 0 with z < 0: pushed up
    model0 = _sum_logits([1.0], [-2.5])
    assert torch.allclose(
        fgsm(model0, x, torch.zeros(2, dtype=torch.long), 0.3), torch.full_like(x, 0.8)
    )


def test_multilabel_labels_are_attacked_after_another_label_broke():
    """Label 0 is wrong at the clean input (z0 = -1, label 1); label 1 (z1 = sum(x) - 1.5,
    label 1) is right at x = 0.5 and broken by eps = 0.3. A sample must stay in the
    attack while any of its labels is unbroken."""
    model = _sum_logits([0.0, 1.0], [-1.0, -1.5])
    x = torch.full((2, 1, 2, 2), 0.5)
    y = torch.ones(2, 2)
    for attack in ("fgsm", "pgd"):
        for early_stop in (True, False):
            mask = robust_mask(
                model, x, y, 0.3, attack=attack, early_stop=early_stop, task="multilabel"
            )
            assert mask.shape == (2, 2)
            assert not bool(mask.any()), (attack, early_stop, mask)
    acc = LF.robust_accuracy(model, x, y, 0.0, task="multilabel")
    assert acc == 0.5  # clean: label 1 right, label 0 wrong, per decision


def test_known_broken_samples_stay_broken_in_every_attack():
    from lightning_viz.functional.apgd import apgd_mask
    from lightning_viz.functional.square import square_mask

    # class 0 by a wide margin: nothing at eps = 0.01 breaks it
    model = _sum_logits([0.0, 1.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0])
    x = torch.full((3, 1, 2, 2), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    known = torch.tensor([False, True, False])
    want = known.clone()
    for attack in ("fgsm", "pgd", "noise"):
        for eps in (0.0, 0.01):
            got = robust_mask(model, x, y, eps, attack=attack, known=known)
            assert torch.equal(got, want), (attack, eps, got)
    for eps in (0.0, 0.01):
        assert torch.equal(apgd_mask(model, x, y, eps, steps=5, known=known), want)
        assert torch.equal(square_mask(model, x, y, eps, queries=5, known=known), want)


def test_l2_step_is_a_unit_direction_and_the_last_iterate_is_judged():
    model = _sum_logits([1.0], [-1.5])  # z = sum(x) - 1.5, label 1 right at x = 0.5
    x = torch.full((2, 1, 2, 2), 0.5)
    y = torch.ones(2, dtype=torch.long)
    # the gradient is -(1 - sigmoid(z)) per pixel: its unit L2 direction is -0.5 per pixel
    assert torch.allclose(fgsm(model, x, y, 0.2, norm="l2"), torch.full_like(x, 0.4), atol=1e-6)
    adv = pgd(model, x, y, 0.2, norm="l2", steps=1, step_size=0.1, random_start=False)
    assert torch.allclose(adv, torch.full_like(x, 0.45), atol=1e-6)
    # one PGD step from the clean input: only the last (= first) iterate breaks it
    model2 = _sum_logits([1.0], [-1.9])  # z = 0.1 at x = 0.5; -0.5 after a 0.15 Linf step
    for steps in (1, 2):
        m = robust_mask(
            model2, x, y, 0.15, attack="pgd", steps=steps, step_size=0.15, random_start=False
        )
        assert not bool(m.any()), (steps, m)


class _NaNHead(nn.Module):
    def forward(self, x):
        z = x.flatten(1)[:, :2] * 0
        return z + float("nan")


def test_nan_logits_are_never_correct_for_any_task():
    x = torch.full((2, 1, 2, 2), 0.5)
    assert LF.robust_accuracy(_NaNHead(), x, torch.zeros(2, 2), 0.0, task="multilabel") == 0.0
    assert LF.robust_accuracy(_NaNHead(), x, torch.ones(2, 2), 0.0, task="multilabel") == 0.0
    assert LF.robust_accuracy(_NaNHead(), x, torch.zeros(2, dtype=torch.long), 0.0) == 0.0


class _RangeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.lo, self.hi = [], []

    def forward(self, x):
        self.lo.append(float(x.detach().min()))
        self.hi.append(float(x.detach().max()))
        return self.lin(x.flatten(1))


def test_the_model_only_sees_images_in_the_pixel_range():
    from lightning_viz.functional.apgd import apgd_mask
    from lightning_viz.functional.square import square_mask

    torch.manual_seed(0)
    x = torch.cat([torch.ones(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)])
    calls = [
        lambda m, y: pgd(m, x, y, 0.2, steps=2),
        lambda m, y: pgd(m, x, y, 0.5, steps=2, norm="l2"),
        lambda m, y: robust_mask(m, x, y, 0.2, attack="pgd", steps=2, early_stop=False),
        lambda m, y: robust_mask(m, x, y, 0.2, attack="noise", early_stop=False),
        lambda m, y: robust_mask(m, x, y, 0.2, attack="fgsm", early_stop=False),
        lambda m, y: apgd_mask(m, x, y, 0.2, steps=3, early_stop=False),
        lambda m, y: square_mask(m, x, y, 0.2, queries=5),
    ]
    for i, call in enumerate(calls):
        m = _RangeRecorder()
        with torch.no_grad():
            y = m.lin(x.flatten(1)).argmax(1)  # right at the clean inputs: all attacked
        call(m, y)
        assert min(m.lo) >= 0.0 and max(m.hi) <= 1.0, (i, min(m.lo), max(m.hi))
