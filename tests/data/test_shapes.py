"""Tests for the procedurally drawn shapes/textures data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_viz.data import SHAPE_NAMES, ShapesTexturesDataModule, SmallCNN, draw_shapes

# Texture colours written out by hand (foreground, background), as documented.
RED, YELLOW = (0.90, 0.10, 0.10), (1.00, 0.90, 0.20)
BLUE, WHITE = (0.10, 0.20, 0.90), (1.00, 1.00, 1.00)
LIME, BLACK = (0.20, 0.95, 0.20), (0.05, 0.05, 0.05)


def _dm(**kwargs) -> ShapesTexturesDataModule:
    kwargs.setdefault("train_size", 200)
    kwargs.setdefault("val_size", 50)
    dm = ShapesTexturesDataModule(**kwargs)
    dm.setup("fit")
    return dm


def _interior(masks: torch.Tensor, margin: int = 2) -> torch.Tensor:
    """Mask pixels whose whole (2*margin+1)^2 neighbourhood is inside the mask."""
    k = 2 * margin + 1
    outside = F.max_pool2d((~masks).float(), k, stride=1, padding=margin)
    return (outside == 0) & masks


def _interior_colours(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Distinct colours (K, 3) of the interior pixels of one image."""
    inner = _interior(mask[None])[0, 0]  # (H, W)
    pixels = image.permute(1, 2, 0)[inner]  # (P, 3)
    return torch.unique(torch.round(pixels * 1000) / 1000, dim=0)


def _close_to_any(colours: torch.Tensor, palette: list[tuple[float, float, float]]) -> bool:
    palette_t = torch.tensor(palette)
    dist = (colours[:, None, :] - palette_t[None]).abs().amax(-1).amin(-1)
    return bool((dist < 2e-3).all())


def test_items_shapes_dtypes_ranges():
    dm = _dm()
    image, label, mask = dm.train_dataset[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.shape == () and label.dtype == torch.int64
    assert mask.shape == (1, 32, 32) and mask.dtype == torch.bool
    images = dm.train_dataset.images
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert 0 <= int(dm.train_dataset.labels.min()) and int(dm.train_dataset.labels.max()) < 5
    assert len(dm.train_dataset) == 200 and len(dm.val_dataset) == 50
    assert dm.num_classes == 5
    assert dm.class_names == ["circle", "square", "triangle", "star", "cross"]
    assert SHAPE_NAMES[:5] == ("circle", "square", "triangle", "star", "cross")
    assert len(SHAPE_NAMES) == 8


def test_image_size_is_respected():
    dm = _dm(image_size=48, train_size=10, val_size=5)
    assert dm.train_dataset.images.shape == (10, 3, 48, 48)
    assert dm.val_dataset.masks.shape == (5, 1, 48, 48)


def test_deterministic_from_seed():
    a, b, c = _dm(seed=1), _dm(seed=1), _dm(seed=2)
    for name in ("images", "labels", "masks", "textures", "backgrounds"):
        assert torch.equal(getattr(a.train_dataset, name), getattr(b.train_dataset, name))
        assert torch.equal(getattr(a.val_dataset, name), getattr(b.val_dataset, name))
    assert not torch.equal(a.train_dataset.images, c.train_dataset.images)
    assert not torch.equal(a.val_dataset.images, c.val_dataset.images)
    # train and validation images are not the same draws
    assert not torch.equal(a.train_dataset.images[:50], a.val_dataset.images)


def test_val_set_does_not_depend_on_train_size():
    a, b = _dm(train_size=100), _dm(train_size=300)
    assert torch.equal(a.val_dataset.images, b.val_dataset.images)


def test_setup_is_idempotent_and_leaves_global_rngs():
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    dm = _dm()
    images = dm.train_dataset.images
    dm.setup("validate")
    assert dm.train_dataset.images is images
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()


def test_masks_nonempty_inside_image_and_cover_the_shape():
    dm = _dm(num_classes=8, train_size=400)
    masks = dm.train_dataset.masks
    area = masks.flatten(1).float().mean(1)
    # radius 20-35 % of the side: even the smallest shape covers a few % of the image
    assert area.min() > 0.03 and area.max() < 0.5
    # the whole shape stays inside: no mask pixel on the border
    border = masks[..., 0, :].any() | masks[..., -1, :].any()
    border |= masks[..., :, 0].any() | masks[..., :, -1].any()
    assert not border
    # every shape has an interior (not just an outline)
    assert _interior(masks, margin=1).flatten(1).any(1).all()


def test_circle_mask_is_a_disc():
    _, masks = draw_shapes([0] * 4, [0] * 4, [0] * 4, image_size=64, seed=5)
    for mask in masks[:, 0]:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        cy, cx = ys.float().mean(), xs.float().mean()
        radius = (mask.sum().float() / torch.pi).sqrt()
        dist = ((ys.float() - cy) ** 2 + (xs.float() - cx) ** 2).sqrt()
        # every mask pixel lies within the disc of the same area (up to a pixel)
        assert dist.max() <= radius + 1.0
        assert 0.2 * 64 - 1 <= radius <= 0.35 * 64 + 1


def test_texture_indices_draw_their_documented_colours():
    images, masks = draw_shapes([0, 1, 2], [0, 1, 2], [3, 3, 3], image_size=48, seed=0)
    assert _close_to_any(_interior_colours(images[0], masks[0]), [RED, YELLOW])
    assert _close_to_any(_interior_colours(images[1], masks[1]), [BLUE, WHITE])
    assert _close_to_any(_interior_colours(images[2], masks[2]), [LIME, BLACK])
    # both colours of the pattern show up inside a shape
    assert len(_interior_colours(images[0], masks[0])) == 2


def test_dataset_texture_k_equals_draw_shapes_texture_k():
    dm = _dm(texture_correlation=1.0, background_correlation=1.0, train_size=100)
    ds = dm.train_dataset
    for k in range(dm.num_classes):
        (index,) = torch.nonzero(ds.labels == k)[0]
        dataset_colours = _interior_colours(ds.images[index], ds.masks[index])
        images, masks = draw_shapes([k], [k], [k], image_size=64, seed=3)
        drawn_colours = _interior_colours(images[0], masks[0])
        assert len(drawn_colours) == 2  # the pattern's two colours
        assert _close_to_any(dataset_colours, [tuple(c) for c in drawn_colours.tolist()])
        # and another texture's colours are not these
        other, other_masks = draw_shapes([k], [(k + 1) % 5], [k], image_size=64, seed=3)
        other_colours = _interior_colours(other[0], other_masks[0])
        assert not _close_to_any(other_colours, [tuple(c) for c in drawn_colours.tolist()])


def test_cue_conflict_keeps_geometry_and_changes_texture():
    conflict, conflict_masks = draw_shapes([0, 1], [1, 0], [1, 0], seed=7)
    plain, plain_masks = draw_shapes([0, 1], [0, 1], [0, 1], seed=7)
    assert torch.equal(conflict_masks, plain_masks)
    assert _close_to_any(_interior_colours(conflict[0], conflict_masks[0]), [BLUE, WHITE])
    assert _close_to_any(_interior_colours(conflict[1], conflict_masks[1]), [RED, YELLOW])
    assert not torch.equal(conflict, plain)


def test_draw_shapes_accepts_tensors_and_is_deterministic():
    idx = torch.tensor([3, 4, 5])
    a = draw_shapes(idx, idx, idx, seed=1)
    b = draw_shapes([3, 4, 5], [3, 4, 5], [3, 4, 5], seed=1)
    c = draw_shapes([3, 4, 5], [3, 4, 5], [3, 4, 5], seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (3, 3, 32, 32) and a[0].dtype == torch.float32
    assert a[1].shape == (3, 1, 32, 32) and a[1].dtype == torch.bool


def test_texture_correlation_one_makes_texture_equal_class():
    dm = _dm(texture_correlation=1.0)
    assert torch.equal(dm.train_dataset.textures, dm.train_dataset.labels)
    assert torch.equal(dm.val_dataset.textures, dm.val_dataset.labels)
    # the background stays uncorrelated
    agree = (dm.train_dataset.backgrounds == dm.train_dataset.labels).float().mean()
    assert agree < 0.4


def test_background_correlation_one_makes_background_equal_class():
    dm = _dm(background_correlation=1.0)
    assert torch.equal(dm.train_dataset.backgrounds, dm.train_dataset.labels)
    agree = (dm.train_dataset.textures == dm.train_dataset.labels).float().mean()
    assert agree < 0.4


def test_correlation_zero_gives_uniform_independent_textures():
    dm = _dm(train_size=2000, val_size=10)
    ds = dm.train_dataset
    for values in (ds.textures, ds.backgrounds):
        counts = torch.bincount(values, minlength=5).float()
        expected = len(values) / 5
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 18.47  # chi-square, 4 dof, p = 0.001
        # independent of the class: agreement near chance (1/5), 2000 draws
        assert abs(float((values == ds.labels).float().mean()) - 0.2) < 0.04


def test_partial_correlation_matches_its_probability():
    dm = _dm(texture_correlation=0.5, train_size=2000, val_size=10)
    agree = float((dm.train_dataset.textures == dm.train_dataset.labels).float().mean())
    assert abs(agree - (0.5 + 0.5 / 5)) < 0.04


def test_classes_are_balanced():
    dm = _dm(num_classes=7, train_size=701, val_size=50)
    counts = torch.bincount(dm.train_dataset.labels, minlength=7)
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 701
    assert dm.class_names == list(SHAPE_NAMES[:7])


def test_all_eight_shapes_have_distinct_masks():
    k = list(range(8))
    _, masks = draw_shapes(k, [0] * 8, [0] * 8, image_size=64, seed=0)
    flat = masks.flatten(1)
    assert len({tuple(m.tolist()) for m in flat}) == 8
    # ring has a hole: its mask is not filled at its centre of mass
    ys, xs = torch.nonzero(masks[6, 0], as_tuple=True)
    assert not masks[6, 0, int(ys.float().mean().round()), int(xs.float().mean().round())]


def test_dataloaders_shuffle_seeded_and_leave_global_rng():
    dm = _dm(batch_size=16)
    state = torch.get_rng_state()
    first = next(iter(dm.train_dataloader()))
    again = next(iter(_dm(batch_size=16).train_dataloader()))
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(torch.get_rng_state(), state)
    images, labels, masks = first
    assert images.shape == (16, 3, 32, 32) and labels.shape == (16,) and masks.shape[1] == 1
    assert torch.equal(first[0], again[0])
    assert not torch.equal(labels, dm.train_dataset.labels[:16])  # shuffled
    assert torch.equal(val[0], dm.val_dataset.images[:16])  # fixed order
    assert torch.equal(val[1], dm.val_dataset.labels[:16])


def test_dataloader_before_setup_calls_setup():
    dm = ShapesTexturesDataModule(train_size=20, val_size=8, batch_size=8)
    batch = next(iter(dm.val_dataloader()))
    assert batch[0].shape == (8, 3, 32, 32)


def test_default_setup_makes_2000_train_and_500_val_images():
    # its speed is measured by benchmarks/data_speed.py, not asserted here
    dm = ShapesTexturesDataModule()
    dm.setup("fit")
    assert len(dm.train_dataset) == 2000 and len(dm.val_dataset) == 500


def test_hyperparameters_are_saved():
    dm = ShapesTexturesDataModule(num_classes=4, texture_correlation=0.8)
    assert dm.hparams["num_classes"] == 4 and dm.hparams["texture_correlation"] == 0.8


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 1}, ValueError, r"num_classes.*got 1"),
        ({"num_classes": 9}, ValueError, r"num_classes.*got 9"),
        ({"num_classes": 2.0}, TypeError, r"num_classes.*got 2\.0"),
        ({"num_classes": True}, TypeError, r"num_classes.*got True"),
        ({"image_size": 8}, ValueError, r"image_size.*got 8"),
        ({"train_size": 0}, ValueError, r"train_size.*got 0"),
        ({"val_size": -3}, ValueError, r"val_size.*got -3"),
        ({"texture_correlation": 1.5}, ValueError, r"texture_correlation.*got 1\.5"),
        ({"texture_correlation": -0.1}, ValueError, r"texture_correlation.*got -0\.1"),
        ({"texture_correlation": "0.5"}, TypeError, r"texture_correlation.*got '0\.5'"),
        ({"background_correlation": 2}, ValueError, r"background_correlation.*got 2"),
        ({"batch_size": 0}, ValueError, r"batch_size.*got 0"),
        ({"num_workers": -1}, ValueError, r"num_workers.*got -1"),
        ({"seed": -1}, ValueError, r"seed.*got -1"),
        ({"seed": "a"}, TypeError, r"seed.*got 'a'"),
    ],
)
def test_datamodule_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        ShapesTexturesDataModule(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([0, 8], [0, 0], [0, 0]), {}, ValueError, r"shapes.*\[0, 7\].*\[0, 8\]"),
        (([0], [-1], [0]), {}, ValueError, r"textures.*\[-1\]"),
        (([0, 1], [0], [0, 1]), {}, ValueError, r"`textures` .* `shapes` \(2\), got <1 indices>"),
        (
            ([0, 1], [0, 1], [0]),
            {},
            ValueError,
            r"`backgrounds` .* `shapes` \(2\), got <1 indices>",
        ),
        (([0], [0], [0]), {"image_size": 8}, ValueError, r"image_size.*got 8"),
        (([0], [0], [0]), {"seed": 1.5}, TypeError, r"seed.*got 1\.5"),
        ((torch.tensor([0.0]), [0], [0]), {}, TypeError, r"shapes.*integer tensor"),
        ((torch.tensor([[0]]), [0], [0]), {}, TypeError, r"shapes.*1-D"),
        (([0], [0.5], [0]), {}, TypeError, r"textures.*ints.*0\.5"),
        (([0], [0], "0"), {}, TypeError, r"backgrounds.*got '0'"),
        (([0], [0], [True]), {}, TypeError, r"backgrounds.*True"),
    ],
)
def test_draw_shapes_validation(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        draw_shapes(*args, **kwargs)


def test_small_cnn_learns_shapes_without_texture_shortcut():
    """With texture and background uncorrelated, only the shape predicts the class."""
    dm = _dm(train_size=1000, val_size=200, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a busy machine
    try:
        predicted = _train_small_cnn(dm)
    finally:
        torch.set_num_threads(threads)
    accuracy = float((predicted == dm.val_dataset.labels).float().mean())
    # chance is 0.2 (sd 0.03 on 200 images); this run reaches about 0.6
    assert accuracy > 0.35


def _train_small_cnn(dm: ShapesTexturesDataModule) -> torch.Tensor:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SmallCNN(num_classes=5, width=8)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(0)
        images, labels = dm.train_dataset.images, dm.train_dataset.labels
        for _ in range(300):
            idx = torch.randint(0, len(labels), (32,), generator=generator)
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            return model(dm.val_dataset.images).argmax(1)
