"""Pinning tests for deletion/insertion curves and the randomization test."""

import torch
from torch import nn

import lightning_viz.functional as LF


class _ChannelMean(nn.Module):
    """One logit: 4 * (mean square of channel 0) - 1 - (mean square of channel 1)."""

    def forward(self, x):
        m = (x * x).mean(dim=(2, 3))
        return (4 * m[:, 0] - 1 - m[:, 1]).view(-1, 1)


def test_binary_curves_read_the_explained_class_and_their_ends():
    torch.manual_seed(0)
    x = torch.rand(2, 2, 4, 4)
    maps = torch.rand(2, 1, 4, 4)
    model = _ChannelMean()
    z = model(x)[:, 0]
    base = x.mean(dim=(2, 3), keepdim=True).expand_as(x)  # the per-image, per-channel mean
    zb = model(base)[:, 0]
    for target, sign in ((0, -1.0), (1, 1.0)):
        dele = LF.deletion_curve(model, x, maps, target, steps=4, baseline="mean")
        ins = LF.insertion_curve(model, x, maps, target, steps=4, baseline="mean")
        p_x, p_b = torch.sigmoid(sign * z), torch.sigmoid(sign * zb)
        assert torch.allclose(dele.curve[:, 0], p_x, atol=1e-6)
        assert torch.allclose(dele.curve[:, -1], p_b, atol=1e-6)
        assert torch.allclose(ins.curve[:, 0], p_b, atol=1e-6)
        assert torch.allclose(ins.curve[:, -1], p_x, atol=1e-6)
        # trapezoid over fractions 0, 1/4, ..., 1
        c = dele.curve
        want = (c[:, 0] / 2 + c[:, 1:-1].sum(1) + c[:, -1] / 2) / 4
        assert torch.allclose(dele.auc, want, atol=1e-6)


def test_randomization_does_not_depend_on_the_global_rng():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 3)
    )
    x = torch.rand(2, 1, 8, 8)

    def grads(m, inp, tgt):
        return LF.saliency(m, inp, tgt)

    torch.manual_seed(1)
    a = LF.randomization_similarity(grads, model, x, 0, layers="cascade", seed=3)
    torch.manual_seed(2)
    b = LF.randomization_similarity(grads, model, x, 0, layers="cascade", seed=3)
    assert torch.allclose(a.spearman, b.spearman, equal_nan=True)
    assert torch.allclose(a.ssim, b.ssim, equal_nan=True)
    assert a.layers == ("3", "0")


def test_road_lerf_removes_the_least_relevant_pixels_first():
    torch.manual_seed(0)
    x = torch.rand(2, 2, 6, 6)
    maps = torch.rand(2, 1, 6, 6)
    model = _ChannelMean()
    lerf = LF.road(model, x, maps, 1, order="lerf", percentiles=(20, 50))
    morf_neg = LF.road(model, x, -maps, 1, order="morf", percentiles=(20, 50))
    morf = LF.road(model, x, maps, 1, order="morf", percentiles=(20, 50))
    assert torch.allclose(lerf.curve, morf_neg.curve, atol=1e-6)
    assert not torch.allclose(lerf.curve, morf.curve, atol=1e-4)
    assert torch.allclose(lerf.score, lerf.curve.mean(dim=1))


def test_randomization_of_even_sided_small_maps_uses_the_largest_odd_window():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)
    )
    x = torch.rand(2, 1, 6, 6)
    res = LF.randomization_similarity(lambda m, i, t: LF.saliency(m, i, t), model, x, 0)
    assert res.ssim.shape == (2, 1) and bool(torch.isfinite(res.ssim).all())
    # the same as LF.ssim with window 5 on the min-max normalized maps
    orig = LF.saliency(model, x, 0)
    assert res.ssim.dtype == torch.float32 and orig.shape[-1] == 6


def test_randomization_ssim_does_not_depend_on_the_maps_scale():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 3)
    )
    x = torch.rand(2, 1, 8, 8)
    a = LF.randomization_similarity(lambda m, i, t: LF.saliency(m, i, t), model, x, 0, seed=1)
    b = LF.randomization_similarity(
        lambda m, i, t: 1000 * LF.saliency(m, i, t) + 5, model, x, 0, seed=1
    )
    assert torch.allclose(a.ssim, b.ssim, atol=1e-4), (a.ssim, b.ssim)
    assert torch.allclose(a.spearman, b.spearman, atol=1e-6)


class _Mean(nn.Module):
    def forward(self, x):
        return 10 * (x.mean(dim=(1, 2, 3)) - 0.5).view(-1, 1)


def test_road_noise_is_zero_mean():
    torch.manual_seed(0)
    x = torch.full((16, 1, 8, 8), 0.5)
    maps = torch.rand(16, 1, 8, 8)
    quiet = LF.road(_Mean(), x, maps, 1, percentiles=(50,), noise=0.0)
    loud = LF.road(
        _Mean(),
        x,
        maps,
        1,
        percentiles=(50,),
        noise=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.allclose(quiet.curve, torch.full_like(quiet.curve, 0.5), atol=1e-5), quiet.curve
    shift = loud.curve[:, 0] - 0.5
    # Gaussian noise of both signs: some images gain, some lose probability
    assert bool((shift > 0).any()) and bool((shift < 0).any()), shift
