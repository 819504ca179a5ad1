"""Tests for lightning_viz.functional.attacks (FGSM, PGD, noise, robust accuracy).

Hand-computed values and properties; the comparisons with torchattacks are in
``test_attacks_oracle.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_viz._hooks import has_hooks
from lightning_viz.functional.apgd import apgd_mask
from lightning_viz.functional.attacks import fgsm, noise, pgd, robust_accuracy, robust_mask
from lightning_viz.functional.square import square_mask
from tests.functional.conftest import attack_batch as _batch
from tests.functional.conftest import attack_cnn as _cnn
from tests.functional.conftest import random_attack_cnn as _random_model


@pytest.fixture(scope="module")
def digits():
    """Tiny CNN trained briefly on sklearn digits (8x8 upsampled to 16 px, in [0, 1])."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    x = F.interpolate(x, size=16, mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        perm = torch.randperm(len(y))
        x, y = x[perm], y[perm]
        x_tr, y_tr, x_te, y_te = x[:-128], y[:-128], x[-128:], y[-128:]
        model = _cnn(bn=False)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _step in range(150):
            i = torch.randint(0, len(y_tr), (64,))
            loss = F.cross_entropy(model(x_tr[i]), y_tr[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        model.eval()
    for p in model.parameters():
        p.grad = None
    return model, x_te, y_te


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        was = model.training
        model.eval()
        acc = (model(x).argmax(-1) == y).float().mean().item()
        model.train(was)
    return acc


class _Linear2(nn.Module):
    """logits = [w . x, 0] on a 2-pixel image (N, 1, 1, 2); hand-computable gradients."""

    def __init__(self, w=(3.0, 4.0)) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x):
        s = x.flatten(1) @ self.w
        return torch.stack([s, torch.zeros_like(s)], dim=1)


class _Dip(nn.Module):
    """One-pixel model with logits [10 |x - 0.6| - 0.8, 0].

    Class 0 (correct) at x = 0.5; class 1 on (0.52, 0.68). Sign-gradient ascent on the
    CE loss with step 0.15 goes 0.5 -> 0.65 (fooled) -> 0.5 (correct again).
    """

    def forward(self, x):
        d = 10 * (x.flatten(1)[:, :1] - 0.6).abs() - 0.8
        return torch.cat([d, torch.zeros_like(d)], dim=1)


class _Counting(nn.Module):
    """Counts sample-forwards (sum of batch sizes) through the wrapped model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.samples = 0

    def forward(self, x):
        self.samples += x.shape[0]
        return self.model(x)


class _Raising(nn.Module):
    """Runs its layers, then raises on the ``fail_at``-th forward call."""

    def __init__(self, fail_at: int = 1) -> None:
        super().__init__()
        self.net = _cnn()
        self.calls = 0
        self.fail_at = fail_at

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        if self.calls >= self.fail_at:
            raise RuntimeError("boom in forward")
        return out


def _snapshot(model: nn.Module):
    return {
        "flags": [m.training for m in model.modules()],
        "req": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def _assert_unchanged(model: nn.Module, snap) -> None:
    assert [m.training for m in model.modules()] == snap["flags"]
    assert [p.requires_grad for p in model.parameters()] == snap["req"]
    for p, g in zip(model.parameters(), snap["grads"], strict=True):
        assert p.grad is g
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap["state"][k]), k
    assert not has_hooks(model)


def _odd_state_model() -> nn.Module:
    """A model in train mode with one eval submodule, a frozen param and a set .grad."""
    model = _random_model()
    model.train()
    model[1].eval()  # BatchNorm in eval while the rest trains
    model[0].bias.requires_grad_(False)
    model[-1].weight.grad = torch.full_like(model[-1].weight, 0.5)
    return model


# ------------------------------------------------------------------ hand-computed values
def test_fgsm_hand_computed_linf_and_l2():
    # logits [3 a + 4 b, 0], label 0: dCE/dx = -(1 - p0) w, so the ascent direction is -w.
    model = _Linear2()
    x = torch.tensor([[[[0.5, 0.5]]]])
    y = torch.tensor([0])
    linf = fgsm(model, x, y, 0.1)
    assert torch.allclose(linf, torch.tensor([[[[0.4, 0.4]]]]), atol=1e-7)
    l2 = fgsm(model, x, y, 0.1, norm="l2")
    assert torch.allclose(l2, torch.tensor([[[[0.44, 0.42]]]]), atol=1e-6)
    # label 1: the direction flips to +w; clamp to [0, 1] bites at 0.55 + 0.5
    x2 = torch.tensor([[[[0.55, 0.2]]]])
    up = fgsm(model, x2, torch.tensor([1]), 0.5)
    assert torch.allclose(up, torch.tensor([[[[1.0, 0.7]]]]), atol=1e-6)
    free = fgsm(model, x2, torch.tensor([1]), 0.5, clamp=None)
    assert torch.allclose(free, torch.tensor([[[[1.05, 0.7]]]]), atol=1e-6)


def test_pgd_hand_computed_projection():
    # Linf: each step moves -alpha per pixel; the eps ball stops it at x - eps.
    model = _Linear2()
    x = torch.tensor([[[[0.5, 0.5]]]])
    y = torch.tensor([0])
    adv = pgd(model, x, y, 0.15, steps=3, step_size=0.1, random_start=False)
    assert torch.allclose(adv, torch.tensor([[[[0.35, 0.35]]]]), atol=1e-6)
    # L2: moves along -w/5 and is rescaled to norm eps = 0.15
    adv2 = pgd(model, x, y, 0.15, steps=3, step_size=0.1, norm="l2", random_start=False)
    expected = x - 0.15 * torch.tensor([0.6, 0.8]).view(1, 1, 1, 2)
    assert torch.allclose(adv2, expected, atol=1e-6)
    # default step size is 2.5 * eps / steps: one step of 0.25 * 0.2 = 0.05 -> 0.45
    adv3 = pgd(model, x, y, 0.2, steps=10, random_start=False)
    assert torch.allclose(adv3, torch.full_like(x, 0.3), atol=1e-6)
    one = pgd(model, x, y, 0.2, steps=1, step_size=0.05, random_start=False)
    assert torch.allclose(one, torch.full_like(x, 0.45), atol=1e-6)


def test_best_iterate_counts_an_intermediate_fool():
    model = _Dip()
    x = torch.full((1, 1, 1, 1), 0.5)
    y = torch.tensor([0])
    assert model(x).argmax(-1).item() == 0
    assert model(torch.full_like(x, 0.65)).argmax(-1).item() == 1
    one = pgd(model, x, y, 0.2, steps=1, step_size=0.15, random_start=False)
    assert torch.allclose(one, torch.full_like(x, 0.65))
    final = pgd(model, x, y, 0.2, steps=2, step_size=0.15, random_start=False)
    assert torch.allclose(final, x)  # back at the start ...
    assert model(final).argmax(-1).item() == 0  # ... and classified correctly
    ra = robust_accuracy(model, x, y, 0.2, steps=2, step_size=0.15, random_start=False)
    assert ra == 0.0  # the intermediate iterate fooled the model


# ------------------------------------------------------------------ on a trained CNN
def test_trained_cnn_monotone_in_eps_and_pgd_le_fgsm(digits):
    model, x, y = digits
    clean = _accuracy(model, x, y)
    assert clean >= 0.85
    for norm, grid in [("linf", [0.0, 0.03, 0.1, 0.25]), ("l2", [0.0, 0.5, 1.5, 3.0])]:
        accs = {
            a: [robust_accuracy(model, x, y, e, attack=a, norm=norm) for e in grid]
            for a in ("fgsm", "pgd", "noise")
        }
        for a, vals in accs.items():
            assert vals[0] == pytest.approx(clean, abs=1e-12), (a, norm)
            assert all(v1 >= v2 for v1, v2 in zip(vals, vals[1:], strict=False)), (a, norm, vals)
        for f, p, n in zip(accs["fgsm"], accs["pgd"], accs["noise"], strict=True):
            assert p <= f, (norm, accs)
            assert p <= n, (norm, accs)
        assert accs["pgd"][-1] < 0.5 * clean, (norm, accs)  # the attack does bite
        assert accs["noise"][-1] > accs["pgd"][-1], (norm, accs)


def test_robust_accuracy_le_accuracy_on_final_pgd_output(digits):
    model, x, y = digits
    eps = 0.05
    adv = pgd(model, x, y, eps, generator=torch.Generator().manual_seed(3))
    final_acc = _accuracy(model, adv, y)
    for early in (False, True):
        ra = robust_accuracy(
            model, x, y, eps, generator=torch.Generator().manual_seed(3), early_stop=early
        )
        assert ra <= final_acc
    assert final_acc < _accuracy(model, x, y)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "noise"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_zero_is_clean_accuracy(digits, attack, norm):
    model, x, y = digits
    x, y = x[:100], y[:100]
    with torch.no_grad():
        correct = int((model(x).argmax(-1) == y).sum())
    assert correct < 100  # so a wrong "1.0" would fail
    assert robust_accuracy(model, x, y, 0.0, attack=attack, norm=norm) == correct / 100
    assert robust_accuracy(model, x, y, 0, attack=attack, norm=norm, batch_size=7) == correct / 100


def test_early_exit_uses_far_fewer_forwards(digits):
    model, x, y = digits
    n, steps, eps = x.shape[0], 10, 0.3
    counted = _Counting(model)
    full = robust_accuracy(counted, x, y, eps, steps=steps, early_stop=False)
    # clean + random start + steps iterates, and 1 sample to read the number of logits
    assert counted.samples == n * (steps + 2) + 1
    counted.samples = 0
    robust_accuracy(counted, x, y, eps, steps=steps, random_start=False, early_stop=False)
    assert counted.samples == n * (steps + 1) + 1  # clean check shared with the first step
    counted.samples = 0
    fast = robust_accuracy(counted, x, y, eps, steps=steps, early_stop=True)
    assert fast == full
    # a non-robust model at this eps: most samples break within the first 1-2 steps;
    # the floor is 3 N (clean check, random start, first step)
    assert counted.samples < 0.4 * n * steps, counted.samples
    assert counted.samples < 0.35 * n * (steps + 2), counted.samples
    counted.samples = 0
    robust_accuracy(counted, x, y, eps, attack="fgsm")
    assert counted.samples <= 2 * n + 1


def test_early_stop_and_batch_size_do_not_change_the_result():
    model = _random_model()
    x, y = _batch(n=20)
    kw = {"eps": 0.03, "steps": 5, "random_start": False}
    ref = robust_accuracy(model, x, y, early_stop=False, **kw)
    assert robust_accuracy(model, x, y, early_stop=True, **kw) == ref
    assert robust_accuracy(model, x, y, batch_size=3, **kw) == ref
    for attack in ("fgsm", "noise"):
        a = robust_accuracy(model, x, y, 0.05, attack=attack, early_stop=False)
        assert robust_accuracy(model, x, y, 0.05, attack=attack, early_stop=True) == a


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("attack", ["pgd", "noise"])
def test_batch_size_does_not_change_the_random_draws(norm, attack):
    """L2's random start (directions, then radii) and noise of 3x5x5 images (not whole
    blocks of 16 normals) were drawn per chunk: batch_size, a memory option, changed the
    mask (0.8125 and 0.8750 on one model)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(75, 4)).eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(64, 3, 5, 5, generator=g), torch.randint(0, 4, (64,), generator=g)
    eps = 1.0 if norm == "l2" else 0.05
    # one short step: where it ends depends on the random start
    kw = {"attack": attack, "norm": norm, "steps": 1, "step_size": eps / 100, "early_stop": False}
    full = robust_mask(model, x, y, eps, generator=torch.Generator().manual_seed(2), **kw)
    chunked = robust_mask(
        model, x, y, eps, generator=torch.Generator().manual_seed(2), batch_size=3, **kw
    )
    assert torch.equal(chunked, full)
    assert 0 < int(full.sum()) < 64  # some fooled, some not: the draws matter


# --------------------------------------------------------------------- randomness
def test_generator_reproducible_and_global_rng_untouched():
    model = _random_model()
    x, y = _batch()
    rng = torch.get_rng_state()
    a = pgd(model, x, y, 0.05, steps=2, generator=torch.Generator().manual_seed(5))
    b = pgd(model, x, y, 0.05, steps=2, generator=torch.Generator().manual_seed(5))
    c = pgd(model, x, y, 0.05, steps=2, generator=torch.Generator().manual_seed(6))
    d1 = pgd(model, x, y, 0.05, steps=2)
    d2 = pgd(model, x, y, 0.05, steps=2)
    n1 = noise(x, 0.05, generator=torch.Generator().manual_seed(5))
    n2 = noise(x, 0.05, generator=torch.Generator().manual_seed(5))
    r1 = robust_accuracy(model, x, y, 0.05, attack="noise")
    r2 = robust_accuracy(model, x, y, 0.05, attack="noise")
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a, b) and torch.equal(d1, d2) and torch.equal(n1, n2)
    assert not torch.equal(a, c)
    assert r1 == r2
    # random start on, zero steps of size ~0: the start itself lies in the ball
    start = pgd(model, x, y, 0.05, steps=1, step_size=1e-12)
    assert bool(((start - x).abs() <= 0.05 + 1e-6).all())
    assert (start - x).abs().max() > 0.01


def test_noise_sizes():
    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(4, 3, 8, 8, generator=g)  # away from the clamp range
    n = noise(x, 0.1, generator=torch.Generator().manual_seed(1))
    assert torch.allclose((n - x).abs(), torch.full_like(x, 0.1), atol=1e-6)
    frac_up = ((n - x) > 0).float().mean().item()
    assert 0.4 < frac_up < 0.6
    n2 = noise(x, 0.5, norm="l2", generator=torch.Generator().manual_seed(1))
    assert torch.allclose((n2 - x).flatten(1).norm(dim=1), torch.full((4,), 0.5), atol=1e-5)
    clamped = noise(torch.ones(2, 1, 4, 4), 0.3)
    assert clamped.max() <= 1.0 and clamped.min() >= 0.7 - 1e-6
    assert torch.equal(noise(x, 0.0), x)


def test_pgd_random_start_stays_in_ball_and_range():
    model = _random_model()
    x, y = _batch()
    adv = pgd(model, x, y, 0.1, steps=3)
    assert bool(((adv - x).abs() <= 0.1 + 1e-6).all())
    assert adv.min() >= 0 and adv.max() <= 1
    adv2 = pgd(model, x, y, 1.0, steps=3, norm="l2")
    assert bool(((adv2 - x).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all())
    assert adv2.min() >= 0 and adv2.max() <= 1


# ------------------------------------------------------------------ guarantees
@pytest.mark.parametrize(
    "call",
    [
        lambda m, x, y: fgsm(m, x, y, 0.05),
        lambda m, x, y: fgsm(m, x, y, 0.5, norm="l2"),
        lambda m, x, y: pgd(m, x, y, 0.05, steps=2),
        lambda m, x, y: pgd(m, x, y, 0.5, steps=2, norm="l2"),
        lambda m, x, y: robust_accuracy(m, x, y, 0.05, steps=2),
        lambda m, x, y: robust_accuracy(m, x, y, 0.05, attack="fgsm"),
        lambda m, x, y: robust_accuracy(m, x, y, 0.05, attack="noise", norm="l2"),
    ],
)
def test_model_state_preserved(call):
    model = _odd_state_model()
    x, y = _batch()
    x_before = x.clone()
    snap = _snapshot(model)
    rng = torch.get_rng_state()
    out = call(model, x, y)
    _assert_unchanged(model, snap)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(x, x_before)  # inputs are never mutated
    if isinstance(out, torch.Tensor):
        assert not out.requires_grad and out.device == x.device and out.dtype == x.dtype
    else:
        assert isinstance(out, float) and 0.0 <= out <= 1.0


@pytest.mark.parametrize(
    "call,fail_at",
    [
        (lambda m, x, y: fgsm(m, x, y, 0.05), 1),
        (lambda m, x, y: pgd(m, x, y, 0.05, steps=4), 1),
        (lambda m, x, y: pgd(m, x, y, 0.05, steps=4), 3),
        (lambda m, x, y: robust_accuracy(m, x, y, 0.05, steps=4, early_stop=False), 1),
        (lambda m, x, y: robust_accuracy(m, x, y, 0.05, steps=4, early_stop=False), 3),
        (lambda m, x, y: robust_accuracy(m, x, y, 0.05, attack="noise", early_stop=False), 2),
    ],
)
def test_state_restored_when_forward_raises(call, fail_at):
    model = _Raising(fail_at)
    model.train()
    model.net[0].weight.grad = torch.ones_like(model.net[0].weight)
    snap = _snapshot(model)
    rng = torch.get_rng_state()
    x, y = _batch()
    with pytest.raises(RuntimeError, match="boom in forward"):
        call(model, x, y)
    assert model.calls == fail_at
    _assert_unchanged(model, snap)
    assert torch.equal(torch.get_rng_state(), rng)


def test_works_under_inference_mode_and_no_grad():
    model = _random_model()
    x, y = _batch()
    ref = pgd(model, x, y, 0.05, steps=2)
    ref_ra = robust_accuracy(model, x, y, 0.05, steps=2)
    with torch.inference_mode():
        xi = x.clone()
        adv = pgd(model, xi, y, 0.05, steps=2)
        ra = robust_accuracy(model, xi, y, 0.05, steps=2)
    with torch.no_grad():
        adv2 = fgsm(model, x, y, 0.05)
    assert torch.equal(adv, ref) and ra == ref_ra
    assert torch.equal(adv2, fgsm(model, x, y, 0.05))


def test_float64_inputs_keep_dtype():
    model = _random_model().double()
    x, y = _batch()
    x = x.double()
    assert fgsm(model, x, y, 0.05).dtype == torch.float64
    assert pgd(model, x, y, 0.05, steps=2).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_outputs_on_device_and_match_cpu():
    model = _random_model()
    x, y = _batch()
    cpu = pgd(model, x, y, 0.05, steps=3, random_start=False)
    cm, cx, cy = model.cuda(), x.cuda(), y.cuda()
    gpu = pgd(cm, cx, cy, 0.05, steps=3, random_start=False)
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() - cpu).abs().max() < 1e-3
    assert pgd(cm, cx, cy, 0.05, steps=2).device.type == "cuda"  # default generator on cuda
    gen = torch.Generator().manual_seed(0)  # a CPU generator works with CUDA inputs
    assert noise(cx, 0.05, generator=gen).device.type == "cuda"
    assert 0.0 <= robust_accuracy(cm, cx, cy, 0.05, attack="noise") <= 1.0


# --------------------------------------------------------------------- validation
_M = _random_model()
_X, _Y = _batch(n=4)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"model": "net"}, TypeError, "`model` must be a torch.nn.Module, got <str>"),
        ({"x": [[0.0]]}, TypeError, r"`inputs` must be a torch.Tensor .* got <list>"),
        (
            {"x": torch.rand(1, 16, 16)},
            ValueError,
            r"`inputs` must be .* \(N, C, H, W\), got <shape \(1, 16, 16\)>",
        ),
        ({"x": torch.zeros(4, 1, 16, 16, dtype=torch.uint8)}, TypeError, "torch.uint8"),
        ({"y": [0, 1, 2, 3]}, TypeError, "`target` must be a tensor of true labels .* got <list>"),
        (
            {"y": torch.zeros(4)},
            TypeError,
            r"`target` must be integer class indices.*torch.float32",
        ),
        ({"y": torch.zeros(4, dtype=torch.bool)}, TypeError, "torch.bool"),
        ({"y": torch.zeros(3, dtype=torch.long)}, ValueError, r"the 4 inputs.* got <shape \(3,\)>"),
        (
            {"y": torch.zeros(4, 3, dtype=torch.long)},
            ValueError,
            r"rows \(N, 10\), got <shape \(4, 3\)>",
        ),
        ({"y": torch.tensor([0, 1, 2, 10])}, ValueError, r"\[0, 10\) .* got <values in \[0, 10\]>"),
        ({"y": torch.tensor([0, -1, 2, 3])}, ValueError, r"\[0, 10\) .* got <values in \[-1, 3\]>"),
        ({"eps": -0.1}, ValueError, "`eps` must be a finite number >= 0, got -0.1"),
        ({"eps": float("nan")}, ValueError, "`eps` .* got nan"),
        ({"eps": math.inf}, ValueError, "`eps` .* got inf"),
        ({"eps": "8/255"}, TypeError, "`eps` must be a finite number >= 0, got '8/255'"),
        ({"eps": True}, TypeError, "`eps` must be a finite number >= 0, got True"),
        ({"norm": "l1"}, ValueError, r"`norm` must be one of \['linf', 'l2'\], got 'l1'"),
        ({"clamp": (1.0, 0.0)}, ValueError, r"min < max, got \(1.0, 0.0\)"),
        ({"clamp": 1.0}, TypeError, "`clamp` must be a .* got 1.0"),
        ({"clamp": ("a", 1)}, TypeError, "`clamp min` must be a finite number, got 'a'"),
    ],
)
@pytest.mark.parametrize("fn", ["fgsm", "pgd", "robust_accuracy"])
def test_common_validation(fn, kwargs, exc, match):
    args = {"model": _M, "x": _X, "y": _Y, "eps": 0.05, **kwargs}
    func = {"fgsm": fgsm, "pgd": pgd, "robust_accuracy": robust_accuracy}[fn]
    with pytest.raises(exc, match=match):
        func(
            args["model"],
            args["x"],
            args["y"],
            args["eps"],
            norm=args.get("norm", "linf"),
            clamp=args.get("clamp", (0.0, 1.0)),
        )


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"steps": 0}, ValueError, "`steps` must be an int >= 1, got 0"),
        ({"steps": 2.5}, TypeError, "`steps` must be an int >= 1, got 2.5"),
        ({"step_size": 0.0}, ValueError, "`step_size` must be a finite number > 0, got 0.0"),
        ({"step_size": -1}, ValueError, "`step_size` .* got -1"),
        ({"step_size": "big"}, TypeError, "`step_size` must be a finite number > 0, got 'big'"),
        ({"random_start": 1}, TypeError, "`random_start` must be a bool, got 1"),
        ({"generator": 3}, TypeError, "`generator` must be a torch.Generator or None, got 3"),
    ],
)
@pytest.mark.parametrize("fn", [pgd, robust_accuracy])
def test_pgd_option_validation(fn, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fn(_M, _X, _Y, 0.05, **kwargs)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (
            {"attack": "cw"},
            ValueError,
            r"`attack` must be one of \['fgsm', 'pgd', 'noise'\], got 'cw'",
        ),
        ({"batch_size": 0}, ValueError, "`batch_size` must be an int >= 1, got 0"),
        ({"batch_size": 2.0}, TypeError, "`batch_size` must be an int >= 1, got 2.0"),
        ({"early_stop": "yes"}, TypeError, "`early_stop` must be a bool, got 'yes'"),
    ],
)
def test_robust_accuracy_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        robust_accuracy(_M, _X, _Y, 0.05, **kwargs)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        (("img", 0.1), {}, TypeError, "`inputs` must be a torch.Tensor"),
        ((torch.rand(2, 2), 0.1), {}, ValueError, r"got <shape \(2, 2\)>"),
        ((torch.rand(1, 1, 2, 2), -1.0), {}, ValueError, "`eps` .* got -1.0"),
        ((torch.rand(1, 1, 2, 2), 0.1), {"norm": "linf2"}, ValueError, "got 'linf2'"),
        ((torch.rand(1, 1, 2, 2), 0.1), {"generator": "g"}, TypeError, "got 'g'"),
        ((torch.rand(1, 1, 2, 2), 0.1), {"clamp": (0, 0)}, ValueError, r"got \(0, 0\)"),
    ],
)
def test_noise_validation(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        noise(*args, **kwargs)


def test_bad_model_output_is_reported():
    class Flat(nn.Module):
        def forward(self, x):
            return x.flatten()

    with pytest.raises(ValueError, match=r"logits of shape \(N, K\).*got shape \(\d+,\)"):
        fgsm(Flat(), _X, _Y, 0.05)


# ------------------------------------------------------------------- eps sweep
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_known_masks_sweep_eps_never_weaker_and_cheaper(digits, attack):
    """Attacking only what survived the smaller eps gives the independent result AND
    the smaller eps's (a sample broken in a smaller ball is broken in the larger)."""
    model, x, y = digits
    counted = _Counting(model)
    eps_list = (0.05, 0.1, 0.2, 0.3)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    counted.samples = 0
    independent = {
        e: robust_mask(counted, x, y, e, attack=attack, generator=gen()) for e in eps_list
    }
    cost_independent = counted.samples
    counted.samples, known, swept = 0, clean, {}
    for e in eps_list:
        known = swept[e] = robust_mask(
            counted, x, y, e, attack=attack, generator=gen(), known=known
        )
    cost_swept = counted.samples
    previous = clean
    for e in eps_list:
        assert torch.equal(swept[e], independent[e] & previous), e
        assert int(swept[e].sum()) <= int(independent[e].sum())
        previous = swept[e]
    assert cost_swept < 0.8 * cost_independent, (cost_swept, cost_independent)


@pytest.mark.parametrize("attack", [robust_mask, apgd_mask, square_mask])
@pytest.mark.parametrize("known", [torch.ones(3, dtype=torch.bool), torch.ones(4), [True] * 4])
def test_known_is_checked(attack, known):
    with pytest.raises(TypeError, match=r"`known` must be None or a bool tensor of shape \(4,\)"):
        attack(_M, _X, _Y, 0.05, known=known)


# ------------------------------------------------- inputs in other units, in place
@pytest.mark.parametrize("units", ["0-255", "normalized"])
def test_inputs_outside_the_clamp_range_are_an_error_naming_the_remedies(units):
    """fgsm and pgd returned images clamped into [0, 1] (254 away from 0-255 inputs),
    apgd the inputs unchanged, and the robust masks measured the clamped images."""
    model = _random_model().eval()
    x, y = _batch()
    x = x * 255 if units == "0-255" else (x - 0.45) / 0.22
    calls = {
        "fgsm": lambda: fgsm(model, x, y, 0.03),
        "pgd": lambda: pgd(model, x, y, 0.03, steps=2),
        "robust_mask": lambda: robust_mask(model, x, y, 0.03, steps=2),
        "apgd_mask": lambda: apgd_mask(model, x, y, 0.03, steps=2),
        "square_mask": lambda: square_mask(model, x, y, 0.03, queries=2),
        "noise": lambda: noise(x, 0.03),
    }
    lo, hi = float(x.min()), float(x.max())
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"clamp range \[0, 1\]") as err:
            call()
        assert f"[{lo:.3g}, {hi:.3g}]" in str(err.value), name
        assert "clamp=None" in str(err.value) and "ModelView" in str(err.value)
    adv = pgd(model, x, y, 0.03, steps=2, clamp=None)  # the remedy: within eps of the inputs
    assert float((adv - x).abs().max()) <= 0.03 + 1e-5
    # a small resampling overshoot is allowed (and clamped)
    ok = _batch()[0] * 1.05
    assert float(fgsm(model, ok, y, 0.03).max()) <= 1.0


class InPlace(nn.Module):
    """A forward that rescales its input in place (``x /= 2``) when autograd allows it
    (a tensor that needs no gradient), as some user code does."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _random_model().eval()

    def forward(self, x):
        if not x.requires_grad:
            x /= 2
        else:
            x = x / 2
        return self.net(x)


def test_the_attacks_never_change_the_tensors_passed_in():
    model = InPlace()
    x, y = _batch()
    before = x.clone()
    fgsm(model, x, y, 0.03)
    pgd(model, x, y, 0.03, steps=2)
    robust_mask(model, x, y, 0.03, steps=2)
    robust_accuracy(model, x, y, 0.03, steps=2)
    apgd_mask(model, x, y, 0.03, steps=2)
    square_mask(model, x, y, 0.03, queries=2)
    assert torch.equal(x, before)


def test_a_0d_label_tensor_is_a_type_error():
    model = _random_model().eval()
    x, _ = _batch(n=1)
    with pytest.raises(TypeError, match="0 dimensions"):
        pgd(model, x, torch.tensor(3), 0.03)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_adversarial_images_stay_within_eps(dtype):
    """``x + delta`` rounded to bfloat16 went up to 17 % past eps (0.0117 at eps 0.01),
    so robust accuracy was measured at a larger radius than asked for."""
    import lightning_viz.functional as LF

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()
    view = LF.ModelView(model)
    x, y = torch.rand(8, 3, 16, 16).to(dtype), torch.randint(0, 5, (8,))
    for name, eps, adv, norm in [
        ("fgsm", 0.01, LF.fgsm(view, x, y, 0.01), "linf"),
        ("pgd", 0.01, LF.pgd(view, x, y, 0.01, steps=3), "linf"),
        ("pgd l2", 0.1, LF.pgd(view, x, y, 0.1, steps=3, norm="l2"), "l2"),
        ("apgd", 0.01, LF.apgd(view, x, y, 0.01, steps=3), "linf"),
        ("noise", 0.01, LF.noise(x, 0.01), "linf"),  # H68: noise was not pulled back
        ("noise l2", 0.1, LF.noise(x, 0.1, norm="l2"), "l2"),
    ]:
        d = adv.double() - x.double()
        size = d.abs().amax() if norm == "linf" else d.flatten(1).norm(dim=1).max()
        assert adv.dtype == dtype and float(size) <= eps, (name, float(size))
        if name != "apgd":  # apgd keeps an image that is already misclassified
            assert float(size) > 0.5 * eps, name  # still an attack of about that size
        assert ((adv >= 0) & (adv <= 1)).all(), name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_l2_attacks_at_eps_zero_return_the_inputs(dtype):
    """H75: at eps 0 with norm="l2" in half precision, the pull back into the ball
    divided 0 by 0: fgsm, pgd, apgd and noise returned NaN images."""
    import lightning_viz.functional as LF

    torch.manual_seed(0)
    view = LF.ModelView(nn.Sequential(nn.Flatten(), nn.Linear(48, 3)).eval())
    x, y = torch.rand(4, 3, 4, 4).to(dtype), torch.tensor([0, 1, 2, 0])
    for name, adv in [
        ("fgsm", LF.fgsm(view, x, y, 0.0, norm="l2")),
        ("pgd", LF.pgd(view, x, y, 0.0, steps=2, norm="l2")),
        ("apgd", LF.apgd(view, x, y, 0.0, steps=2, norm="l2")),
        ("noise", LF.noise(x, 0.0, norm="l2")),
    ]:
        assert torch.equal(adv, x), (name, int(adv.isnan().sum()))


@pytest.mark.parametrize("attack", ["noise", "fgsm", "pgd"])
def test_half_precision_points_robust_mask_judges_stay_within_eps(attack):
    """H68: robust_mask's own noise, FGSM step and PGD random start were rounded to
    bfloat16 without the pull back into the ball: the model was judged up to half a
    bfloat16 step past eps."""
    import lightning_viz.functional as LF

    seen: list[torch.Tensor] = []

    class Judge(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return torch.stack([x.float().flatten(1).mean(1), torch.full((len(x),), 2.0)], 1)

    eps = 8 / 255
    for seed in range(4):  # (one seed's rounding may happen to stay inside)
        torch.manual_seed(seed)
        x = torch.rand(64, 3, 4, 4).to(torch.bfloat16)
        y = torch.ones(64, dtype=torch.long)  # class 1 wins on every sample: each is attacked
        seen.clear()
        LF.robust_mask(Judge(), x, y, eps, attack=attack, steps=2, early_stop=False)
        points = [p for p in seen if p.shape == x.shape and not torch.equal(p, x)]
        assert points, attack
        for p in points:
            assert float((p.double() - x.double()).abs().max()) <= eps, (attack, seed)


# ------------------------------------------- PGD's defaults, measured on its inputs
class _Recorder(nn.Module):
    """Logits ``[w . x, 0]``; keeps every input it is run on."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        s = x.flatten(1) @ self.w
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_pgd_default_step_is_2_5_eps_over_steps():
    x = torch.full((1, 1, 1, 2), 0.5)
    model = _Recorder(torch.tensor([3.0, 4.0]))
    pgd(model, x, torch.tensor([0]), 0.2, steps=10, random_start=False)
    moved = [seen for seen in model.seen if not torch.equal(seen, x)]
    assert (moved[0] - x).abs().max().item() == pytest.approx(2.5 * 0.2 / 10, abs=1e-6)


def _random_start(norm: str, eps: float) -> torch.Tensor:
    x = torch.full((256, 1, 4, 4), 0.5)
    model = _Recorder(torch.ones(16))
    generator = torch.Generator().manual_seed(0)
    pgd(
        model,
        x,
        torch.zeros(256, dtype=torch.long),
        eps,
        steps=1,
        step_size=1e-9,
        norm=norm,
        generator=generator,
    )
    return model.seen[1] - x  # the first forward after the task check: the start


def test_pgd_random_starts_are_uniform_in_the_ball():
    linf = _random_start("linf", 0.1)  # each pixel uniform in [-eps, eps]
    assert linf.min() < -0.09 and linf.max() > 0.09 and abs(linf.mean().item()) < 0.01
    radius = _random_start("l2", 0.5).flatten(1).norm(dim=1)  # radius uniform in [0, eps]
    assert radius.min() < 0.1 and radius.max() > 0.45
    assert radius.mean().item() == pytest.approx(0.25, abs=0.03)
