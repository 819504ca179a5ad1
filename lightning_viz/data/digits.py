"""scikit-learn's bundled handwritten digits as a LightningDataModule (real data, no download)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor
from torch.utils.data import Dataset

from lightning_viz._checks import check_float, check_int
from lightning_viz.data._loaders import SeededDataModule

__all__ = ["DigitsDataModule", "DigitsDataset"]


class DigitsDataset(Dataset):
    """Precomputed digit images with labels and stroke masks.

    Attributes:
        images: ``(N, 1, H, W)`` float32 in ``[0, 1]``.
        labels: ``(N,)`` int64 digits.
        masks: ``(N, 1, H, W)`` bool stroke masks.
    """

    def __init__(self, images: Tensor, labels: Tensor, masks: Tensor) -> None:
        self.images = images
        self.labels = labels
        self.masks = masks

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.images[index], self.labels[index], self.masks[index]


class DigitsDataModule(SeededDataModule):
    """The 1797 8x8 handwritten digits bundled with scikit-learn, upsampled.

    Data: ``sklearn.datasets.load_digits`` (UCI optical digits, shipped inside
    scikit-learn, so nothing is downloaded). Pixel values ``0..16`` are scaled to
    ``[0, 1]`` and the 8x8 images upsampled bilinearly to ``image_size``. The
    object mask is the stroke: pixels whose upsampled value is above
    ``mask_threshold``. The split is stratified per class and deterministic from
    ``seed``: ``round(val_fraction * n_c)`` images of each class ``c`` go to
    validation.

    Items are ``(image, label, mask)``: ``(1, H, W)`` float32 in ``[0, 1]``, an int64
    scalar and a ``(1, H, W)`` bool mask.

    Args:
        image_size: Image side in pixels, at least 8. Default: ``32``.
        val_fraction: Fraction of each class held out, in ``(0, 1)``. Default: ``0.2``.
        mask_threshold: Stroke threshold in ``[0, 1)``. Default: ``0.25``.
        batch_size: Batch size of both loaders. Default: ``64``.
        num_workers: DataLoader workers. Default: ``0``.
        seed: Seed of the split and of the training shuffle. Default: ``0``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range.

    Examples:
        >>> dm = DigitsDataModule()
        >>> dm.setup("fit")
        >>> len(dm.train_dataset), len(dm.val_dataset)
        (1438, 359)
    """

    def __init__(
        self,
        image_size: int = 32,
        val_fraction: float = 0.2,
        mask_threshold: float = 0.25,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        check_int(image_size, "image_size", minimum=8)
        check_float(val_fraction, "val_fraction", maximum=1, positive=True, strict_max=True)
        check_float(mask_threshold, "mask_threshold", minimum=0, maximum=1, strict_max=True)
        self.save_hyperparameters()
        self.image_size = image_size
        self.val_fraction = float(val_fraction)
        self.mask_threshold = float(mask_threshold)

    @property
    def num_classes(self) -> int:
        """Number of classes: 10."""
        return 10

    @property
    def class_names(self) -> list[str]:
        """``["0", "1", ..., "9"]``."""
        return [str(i) for i in range(10)]

    def setup(self, stage: str | None = None) -> None:
        """Loads, upsamples and splits the digits once (later calls are no-ops)."""
        if self.train_dataset is not None and self.val_dataset is not None:
            return
        digits = load_digits()
        small = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        images = F.interpolate(
            small, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        ).clamp_(0.0, 1.0)  # (N, 1, H, W)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        masks = images > self.mask_threshold

        rng = np.random.default_rng(self.seed)
        val_index = []
        for c in range(10):
            members = np.nonzero(digits.target == c)[0]
            count = int(round(self.val_fraction * len(members)))
            val_index.append(rng.permutation(members)[:count])
        is_val = np.zeros(len(labels), dtype=bool)
        is_val[np.concatenate(val_index)] = True
        val = torch.from_numpy(np.nonzero(is_val)[0])
        train = torch.from_numpy(np.nonzero(~is_val)[0])
        self.train_dataset = DigitsDataset(images[train], labels[train], masks[train])
        self.val_dataset = DigitsDataset(images[val], labels[val], masks[val])
