"""Common corruptions (Hendrycks & Dietterich 2019) in torch, on the images' device.

Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019, https://arxiv.org/abs/1903.12261

Fourteen of the fifteen corruptions of CIFAR-10-C / ImageNet-C (frost blends
photographs of frost that are not shipped; left out). Every corruption works on a
batch ``(N, C, H, W)`` of pixel-space images in ``[0, 1]``, draws random numbers only
from a private ``torch.Generator`` (one draw per image, so images are corrupted
independently) and, except JPEG (PIL on the CPU), runs on the images' device.

Parameters. Images whose shorter side is below 128 pixels get the CIFAR-10-C table
(``make_cifar_c.py`` of the paper's repository), larger ones the ImageNet-C table
(``make_imagenet_c.py``, as packaged by ``imagecorruptions``). Nothing is
interpolated between the two tables: a parameter that is a length in pixels (blur
radii, zoom factors, glass-blur displacement, snow and motion-blur radii) is used as
published, at the image size at hand; the fog map is drawn at the next power of two
of the longer side and cropped, and the ImageNet elastic transform scales its
smoothing and displacement with the image side (as ``imagecorruptions`` does).
:data:`PARAMETERS` holds both tables.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_viz._checks import check_choice, check_generator, check_images, check_int, fail
from lightning_viz._guard import make_generator

__all__ = ["CORRUPTIONS", "PARAMETERS", "corrupt", "plasma_fractal"]

CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
LARGE = 128  # shorter side from which the ImageNet-C table applies


def _zooms(stop: float, step: float) -> tuple[float, ...]:
    return tuple(float(v) for v in np.arange(1, stop, step))


#: Severity parameters per table (``"cifar"``, ``"imagenet"``), corruption and severity 1..5.
PARAMETERS: dict[str, dict[str, tuple]] = {
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # std
        "shot_noise": (500, 250, 100, 75, 50),  # photons per unit intensity
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # salt-and-pepper share
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # radius, alias
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma
        "zoom_blur": tuple(_zooms(s, 0.01) for s in (1.06, 1.11, 1.16, 1.21, 1.26)),
        "snow": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # strength, decay
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        # alpha, sigma, affine (multiples of the side, 32 px in make_cifar_c)
        "elastic_transform": (
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        ),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
    },
    "imagenet": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": (
            _zooms(1.11, 0.01),
            _zooms(1.16, 0.01),
            _zooms(1.21, 0.02),
            _zooms(1.26, 0.02),
            _zooms(1.31, 0.03),
        ),
        "snow": (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
        "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        # alpha (displacement gain); sigma = 0.01 side, max displacement 0.005 side
        "elastic_transform": tuple(250 * a for a in (0.05, 0.065, 0.085, 0.1, 0.12)),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
    },
}


def table_for(height: int, width: int) -> str:
    """``"imagenet"`` when the shorter side is at least 128 pixels, else ``"cifar"``."""
    return "imagenet" if min(height, width) >= LARGE else "cifar"


# --------------------------------------------------------------------- helpers
_UNFOLD_BYTES = 2**27  # at most this much unfolded input per convolution


def _index(n: int, pad: int, mode: str, device: torch.device) -> Tensor:
    """Source indices of a padded axis: ``"reflect101"`` (d c b | a b c d), ``"symmetric"``
    (b a | a b c d) or ``"edge"`` (a a | a b c d), for any pad (also wider than ``n``)."""
    i = torch.arange(-pad, n + pad, device=device)
    if mode == "edge" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "symmetric":
        period = 2 * n
        i = i % period
        return torch.where(i >= n, period - 1 - i, i)
    period = 2 * (n - 1)
    i = i % period
    return torch.where(i >= n, period - i, i)


def _pad(x: Tensor, ph: int, pw: int, mode: str) -> Tensor:
    x = x.index_select(-2, _index(x.shape[-2], ph, mode, x.device))
    return x.index_select(-1, _index(x.shape[-1], pw, mode, x.device))


def _filter2d(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Correlation of every channel of ``(N, C, H, W)`` with ``kernel`` ``(kh, kw)`` (odd),
    a few planes at a time: a float64 convolution on the CPU unfolds its input to
    ``kh * kw`` values per pixel (the 21x21 defocus disk of 64 images of 224 px: 34 GB)."""
    kh, kw = kernel.shape
    n, c, h, w = x.shape
    planes = x.reshape(n * c, 1, h, w)
    step = max(1, _UNFOLD_BYTES // (kh * kw * h * w * x.element_size()))
    k = kernel.to(x)[None, None]
    out = [F.conv2d(_pad(p, kh // 2, kw // 2, mode), k) for p in planes.split(step)]
    return torch.cat(out).reshape(n, c, h, w)


def _gauss1d(sigma: float, radius: int, device: torch.device) -> Tensor:
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def _gaussian_filter(
    x: Tensor, sigma: float | tuple[float, float], mode: str = "edge", truncate: float = 4.0
) -> Tensor:
    """``scipy.ndimage.gaussian_filter`` per channel (skimage's ``gaussian``; ``mode`` as
    :func:`_index`; ``"edge"`` is scipy's ``"nearest"``, ``"symmetric"`` its ``"reflect"``).
    ``sigma``: one for both axes, or ``(rows, columns)``."""
    sy, sx = (sigma, sigma) if isinstance(sigma, int | float) else sigma
    for s, shape in ((sx, (1, -1)), (sy, (-1, 1))):  # along the rows, then the columns
        if s > 0:
            x = _filter2d(x, _gauss1d(s, int(truncate * s + 0.5), x.device).view(shape), mode)
    return x


def _rgb_to_gray(x: Tensor) -> Tensor:
    """ITU-R 601 luma ``(N, 1, H, W)`` (OpenCV's RGB2GRAY); the channel mean otherwise."""
    if x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
        return (x * w.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return x.mean(dim=1, keepdim=True)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> Tensor:
    u = torch.rand(n, generator=gen, device=gen.device, dtype=torch.float64)
    return (low + (high - low) * u).to(device)


# ------------------------------------------------------------------------ noise
def _gaussian_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=torch.float32)
    return (x + c * noise.to(x)).clamp(0, 1)  # the same draws for every image dtype


def _shot_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    rate = (x * c).to(gen.device, torch.float32)
    return (torch.poisson(rate, generator=gen).to(x) / c).clamp(0, 1)


def _impulse_noise(x: Tensor, c: float, gen: torch.Generator) -> Tensor:
    """Salt and pepper (skimage ``random_noise(mode="s&p")``): a share ``c`` of the
    values (per channel) set to 0 or 1 with probability 1/2 each."""
    hit = torch.rand(x.shape, generator=gen, device=gen.device, dtype=torch.float32) < c
    salt = torch.rand(x.shape, generator=gen, device=gen.device, dtype=torch.float32) < 0.5
    hit, salt = hit.to(x.device), salt.to(x.device)
    return torch.where(hit, salt.to(x.dtype), x)


# ------------------------------------------------------------------------- blur
def disk_kernel(radius: float, alias_blur: float, device: torch.device | str = "cpu") -> Tensor:
    """The defocus kernel of ImageNet-C: a disk of ``radius`` on a grid of ``-8..8``
    (``-r..r`` above 8), normalized, then Gaussian-blurred with a 3x3 (5x5 above 8)
    kernel of std ``alias_blur`` (OpenCV's ``GaussianBlur``, reflect-101 border)."""
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    t = torch.arange(-half, half + 1, dtype=torch.float64, device=device)
    disk = ((t.view(-1, 1) ** 2 + t.view(1, -1) ** 2) <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    g = _gauss1d(alias_blur, ksize // 2, torch.device(device))
    k = _filter2d(disk[None, None], g.view(1, -1), "reflect101")
    k = _filter2d(k, g.view(-1, 1), "reflect101")[0, 0]
    # trim all-zero border rows/columns (symmetric), so small images need little padding
    nz = (k.abs() > 0).any(dim=0).nonzero()
    r = int(max(half - int(nz.min()), int(nz.max()) - half)) if nz.numel() else 0
    return k[half - r : half + r + 1, half - r : half + r + 1]


def _defocus_blur(x: Tensor, c: tuple[float, float]) -> Tensor:
    k = disk_kernel(c[0], c[1], x.device)
    return _filter2d(x.double(), k, "reflect101").to(x.dtype).clamp(0, 1)


def _motion_offsets(radius: int, angle: float, h: int, w: int) -> list[tuple[int, int]]:
    """The ``(dy, dx)`` shifts of ``imagecorruptions``' motion blur along ``angle``."""
    width = 2 * radius + 1
    py, px = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    hyp = math.hypot(py, px)
    out = []
    for i in range(width):
        dy = -math.ceil(i * py / hyp - 0.5)
        dx = -math.ceil(i * px / hyp - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break
        out.append((dy, dx))
    return out


def _motion_blur_one(x: Tensor, radius: int, sigma: float, angle: float) -> Tensor:
    """Motion blur of one image ``(C, H, W)``: a Gaussian-weighted (std ``sigma``) sum of
    copies shifted along ``angle`` (degrees), edges replicated."""
    _, h, w = x.shape
    width = 2 * radius + 1
    t = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(t**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).tolist()
    out = torch.zeros_like(x)
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    for i, (dy, dx) in enumerate(_motion_offsets(radius, angle, h, w)):
        src = x.index_select(1, (rows - dy).clamp(0, h - 1))
        out = out + weights[i] * src.index_select(2, (cols - dx).clamp(0, w - 1))
    return out


def _motion_blur(x: Tensor, c: tuple[int, float], gen: torch.Generator) -> Tensor:
    angles = _uniform(x.shape[0], -45.0, 45.0, gen, torch.device("cpu")).tolist()
    out = [_motion_blur_one(img, int(c[0]), c[1], a) for img, a in zip(x, angles, strict=True)]
    return torch.stack(out).clamp(0, 1)


def _clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """Centre crop of ``1 / factor`` of the image zoomed back by ``factor`` (linear,
    corners aligned as ``scipy.ndimage.zoom(order=1)``), top-left ``H x W`` kept."""
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    size = (max(round(ch * factor), h), max(round(cw * factor), w))
    out = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    return out[..., :h, :w]


def _zoom_blur(x: Tensor, c: tuple[float, ...]) -> Tensor:
    out = x.clone()
    for factor in c:
        out = out + _clipped_zoom(x, factor)
    return (out / (len(c) + 1)).clamp(0, 1)


def _glass_blur(x: Tensor, c: tuple[float, int, int], gen: torch.Generator) -> Tensor:
    """Gaussian blur, 8-bit rounding, local pixel shuffling, Gaussian blur again.

    The shuffle visits every pixel from the bottom-right corner (inside a border of
    ``delta``) and copies into it the pixel at a random offset in ``[-delta, delta)``,
    as the reference code does for colour images (its tuple "swap" of numpy views
    copies one way). The offsets are drawn per image; the loop is batched over images.
    """
    sigma, delta, iterations = c
    n, _, h, w = x.shape
    y = torch.floor(_gaussian_filter(x, sigma) * 255) / 255
    batch = torch.arange(n, device=x.device)
    for _ in range(iterations):
        coords = [(i, j) for i in range(h - delta, delta, -1) for j in range(w - delta, delta, -1)]
        if not coords:
            break
        d = torch.randint(-delta, delta, (len(coords), n, 2), generator=gen, device=gen.device)
        d = d.to(x.device)
        for k, (i, j) in enumerate(coords):
            src_i = (i + d[k, :, 1]).clamp(0, h - 1)
            src_j = (j + d[k, :, 0]).clamp(0, w - 1)
            y[:, :, i, j] = y[batch, :, src_i, src_j]
    return _gaussian_filter(y, sigma).clamp(0, 1)


# ---------------------------------------------------------------------- weather
def plasma_fractal(
    n: int, mapsize: int, decay: float, generator: torch.Generator, device: torch.device | str
) -> Tensor:
    """``n`` diamond-square height maps ``(n, mapsize, mapsize)`` in ``[0, 1]``
    (ImageNet-C's fog field; ``mapsize`` a power of two, ``decay`` its ``wibbledecay``)."""
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    m = torch.zeros(n, mapsize, mapsize, dtype=torch.float64, device=generator.device)
    step, wibble = mapsize, 100.0

    def wibbled(a: Tensor) -> Tensor:
        u = torch.rand(a.shape, generator=generator, device=generator.device, dtype=a.dtype)
        return a / 4 + wibble * (2 * u - 1) * wibble

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + corner.roll(-1, dims=1)
        sq = sq + sq.roll(-1, dims=2)
        m[:, half::step, half::step] = wibbled(sq)
        dr = m[:, half::step, half::step]
        ul = m[:, 0::step, 0::step]
        lt = dr + dr.roll(1, dims=1) + ul + ul.roll(-1, dims=2)
        m[:, 0::step, half::step] = wibbled(lt)
        tt = dr + dr.roll(1, dims=2) + ul + ul.roll(-1, dims=1)
        m[:, half::step, 0::step] = wibbled(tt)
        step //= 2
        wibble /= decay
    flat = m.flatten(1)
    m = m - flat.min(dim=1).values.view(-1, 1, 1)
    m = m / m.flatten(1).max(dim=1).values.view(-1, 1, 1)
    return m.to(device)


def _fog_apply(x: Tensor, field: Tensor, strength: float) -> Tensor:
    """Adds ``strength * field`` ``(N, H, W)`` to every channel, rescales by the image's
    maximum ``m`` as ``m / (m + strength)``, clamps to ``[0, 1]``."""
    peak = x.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    y = x + strength * field[:, None].to(x)
    return (y * peak / (peak + strength)).clamp(0, 1)


def _fog(x: Tensor, c: tuple[float, float], gen: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    size = 1 << max(int(max(h, w)) - 1, 1).bit_length()
    field = plasma_fractal(x.shape[0], size, c[1], gen, x.device)[:, :h, :w]
    return _fog_apply(x, field, c[0])


def _snow(x: Tensor, c: tuple, gen: torch.Generator) -> Tensor:
    loc, scale, zoom, thresh, radius, sigma, keep = c
    n, _, h, w = x.shape
    layer = torch.randn((n, 1, h, w), generator=gen, device=gen.device, dtype=torch.float64)
    layer = (loc + scale * layer).to(x.device)
    layer = _clipped_zoom(layer, zoom)
    layer = torch.where(layer < thresh, torch.zeros_like(layer), layer).clamp(0, 1)
    angles = _uniform(n, -135.0, -45.0, gen, torch.device("cpu")).tolist()
    layer = torch.stack(
        [_motion_blur_one(img, int(radius), sigma, a) for img, a in zip(layer, angles, strict=True)]
    )
    layer = (torch.round(layer * 255) / 255).to(x.dtype)
    gray = _rgb_to_gray(x)
    y = keep * x + (1 - keep) * torch.maximum(x, gray * 1.5 + 0.5)
    return (y + layer + layer.flip(-1, -2)).clamp(0, 1)


def _brightness(x: Tensor, c: float) -> Tensor:
    """``V + c`` in HSV with hue and saturation kept: RGB scaled by ``V' / V`` (grey
    ``V'`` where ``V = 0``); images without three channels get ``x + c``."""
    if x.shape[1] != 3:
        return (x + c).clamp(0, 1)
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    scaled = x * (v_new / v.clamp_min(1e-12))
    return torch.where(v > 0, scaled, v_new.expand_as(x)).clamp(0, 1)


# ---------------------------------------------------------------------- digital
def _contrast(x: Tensor, c: float) -> Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp(0, 1)


def _box_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """PIL's ``BOX`` resampling ``(n_out, n_in)``: output ``i`` averages the input pixels
    whose centres lie in ``(i s, (i + 1) s]``, ``s = n_in / n_out``, decided in PIL's
    own floating-point steps (a centre exactly on a boundary belongs to the box below
    it); when enlarging, the one pixel under the output centre as PIL's ``NEAREST``
    finds it: the centre stepped by ``s`` in floating point from ``s / 2``, so a centre
    on a pixel edge falls on the side the rounding puts it."""
    scale = n_in / n_out
    if scale <= 1:
        centre, src = 0.5 * scale, []
        for _ in range(n_out):
            src.append(int(centre))
            centre += scale
        m = F.one_hot(torch.tensor(src).clamp(0, n_in - 1), n_in).double()
    else:  # Pillow's precompute_coeffs with the box filter (support 0.5 * scale)
        centre = (torch.arange(n_out, dtype=torch.float64).view(-1, 1) + 0.5) * scale
        support = 0.5 * scale
        first = torch.floor(centre - support + 0.5).clamp_min(0)
        stop = torch.floor(centre + support + 0.5).clamp_max(n_in)
        k = torch.arange(n_in, dtype=torch.float64)
        arg = (k - centre + 0.5) * (1.0 / scale)
        m = ((arg > -0.5) & (arg <= 0.5) & (k >= first) & (k < stop)).double()
        m = m / m.sum(dim=1, keepdim=True).clamp_min(1)
    return m.to(device=device, dtype=dtype)


def _pixelate(x: Tensor, c: float) -> Tensor:
    h, w = x.shape[-2:]
    sh, sw = max(int(h * c), 1), max(int(w * c), 1)
    rows_down, cols_down = (
        _box_matrix(h, sh, x.device, x.dtype),
        _box_matrix(w, sw, x.device, x.dtype),
    )
    rows_up, cols_up = _box_matrix(sh, h, x.device, x.dtype), _box_matrix(sw, w, x.device, x.dtype)
    small = rows_down @ x @ cols_down.T
    return (rows_up @ small @ cols_up.T).clamp(0, 1)


def _jpeg(x: Tensor, quality: int) -> Tensor:
    """JPEG at ``quality`` through PIL on the CPU (8-bit images; one or three channels
    as grey or RGB, other channel counts one grey image per channel)."""
    from PIL import Image

    arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    out = np.empty(arr.shape, dtype=np.float32)
    for i, img in enumerate(arr):
        planes = [img.transpose(1, 2, 0)] if img.shape[0] == 3 else [p for p in img]
        decoded = []
        for plane in planes:
            buf = io.BytesIO()
            Image.fromarray(plane).save(buf, "JPEG", quality=int(quality))
            buf.seek(0)
            decoded.append(np.asarray(Image.open(buf), dtype=np.float32))
        out[i] = decoded[0].transpose(2, 0, 1) if img.shape[0] == 3 else np.stack(decoded)
    return torch.from_numpy(out / 255.0).to(device=x.device, dtype=x.dtype)


def _affine_from_points(src: Tensor, dst: Tensor) -> Tensor:
    """The ``(2, 3)`` affine map taking three points ``src`` ``(3, 2)`` (x, y) to ``dst``."""
    a = torch.cat([src, torch.ones(3, 1, dtype=src.dtype)], dim=1)  # (3, 3)
    return torch.linalg.solve(a, dst).T


def _sample(x: Tensor, rows: Tensor, cols: Tensor, mode: str) -> Tensor:
    """Bilinear sample of ``x`` ``(N, C, H, W)`` at pixel coordinates ``rows``/``cols``
    ``(N, H, W)``; outside, ``"symmetric"`` (scipy ``reflect``) or ``"reflect101"``."""
    h, w = x.shape[-2:]
    if mode == "symmetric":  # reflection about the image edges
        gx = (2 * cols + 1) / w - 1
        gy = (2 * rows + 1) / h - 1
        align = False
    else:  # reflection about the outer pixel centres
        gx = 2 * cols / max(w - 1, 1) - 1
        gy = 2 * rows / max(h - 1, 1) - 1
        align = True
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=align)


def _elastic(x: Tensor, table: str, c: object, gen: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    rows, cols = rows.to(x.device), cols.to(x.device)
    if table == "cifar":  # make_cifar_c: a random affine map, then a smooth displacement
        alpha, sigma, affine = (v * min(h, w) for v in c)  # type: ignore[union-attr]
        centre = torch.tensor([w // 2, h // 2], dtype=torch.float64)
        size = min(h, w) // 3
        pts = torch.stack(
            [centre + size, torch.stack([centre[0] + size, centre[1] - size]), centre - size]
        )
        warped = []
        for img in x:
            jitter = torch.rand((3, 2), generator=gen, device=gen.device, dtype=torch.float64)
            m = _affine_from_points(pts, pts + (2 * jitter.cpu() - 1) * affine)
            inv = torch.linalg.inv(torch.cat([m, torch.tensor([[0.0, 0.0, 1.0]], dtype=m.dtype)]))
            inv = inv.to(x.device)
            src_c = inv[0, 0] * cols + inv[0, 1] * rows + inv[0, 2]
            src_r = inv[1, 0] * cols + inv[1, 1] * rows + inv[1, 2]
            warped.append(_sample(img[None], src_r[None], src_c[None], "reflect101")[0])
        x = torch.stack(warped)
        gain, max_d, smooth = alpha, 1.0, sigma
    else:  # imagecorruptions: sigma 0.01 of each axis' side, displacement 0.005 height
        gain, max_d, smooth = float(c), 0.005 * h, (0.01 * h, 0.01 * w)  # type: ignore[arg-type]
    u = torch.rand((n, 2, h, w), generator=gen, device=gen.device, dtype=torch.float64)
    u = ((2 * u - 1) * max_d).to(x.device)
    disp = _gaussian_filter(u, smooth, "symmetric", truncate=3.0) * gain
    dx, dy = disp[:, 0], disp[:, 1]
    return _sample(x, rows + dy, cols + dx, "symmetric").clamp(0, 1)


# ------------------------------------------------------------------------ public
def corrupt(
    images: Tensor,
    name: str,
    severity: int,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Applies one of Hendrycks & Dietterich's common corruptions at one severity.

    ``name`` is one of :data:`CORRUPTIONS`: noise (``gaussian_noise``, ``shot_noise``
    (Poisson), ``impulse_noise`` (salt and pepper)), blur (``defocus_blur`` (disk
    kernel), ``glass_blur`` (local pixel shuffling between two Gaussian blurs),
    ``motion_blur`` (random angle in [-45, 45] degrees), ``zoom_blur``), weather
    (``snow``, ``fog`` (diamond-square field), ``brightness`` (HSV value)), digital
    (``contrast``, ``elastic_transform``, ``pixelate`` (box down, nearest up),
    ``jpeg_compression`` (PIL, CPU)).

    Parameters: the CIFAR-10-C table for images whose shorter side is below 128
    pixels, the ImageNet-C table from 128 pixels (:data:`PARAMETERS`; nothing is
    interpolated between the two, pixel lengths are used as published; see the
    module docstring). Random draws (noise, shuffles, angles, fields) come from
    ``generator`` only, one draw per image.

    Hendrycks and Dietterich, ICLR 2019, https://arxiv.org/abs/1903.12261

    Args:
        images: Pixel-space images ``(N, C, H, W)`` in ``[0, 1]``, floating point.
        name: The corruption, one of :data:`CORRUPTIONS`.
        severity: ``1`` (mildest) to ``5``.
        generator: Private random generator; ``None`` uses a fresh one seeded with 0
            on the images' device. Default: ``None``.

    Returns:
        Corrupted images ``(N, C, H, W)`` in ``[0, 1]``, detached, on the images'
        device and dtype.

    Raises:
        TypeError: ``images`` not a floating-point tensor, ``severity`` not an int,
            ``generator`` not a ``torch.Generator``.
        ValueError: ``images`` not 4-D, unknown ``name``, ``severity`` outside 1..5,
            ``elastic_transform`` of images under 3 px on a side.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> corrupt(x, "contrast", 5).std() < x.std()
        tensor(True)
    """
    x = check_images(images, "images", unit_range=True).detach()
    check_choice(name, "name", CORRUPTIONS)
    sev = check_int(severity, "severity", minimum=1, maximum=5)
    check_generator(generator)
    gen = generator if generator is not None else make_generator(0, x.device)
    if name == "elastic_transform" and min(x.shape[-2:]) < 3:  # its 3 anchors would coincide
        fail("images", "images at least 3 px on each side for elastic_transform", tuple(x.shape))
    table = table_for(*x.shape[-2:])
    c = PARAMETERS[table][name][sev - 1]
    dtype = x.dtype
    x = x.float() if dtype in (torch.float16, torch.bfloat16) else x
    with torch.no_grad():
        out = _dispatch(x, name, table, c, gen)
    return out.to(dtype).detach()


def _dispatch(x: Tensor, name: str, table: str, c: object, gen: torch.Generator) -> Tensor:
    simple = {
        "gaussian_noise": lambda: _gaussian_noise(x, c, gen),
        "shot_noise": lambda: _shot_noise(x, c, gen),
        "impulse_noise": lambda: _impulse_noise(x, c, gen),
        "defocus_blur": lambda: _defocus_blur(x, c),
        "glass_blur": lambda: _glass_blur(x, c, gen),
        "motion_blur": lambda: _motion_blur(x, c, gen),
        "zoom_blur": lambda: _zoom_blur(x, c),
        "snow": lambda: _snow(x, c, gen),
        "fog": lambda: _fog(x, c, gen),
        "brightness": lambda: _brightness(x, c),
        "contrast": lambda: _contrast(x, c),
        "elastic_transform": lambda: _elastic(x, table, c, gen),
        "pixelate": lambda: _pixelate(x, c),
        "jpeg_compression": lambda: _jpeg(x, c),
    }
    return simple[name]()  # type: ignore[no-untyped-call]
