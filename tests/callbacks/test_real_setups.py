"""A user's real setup: normalized data, labels of other types, bounded memory."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T
from torchvision.transforms import v2

import lightning_viz as lv
from lightning_viz.callbacks._base import RunContext
from lightning_viz.data import ShapesTexturesDataModule
from tests.conftest import all_callbacks, fit, lightning_info

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's


class Transformed(Dataset):
    """A dataset with a torchvision transform on its images (as ImageFolder has)."""

    def __init__(self, base: Dataset, transform: Any = None, label: Any = None) -> None:
        self.base, self.transform, self.label = base, transform, label

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Any:
        image, label, *_ = self.base[i]
        image = self.transform(image) if self.transform is not None else image
        return image, label if self.label is None else self.label(label)


class NormalizedShapes(ShapesTexturesDataModule):
    """The built-in data, normalized by a transform (wrapped in a Subset)."""

    def __init__(self, transform: Any, **kwargs: Any) -> None:
        super().__init__(**{"train_size": 64, "val_size": 32, "batch_size": 16, **kwargs})
        self.image_transform = transform

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            self.setup()
            dataset = self.train_dataset if shuffle else self.val_dataset
        wrapped = Subset(Transformed(dataset, self.image_transform), range(len(dataset)))
        return super()._loader(wrapped, shuffle)


def _dataset(n: int = 20) -> Dataset:
    data = ShapesTexturesDataModule(train_size=n, val_size=n, seed=0)
    data.setup("fit")
    return data.val_dataset


class _Pixels(lv.ActivationLogger):
    """Keeps the pixel-space probe a run sees."""

    def run(self, ctx: RunContext) -> None:
        self.seen_pixels = ctx.pixels.detach().cpu().clone()
        self.seen_indices = list(ctx.probe.indices or [])


# ------------------------------------------------------------ normalization found
@pytest.mark.parametrize(
    "transform",
    [
        T.Compose([T.Normalize(MEAN, STD)]),
        v2.Compose([v2.ToDtype(torch.float32), v2.Normalize(MEAN, STD)]),
        T.Compose([T.Compose([T.RandomApply([T.Normalize(MEAN, STD)], p=1.0)])]),  # nested
        T.Normalize(MEAN, STD),
    ],
    ids=["v1-compose", "v2-compose", "nested", "bare"],
)
def test_a_normalize_is_found_in_a_wrapped_datasets_transform(transform):
    from lightning_viz._runtime.normalization import find_normalize

    data = Subset(Transformed(_dataset(), transform), range(4))
    expected = (pytest.approx(MEAN), pytest.approx(STD))
    assert find_normalize(DataLoader(data, batch_size=2)) == expected
    assert find_normalize(data) == expected
    assert find_normalize(torch.utils.data.ConcatDataset([data, data])) == expected
    assert find_normalize(Transformed(_dataset(), T.Compose([T.ToTensor()]))) is None
    assert find_normalize(torch.rand(2, 3, 8, 8)) is None


def test_mean_and_std_are_read_from_the_validation_transform_and_used(tmp_path):
    cb = _Pixels(num_samples=3, on_error="raise")
    with lightning_info() as messages:
        fit(tmp_path, [cb], epochs=1, datamodule=NormalizedShapes(T.Normalize(MEAN, STD)))
    assert cb.mean == pytest.approx(MEAN) and cb.std == pytest.approx(STD)
    said = [m for m in messages if "from the validation transform" in m]
    assert said == [
        "lightning-viz: using mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225) from the "
        "validation transform (a Normalize); the callbacks show and attack images in pixel "
        "space. Pass mean=/std= to override"
    ]
    raw = _validation_images(cb.seen_indices)  # the images before the transform
    assert torch.allclose(cb.seen_pixels, raw, atol=1e-5)  # shown as pixels, not clipped


def _validation_images(indices: list[int]) -> torch.Tensor:
    data = NormalizedShapes(None)
    data.setup("fit")
    return torch.stack([data.val_dataset[i][0] for i in indices])


def test_values_outside_0_1_without_a_normalize_are_a_configuration_error(tmp_path):
    module = NormalizedShapes(lambda x: (x - 0.5) / 0.1)  # normalized, but no Normalize
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, on_error="warn")
    with pytest.raises(ValueError) as caught:
        fit(tmp_path / "a", [cb], epochs=1, datamodule=module)
    text = str(caught.value)
    assert re.search(r"values in \[-[45](\.\d+)?, [45](\.\d+)?\], outside the pixel range", text)
    assert "mean=[...], std=[...]" in text and "maps the probe's range onto [0, 1]" in text
    hint = re.findall(r"mean=\[(-?[\d.]+(?:e-?\d+)?)\], std=\[([\d.]+(?:e-?\d+)?)\]", text)
    mean, std = (float(v) for v in hint[-1])
    low, high = (float(v) for v in re.search(r"values in \[([-\d.]+), ([-\d.]+)\]", text).groups())
    # pixels = inputs * std + mean: the probe's range onto [0, 1] (the data's is (x - 0.5) / 0.1)
    assert low * std + mean == pytest.approx(0.0, abs=1e-3)
    assert high * std + mean == pytest.approx(1.0, abs=1e-3)
    assert 0.3 < mean < 0.7 and 0.08 < std < 0.13
    # explicitly None takes the model's inputs as the pixels: these are not pixels, and
    # they were clipped to [0, 1] before the model saw them (no error)
    none = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, mean=None, std=None)
    with pytest.raises(ValueError, match=r"with mean=None, std=None .* not \[0, 1\]: they would"):
        fit(tmp_path / "b", [none], epochs=1, datamodule=module)


@pytest.mark.parametrize(
    ("mean", "std", "shown"),
    [
        ((0.0,), (255.0,), r"\[-1\.\d+e\+03, 1\.\d+e\+03\]"),  # a 0-255 habit
        ((0.5,), (1.0,), r"\[-3\.5, 5\.5\]"),  # std of the wrong data
    ],
)
def test_given_mean_and_std_that_do_not_give_pixels_are_a_configuration_error(
    tmp_path, mean, std, shown
):
    module = NormalizedShapes(lambda x: (x - 0.5) / 0.1)  # no Normalize: mean/std are given
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, mean=mean, std=std)
    with pytest.raises(ValueError, match=r"SaliencyLogger: with mean=0(\.5)?, std=") as caught:
        fit(tmp_path / "a", [cb], epochs=1, datamodule=module)
    text = str(caught.value)
    assert re.search(r"become pixels in " + shown, text), text
    assert "not [0, 1]" in text and "mean=None" in text
    right = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, mean=(0.5,), std=(0.1,))
    fit(tmp_path / "b", [right], epochs=1, datamodule=module)
    assert right._enabled


# ----------------------------------------------------------------------- labels
def test_whole_float_labels_are_class_indices_said_once(tmp_path):
    probe = Transformed(_dataset(), label=lambda y: float(y))
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=5, probe=probe, target="true")
    with lightning_info() as messages:
        fit(tmp_path, [cb], epochs=1)
    assert cb._enabled and cb._probe.labels.dtype == torch.long
    assert sorted(cb._probe.labels.tolist()) == [0, 1, 2, 3, 4]
    said = [m for m in messages if "read as class indices" in m]
    assert len(said) == 1 and "torch.float" in said[0]
    assert said[0].endswith("(4.0 -> class 4)")  # an example from the labels themselves


@pytest.mark.parametrize(
    ("label", "match"),
    [
        (lambda y: float(y) + 0.5, r"floats \(torch.float\d+\) that are not whole numbers"),
        (
            lambda y: ["circle", "square", "star", "cross", "ring"][int(y)],
            r"tuple of str \(e.g. .square.\), not numbers",
        ),
        (lambda y: {"class": int(y)}, r"labels of a batch are dict"),
    ],
    ids=["fractional", "strings", "dicts"],
)
def test_labels_that_are_not_class_indices_are_a_configuration_error(tmp_path, label, match):
    probe = Transformed(_dataset(), label=label)
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=5, probe=probe, on_error="warn")
    with pytest.raises(TypeError, match=match) as caught:
        fit(tmp_path, [cb], epochs=1)
    assert "batch_to_xy" in str(caught.value)


def test_class_names_of_the_wrong_length_are_a_configuration_error(tmp_path):
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, class_names=["cat", "dog"])
    with pytest.raises(ValueError, match=r"`class_names` has 2 names but the model has 5 classes"):
        fit(tmp_path, [cb], epochs=1)


# ---------------------------------------------------------------- bounded memory
class _Rows:
    """Per forward of the model during the callbacks' runs: the rows and the bytes of
    every activation the forward produced (a forward-hook counter)."""

    def __init__(self, model: nn.Module) -> None:
        self.active = False
        self.runs: list[tuple[int, int]] = []  # (rows, activation bytes), in runs
        self.training: list[tuple[int, int]] = []  # the same for training steps
        self._bytes = 0
        leaves = [m for m in model.modules() if not list(m.children())]
        for leaf in leaves:
            leaf.register_forward_hook(self._count)
        model.register_forward_pre_hook(self._start)
        model.register_forward_hook(self._end)

    def _start(self, module: nn.Module, args: Any) -> None:
        self._bytes = 0

    def _count(self, module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            self._bytes += out.numel() * out.element_size()

    def _end(self, module: nn.Module, args: Any, out: Any) -> None:
        rows = int(args[0].shape[0])
        if self.active:
            self.runs.append((rows, self._bytes))
        elif module.training:
            self.training.append((rows, self._bytes))

    def watch(self, callback: Any) -> None:
        run = callback.run

        def watched(ctx: RunContext) -> None:
            self.active = True
            try:
                run(ctx)
            finally:
                self.active = False

        callback.run = watched


@pytest.mark.parametrize("max_batch_size", [None, 3])
def test_no_run_holds_more_activations_at_once_than_a_training_step(tmp_path, max_batch_size):
    from lightning_viz.data import LitClassifier

    model = LitClassifier(num_classes=5, lr=1e-2)
    rows = _Rows(model.model)
    callbacks = all_callbacks(on_error="raise", max_batch_size=max_batch_size)
    for cb in callbacks:
        rows.watch(cb)
    data = ShapesTexturesDataModule(train_size=32, val_size=32, batch_size=4, seed=0)
    fit(tmp_path, callbacks, epochs=1, model=model, datamodule=data)
    assert len(rows.runs) > 50 and rows.training  # the runs and the training were watched
    limit = max_batch_size or 4  # by default the training batch size
    assert max(r for r, _ in rows.runs) == limit
    peak_run = max(b for _, b in rows.runs)
    peak_step = max(b for _, b in rows.training)
    assert peak_run <= peak_step * limit / 4, (peak_run, peak_step)


def test_yaml_tells_mean_not_given_from_mean_none():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(lv.SaliencyLogger, "cb")
    # `instantiate` since jsonargparse 4.49 (`instantiate_classes` is deprecated there)
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    for text, auto in (("cb: {}", True), ("cb: {mean: null, std: null}", False)):
        cb = instantiate(parser.parse_string(text))["cb"]
        assert cb._auto_normalization is auto and cb.mean is None and cb.std is None
    cb = instantiate(parser.parse_string("cb: {max_batch_size: 4}"))["cb"]
    assert cb.max_batch_size == 4 and cb.overhead_allowance == 3.0


class _WithExtra(Dataset):
    """``(image, label, extra)`` samples: the user's file names, indices or weights."""

    def __init__(self, base: Dataset, kind: str) -> None:
        self.base, self.kind = base, kind

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Any:
        image, label, *_ = self.base[i]
        extra = {"path": f"img_{i}.png", "index": i, "weight": 1.0, "meta": {"id": i}}
        return image, label, extra[self.kind]


class _ExtraShapes(ShapesTexturesDataModule):
    def __init__(self, kind: str) -> None:
        super().__init__(train_size=64, val_size=32, batch_size=16, seed=0)
        self.kind = kind

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            self.setup()
            dataset = self.train_dataset if shuffle else self.val_dataset
        return super()._loader(_WithExtra(dataset, self.kind), shuffle)


@pytest.mark.parametrize("kind", ["path", "index", "weight", "meta"])
def test_a_third_batch_element_that_is_not_a_mask_is_left_out(tmp_path, events, kind):
    callbacks = [
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality=(), on_error="raise"),
        lv.GradCAMLogger(num_samples=4, quality=(), on_error="raise"),
    ]
    fit(tmp_path, callbacks, epochs=1, datamodule=_ExtraShapes(kind), limit_train_batches=1)
    images = events(str(tmp_path / "run" / "version_0"))["images"]
    assert {"saliency/vanilla", "gradcam/gradcam"} <= set(images), sorted(images)
    assert len(images["saliency/vanilla"]) == 1 and images["gradcam/gradcam"][0][1] > 0
    assert callbacks[0]._probe.masks is None  # type: ignore[attr-defined]


def test_masks_are_checked_against_the_images_and_may_drop_the_channel():
    from lightning_viz._runtime.probe import default_batch_to_xy, split_batch

    x, y = torch.rand(4, 3, 8, 8), torch.arange(4)
    mask = torch.rand(4, 8, 8) > 0.5
    _, _, m = split_batch({"image": x, "label": y, "mask": mask}, None)
    assert m.shape == (4, 1, 8, 8) and torch.equal(m[:, 0], mask)
    assert default_batch_to_xy((x, y, torch.arange(4)))[2] is None  # indices, not a mask
    assert default_batch_to_xy((x, y, mask))[2] is mask
    for values in (mask.float(), mask.to(torch.uint8) * 255):  # 0/1 floats, 0/255 integers
        assert default_batch_to_xy((x, y, values))[2] is values
    # a map of the image's size that holds other values (depth, per-pixel weights) is
    # no mask: read as one, every nonzero pixel was "the object"
    for other in (torch.rand(4, 8, 8) * 5, torch.full((4, 1, 8, 8), 0.5)):
        assert default_batch_to_xy((x, y, other))[2] is None
    with pytest.raises(
        ValueError, match=r"masks \(\(4, 1, 6, 6\)\) do not match .* \(4, 1, 8, 8\)"
    ):
        split_batch({"image": x, "label": y, "mask": torch.ones(4, 1, 6, 6)}, None)
    with pytest.raises(ValueError, match=r"masks \(list\) do not match"):
        split_batch(x, lambda b: (b, y, [1, 2]))


def test_four_channel_inputs_are_drawn_as_their_first_three(tmp_path, events):
    """RGB + depth data: every view draws the RGB channels; nothing fails."""
    import pytorch_lightning as pl
    import torch.nn.functional as F

    from tests.callbacks.test_trust import RelabelledData
    from tests.functional.conftest import SmallCNN

    def add_depth(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.mean(dim=-3, keepdim=True)], dim=-3)

    class FourChannels(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = SmallCNN(classes=5, in_ch=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, _):
            return F.cross_entropy(self(add_depth(batch[0])), batch[1])

        def validation_step(self, batch, _):
            self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    callbacks = [
        lv.ActivationLogger(num_samples=4, on_error="raise"),
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality=(), on_error="raise"),
        lv.GradCAMLogger(num_samples=4, quality=(), on_error="raise"),
        lv.EmbeddingProjector(num_samples=16, projection="pca", on_error="raise"),
        lv.AdversarialProbe(num_samples=8, eps=(0.01,), on_error="raise"),
    ]
    dm = RelabelledData(transform=lambda i, x: add_depth(x))
    fit(tmp_path, callbacks, model=FourChannels(), datamodule=dm, epochs=1)
    images = events(str(tmp_path / "run" / "version_0"))["images"]
    for tag in ("saliency/vanilla", "gradcam/gradcam", "robustness/examples"):
        assert tag in images, sorted(images)
    assert any(t.startswith("activations/") for t in images), sorted(images)
    assert callbacks[1]._probe.images.shape[1] == 4  # type: ignore[union-attr]
