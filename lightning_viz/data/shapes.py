"""Procedurally drawn shapes with textures and backgrounds: a controlled bias experiment.

Every image shows one shape (the class) filled with one texture on one background.
``texture_correlation`` and ``background_correlation`` decide how often texture and
background agree with the class, so a model can be given a texture or background
shortcut on purpose, and the bias probes (saliency-in-mask, cue-conflict shape bias)
can be checked against a known ground truth. Everything is drawn with numpy from a
seed: no download, no global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_viz._checks import check_float, check_int, fail
from lightning_viz.data._loaders import SeededDataModule

__all__ = [
    "BACKGROUND_NAMES",
    "MAX_CLASSES",
    "SHAPE_NAMES",
    "TEXTURE_NAMES",
    "ShapesTexturesDataModule",
    "ShapesTexturesDataset",
    "draw_shapes",
]

SHAPE_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "diamond",
    "ring",
    "hexagon",
)
TEXTURE_NAMES: tuple[str, ...] = (
    "hstripes",
    "checker",
    "dots",
    "diagonal",
    "grid",
    "vstripes",
    "waves",
    "speckle",
)
BACKGROUND_NAMES: tuple[str, ...] = (
    "dark_grey",
    "tan",
    "slate",
    "moss",
    "mauve",
    "light_grey",
    "brown",
    "dark_teal",
)
MAX_CLASSES = len(SHAPE_NAMES)

# (foreground, background) colour of each texture: high contrast, all pairs distinct.
_TEXTURE_COLOURS = np.array(
    [
        [(0.90, 0.10, 0.10), (1.00, 0.90, 0.20)],  # hstripes: red / yellow
        [(0.10, 0.20, 0.90), (1.00, 1.00, 1.00)],  # checker: blue / white
        [(0.20, 0.95, 0.20), (0.05, 0.05, 0.05)],  # dots: lime on black
        [(0.90, 0.10, 0.80), (0.10, 0.90, 0.90)],  # diagonal: magenta / cyan
        [(1.00, 0.55, 0.00), (0.05, 0.10, 0.40)],  # grid: orange lines on navy
        [(1.00, 1.00, 1.00), (0.45, 0.10, 0.60)],  # vstripes: white / purple
        [(1.00, 0.60, 0.70), (0.00, 0.35, 0.15)],  # waves: pink / dark green
        [(0.85, 0.85, 0.85), (0.50, 0.10, 0.05)],  # speckle: light grey / red-brown
    ],
    dtype=np.float32,
)  # (8, 2, 3)

# Muted base colour of each background; a linear gradient in direction k * 45 deg is added.
_BACKGROUND_COLOURS = np.array(
    [
        (0.25, 0.25, 0.25),
        (0.60, 0.50, 0.35),
        (0.25, 0.35, 0.50),
        (0.35, 0.50, 0.30),
        (0.50, 0.30, 0.40),
        (0.62, 0.62, 0.62),
        (0.35, 0.22, 0.15),
        (0.12, 0.30, 0.30),
    ],
    dtype=np.float32,
)  # (8, 3)
_GRADIENT_AMPLITUDE = 0.12
_NOISE_STD = 0.02

# Shape geometry in unit coordinates (bounding radius about 1, y pointing down).
_MIN_RADIUS, _MAX_RADIUS = 0.20, 0.35  # fraction of the image side: 40-70 % diameter
_MAX_ROTATION = math.radians(15.0)
_SUPERSAMPLE = 2


def _star(points: int, inner: float) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(a: float, b: float) -> np.ndarray:
    """A "+" with arm half-width ``a`` and arm extent ``b``."""
    return np.array(
        [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a)]
        + [(a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
    )


_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([(-0.72, -0.72), (0.72, -0.72), (0.72, 0.72), (-0.72, 0.72)]),
    "triangle": np.array([(0.0, -1.0), (0.866, 0.5), (-0.866, 0.5)]),
    "star": _star(5, 0.45),
    "cross": _cross(0.3, 0.95),
    "diamond": np.array([(0.0, -1.0), (0.68, 0.0), (0.0, 1.0), (-0.68, 0.0)]),
    "hexagon": np.stack(
        [np.cos(np.arange(6) * math.pi / 3), np.sin(np.arange(6) * math.pi / 3)], axis=1
    ),
}


def _inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorized over any array of points."""
    inside = np.zeros(u.shape, dtype=bool)
    n = len(vertices)
    for i in range(n):
        x1, y1 = vertices[i]
        x2, y2 = vertices[(i + 1) % n]
        if y1 == y2:  # a horizontal edge never crosses a horizontal ray
            continue
        crosses = (y1 > v) != (y2 > v)
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside


def _shape_coverage(
    shapes: np.ndarray, centres: np.ndarray, radii: np.ndarray, angles: np.ndarray, size: int
) -> np.ndarray:
    """Fraction of each pixel covered by the shape, (N, H, W) in [0, 1] (2x2 supersampled)."""
    n, ss = len(shapes), _SUPERSAMPLE
    coords = (np.arange(size * ss, dtype=np.float32) + 0.5) / ss  # sub-pixel centres in px
    ys, xs = np.meshgrid(coords, coords, indexing="ij")  # (H*ss, W*ss)
    hit = np.zeros((n, size * ss, size * ss), dtype=bool)
    for k in np.unique(shapes):
        idx = np.nonzero(shapes == k)[0]
        dx = (xs[None] - centres[idx, 0, None, None]) / radii[idx, None, None]
        dy = (ys[None] - centres[idx, 1, None, None]) / radii[idx, None, None]
        cos, sin = np.cos(angles[idx])[:, None, None], np.sin(angles[idx])[:, None, None]
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotate into the shape's frame
        name = SHAPE_NAMES[k]
        if name == "circle":
            hit[idx] = u * u + v * v <= 1.0
        elif name == "ring":
            rho2 = u * u + v * v
            hit[idx] = (rho2 <= 1.0) & (rho2 >= 0.55**2)
        else:
            hit[idx] = _inside_polygon(u, v, _POLYGONS[name])
    return hit.reshape(n, size, ss, size, ss).mean(axis=(2, 4), dtype=np.float32)


def _frac(t: np.ndarray) -> np.ndarray:
    return t - np.floor(t)


def _pattern(
    name: str, x: np.ndarray, y: np.ndarray, period: float, speckle: np.ndarray
) -> np.ndarray:
    """One binary texture pattern at pixel coordinates ``x``, ``y`` (phase included)."""
    if name == "hstripes":
        return _frac(y / period) < 0.5
    if name == "checker":
        return (np.floor(2 * x / period) + np.floor(2 * y / period)) % 2 == 0
    if name == "dots":
        p = 1.25 * period
        return (_frac(x / p) - 0.5) ** 2 + (_frac(y / p) - 0.5) ** 2 < 0.32**2
    if name == "diagonal":
        return _frac((x + y) / (1.41 * period)) < 0.5
    if name == "grid":
        return (_frac(x / period) < 0.3) | (_frac(y / period) < 0.3)
    if name == "vstripes":
        return _frac(x / period) < 0.5
    if name == "waves":
        return _frac((y + 0.5 * period * np.sin(math.pi * x / period)) / period) < 0.5
    return speckle  # "speckle": random binary noise, drawn per image


def _texture_patterns(textures: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Binary texture pattern of each image, (N, H, W) bool, with a random phase."""
    n = len(textures)
    period = max(3.0, size / 8.0)
    phase = rng.uniform(0.0, 2.0 * period, size=(n, 2)).astype(np.float32)
    speckle = rng.random((n, size, size)) < 0.5
    coords = np.arange(size, dtype=np.float32) + 0.5
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    x = xs[None] + phase[:, 0, None, None]  # (N, H, W)
    y = ys[None] + phase[:, 1, None, None]
    out = np.zeros((n, size, size), dtype=bool)
    for k in np.unique(textures):
        idx = np.nonzero(textures == k)[0]
        out[idx] = _pattern(TEXTURE_NAMES[k], x[idx], y[idx], period, speckle[idx])
    return out


def _backgrounds(backgrounds: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Background of each image, (N, H, W, 3) float32: base colour + gradient + noise."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5  # [-0.5, 0.5]
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    angle = backgrounds.astype(np.float32) * (math.pi / 4)
    ramp = np.cos(angle)[:, None, None] * xs + np.sin(angle)[:, None, None] * ys  # (N, H, W)
    base = _BACKGROUND_COLOURS[backgrounds][:, None, None, :]  # (N, 1, 1, 3)
    noise = rng.normal(0.0, _NOISE_STD, size=(len(backgrounds), size, size, 3))
    return base + 2 * _GRADIENT_AMPLITUDE * ramp[..., None] + noise.astype(np.float32)


def _render(
    shapes: np.ndarray,
    textures: np.ndarray,
    backgrounds: np.ndarray,
    image_size: int,
    rng: np.random.Generator,
) -> tuple[Tensor, Tensor]:
    """Draws the given (shape, texture, background) triples with random geometry."""
    n = len(shapes)
    radii = rng.uniform(_MIN_RADIUS, _MAX_RADIUS, size=n) * image_size
    margin = 1.05 * radii + 0.5  # keeps the whole (rotated) shape inside the image
    centres = margin[:, None] + rng.random((n, 2)) * (image_size - 2 * margin)[:, None]
    angles = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION, size=n)
    alpha = _shape_coverage(shapes, centres, radii, angles, image_size)  # (N, H, W)
    pattern = _texture_patterns(textures, image_size, rng)  # (N, H, W)
    colours = _TEXTURE_COLOURS[textures]  # (N, 2, 3)
    fill = np.where(pattern[..., None], colours[:, None, None, 0], colours[:, None, None, 1])
    back = _backgrounds(backgrounds, image_size, rng)  # (N, H, W, 3)
    image = back * (1.0 - alpha[..., None]) + fill * alpha[..., None]
    image = np.clip(image, 0.0, 1.0).astype(np.float32).transpose(0, 3, 1, 2)  # (N, 3, H, W)
    masks = torch.from_numpy(np.ascontiguousarray(alpha >= 0.5)).unsqueeze(1)  # (N, 1, H, W)
    return torch.from_numpy(np.ascontiguousarray(image)), masks


def _as_index_array(values: Tensor | Sequence[int], name: str) -> np.ndarray:
    what = f"a list of ints or a 1-D integer tensor, in [0, {MAX_CLASSES - 1}]"
    if isinstance(values, Tensor):
        if values.dtype.is_floating_point or values.dtype == torch.bool or values.dim() != 1:
            fail(name, what, values, TypeError)
        array = values.detach().cpu().numpy().astype(np.int64)
    elif isinstance(values, Sequence) and not isinstance(values, str):
        if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
            fail(name, what, values, TypeError)
        array = np.asarray(values, dtype=np.int64).reshape(-1)
    else:
        fail(name, what, values, TypeError)
    if array.size and (array.min() < 0 or array.max() >= MAX_CLASSES):
        fail(name, what, values)
    return array


def draw_shapes(
    shapes: Tensor | Sequence[int],
    textures: Tensor | Sequence[int],
    backgrounds: Tensor | Sequence[int],
    image_size: int = 32,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Draws chosen (shape, texture, background) combinations.

    Uses the same drawing as :class:`ShapesTexturesDataModule`: texture ``k`` and
    background ``k`` are exactly the ones class ``k`` gets when the correlation is 1,
    so ``draw_shapes([a], [b], [b])`` is a directly drawn cue-conflict image (shape of
    class ``a`` with the texture of class ``b``). Size, position, rotation and
    texture phase are random from ``seed``; the geometry (and so the masks) depends
    only on ``seed``, the number of images and the shapes, not on the textures or
    backgrounds, so the same shapes can be redrawn with other cues.

    Args:
        shapes: Shape indices ``(N,)`` in ``[0, 7]`` (see ``SHAPE_NAMES``).
        textures: Texture indices ``(N,)`` in ``[0, 7]`` (see ``TEXTURE_NAMES``).
        backgrounds: Background indices ``(N,)`` in ``[0, 7]``.
        image_size: Side of the square images in pixels, at least 16. Default: ``32``.
        seed: Seed of the private numpy generator. Default: ``0``.

    Returns:
        ``(images, masks)``: images ``(N, 3, H, W)`` float32 in ``[0, 1]`` and object
        masks ``(N, 1, H, W)`` bool, on the CPU.

    Raises:
        TypeError: If an index argument is not a list of ints / 1-D integer tensor.
        ValueError: If indices are out of range, lengths differ or ``image_size < 16``.

    Examples:
        >>> images, masks = draw_shapes([0, 1], [1, 0], [1, 0])
        >>> images.shape, masks.shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 1, 32, 32]))
    """
    s = _as_index_array(shapes, "shapes")
    t = _as_index_array(textures, "textures")
    b = _as_index_array(backgrounds, "backgrounds")
    for name, array in (("textures", t), ("backgrounds", b)):
        if len(array) != len(s):
            fail(name, f"as long as `shapes` ({len(s)})", f"<{len(array)} indices>")
    check_int(image_size, "image_size", minimum=16)
    check_int(seed, "seed", minimum=0)
    return _render(s, t, b, image_size, np.random.default_rng(seed))


def _correlated(
    labels: np.ndarray, correlation: float, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """With probability ``correlation`` the label itself, else a uniform random index."""
    keep = rng.random(len(labels)) < correlation
    random = rng.integers(0, num_classes, size=len(labels))
    return np.where(keep, labels, random)


class ShapesTexturesDataset(Dataset):
    """Precomputed images with their labels, masks and per-item texture/background.

    Attributes:
        images: ``(N, 3, H, W)`` float32 in ``[0, 1]``.
        labels: ``(N,)`` int64 class (= shape) indices.
        masks: ``(N, 1, H, W)`` bool object masks.
        textures: ``(N,)`` int64 texture indices.
        backgrounds: ``(N,)`` int64 background indices.
    """

    def __init__(
        self, images: Tensor, labels: Tensor, masks: Tensor, textures: Tensor, backgrounds: Tensor
    ) -> None:
        self.images = images
        self.labels = labels
        self.masks = masks
        self.textures = textures
        self.backgrounds = backgrounds

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.images[index], self.labels[index], self.masks[index]


def _make_dataset(
    size: int,
    num_classes: int,
    image_size: int,
    texture_correlation: float,
    background_correlation: float,
    rng: np.random.Generator,
) -> ShapesTexturesDataset:
    labels = rng.permutation(np.arange(size) % num_classes)  # balanced classes
    textures = _correlated(labels, texture_correlation, num_classes, rng)
    backgrounds = _correlated(labels, background_correlation, num_classes, rng)
    images, masks = _render(labels, textures, backgrounds, image_size, rng)
    return ShapesTexturesDataset(
        images,
        torch.from_numpy(labels.astype(np.int64)),
        masks,
        torch.from_numpy(textures.astype(np.int64)),
        torch.from_numpy(backgrounds.astype(np.int64)),
    )


class ShapesTexturesDataModule(SeededDataModule):
    """Shapes with textures and backgrounds, drawn procedurally; class = shape.

    Generative process, per image (train and validation sets use independent
    streams of one seeded numpy generator, so the validation set does not depend on
    ``train_size``):

    1. Class ``y``: the labels ``0 .. num_classes-1`` repeated to the set size and
       shuffled (classes are balanced to within one image). The shape is
       ``SHAPE_NAMES[y]``: circle, square, triangle, star, cross, diamond, ring, hexagon.
    2. Texture ``t``: with probability ``texture_correlation`` ``t = y``, otherwise
       uniform over ``0 .. num_classes-1`` (so it can still equal ``y`` by chance).
       Texture ``k`` is a high-contrast binary pattern with its own colour pair
       (``TEXTURE_NAMES``: horizontal stripes, checkerboard, dots, diagonal stripes,
       grid, vertical stripes, waves, speckle), with a random phase.
    3. Background ``b``: likewise with ``background_correlation``; background ``k`` is
       a muted colour with a linear gradient in direction ``k * 45`` degrees plus
       faint Gaussian noise.
    4. Geometry: radius uniform in 20-35 % of the image side (diameter 40-70 %),
       rotation uniform in +-15 degrees, centre uniform among the positions that keep
       the whole shape inside the image; edges anti-aliased (2x2 supersampling).
    5. Mask: pixels at least half covered by the shape.

    With ``texture_correlation=1`` texture alone predicts the class: a texture
    shortcut the shape-bias probe must detect; with ``0`` only the shape does.
    Use :func:`draw_shapes` for directly drawn cue-conflict images.

    Items are ``(image, label, mask)``: ``(3, H, W)`` float32 in ``[0, 1]``, an int64
    scalar and a ``(1, H, W)`` bool mask. All images are drawn once in ``setup``
    (2500 images at 32 px take about a second).

    Args:
        num_classes: Number of shapes (and textures, backgrounds), 2 to 8. Default: ``5``.
        image_size: Image side in pixels, at least 16. Default: ``32``.
        train_size: Number of training images. Default: ``2000``.
        val_size: Number of validation images. Default: ``500``.
        texture_correlation: Probability in ``[0, 1]`` that texture = class. Default: ``0.0``.
        background_correlation: Probability in ``[0, 1]`` that background = class.
            Default: ``0.0``.
        batch_size: Batch size of both loaders. Default: ``64``.
        num_workers: DataLoader workers. Default: ``0``.
        seed: Seed of the data and of the training shuffle. Default: ``0``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range.

    Examples:
        >>> dm = ShapesTexturesDataModule(train_size=10, val_size=5)
        >>> dm.setup("fit")
        >>> image, label, mask = dm.train_dataset[0]
        >>> image.shape, mask.shape
        (torch.Size([3, 32, 32]), torch.Size([1, 32, 32]))
        >>> dm.class_names
        ['circle', 'square', 'triangle', 'star', 'cross']
    """

    def __init__(
        self,
        num_classes: int = 5,
        image_size: int = 32,
        train_size: int = 2000,
        val_size: int = 500,
        texture_correlation: float = 0.0,
        background_correlation: float = 0.0,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        check_int(num_classes, "num_classes", minimum=2, maximum=MAX_CLASSES)
        check_int(image_size, "image_size", minimum=16)
        check_int(train_size, "train_size", minimum=1)
        check_int(val_size, "val_size", minimum=1)
        check_float(texture_correlation, "texture_correlation", minimum=0, maximum=1)
        check_float(background_correlation, "background_correlation", minimum=0, maximum=1)
        self.save_hyperparameters()
        self._num_classes = num_classes
        self.image_size = image_size
        self.train_size = train_size
        self.val_size = val_size
        self.texture_correlation = float(texture_correlation)
        self.background_correlation = float(background_correlation)

    @property
    def num_classes(self) -> int:
        """Number of classes (shapes)."""
        return self._num_classes

    @property
    def class_names(self) -> list[str]:
        """Shape name of each class, e.g. ``["circle", "square", ...]``."""
        return list(SHAPE_NAMES[: self._num_classes])

    @property
    def texture_names(self) -> list[str]:
        """Name of each texture index in use."""
        return list(TEXTURE_NAMES[: self._num_classes])

    def setup(self, stage: str | None = None) -> None:
        """Draws both datasets once (later calls are no-ops)."""
        if self.train_dataset is not None and self.val_dataset is not None:
            return
        train_stream, val_stream = np.random.SeedSequence(self.seed).spawn(2)
        args = (
            self._num_classes,
            self.image_size,
            self.texture_correlation,
            self.background_correlation,
        )
        self.train_dataset = _make_dataset(
            self.train_size, *args, np.random.default_rng(train_stream)
        )
        self.val_dataset = _make_dataset(self.val_size, *args, np.random.default_rng(val_stream))
