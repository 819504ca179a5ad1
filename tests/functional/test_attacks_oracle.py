"""functional.attacks against torchattacks, the reference implementation (skipped without it)."""

from __future__ import annotations

import pytest
import torch

from lightning_viz.functional.attacks import fgsm, pgd
from tests.functional.conftest import attack_batch, random_attack_cnn

torchattacks = pytest.importorskip("torchattacks")


def test_fgsm_linf_matches_torchattacks():
    # torchattacks calls model.eval() for the attack and model.train() afterwards; ours
    # runs in eval mode too, so both attack the same eval-mode function.
    model = random_attack_cnn()
    model.train()
    x, y = attack_batch()
    ours = fgsm(model, x, y, 8 / 255)
    assert model.training
    ref = torchattacks.FGSM(model, eps=8 / 255)(x, y)
    assert model.training
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
    assert not torch.equal(ours, x)


@pytest.mark.parametrize("eps,alpha,steps", [(8 / 255, 2 / 255, 10), (0.1, 0.03, 4)])
def test_pgd_linf_matches_torchattacks(eps, alpha, steps):
    model = random_attack_cnn()
    model.train()
    x, y = attack_batch()
    ours = pgd(model, x, y, eps, steps=steps, step_size=alpha, random_start=False)
    ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
    assert (ours - x).abs().max() > eps / 2


def test_pgd_l2_matches_torchattacks():
    # Same formulas as torchattacks.PGDL2: grad / (||grad|| + 1e-10), delta rescaled by
    # min(eps / ||delta||, 1). Our CE loss is summed (theirs averaged): the unit direction
    # is the same up to float rounding and the 1e-10, hence atol 1e-5.
    model = random_attack_cnn()
    x, y = attack_batch()
    eps, alpha, steps = 0.5, 0.1, 10
    ours = pgd(model, x, y, eps, steps=steps, step_size=alpha, norm="l2", random_start=False)
    ref = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0)
    norms = (ours - x).flatten(1).norm(dim=1)
    assert bool((norms <= eps + 1e-5).all())
    assert norms.max() > eps / 2
