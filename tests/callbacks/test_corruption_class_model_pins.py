"""Pins for corruption and class-model behaviour no other test pins (mutation round 76).

Goes in ``tests/callbacks/``. Each test names the one-line mutation(s) it kills; the
oracles are the ``imagecorruptions`` package's own helpers (test-only, skipped without
it) or hand-computed values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lightning_viz as lv
from lightning_viz.functional.corruptions import (
    PARAMETERS,
    _gaussian_filter,
    _motion_blur_one,
    corrupt,
    disk_kernel,
    plasma_fractal,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _captions_seen(monkeypatch, module) -> list:
    """The captions of every ``render.image_grid`` that ``module`` draws, in order."""
    seen: list = []
    real = module.render.image_grid

    def spy(images, *args, **kwargs):
        seen.append(kwargs.get("captions"))
        return real(images, *args, **kwargs)

    monkeypatch.setattr(module.render, "image_grid", spy)
    return seen


@pytest.fixture
def package(monkeypatch):
    """imagecorruptions with np.float_ restored for current numpy; nothing else changed."""
    IC = pytest.importorskip("imagecorruptions.corruptions")
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    return IC


def _centred(k: np.ndarray, size: int) -> np.ndarray:
    """``k`` (odd square) zero-padded or trimmed to ``size x size`` about its centre."""
    out = np.zeros((size, size))
    r, h = size // 2, k.shape[0] // 2
    m = min(r, h)
    out[r - m : r + m + 1, r - m : r + m + 1] = k[h - m : h + m + 1, h - m : h + m + 1]
    return out


# ---------------------------------------------------------------- defocus kernel
@pytest.mark.parametrize("table", ["cifar", "imagenet"])
def test_defocus_kernel_is_imagecorruptions_disk_at_every_severity(package, table):
    # C15: the 5x5 alias blur from radius 8 (not above it); the oracle tests at 128 px
    # only look at severities 1, 3 and 5, and ImageNet severity 4 has radius exactly 8
    for radius, alias in PARAMETERS[table]["defocus_blur"]:
        ours = disk_kernel(radius, alias).numpy()
        theirs = package.disk(radius=radius, alias_blur=alias).astype(np.float64)
        size = max(ours.shape[0], theirs.shape[0])
        assert np.abs(_centred(ours, size) - _centred(theirs, size)).max() < 1e-6, radius


# ------------------------------------------------------------- gaussian filter
@pytest.mark.parametrize(
    ("sigma", "mode", "scipy_mode", "truncate"),
    [
        (0.7, "edge", "nearest", 4.0),  # glass blur, ImageNet severity 1
        (1.5, "edge", "nearest", 4.0),  # glass blur, ImageNet severity 5
        ((1.28, 2.56), "symmetric", "reflect", 3.0),  # elastic transform of 128 x 256
    ],
)
def test_gaussian_filter_is_scipys(sigma, mode, scipy_mode, truncate):
    # C06: kernel radius int(truncate * sigma - 0.5) (scipy rounds: + 0.5); glass blur
    # is only compared with the oracle by the spread of its change
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(1, 2, 19, 23, generator=gen(1), dtype=torch.float64)
    ours = _gaussian_filter(x, sigma, mode, truncate=truncate)[0].numpy()
    sig = (0, *sigma) if isinstance(sigma, tuple) else (0, sigma, sigma)
    theirs = ndimage.gaussian_filter(x[0].numpy(), sig, mode=scipy_mode, truncate=truncate)
    assert np.abs(ours - theirs).max() < 1e-12


def test_defocus_of_images_one_pixel_high_is_that_of_equal_rows():
    # C02: reflect-101 padding of a 1-pixel axis divided by a period of 0
    row = torch.rand(1, 3, 1, 9, generator=gen(3))
    out = corrupt(row, "defocus_blur", 5)
    assert torch.allclose(out, corrupt(row.expand(1, 3, 3, 9), "defocus_blur", 5)[:, :, 1:2])


# ------------------------------------------------------------------------- fog
@pytest.mark.parametrize("decay", [PARAMETERS["imagenet"]["fog"][0][1], 1.4, 3.0])
def test_plasma_fractal_is_imagecorruptions_given_the_same_uniform_draws(
    package, monkeypatch, decay
):
    # the fog oracle test feeds our own field to imagecorruptions, so the field itself
    # was pinned by its range alone. C31 (wibble not squared), C32, C33 (decay 2)
    g = gen(5)

    def uniform(low, high, size):  # numpy's draw, from the torch generator we give
        u = torch.rand(size, generator=g, dtype=torch.float64).numpy()
        return low + (high - low) * u

    monkeypatch.setattr(np.random, "uniform", uniform)
    theirs = package.plasma_fractal(mapsize=32, wibbledecay=decay)
    ours = plasma_fractal(1, 32, decay, gen(5), "cpu")[0].numpy()
    assert np.abs(ours - theirs).max() < 1e-9


# ------------------------------------------------------------------ motion blur
@pytest.mark.parametrize("angle", [-120.0, -60.0, -30.0, 20.0, 45.0])
@pytest.mark.parametrize("shape", [(24, 20), (7, 5)])
def test_motion_blur_of_one_image_is_imagecorruptions_at_that_angle(package, angle, shape):
    # C19 (sin/cos swapped), C21 (rows shifted the wrong way): at angle 0 (the 4x4 test)
    # dy is 0, and the stochastic test only compares the spread of the change; C20 (a
    # shift of the whole side not stopping the trail): on images smaller than the blur
    x = torch.rand(3, *shape, generator=gen(2), dtype=torch.float64)
    ours = _motion_blur_one(x, 6, 2.0, angle).numpy().transpose(1, 2, 0)
    theirs = package._motion_blur(x.numpy().transpose(1, 2, 0), radius=6, sigma=2.0, angle=angle)
    assert np.abs(ours - theirs).max() < 1e-5


def _trail(out: torch.Tensor) -> torch.Tensor:
    """``(dy, dx)`` of the pixels a single bright centre pixel was smeared onto."""
    h, w = out.shape[-2:]
    return (out[0] > 1e-4).nonzero().float() - torch.tensor([h // 2, w // 2])


def test_motion_blur_angles_stay_within_45_degrees_of_horizontal():
    # C22: angles drawn from [-90, 90] (documented: [-45, 45]); one draw per image
    x = torch.zeros(16, 1, 33, 33)
    x[:, :, 16, 16] = 1.0
    out = corrupt(x, "motion_blur", 5, generator=gen(0))  # CIFAR: radius 9
    slopes = []
    for img in out:
        d = _trail(img)
        assert len(d) >= 5
        assert bool((d[:, 0].abs() <= d[:, 1].abs() + 1).all()), d.tolist()
        slopes.append(float((d[:, 0] * d[:, 1]).sum()))
    # C09 (angles drawn from [-45, 0]): trails rising and falling alike
    assert min(slopes) < 0 < max(slopes), slopes


def test_snow_streaks_fall_steeper_than_45_degrees():
    # C36 (snow angles [-45, 45]), C09 ([-180, -135]): the snow layer of a black image is
    # streaked along its fall, in [-135, -45] degrees: neighbours along a column alike
    out = corrupt(torch.zeros(6, 3, 64, 64), "snow", 5, generator=gen(0))  # CIFAR
    for img in out[:, 0]:
        s = img - img.mean()
        down = (s[1:] * s[:-1]).mean() / (s * s).mean()
        across = (s[:, 1:] * s[:, :-1]).mean() / (s * s).mean()
        assert down > across + 0.1, (down, across)


# ------------------------------------------------------------------ impulse noise
@pytest.mark.parametrize(("size", "sev"), [(32, 5), (128, 1)])
def test_impulse_noise_hits_its_share_with_salt_and_pepper_alike(size, sev):
    # C12 (share 0.9 c: inside both the 0.01 tolerance of the 4x4 test and the 7 % of
    # the oracle's spread), C13 (salt with probability 0.6)
    table = "cifar" if size < 128 else "imagenet"
    share = PARAMETERS[table]["impulse_noise"][sev - 1]
    x = torch.full((64 if size < 128 else 4, 3, size, size), 0.5)
    out = corrupt(x, "impulse_noise", sev, generator=gen(4))
    hit = out != 0.5
    n = hit.numel()
    assert abs(hit.float().mean().item() - share) < 4 * math.sqrt(share * (1 - share) / n)
    salt = (out[hit] == 1).float().mean().item()
    assert abs(salt - 0.5) < 4 * math.sqrt(0.25 / hit.sum().item())


# ------------------------------------------------------------ ClassModelLogger
def _class_model_ctx(num_classes, seen=None, logged=None, model=None):
    from types import SimpleNamespace

    return SimpleNamespace(
        num_classes=num_classes,
        probe=SimpleNamespace(images=torch.zeros(1, 3, 8, 8), seen=seen),
        check_neuron=lambda neuron, reshape: None,
        view=model,
        chunked=lambda fn, *rows: fn(*rows),
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        task="multiclass",
        log=SimpleNamespace(epoch=0, image=lambda tag, img: logged.append((tag, img))),
    )


def test_class_model_logger_refuses_the_class_one_past_the_last_at_setup():
    # L02: `c > num_classes` let class K through setup; the run then failed every epoch
    with pytest.raises(ValueError, match=r"class indices in \[0, 5\) for this model.*\[5\]"):
        lv.ClassModelLogger(classes=[0, 5]).check(_class_model_ctx(5))


def test_class_model_logger_default_classes_ignore_negative_labels():
    # L07: a probe whose labels are all -1 (an unlabelled split) has seen == [-1]; the
    # class -1 was drawn (and class_model refused it at every run) instead of all classes
    cb = lv.ClassModelLogger()
    cb.check(_class_model_ctx(5, seen=[-1]))
    assert cb._classes is None  # every class of the model
    cb = lv.ClassModelLogger()
    cb.check(_class_model_ctx(5, seen=[-1, 1, 3]))
    assert cb._classes == [1, 3]


def test_class_model_grid_has_ten_tiles_a_row():
    # L06: rows of 5 tiles; the callback tests have at most 5 classes in a grid
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 12))
    logged = []
    cb = lv.ClassModelLogger(steps=1)
    ctx = _class_model_ctx(12, logged=logged, model=model)
    cb.check(ctx)
    cb.run(ctx)
    ((tag, grid),) = logged
    assert tag == "class_model/grid"
    height, width = grid.shape[-2:] if grid.shape[0] in (1, 3, 4) else grid.shape[:2]
    assert width > 2 * height  # 10 tiles a row, 2 rows (5 a row: 3 rows, taller than wide)


def test_snow_brightens_by_the_itu_601_luma_where_no_snow_falls():
    # C08: the grey the snow base brightens towards is OpenCV's RGB2GRAY (ITU-R 601
    # weights), not the channel mean; the snow oracle test only sees a 0.025 mean shift
    colour = torch.tensor([0.2, 0.1, 0.0]).view(1, 3, 1, 1)
    x = colour.expand(2, 3, 32, 32).contiguous()
    out = corrupt(x, "snow", 1, generator=gen(0))  # CIFAR: keep 0.95
    gray = 0.299 * 0.2 + 0.587 * 0.1 + 0.114 * 0.0
    base = 0.95 * colour + 0.05 * torch.maximum(colour, torch.tensor(gray * 1.5 + 0.5))
    bare = ((out - base).abs() < 1e-6).all(dim=1)  # pixels without snow: the base alone
    assert bare.float().mean().item() > 0.5


# ------------------------------------------------------------------ class model
def test_class_model_refuses_a_pixel_clip_of_one():
    # M04: `pixel_clip > 1` let 1.0 through: every pixel below the largest norm reset
    from lightning_viz.functional.class_model import class_model

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    with pytest.raises(ValueError, match=r"`pixel_clip` must be in \[0, 1\)"):
        class_model(model, 0, (3, 2, 2), pixel_clip=1.0)


class _ZeroLogit(torch.nn.Module):
    """A binary model (one logit) whose logit is exactly 0 and whose gradient is not."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return (x - x.detach()).flatten(1).sum(1, keepdim=True) * self.w


def test_class_model_binary_caption_decides_as_the_library_a_zero_logit_negative(monkeypatch):
    # L05: `logit >= 0` called a logit of exactly 0 positive; everywhere else (predict,
    # correct) the library decides `logit > 0`
    from lightning_viz.callbacks import class_model as cm

    seen = _captions_seen(monkeypatch, cm)
    logged = []
    cb = lv.ClassModelLogger(steps=1, class_names=["negative", "positive"])
    ctx = _class_model_ctx(2, logged=logged, model=_ZeroLogit())
    ctx.task = "binary"
    cb.check(ctx)
    cb.run(ctx)
    assert seen[-1] == ["negative\nnegative 0.50", "positive\nnegative 0.50"]


# ------------------------------------------------------------------ glass blur
def test_glass_blur_copies_each_pixel_from_its_up_left_neighbourhood():
    # CIFAR severity 1: sigma 0.05 (a 1-tap Gaussian: no blur), delta 1, one iteration.
    # Each pixel (i, j), i, j in 2..14 (range(15 - 1, 1, -1)), gets the pixel at an
    # offset in [-1, 1) per axis (numpy's randint(-1, 1)), the 8-bit level floored.
    # C26 (rounded), C27 (row/column 1 visited), C28 (offsets up to +1), C29 (one
    # offset for both axes)
    levels = torch.arange(225.0).view(1, 1, 15, 15)
    x = (levels + 0.5) / 255  # floor(x * 255) is the level: each pixel's own
    out = corrupt(x.expand(8, 1, 15, 15), "glass_blur", 1, generator=gen(0))
    src = (out * 255).round().long()
    assert torch.allclose(out * 255, src.float(), atol=1e-3)  # whole levels
    rows, cols = src // 15, src % 15
    i = torch.arange(15).view(15, 1).expand(15, 15)
    j = torch.arange(15).view(1, 15).expand(15, 15)
    dy, dx = rows[:, 0] - i, cols[:, 0] - j
    edge = (i < 2) | (j < 2)
    assert bool((dy[:, edge] == 0).all() and (dx[:, edge] == 0).all())  # never visited
    inner_dy, inner_dx = dy[:, ~edge], dx[:, ~edge]
    assert set(inner_dy.unique().tolist()) == {-1, 0}
    assert set(inner_dx.unique().tolist()) == {-1, 0}
    assert bool((inner_dy != inner_dx).any())


class _PixelScore(torch.nn.Module):
    """Class 0's logit is ``sign`` times pixel (3, 3); class 1's its negative."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign

    def forward(self, x):
        v = self.sign * x[:, 0, 3, 3]
        return torch.stack([v, -v], dim=1)


def test_class_model_step_is_a_clipped_normalized_ascent_then_a_gaussian_blur():
    # One step at the defaults (no jitter), blurred: the images for +pixel and -pixel share the
    # start and the small-pixel reset, so their difference is the two
    # ascents alone: 2 * lr * grad_clip (the RMS-normalized gradient is 8 at the pixel,
    # clipped to 3) * (1 - l2_decay), blurred by a 3x3 Gaussian of std 0.5 (radius
    # ceil(2 sigma) = 1). M01 (radius 3 sigma), M02 (exp(-t^2/sigma^2)), M08 (the norm,
    # not the RMS), M09 (no clip), M10 (1 + l2_decay), M11 (95 % of pixels reset), M17
    # (start at 0)
    from lightning_viz.functional.class_model import class_model

    def image(sign):
        model = _PixelScore(sign)
        return class_model(model, [0], (1, 8, 8), steps=1, blur_every=1, jitter=0)[0, 0]

    diff = image(1.0) - image(-1.0)
    e = math.exp(-0.5 * (1 / 0.5) ** 2)
    w = torch.tensor([e, 1.0, e]) / (1 + 2 * e)
    expect = torch.zeros(8, 8)
    expect[2:5, 2:5] = 2 * 0.05 * 3.0 * (1 - 0.01) * torch.outer(w, w)
    torch.testing.assert_close(diff, expect, atol=1e-6, rtol=0)


# ------------------------------------------------------------- CIFAR elastic
def _elastic_of_a_ramp(severity: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``elastic_transform`` of ``n`` 32x32 ramp images (channel 0 = column, 1 = row, so
    each output pixel says where it was read from), in float64, and the inner pixels'
    ``(column, row, 1)`` rows for a least-squares affine fit."""
    h = w = 32
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    ramp = torch.stack([cols / (w - 1), rows / (h - 1), torch.zeros(h, w)])[None].float()
    out = corrupt(ramp.expand(n, 3, h, w), "elastic_transform", severity, generator=gen(0))
    inner = slice(6, -6)  # away from the reflected border
    a = torch.stack([cols[inner, inner].flatten(), rows[inner, inner].flatten()], 1)
    return out.double(), torch.cat([a, torch.ones(len(a), 1, dtype=torch.float64)], 1)


def test_cifar_elastic_severity_1_is_an_affine_map_jittering_the_anchors_by_up_to_8_percent():
    # make_cifar_c.py severity 1: alpha 0 (no elastic part), the three anchors
    # (centre +- side // 3) moved by U(-0.08 side, 0.08 side) each: the image is warped by
    # that affine map. On a ramp image (channel 0 = column, 1 = row) the source of every
    # pixel is read back, the map fitted and the anchors' moves recovered.
    # C49 (anchors at side // 4), C50 (moves in [0, 0.08 side) only)
    h = w = 32
    inner = slice(6, -6)  # away from the reflected border
    out, a = _elastic_of_a_ramp(1, 100)
    src_c, src_r = out[:, 0] * (w - 1), out[:, 1] * (h - 1)
    anchors = torch.tensor([[26.0, 26.0], [26.0, 6.0], [6.0, 6.0]], dtype=torch.float64)
    moves = []
    for sc, sr in zip(src_c, src_r, strict=True):
        b = torch.stack([sc[inner, inner].flatten(), sr[inner, inner].flatten()], 1)
        inv = torch.linalg.lstsq(a, b).solution.T  # (2, 3): destination -> source
        inv = torch.cat([inv, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)])
        fwd = torch.linalg.inv(inv)
        moves.append(anchors @ fwd[:2, :2].T + fwd[:2, 2] - anchors)
    moves = torch.stack(moves)
    limit = 0.08 * 32
    assert moves.abs().max().item() <= limit + 1e-3
    assert abs(moves.mean().item()) < 0.2
    assert 0.85 < moves.std().item() / (limit / math.sqrt(3)) < 1.15  # uniform


def test_cifar_elastic_displacement_is_alpha_times_smoothed_unit_uniform_noise():
    # make_cifar_c.py severity 5: displacement alpha * gaussian(U(-1, 1), sigma), alpha
    # 0.1 * 32 = 3.2 px, sigma 0.03 * 32 = 0.96 px (truncate 3): its std is
    # alpha / sqrt(3) * sum(k^2) for the 1-D kernel k. On a ramp image the part of the
    # source column no affine map explains is that displacement. C51 (U(-0.5, 0.5))
    w = 32
    inner = slice(6, -6)  # away from the reflected border
    out, a = _elastic_of_a_ramp(5, 50)
    residuals = []
    for img in out:
        b = (img[0] * (w - 1))[inner, inner].flatten()[:, None]
        residuals.append(b - a @ torch.linalg.lstsq(a, b).solution)
    t = torch.arange(-3, 4, dtype=torch.float64)  # radius int(3 * 0.96 + 0.5) = 3
    k = torch.exp(-(t**2) / (2 * 0.96**2))
    k = k / k.sum()
    expect = 3.2 / math.sqrt(3) * float((k**2).sum())
    assert 0.9 < torch.cat(residuals).std().item() / expect < 1.1


def test_snow_layer_is_on_8_bit_levels():
    # the reference rounds the blurred snow layer to 8 bits (np.uint8 of round(255 v)):
    # on black (CIFAR severity 1: base 0.05 * 0.5) every unclipped value is the base plus
    # whole levels. C37 (the rounding dropped)
    out = corrupt(torch.zeros(4, 3, 32, 32), "snow", 1, generator=gen(0)).double()
    snow = (out[out < 1] - 0.025) * 255
    assert bool((snow - snow.round()).abs().max() < 1e-3)
    assert bool((snow > 0.5).any())  # some snow fell


def test_class_model_start_is_the_centre_plus_a_hundredth_of_the_generators_noise():
    # docs: "starting from center + 0.01 * noise"; steps=0 returns the start. M05 (0.1)
    from lightning_viz.functional.class_model import class_model

    out = class_model(_PixelScore(1.0), [0, 1], (1, 8, 8), steps=0, generator=gen(2))
    noise = torch.randn((2, 1, 8, 8), generator=gen(2))
    torch.testing.assert_close(out, (0.5 + 0.01 * noise).clamp(0, 1), atol=1e-7, rtol=0)


def test_class_model_jitter_reaches_both_ends_of_its_range():
    # docs: "rolled by a random shift in [-jitter, jitter]": over 60 steps the pixel the
    # model reads, (3, 3) of the rolled image, is each of the 3 x 3 pixels around (3, 3)
    # of the image. M06 (shifts in [-jitter, jitter))
    from lightning_viz.functional.class_model import class_model

    start = class_model(_PixelScore(1.0), [0], (1, 8, 8), steps=0, generator=gen(0))
    options = {"l2_decay": 0.0, "pixel_clip": 0.0, "blur_every": 0, "jitter": 1}
    out = class_model(_PixelScore(1.0), [0], (1, 8, 8), steps=60, generator=gen(0), **options)
    moved = ((out - start)[0, 0].abs() > 1e-6).nonzero().tolist()
    assert moved == [[i, j] for i in (2, 3, 4) for j in (2, 3, 4)]


def test_jpeg_quantizes_to_the_nearest_8_bit_level():
    # images between 8-bit levels are rounded to the nearest one before PIL compresses
    # them (as the clean image's PNG/uint8 form would be). C46 (floored)
    levels = torch.arange(64.0).view(1, 1, 8, 8) * 3 + 20
    x = levels.expand(1, 3, 8, 8) / 255
    ours = corrupt(x + 0.6 / 255, "jpeg_compression", 1)
    assert torch.equal(ours, corrupt(x + 1 / 255, "jpeg_compression", 1))


# ------------------------------------------------------------ CorruptionProbe
def test_corruption_examples_caption_the_first_images_clean_prediction(monkeypatch):
    # the grid shows probe image 0: its clean caption is image 0's prediction. K08
    # (ctx.predicted[-1]); the callback tests' probes are predicted alike throughout
    from types import SimpleNamespace

    from lightning_viz.callbacks import corruption as cm

    seen = _captions_seen(monkeypatch, cm)
    cb = lv.CorruptionProbe(corruptions=("contrast",))
    x = torch.rand(2, 3, 8, 8, generator=gen(0))
    ctx = SimpleNamespace(predicted=torch.tensor([1, 0]))
    cb._examples(ctx, x, torch.tensor([1, 0]), {"contrast": x[:1]}, {"contrast": 0})
    assert seen[-1][0].split("\n")[0] == "clean: 1", seen[-1]
