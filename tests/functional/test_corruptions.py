"""functional.corruptions: hand-computed 4x4 cases per family, and the
``imagecorruptions`` package (ImageNet-C parameters) as the oracle at 128 px."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_viz.functional.corruptions import (
    CORRUPTIONS,
    PARAMETERS,
    _fog_apply,
    _motion_blur_one,
    corrupt,
    plasma_fractal,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ hand-computed
def test_noise_family_4x4():
    x = torch.full((1, 3, 4, 4), 0.5)
    out = corrupt(x, "gaussian_noise", 1, generator=gen(3))
    expect = (0.5 + 0.04 * torch.randn((1, 3, 4, 4), generator=gen(3))).clamp(0, 1)
    assert torch.allclose(out, expect, atol=1e-7)  # CIFAR table, severity 1: std 0.04
    zeros = torch.zeros(1, 3, 4, 4)
    assert torch.equal(corrupt(zeros, "shot_noise", 5), zeros)  # Poisson(0) = 0
    big = torch.full((2, 3, 64, 64), 0.5)
    imp = corrupt(big, "impulse_noise", 5, generator=gen(1))  # share 0.07 set to 0 or 1
    changed = imp != 0.5
    assert set(imp[changed].unique().tolist()) <= {0.0, 1.0}
    assert abs(changed.float().mean().item() - 0.07) < 0.01


def test_blur_family_4x4():
    # defocus, CIFAR severity 1: disk of radius 0.3 = the centre pixel, blurred by a 3x3
    # Gaussian of std 0.4: weights w0 (centre) and w1 (sides) per axis
    e = math.exp(-1 / (2 * 0.4**2))
    w0, w1 = 1 / (1 + 2 * e), e / (1 + 2 * e)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0
    out = corrupt(x, "defocus_blur", 1)[0, 0]
    assert out[1, 1].item() == pytest.approx(w0 * w0, abs=1e-6)
    assert out[1, 2].item() == pytest.approx(w0 * w1, abs=1e-6)
    assert out[2, 2].item() == pytest.approx(w1 * w1, abs=1e-6)
    # row 0 sees row 1 twice (reflect-101 border: row -1 is row 1)
    assert out[0, 1].item() == pytest.approx(2 * w0 * w1, abs=1e-6)
    assert out[3, 3].item() == 0.0
    # motion blur at angle 0, radius 1, sigma 1: out[j] = sum_i w_i x[min(j + i, 3)]
    row = torch.tensor([0.0, 0.0, 0.0, 1.0]).view(1, 1, 4).expand(1, 4, 4)
    w = torch.exp(-(torch.arange(3.0) ** 2) / 2)
    w = w / w.sum()
    mb = _motion_blur_one(row.clone(), 1, 1.0, 0.0)[0, 0]
    assert torch.allclose(mb, torch.tensor([0.0, w[2], w[1] + w[2], 1.0]), atol=1e-6)


def test_weather_family_4x4():
    x = torch.zeros(1, 3, 4, 4)
    x[0, :, 0, 0] = torch.tensor([0.2, 0.4, 0.1])
    x[0, :, 0, 1] = torch.tensor([0.49, 0.98, 0.0])
    out = corrupt(x, "brightness", 1)  # CIFAR: V + 0.05, hue and saturation kept
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.225, 0.45, 0.1125]), atol=1e-6)
    assert torch.allclose(out[0, :, 0, 1], torch.tensor([0.5, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(out[0, :, 3, 3], torch.full((3,), 0.05), atol=1e-6)  # black -> grey
    # fog with a field of ones: (x + s) * m / (m + s), m the image maximum
    y = torch.full((1, 1, 4, 4), 0.5)
    y[0, 0, 0, 0] = 0.8
    fogged = _fog_apply(y, torch.ones(1, 4, 4), 0.2)
    assert fogged[0, 0, 1, 1].item() == pytest.approx(0.7 * 0.8 / 1.0, abs=1e-6)
    assert fogged[0, 0, 0, 0].item() == pytest.approx(1.0 * 0.8, abs=1e-6)
    # snow on black: the base is (1 - keep) * max(0, 0.5) = 0.025 (CIFAR severity 1)
    snow = corrupt(torch.zeros(1, 3, 4, 4), "snow", 1)
    assert bool((snow >= 0.025 - 1e-6).all())
    assert torch.equal(snow[0, 0], snow[0, 1])  # the snow layer is grey


def test_digital_family_4x4():
    x = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]] * 2).view(1, 1, 4, 4)
    out = corrupt(x, "contrast", 1)  # CIFAR: (x - 0.5) * 0.75 + 0.5
    assert torch.allclose(out, (x - 0.5) * 0.75 + 0.5)
    img = torch.arange(16.0).view(1, 1, 4, 4) / 15
    pix = corrupt(img, "pixelate", 5)  # CIFAR 0.65: int(4 * 0.65) = 2, 2x2 box means
    blocks = img.view(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4).mean(dim=1).view(2, 2)
    expect = blocks.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.allclose(pix[0, 0], expect, atol=1e-6)
    flat = torch.full((1, 3, 8, 8), 0.5)
    assert torch.allclose(corrupt(flat, "jpeg_compression", 5), torch.full_like(flat, 128 / 255))
    # elastic transform of a constant image is the constant
    assert torch.allclose(corrupt(flat, "elastic_transform", 5), flat, atol=1e-6)


def test_tables_by_size_and_contract():
    small, large = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 128, 128)
    assert corrupt(small, "brightness", 1).max().item() == pytest.approx(0.05)  # CIFAR-10-C
    assert corrupt(large, "brightness", 1).max().item() == pytest.approx(0.1)  # ImageNet-C
    assert set(PARAMETERS["cifar"]) == set(PARAMETERS["imagenet"]) == set(CORRUPTIONS)
    x = torch.rand(2, 3, 16, 16, generator=gen(0))
    rng = torch.get_rng_state()
    for name in CORRUPTIONS:
        out = corrupt(x, name, 3, generator=gen(5))
        assert out.shape == x.shape and out.dtype == x.dtype, name
        assert 0 <= out.min() and out.max() <= 1, name
        assert torch.equal(out, corrupt(x, name, 3, generator=gen(5))), name
        assert not torch.equal(out, x), name
    assert torch.equal(torch.get_rng_state(), rng)
    with pytest.raises(ValueError, match="frost"):
        corrupt(x, "frost", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "fog", 6)
    with pytest.raises(TypeError, match="images"):
        corrupt(x.numpy(), "fog", 1)
    with pytest.raises(ValueError, match="images"):
        corrupt(x + 2, "fog", 1)


def test_plasma_fractal_range():
    f = plasma_fractal(3, 32, 2.0, gen(0), "cpu")
    assert f.shape == (3, 32, 32)
    for m in f:
        assert m.min().item() == 0.0 and m.max().item() == pytest.approx(1.0)
    assert not torch.equal(f[0], f[1])


def test_elastic_transform_of_images_under_3_px_is_a_clear_error():
    """Its three affine anchors coincide there (a singular matrix: torch's LinAlgError)."""
    for shape in ((1, 3, 2, 2), (1, 3, 1, 64), (1, 1, 64, 2)):
        with pytest.raises(ValueError, match="at least 3 px on each side for elastic_transform"):
            corrupt(torch.rand(*shape), "elastic_transform", 3)
    assert corrupt(torch.rand(1, 3, 3, 3), "elastic_transform", 3).shape == (1, 3, 3, 3)


# ------------------------------------------------------------------------ oracle
# imagecorruptions is a test-only oracle: only these tests skip without it (the oldest run)


@pytest.fixture(scope="module")
def images128():
    rs = np.random.RandomState(0)
    x = torch.from_numpy(rs.rand(3, 3, 16, 16)).float()
    x = torch.nn.functional.interpolate(x, size=128, mode="bilinear", align_corners=False)
    return (x * 255).round() / 255  # 8-bit levels, as the package's input


@pytest.fixture
def package(monkeypatch):
    """The package with two fixes for current numpy/skimage (np.float_; skimage's
    gaussian no longer takes ``multichannel``); nothing else changed."""
    IC = pytest.importorskip("imagecorruptions.corruptions")
    from skimage.filters import gaussian

    monkeypatch.setattr(np, "float_", np.float64, raising=False)

    def gaussian_compat(*args, multichannel=None, **kwargs):
        return gaussian(*args, channel_axis=-1 if multichannel else None, **kwargs)

    monkeypatch.setattr(IC, "gaussian", gaussian_compat)
    return IC


def reference(package, name, x, sev, **kw):
    from PIL import Image

    outs = []
    for img in x:
        pil = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        out = np.asarray(getattr(package, name)(pil, sev, **kw), dtype=np.float64) / 255
        outs.append(torch.from_numpy(out).permute(2, 0, 1).float())
    return torch.stack(outs)


@pytest.mark.parametrize(
    "name,tol",
    [
        ("brightness", 1e-5),
        ("contrast", 1e-5),
        ("defocus_blur", 1e-5),
        ("zoom_blur", 1e-5),
        ("jpeg_compression", 1e-6),
        ("pixelate", 1 / 255 + 1e-6),  # PIL resamples 8-bit images in fixed point
    ],
)
def test_deterministic_equal_to_imagecorruptions(package, images128, name, tol):
    for sev in (1, 3, 5):
        ours = corrupt(images128, name, sev)
        theirs = reference(package, name, images128, sev)
        assert (ours - theirs).abs().max().item() <= tol, (name, sev)


@pytest.mark.parametrize("shape", [(160, 224), (130, 300), (300, 130)])
def test_pixelate_equal_where_a_pixel_centre_falls_on_a_box_edge(package, shape):
    """At 160 px and severity 3 (160 -> 64, ratio 2.5) a pixel centre falls exactly on a
    box edge, which PIL counts in the box below; enlarging, PIL's nearest pixel is found
    by stepping in floating point. The 128-px images never hit either: up to 0.52 off."""
    x = torch.rand(1, 3, *shape, generator=gen(3))
    x = (x * 255).round() / 255
    for sev in (1, 3, 5):
        ours = corrupt(x, "pixelate", sev)
        theirs = reference(package, "pixelate", x, sev)
        assert (ours - theirs).abs().max().item() <= 1 / 255 + 1e-6, (shape, sev)


def test_fog_equal_with_the_same_field(package, images128, monkeypatch):
    for sev in (1, 5):
        decay = PARAMETERS["imagenet"]["fog"][sev - 1][1]
        ours = corrupt(images128, "fog", sev, generator=gen(0))
        fields = iter(plasma_fractal(len(images128), 128, decay, gen(0), "cpu").numpy())
        monkeypatch.setattr(
            package, "plasma_fractal", lambda mapsize, wibbledecay, f=fields: next(f)
        )
        theirs = reference(package, "fog", images128, sev)
        assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "name",
    [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "snow",
        "motion_blur",
        "elastic_transform",
    ],
)
def test_stochastic_change_matches_imagecorruptions(package, images128, name):
    # mean and spread of (corrupted - clean) over 3 x 3 x 128 x 128 values; snow's mean
    # within 0.025 (one snow layer per image: its coverage varies from draw to draw)
    x = images128 if name != "glass_blur" else images128[:1]
    ours = corrupt(x, name, 3, generator=gen(1)) - x
    np.random.seed(1)
    theirs = reference(package, name, x, 3) - x
    tol = 0.025 if name == "snow" else 0.01
    assert abs(ours.mean().item() - theirs.mean().item()) < tol, name
    ratio = ours.std().item() / theirs.std().item()
    assert 0.93 < ratio < 1.07, (name, ratio)


@pytest.mark.parametrize(("h", "w"), [(128, 384), (384, 128)])
def test_elastic_transform_of_non_square_images_smooths_each_axis_by_its_side(package, h, w):
    """imagecorruptions' sigma is 0.01 of each axis' side; one sigma of 0.01 H on both axes
    made the displacement twice as large (or half) and smooth along the wrong axis."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ramp = np.stack([cols / (w - 1), rows / (h - 1), np.zeros((h, w))], -1)  # pixel -> its x, y
    x = torch.from_numpy(ramp).permute(2, 0, 1)[None].float()
    ours = corrupt(x, "elastic_transform", 5, generator=gen(0))[0].permute(1, 2, 0).double()
    np.random.seed(0)
    theirs = package.elastic_transform((ramp * 255).astype(np.float32), severity=5) / 255

    def field(out):  # the x displacement inside a margin, its spread and x-smoothness
        d = (np.asarray(out)[..., 0] * (w - 1) - cols)[8:-8, 8:-8]
        a, b = d[:, :-3] - d.mean(), d[:, 3:] - d.mean()
        return d.std(), (a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean())

    (s_ours, c_ours), (s_theirs, c_theirs) = field(ours.numpy()), field(theirs)
    assert 0.8 < s_ours / s_theirs < 1.25, (s_ours, s_theirs)
    assert abs(c_ours - c_theirs) < 0.1, (c_ours, c_theirs)


def test_defocus_blur_unfolds_a_bounded_amount_per_convolution(monkeypatch):
    """H74: a float64 convolution on the CPU unfolds its input to kh * kw values per
    pixel, and defocus blur convolved every plane at once: the 21x21 disk of ImageNet-C's
    severity 5 on 64 images of 224 px asked for 34 GB. The planes now go a few at a
    time, and the result is the kernel's correlation still (a shift-and-add oracle)."""
    import torch.nn.functional as F

    from lightning_viz.functional import corruptions as C

    unfolded: list[int] = []
    conv = F.conv2d

    def recording(inp, weight, *args, **kwargs):
        unfolded.append(inp.shape[0] * weight.shape[-2] * weight.shape[-1] * inp[0].numel() * 8)
        return conv(inp, weight, *args, **kwargs)

    monkeypatch.setattr(C.F, "conv2d", recording)
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    out = corrupt(x, "defocus_blur", 5)
    assert max(unfolded) <= 2**27 and len(unfolded) >= 6, unfolded
    k = C.disk_kernel(*C.PARAMETERS["imagenet"]["defocus_blur"][4])
    assert k.shape == (21, 21)
    r = k.shape[0] // 2
    xp = C._pad(x.double(), r, r, "reflect101")
    ref = sum(
        k[i, j] * xp[..., i : i + 160, j : j + 160]
        for i in range(2 * r + 1)
        for j in range(2 * r + 1)
    )
    assert torch.allclose(out, ref.float().clamp(0, 1), atol=1e-6)
