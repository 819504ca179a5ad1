"""Class names read from the data's ``classes`` (ImageFolder, torchvision's datasets)."""

from __future__ import annotations

import glob
import os
from typing import Any

import pytest
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

import lightning_viz as lv
from lightning_viz._runtime.normalization import find_classes
from lightning_viz.data import ShapesTexturesDataModule
from tests.callbacks.test_embedding_projector import projector_dir, read_tsv
from tests.callbacks.test_real_setups import Transformed, _dataset
from tests.conftest import fit, lightning_info

NAMES = ["ring", "box", "wedge", "spark", "plus"]  # not the built-in data's names


class Named(Transformed):
    """A dataset with ``classes`` and ``target_transform``, as ImageFolder has."""

    def __init__(self, base: Dataset, classes: Any, target_transform: Any = None) -> None:
        super().__init__(base, None, target_transform)
        self.classes, self.target_transform = classes, target_transform


class NamedShapes(ShapesTexturesDataModule):
    """The built-in data in a ``Subset`` of a dataset that names its classes."""

    def __init__(self, classes: Any, target_transform: Any = None) -> None:
        super().__init__(train_size=64, val_size=32, batch_size=16)
        self.classes, self.target_transform = classes, target_transform

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            self.setup()
            dataset = self.train_dataset if shuffle else self.val_dataset
        named = Named(dataset, self.classes, self.target_transform)
        return super()._loader(Subset(named, range(len(dataset))), shuffle)


def test_find_classes_reads_the_first_classes_list_through_the_wrappers():
    data = Subset(Named(_dataset(), NAMES), range(4))
    assert find_classes(DataLoader(data, batch_size=2)) == NAMES
    assert find_classes(ConcatDataset([data, data])) == NAMES
    assert find_classes(Named(_dataset(), tuple(NAMES))) == NAMES
    # a target_transform may make the labels index something else; not names: no names
    assert find_classes(Subset(Named(_dataset(), NAMES, int), range(4))) is None
    assert find_classes(Named(_dataset(), [0, 1, 2, 3, 4])) is None
    assert find_classes(Named(_dataset(), [])) is None
    assert find_classes(_dataset()) is None


def test_captions_and_projector_labels_use_the_validation_datasets_classes(tmp_path):
    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, on_error="raise")
    given = lv.GradCAMLogger(num_samples=2, class_names=list("abcde"), on_error="raise")
    projector = lv.EmbeddingProjector(num_samples=8, projection="pca", on_error="raise")
    with lightning_info() as messages:
        fit(tmp_path, [saliency, given, projector], epochs=1, datamodule=NamedShapes(NAMES))
    said = [m for m in messages if "class names" in m]
    assert said == [
        "lightning-viz: the class names are the validation dataset's `classes` (ring, box, "
        "wedge, ...); pass class_names= to override"
    ]
    assert [saliency.class_name(i) for i in range(6)] == [*NAMES, "5"]
    assert [given.class_name(i) for i in range(5)] == list("abcde")  # given names win
    data = NamedShapes(NAMES)
    data.setup("fit")
    labels = [int(data.val_dataset[i][1]) for i in range(8)]
    meta = read_tsv(os.path.join(projector_dir(tmp_path, 4, "embedding/model.fc"), "metadata.tsv"))
    assert [row[0] for row in meta[1:]] == [NAMES[i] for i in labels]


def test_found_class_names_are_one_line_each_as_given_ones(tmp_path):
    """H59: a folder name with a tab or a line break (ImageFolder's `classes`) broke the
    captions' lines; given names were made one line, found ones were not."""
    found = ["first\nline", "tab\there", "a\r\n\tb", "box", "plus"]
    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, on_error="raise")
    fit(tmp_path, [saliency], epochs=1, datamodule=NamedShapes(found))
    assert [saliency.class_name(i) for i in range(5)] == [
        "first line",
        "tab here",
        "a b",
        "box",
        "plus",
    ]


@pytest.mark.parametrize(
    ("classes", "target_transform"),
    [(NAMES[:4], None), (NAMES, int)],
    ids=["four names for five classes", "target_transform"],
)
def test_classes_that_may_not_name_the_models_classes_are_not_used(
    tmp_path, classes, target_transform
):
    """Also the projector's (H64: it took four names for five classes, its metadata
    mixing names and bare indices, while the other callbacks' captions did not)."""
    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, on_error="raise")
    projector = lv.EmbeddingProjector(num_samples=20, projection="pca", on_error="raise")
    data = NamedShapes(classes, target_transform)
    with lightning_info() as messages:
        fit(tmp_path, [saliency, projector], epochs=1, datamodule=data)
    assert not [m for m in messages if "class names" in m]
    for callback in (saliency, projector):
        assert [callback.class_name(i) for i in range(5)] == ["0", "1", "2", "3", "4"]
    (metadata,) = glob.glob(str(tmp_path / "**" / "metadata.tsv"), recursive=True)
    labels = {row.split("\t")[0] for row in open(metadata).read().split("\n")[1:] if row}
    assert labels <= {"0", "1", "2", "3", "4"} and labels


def test_filter_templates_are_named_as_classes_only_in_a_layer_of_one_unit_per_class(
    monkeypatch,
):
    """The 12 hidden units of an MLP's first Linear were captioned with the class names
    (then numbers): as if they were class templates."""
    from torch import nn

    from lightning_viz.callbacks import filters

    seen: list[list[str]] = []
    grid = filters.render.image_grid

    def keep(tiles, **kwargs):
        seen.append(kwargs["captions"])
        return grid(tiles, **kwargs)

    monkeypatch.setattr(filters.render, "image_grid", keep)
    cb = lv.FilterLogger(class_names=NAMES)
    for units in (12, 5):
        layer = nn.Linear(3 * 8 * 8, units)
        cb._image(layer, layer.weight, (3, 8, 8))
    assert seen == [[str(i) for i in range(12)], NAMES]
    binary = lv.FilterLogger(class_names=["cat", "dog"])  # H64: its one template was "0"
    layer = nn.Linear(3 * 8 * 8, 1)
    binary._image(layer, layer.weight, (3, 8, 8))
    assert seen[-1] == ["dog vs cat"]  # a positive weight pushes towards class 1
