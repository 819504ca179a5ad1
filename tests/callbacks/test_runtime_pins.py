"""Mutation round four (H61): what one-line changes of ``_runtime/`` and the callbacks'
probe setup let through the suite, pinned by a test each (the mutation it catches is
named in each docstring)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    SequentialSampler,
    TensorDataset,
)

import lightning_viz as lv
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz._runtime.loaders import loader_batch_size, opaque_sampler
from lightning_viz._runtime.normalization import (
    affine_normalization,
    find_classes,
    find_normalize,
)
from lightning_viz._runtime.schedule import ended_before_last_batch
from lightning_viz._runtime.transfer import overridden_transfer_hooks
from lightning_viz.data import LitClassifier
from tests.callbacks.test_user_modules import NormalizesAfterTransfer
from tests.conftest import fit


class _Normalize:
    """Recognised as a ``Normalize`` by its class name and attributes."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        self.mean, self.std = mean, std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


_Normalize.__name__ = "Normalize"


class _Data(Dataset):
    def __init__(self, mean: list[float], std: list[float], classes: list | None = None) -> None:
        self.transform = _Normalize(mean, std)
        self.classes = classes

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        return torch.zeros(3, 4, 4), 0


def test_a_concat_datasets_normalize_and_classes_are_its_first_datasets():
    """N4 (``inner[0]`` -> ``inner[-1]``): the last dataset's were read; the tests
    concatenated one dataset with itself."""
    first = _Data([0.5] * 3, [0.25] * 3, ["cat", "dog"])
    second = _Data([0.1] * 3, [0.9] * 3, ["x", "y"])
    loader = DataLoader(ConcatDataset([first, second]))
    assert find_normalize(loader) == ([0.5] * 3, [0.25] * 3)
    assert find_classes(loader) == ["cat", "dog"]


def test_a_classes_list_that_is_not_all_strings_gives_no_class_names():
    """N6 (``all`` -> ``any``): ``["cat", 3]`` was taken as class names."""
    assert find_classes(_Data([0.5], [0.5], ["cat", 3])) is None
    assert find_classes(_Data([0.5], [0.5], ["cat", "dog"])) == ["cat", "dog"]


def test_the_batch_size_of_a_loader_with_a_batch_sampler_is_the_samplers():
    """L7: ``batch_sampler=`` leaves ``loader.batch_size`` None; ``max_batch_size``
    (default: the training batch size) fell back to 32."""
    data = TensorDataset(torch.zeros(20, 3, 4, 4), torch.zeros(20, dtype=torch.long))
    sampler = BatchSampler(SequentialSampler(data), 5, drop_last=False)
    loader = DataLoader(data, batch_sampler=sampler)
    assert loader.batch_size is None and loader_batch_size(loader) == 5
    assert loader_batch_size(DataLoader(data, batch_size=7)) == 7


def test_a_distributed_sampler_is_no_opaque_sampler():
    """L12: a DistributedSampler draws from the whole dataset like a plain one; it was
    said to hide which samples it draws."""
    data = TensorDataset(torch.zeros(8, 3, 4, 4), torch.zeros(8, dtype=torch.long))
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=False)
    assert opaque_sampler(DataLoader(data, batch_size=4, sampler=sampler)) is None


def test_a_flat_data_channel_is_no_normalization():
    """N8 (``<= 0`` -> ``< 0``): a constant channel read as std 0, then divided by."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.full((2, 1, 4, 4), 0.5)
    assert affine_normalization(pixels, torch.rand(2, 1, 4, 4, generator=g)) is None


def test_an_epochs_plan_is_made_once_for_all_of_its_callbacks(tmp_path):
    """K6 (``if epoch not in self._plans`` -> ``if True``): each callback's question made
    the plan again, counting the epoch k times in the budget's allowance."""
    callbacks = [lv.FilterLogger(max_overhead=0.1), lv.ActivationLogger(max_overhead=0.1)]
    trainer, _ = fit(tmp_path, callbacks, epochs=3, keep_budget=True)
    budget = Coordinator.of(trainer).budget
    assert budget.planned_epochs == 3  # one plan an epoch, not one per callback (6)


class _LogsCleanAcc(LitClassifier):
    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("robustness/clean_acc", 0.5, logger=False)  # callback_metrics only
        return out


def test_a_tag_the_module_logs_only_to_callback_metrics_is_said(tmp_path):
    """K21: a tag in ``callback_metrics`` alone (``logger=False``) went unsaid, and a
    monitor read a mix of the two values."""
    probe = lv.AdversarialProbe(eps=(2 / 255,), steps=1, num_samples=4)
    with pytest.warns(UserWarning, match="robustness/clean_acc"):
        fit(tmp_path, [probe], epochs=1, model=_LogsCleanAcc(num_classes=5))


def test_every_callback_listed_after_weight_averaging_is_set_up_once(tmp_path):
    """S11 (``ours[-1]`` -> ``ours[0]``): the first lightning-viz callback reordered the
    list while Lightning looped over it, and the next one was never set up (it then
    measured the training weights, not the averaged ones)."""
    averaging = getattr(pl.callbacks, "EMAWeightAveraging", None)
    if averaging is None:
        pytest.skip("this Lightning has no EMAWeightAveraging")
    calls = []

    class Counted(lv.FilterLogger):
        def setup(self, trainer, pl_module, stage):
            calls.append(stage)
            super().setup(trainer, pl_module, stage)

    robust = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=8, on_error="raise")
    filters = Counted(on_error="raise")
    fit(tmp_path, [averaging(decay=0.5), robust, filters], epochs=1)
    assert calls == ["fit"]
    assert filters._after_validation and robust._after_validation


def test_only_a_scan_cut_short_can_leave_classes_out():
    """P22: a scan that read all the data said "ordered by class, the later classes left
    out" of data that has no later classes."""
    from lightning_viz._runtime.probe import scan

    data = TensorDataset(torch.rand(6, 3, 4, 4), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert scan(data, 2).sorted_by_class() is None
    cut = scan(data, 2, limit=4)
    assert cut.cut and cut.sorted_by_class() == (0, 1)


def test_a_datamodules_transfer_hook_counts():
    """T2: hooks defined on the DataModule alone (normalizing on the device) were not
    gone through, so the probe was not what ``validation_step`` gets."""

    class Normalizing(pl.LightningDataModule):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            return (batch[0] - 0.5) / 0.25, batch[1]

    module = LitClassifier(num_classes=5)
    trainer = SimpleNamespace(datamodule=Normalizing())
    assert overridden_transfer_hooks(trainer, module) == ["on_after_batch_transfer"]
    assert overridden_transfer_hooks(SimpleNamespace(datamodule=None), module) == []


def test_a_binary_model_with_one_logit_takes_two_class_names():
    """PS24: the documented two names of a one-logit binary model must not be refused."""
    cb = lv.SaliencyLogger(class_names=["neg", "pos"])
    cb._task = "binary"
    cb._check_class_names(1)
    three = lv.SaliencyLogger(class_names=["a", "b", "c"])
    three._task = "binary"
    with pytest.raises(ValueError, match="3 names"):
        three._check_class_names(1)


def test_an_epoch_of_an_iterable_loader_cut_by_max_steps_is_known_as_cut():
    """S7 (``not progress.is_last_batch`` -> ``progress.is_last_batch``)."""

    def trainer(last: bool) -> SimpleNamespace:
        progress = SimpleNamespace(is_last_batch=last, current=SimpleNamespace(ready=3))
        loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
        return SimpleNamespace(num_training_batches=float("inf"), fit_loop=loop)

    assert ended_before_last_batch(trainer(False)) is True
    assert ended_before_last_batch(trainer(True)) is False


def test_a_probe_argument_is_taken_as_given_not_through_the_transfer_hooks(tmp_path):
    """PS8: a ``probe=`` of pixels went through the module's normalizing hook."""
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    probe = TensorDataset(images, torch.arange(8) % 5)
    cb = lv.SaliencyLogger(
        methods=("vanilla",), probe=probe, num_samples=8, quality=(), on_error="raise"
    )
    fit(tmp_path, [cb], epochs=1, model=NormalizesAfterTransfer())
    assert torch.equal(cb._probe.images, images)
