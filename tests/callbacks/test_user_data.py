"""Data set up unlike the demo's: a validation split drawn by a sampler from a dataset
shared with training, data outside [0, 1] without a normalization, an empty
validation loader."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

import lightning_viz as lv
from lightning_viz._runtime.probe import in_order
from lightning_viz.data import LitClassifier
from tests.conftest import fit, lightning_info, make_trainer, read_events, small_datamodule


# ------------------------------------------------- a split made by samplers
class SamplerSplit(pl.LightningDataModule):
    """One dataset of 96 images; training draws 0..47, validation 48..95, each through a
    ``SubsetRandomSampler``. A validation image has 1 in its first pixel, a training
    image 0."""

    def __init__(self, split: str = "subset") -> None:
        super().__init__()
        self.split = split
        g = torch.Generator().manual_seed(0)
        images = torch.rand(96, 3, 32, 32, generator=g) * 0.9
        images[48:, :, 0, 0] = 1.0
        images[:48, :, 0, 0] = 0.0
        self.data = TensorDataset(images, torch.arange(96) % 5)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=16, sampler=SubsetRandomSampler(range(48)))

    def val_dataloader(self) -> DataLoader:
        rows = list(range(95, 47, -1))  # in an order of their own
        if self.split == "list":  # a list of indices is a sampler
            return DataLoader(self.data, batch_size=16, sampler=rows)
        if self.split == "batches":  # a batch sampler of the user's: lists of indices
            return DataLoader(self.data, batch_sampler=[rows[i : i + 16] for i in range(0, 48, 16)])
        if self.split == "numpy":  # a numpy split (np.random.permutation, sklearn)
            return DataLoader(
                self.data, batch_size=16, sampler=SubsetRandomSampler(np.arange(48, 96))
            )
        if self.split == "custom":  # a sampler class of the user's (a k-fold helper's)
            return DataLoader(self.data, batch_size=16, sampler=_Fold(rows))
        return DataLoader(self.data, batch_size=16, sampler=SubsetRandomSampler(range(48, 96)))


class _Fold(torch.utils.data.Sampler):
    """A k-fold helper's sampler: its rows, shuffled by the global RNG at each epoch."""

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows

    def __iter__(self):
        return iter([self.rows[i] for i in torch.randperm(len(self.rows)).tolist()])

    def __len__(self) -> int:
        return len(self.rows)


@pytest.mark.parametrize("split", ["subset", "numpy", "list", "batches", "custom"])
def test_a_validation_split_drawn_by_a_sampler_gives_a_probe_of_validation_images(tmp_path, split):
    """The probe is scanned in dataset order among the sampler's indices: it was the
    whole shared dataset, so half the robustness probe was training images (also for
    a list of indices as the sampler or the batch sampler). A sampler class of the
    user's is not run at setup (its draws would change the run): it is said."""
    import warnings

    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=8, quality=(), on_error="raise")
    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [saliency, probe], epochs=1, datamodule=SamplerSplit(split))
    said = [str(w.message) for w in caught if "does not name the samples" in str(w.message)]
    if split == "custom":
        assert len(said) == 1 and "(_Fold)" in said[0]
        from lightning_fabric.utilities.distributed import DistributedSamplerWrapper

        from lightning_viz._runtime.loaders import opaque_sampler

        wrapped = DistributedSamplerWrapper(_Fold([1, 2]), num_replicas=2, rank=0)
        assert opaque_sampler(DataLoader(range(4), sampler=wrapped)) == "_Fold"  # under DDP
        return
    assert not said
    for cb in (saliency, probe):
        first_pixels = cb._probe.images[:, 0, 0, 0]
        assert bool((first_pixels == 1.0).all()), type(cb).__name__
    assert probe._probe.images.shape[0] == 48  # every validation image, once
    assert saliency._probe.images.shape[0] == 8


def test_in_order_reads_a_subset_sampler_also_inside_lightnings_distributed_wrapper():
    from lightning_fabric.utilities.distributed import DistributedSamplerWrapper

    data = TensorDataset(torch.arange(20).float())
    picked = [13, 2, 7, 19, 2]
    for sampler in (
        SubsetRandomSampler(picked),
        DistributedSamplerWrapper(SubsetRandomSampler(picked), num_replicas=1, rank=0),
    ):
        seen = torch.cat([b[0] for b in in_order(DataLoader(data, batch_size=2, sampler=sampler))])
        assert seen.tolist() == [2.0, 7.0, 13.0, 19.0]
    # a sampler naming no indices (RandomSampler): the whole dataset, in order
    loader = DataLoader(data, batch_size=4, shuffle=True)
    assert torch.cat([b[0] for b in in_order(loader)]).tolist() == list(map(float, range(20)))


# ------------------------------------------------- 0-255 data, no normalization
class Scaled255(pl.LightningDataModule):
    """The built-in shapes as floats in 0..255, with no Normalize anywhere."""

    def __init__(self) -> None:
        super().__init__()
        shapes = small_datamodule(texture_correlation=1.0)  # learns in a few steps
        shapes.setup("fit")

        def tensors(dataset):
            items = [dataset[i] for i in range(len(dataset))]
            return TensorDataset(
                torch.stack([it[0] for it in items]) * 255, torch.stack([it[1] for it in items])
            )

        self.train, self.val = tensors(shapes.train_dataset), tensors(shapes.val_dataset)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=32)


class Divides255(LitClassifier):
    """Scales its 0..255 inputs itself, as many user modules do."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x / 255)


def test_0_255_data_gets_the_normalization_that_makes_it_pixels(tmp_path):
    """Without a normalization, and with mean=None (which the message offered), the
    inputs were clipped to [0, 1] before the model saw them: clean accuracy 0.2 against a
    validation accuracy of 1.0, with no message. Both are now errors that name
    mean=[0.0], std=[1 / 255]; with it the probe measures what validation measures."""
    for kwargs in ({}, {"mean": None, "std": None}):
        cb = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), **kwargs)
        with pytest.raises(ValueError, match=r"mean=\[0\.0\], std=\[1 / 255\] \(0-255 data\)"):
            fit(tmp_path / str(len(kwargs)), [cb], epochs=1, datamodule=Scaled255())
    probe = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(2 / 255,), mean=[0.0], std=[1 / 255], on_error="raise"
    )
    model = Divides255(num_classes=5, lr=1e-2)
    trainer, _ = fit(tmp_path / "ok", [probe], epochs=2, datamodule=Scaled255(), model=model)
    model.eval()
    with torch.no_grad():
        hits = model(probe._probe.images).argmax(1) == probe._probe.labels
    assert trainer.callback_metrics["robustness/clean_acc"].item() == pytest.approx(
        hits.float().mean().item()
    )
    assert hits.float().mean().item() > 0.5  # the model did learn: not chance (0.2)
    assert float(probe._probe.images.max()) > 100  # the probe stays in the model's space


# ------------------------------------------------- an empty validation loader
class CountedLoaders(pl.LightningDataModule):
    """The built-in shapes; counts the calls of ``val_dataloader``; ``val_batch`` larger
    than the validation set with ``drop_last=True`` gives a loader of no batches."""

    def __init__(self, val_batch: int = 32) -> None:
        super().__init__()
        self.shapes = small_datamodule()
        self.val_batch = val_batch
        self.val_calls = 0

    def setup(self, stage: str) -> None:
        self.shapes.setup(stage)

    def train_dataloader(self) -> DataLoader:
        return self.shapes.train_dataloader()

    def val_dataloader(self) -> DataLoader:
        self.val_calls += 1
        return DataLoader(self.shapes.val_dataset, batch_size=self.val_batch, drop_last=True)


def _probe_callbacks() -> list:
    return [
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality=(), on_error="raise"),
        lv.GradCAMLogger(num_samples=4, quality=(), on_error="raise"),
        lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), on_error="raise"),
    ]


def test_an_empty_validation_loader_gives_a_probe_from_the_training_data(tmp_path):
    """It stopped fit at on_fit_start ("the probe data is empty"), whatever on_error said;
    it is now the case of no validation data, said in one line."""
    data = CountedLoaders(val_batch=100)  # 64 validation images, drop_last=True
    callbacks = _probe_callbacks()
    with lightning_info() as messages:
        fit(tmp_path, callbacks, epochs=1, datamodule=data)
    said = [m for m in messages if "pick their probe images from the training data" in m]
    assert said == [
        "lightning-viz: the validation dataloader yields no batches (a dataset of length 0, "
        "or drop_last=True with a batch larger than the dataset): the callbacks pick their "
        "probe images from the training data. Pass `probe=` for held-out images"
    ]
    assert all(cb._enabled and cb._probe_from == "training" for cb in callbacks)
    scalars = read_events(str(tmp_path))["scalars"]
    assert [s for s, _ in scalars["robustness/clean_acc"]] == [4]


def test_the_validation_loader_is_built_once_for_every_callbacks_setup(tmp_path):
    """The user's val_dataloader() ran once per callback (10 calls with all nine)."""
    alone = CountedLoaders()
    fit(tmp_path / "alone", [], epochs=1, datamodule=alone)
    observed = CountedLoaders()
    projector = lv.EmbeddingProjector(num_samples=8, projection="pca", on_error="raise")
    fit(tmp_path / "observed", [*_probe_callbacks(), projector], epochs=1, datamodule=observed)
    assert observed.val_calls == alone.val_calls + 1  # also with the projector (was + 3)


# ------------------------------------------------- labels the model cannot take
class Labelled(pl.LightningDataModule):
    def __init__(self, labels: torch.Tensor) -> None:
        super().__init__()
        images = torch.rand(len(labels), 3, 32, 32, generator=torch.Generator().manual_seed(0))
        self.data = TensorDataset(images, labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.data.tensors[0], torch.arange(40) % 5), batch_size=8)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8)


@pytest.mark.parametrize(
    ("labels", "extra"),
    [
        (torch.arange(40) % 10, ""),  # ten classes in the data, five logits
        (torch.full((40,), -100), "A negative label (an ignore_index such as -100)"),
    ],
    ids=["too_many_classes", "ignore_index"],
)
def test_labels_the_model_cannot_take_are_named_with_the_callback_and_their_source(
    tmp_path, labels, extra
):
    """It said "probe labels must be ..., got <values in [0, 7]>": no callback, and a
    range that is the probe's, not the data's (a pick of 8 of ten classes)."""
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=8, quality=())
    with pytest.raises(ValueError) as caught:
        fit(tmp_path, [cb], epochs=1, datamodule=Labelled(labels))
    text = str(caught.value)
    assert text.startswith("SaliencyLogger: `probe labels` must be class indices in [0, 5)")
    assert "(the labels of the 8 probe images picked from the validation data;" in text
    assert extra in text


def test_task_binary_on_a_model_with_several_logits_is_a_configuration_error(tmp_path):
    """0/1 labels let it through setup; the first epoch end failed on the logits' shape."""
    labels = torch.arange(40) % 2
    cb = lv.AdversarialProbe(eps=(2 / 255,), num_samples=8, task="binary", on_error="warn")
    match = (
        r"AdversarialProbe: task='binary' is a model with one logit \(N, 1\), but this one gives 5"
    )
    with pytest.raises(ValueError, match=match):
        fit(tmp_path, [cb], epochs=1, datamodule=Labelled(labels))


def test_task_multiclass_on_a_one_logit_model_is_a_configuration_error(tmp_path):
    """H64: let through, it scored with the binary rule and a softmax loss whose gradient
    is zero on one logit (a failed sanity check, an accuracy of 0 or 1)."""
    from tests.callbacks.test_trust import RelabelledData, TaskModule

    dm = RelabelledData(relabel=lambda y: torch.tensor([float(y == 0)]))
    cb = lv.AdversarialProbe(eps=(2 / 255,), num_samples=8, task="multiclass")
    match = (
        r"AdversarialProbe: task='multiclass' is a model with one logit per class "
        r"\(N, K >= 2\), but this one gives 1 per image; pass task='binary'"
    )
    with pytest.raises(ValueError, match=match):
        fit(tmp_path, [cb], epochs=1, model=TaskModule(1, "bce"), datamodule=dm)


class SqueezesLabels(LitClassifier):
    def validation_step(self, batch, batch_idx):
        images, labels = batch
        return super().validation_step((images, labels.reshape(-1).long()), batch_idx)


@pytest.mark.parametrize("dtype", [torch.long, torch.float32], ids=["long", "float"])
def test_labels_of_shape_n_by_1_give_the_class_balanced_probe_of_their_classes(tmp_path, dtype):
    """A dataset's ``tensor([c])`` labels, batched to (N, 1), were read as one-entry label
    rows: every sample was class 0 (its argmax), so the "class-balanced" probe was the
    first samples, [0] * 8 + [1] * 2 of data sorted by class."""
    labels = (torch.arange(40) // 8).to(dtype).reshape(40, 1)  # classes 0-4, 8 each, in order
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=10, quality=(), on_error="raise")
    fit(tmp_path, [cb], epochs=1, model=SqueezesLabels(), datamodule=Labelled(labels))
    assert sorted(cb._probe.labels.reshape(-1).tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    from lightning_viz._runtime.probe import class_of

    # a NaN label names no class (it stopped the fit: "cannot convert float NaN to integer")
    assert class_of(torch.tensor([float("nan")])) == -1 and class_of(torch.tensor([0.7])) == 1
    assert class_of(torch.tensor([0.0, float("nan"), 1.0])) == -1  # argmax put it in class 1


_MEAN = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
_STD = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)


class CombinedHooked(LitClassifier):
    """Validates through a CombinedLoader of two loaders (one batch of each at once) and
    normalizes in a hook written for those batches: ``{"a": [x, y], "b": [x, y]}``."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__(num_classes=5)
        self.broken = broken

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if self.trainer.training:
            return batch
        if self.broken and (not isinstance(batch, dict) or batch["a"][0] is batch["b"][0]):
            raise RuntimeError("this hook takes no batch")  # but the loop's
        return {k: [(x - _MEAN) / _STD, y] for k, (x, y) in batch.items()}

    def validation_step(self, batch, batch_idx):
        return super().validation_step(batch["a"], batch_idx)


@pytest.mark.parametrize("broken", [False, True], ids=["combined_hook", "failing_hook"])
def test_a_transfer_hook_written_for_a_combined_loaders_batches_normalizes_the_probe(
    tmp_path, broken
):
    """The probe's batch went through the hooks as one loader's ``[x, y]``: the user's
    hook, written for the dicts a CombinedLoader("max_size_cycle") gives it, raised
    AttributeError and stopped the fit at setup, also with on_error="warn". A hook that
    fails on any batch now turns the callback off with a message (training goes on)."""
    import warnings

    from pytorch_lightning.utilities import CombinedLoader

    dm = small_datamodule(val_size=16)
    dm.setup("fit")
    images = torch.stack([dm.val_dataset[i][0] for i in range(16)])
    data = TensorDataset(images, torch.arange(16) % 5)
    val = CombinedLoader(
        {"a": DataLoader(data, batch_size=8), "b": DataLoader(data, batch_size=8)},
        mode="max_size_cycle",
    )
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=8, quality=())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = make_trainer(tmp_path, [cb], epochs=1, limit_train_batches=1)
        trainer.fit(
            CombinedHooked(broken),
            train_dataloaders=DataLoader(data, batch_size=8),
            val_dataloaders=val,
        )
    said = [str(w.message) for w in caught if "TransferHookError" in str(w.message)]
    if broken:
        assert len(said) == 1, [str(w.message)[:300] for w in caught]
        assert not cb._enabled
        assert "on_after_batch_transfer" in said[0] and "this hook takes no batch" in said[0]
    else:
        assert cb._enabled and not said
        assert cb.mean == pytest.approx([0.5, 0.4, 0.3]) and cb.std == pytest.approx(
            [0.2, 0.25, 0.3]
        )
        torch.testing.assert_close(cb._probe.images, (images[:8] - _MEAN) / _STD)


# ------------------------------------------------- shape bias that is undefined
class AlwaysSix(LitClassifier):
    """Six logits for five classes of data; the sixth always wins."""

    def __init__(self) -> None:
        from lightning_viz.data import SmallCNN

        super().__init__(model=SmallCNN(num_classes=6), lr=1e-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits + torch.tensor([0.0] * 5 + [1e3])


def test_a_shape_bias_no_image_decides_is_said_not_left_out_silently(tmp_path):
    cb = lv.TextureShapeBias(num_images=10, num_samples=10, style_steps=1, on_error="raise")
    with pytest.warns(UserWarning, match=r"none of the \d+ cue-conflict images was") as said:
        trainer, _ = fit(tmp_path, [cb], epochs=2, model=AlwaysSix())
    assert len([w for w in said if "cue-conflict images was" in str(w.message)]) == 1
    scalars = read_events(str(tmp_path))["scalars"]
    assert "bias/shape_bias" not in scalars
    assert [v for _, v in scalars["bias/shape_acc"]] == [0.0, 0.0]


# ------------------------------------------------- a probe in another dtype
def test_a_bf16_probe_is_measured_as_its_float32_values(tmp_path):
    """A ``probe=`` in bfloat16 (natural under ``precision="bf16-true"``): its
    fingerprint failed ("unsupported ScalarType BFloat16") and the probe turned off. It
    is the same probe as its values in float32: same scalars, same fingerprint."""
    g = torch.Generator().manual_seed(1)
    images, labels = torch.rand(8, 3, 32, 32, generator=g).bfloat16(), torch.arange(8) % 5
    results = []
    for name, probe in (("bf16", images), ("fp32", images.float())):
        cb = lv.AdversarialProbe(
            eps=(4 / 255,), steps=2, num_samples=8, probe=(probe, labels), on_error="raise"
        )
        trainer, _ = fit(tmp_path / name, [cb], epochs=1)
        summary = cb._coordinator.summary["robustness/pgd_acc@4/255"].epochs[0]
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if "robustness" in k}
        results.append((metrics, summary.fingerprint, summary.outcomes))
    assert results[0] == results[1]
    assert 0 < len(results[0][0])


class ClassSorted(pl.LightningDataModule):
    """3,000 validation images ordered by class (an ImageFolder), equal shares."""

    def __init__(self, shuffled: bool, classes: int) -> None:
        super().__init__()
        labels = torch.arange(3000) * classes // 3000
        if shuffled:
            labels = labels[torch.randperm(3000, generator=torch.Generator().manual_seed(0))]
        self.val = TensorDataset(torch.rand(3000, 3, 16, 16), labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(*(t[:32] for t in self.val.tensors)), batch_size=16)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=500)


@pytest.mark.parametrize(
    ("shuffled", "classes", "said_classes"),
    [(False, 100, "classes 0 to 68 of the model's 100 only"), (True, 100, None), (False, 2, None)],
    ids=["sorted", "shuffled", "sorted_all_classes_read"],
)
def test_a_class_sorted_validation_set_past_the_scan_limit_is_said(
    tmp_path, shuffled, classes, said_classes
):
    """The scan reads the first 2,048 samples: of a class-ordered set of 100 classes,
    classes 0 to 68 only, so the "class-balanced" probe left 31 classes out without a
    word. Of 2 classes, both are read: nothing to say."""
    import warnings

    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(
            tmp_path,
            [probe],
            epochs=1,
            model=LitClassifier(num_classes=classes),
            datamodule=ClassSorted(shuffled, classes),
            limit_train_batches=1,
            limit_val_batches=1,
        )
    said = [str(w.message) for w in caught if "ordered by class" in str(w.message)]
    if said_classes is None:
        assert said == []
    else:
        assert len(said) == 1 and "first 2048 samples" in said[0] and said_classes in said[0]


@pytest.mark.parametrize(
    ("callback", "said"),
    [
        (
            lambda: lv.GradCAMLogger(layer="block3.conv"),
            "GradCAMLogger: unknown layer 'block3.conv'. Did you mean 'model.block3.conv'?",
        ),
        (
            lambda: lv.SaliencyLogger(methods=("vanilla",), target=7, quality=()),
            "SaliencyLogger: `target` must be",
        ),
    ],
    ids=["layer", "target"],
)
def test_a_setup_error_names_its_callback(tmp_path, callback, said):
    """With several callbacks on a trainer, "unknown layer 'block3.conv'" did not say
    whose option it was (GradCAMLogger's layer=, ActivationLogger's layers=, ...)."""
    with pytest.raises(ValueError) as caught:
        fit(tmp_path, [lv.FilterLogger(), callback()], epochs=1)
    assert str(caught.value).startswith(said)


@pytest.mark.parametrize(
    ("output_to_logits", "said"),
    [
        (lambda out: (out, out), "`output_to_logits` returned tuple, not a tensor of logits"),
        (lambda out: out[:, 0], r"got shape \(2,\) from `output_to_logits`\. "),
    ],
    ids=["tuple", "1-d"],
)
def test_an_output_to_logits_that_gives_no_logits_is_named_as_the_cause(
    tmp_path, output_to_logits, said
):
    """The error advised "pass `output_to_logits`" to a user who had passed one."""
    cb = lv.SaliencyLogger(methods=("vanilla",), output_to_logits=output_to_logits, quality=())
    with pytest.raises(ValueError, match=said) as caught:
        fit(tmp_path, [cb], epochs=1)
    assert "pass `output_to_logits`" not in str(caught.value)


class _WithUnusedLayer(LitClassifier):
    def __init__(self) -> None:
        super().__init__(num_classes=5, lr=1e-2)
        self.unused = torch.nn.Conv2d(3, 4, 3)  # a leftover head: forward never calls it


def test_a_neuron_in_a_layer_the_forward_never_runs_is_named_so(tmp_path):
    """It said "a channel in [0, 0)": an empty range, not the cause (a layer that runs
    and returns a dict is the other cause)."""
    cb = lv.SaliencyLogger(methods=("vanilla",), neuron=("unused", 0), quality=())
    said = r"forward runs \('unused' does not run on the probe images, or returns no tensor\)"
    with pytest.raises(ValueError, match=said):
        fit(tmp_path, [cb], epochs=1, model=_WithUnusedLayer())
