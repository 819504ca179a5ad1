"""Tests for the scikit-learn digits datamodule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lightning_viz.data import DigitsDataModule


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _dm(**kwargs) -> DigitsDataModule:
    dm = DigitsDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_items_shapes_dtypes_ranges():
    dm = _dm()
    image, label, mask = dm.train_dataset[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert label.shape == () and label.dtype == torch.int64
    assert mask.shape == (1, 32, 32) and mask.dtype == torch.bool
    images = torch.cat([dm.train_dataset.images, dm.val_dataset.images])
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.max() > 0.9  # full-intensity strokes survive the upsampling
    assert dm.num_classes == 10
    assert dm.class_names == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]


def test_stratified_split_sizes(digits):
    dm = _dm()
    assert len(dm.train_dataset) + len(dm.val_dataset) == 1797
    for c in range(10):
        n_c = int((digits.target == c).sum())
        val_c = int((dm.val_dataset.labels == c).sum())
        assert val_c == round(0.2 * n_c)
        assert int((dm.train_dataset.labels == c).sum()) == n_c - val_c


def test_image_size_8_reproduces_the_original_digits(digits):
    """Bilinear resizing to the same size is the identity: the split is a partition."""
    dm = _dm(image_size=8, val_fraction=0.25)
    original = {}
    for image, label in zip(digits.images, digits.target, strict=True):
        original.setdefault((image / 16.0).astype(np.float32).tobytes(), []).append(int(label))
    seen = {}
    for ds in (dm.train_dataset, dm.val_dataset):
        for image, label in zip(ds.images, ds.labels, strict=True):
            key = image[0].numpy().tobytes()
            assert int(label) in original[key]  # each item is a real digit with its label
            seen.setdefault(key, []).append(int(label))
    # every original image appears exactly as often as in the source: no overlap, no loss
    assert {k: sorted(v) for k, v in seen.items()} == {k: sorted(v) for k, v in original.items()}


def test_upsampling_is_bilinear(digits):
    """A 2x upsample of an 8x8 digit: pixel (1, 1) mixes source pixels (0..1, 0..1)."""
    dm = _dm(image_size=16, val_fraction=0.5)
    image = dm.train_dataset.images[0, 0].numpy()
    label = int(dm.train_dataset.labels[0])
    # find the source digit by exact match on the 4 pixels weighted 9/16, 3/16, 3/16, 1/16
    candidates = digits.images[digits.target == label] / 16.0
    expected = (
        9 * candidates[:, 0, 0] + 3 * candidates[:, 0, 1] + 3 * candidates[:, 1, 0]
    ) / 16 + candidates[:, 1, 1] / 16
    # align_corners=False: output (1,1) samples source (0.25, 0.25) -> weights 9,3,3,1 / 16
    # (output (1,1) centre at 1.5/2 - 0.5 = 0.25 in source pixel units)
    assert np.isclose(expected, image[1, 1], atol=1e-6).any()


def test_masks_are_the_thresholded_strokes():
    dm = _dm(mask_threshold=0.4)
    ds = dm.val_dataset
    assert torch.equal(ds.masks, ds.images > 0.4)
    area = ds.masks.flatten(1).float().mean(1)
    assert area.min() > 0.05 and area.max() < 0.7


def test_split_is_deterministic_from_seed():
    a, b, c = _dm(seed=3), _dm(seed=3), _dm(seed=4)
    assert torch.equal(a.val_dataset.images, b.val_dataset.images)
    assert torch.equal(a.train_dataset.labels, b.train_dataset.labels)
    assert not torch.equal(a.val_dataset.images, c.val_dataset.images)


def test_dataloaders_and_global_rng():
    dm = _dm(batch_size=32)
    state = torch.get_rng_state()
    train_batch = next(iter(dm.train_dataloader()))
    again = next(iter(_dm(batch_size=32).train_dataloader()))
    val_batch = next(iter(dm.val_dataloader()))
    assert torch.equal(torch.get_rng_state(), state)
    images, labels, masks = train_batch
    assert images.shape == (32, 1, 32, 32) and labels.shape == (32,) and masks.shape[1] == 1
    assert torch.equal(images, again[0])
    assert not torch.equal(labels, dm.train_dataset.labels[:32])
    assert torch.equal(val_batch[0], dm.val_dataset.images[:32])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image_size": 4}, ValueError, r"image_size.*got 4"),
        ({"image_size": 32.0}, TypeError, r"image_size.*got 32\.0"),
        (
            {"val_fraction": 0.0},
            ValueError,
            "`val_fraction` must be a finite number > 0 and < 1, got 0.0",
        ),
        ({"val_fraction": 1}, ValueError, r"val_fraction.*got 1"),
        ({"val_fraction": 1.5}, ValueError, r"val_fraction.*got 1\.5"),
        ({"val_fraction": "0.2"}, TypeError, r"val_fraction.*got '0\.2'"),
        ({"mask_threshold": 1.0}, ValueError, "`mask_threshold` must be .* >= 0 and < 1, got 1.0"),
        ({"mask_threshold": -0.5}, ValueError, r"mask_threshold.*got -0\.5"),
        ({"batch_size": 0}, ValueError, r"batch_size.*got 0"),
        ({"num_workers": -2}, ValueError, r"num_workers.*got -2"),
        ({"seed": None}, TypeError, r"seed.*got None"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        DigitsDataModule(**kwargs)
