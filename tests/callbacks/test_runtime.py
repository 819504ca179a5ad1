"""The shared callback runtime: scheduling, probes, loggers, state, configuration errors."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_viz as lv
from lightning_viz._runtime import probe as _probe
from lightning_viz.data import LitClassifier
from tests.conftest import fit, make_trainer, read_events, small_datamodule


def _image_steps(tmp_path, tag):
    return [e[0] for e in read_events(str(tmp_path))["images"].get(tag, [])]


def test_every_n_epochs_runs_only_on_due_epochs(tmp_path):
    fit(tmp_path, [lv.FilterLogger(every_n_epochs=2, on_error="raise")], epochs=3)
    assert _image_steps(tmp_path, "filters/model.block1.conv") == [8]  # epoch 1 only


def test_runs_at_train_epoch_end_without_validation(tmp_path):
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=3, on_error="raise")
    fit(tmp_path, [cb], epochs=2, limit_val_batches=0)
    assert _image_steps(tmp_path, "saliency/vanilla") == [4, 8]


def test_only_during_fit_not_in_validate(tmp_path):
    cb = lv.FilterLogger(on_error="raise")
    trainer, model = fit(tmp_path, [cb], epochs=1)
    trainer.validate(model, datamodule=small_datamodule(), verbose=False)
    assert _image_steps(tmp_path, "filters/model.block1.conv") == [4]


def _elsewhere_logger():
    """A Lightning logger lightning-viz has no backend for."""
    from pytorch_lightning.loggers import Logger

    class Elsewhere(Logger):
        name, version = "elsewhere", 0

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def log_metrics(self, metrics, step=None):
            pass

    return Elsewhere()


def test_without_a_supported_logger_warns_once_and_stays_off(tmp_path):
    callbacks = [lv.FilterLogger(on_error="raise"), lv.ActivationLogger(on_error="raise")]
    with pytest.warns(UserWarning, match="need a logger they can write to") as record:
        trainer, _ = fit(tmp_path, callbacks, epochs=2, logger=_elsewhere_logger())
    said = [str(w.message) for w in record if "need a logger" in str(w.message)]
    assert len(said) == 1 and "['Elsewhere']" in said[0]  # once for both callbacks
    assert all(cb._last_epoch is None for cb in callbacks)
    assert "viz/FilterLogger/seconds" not in trainer.callback_metrics


def test_save_dir_of_any_callback_is_used_and_two_different_ones_are_an_error(tmp_path):
    """It was the first callback's save_dir or nothing: a save_dir on the second was
    ignored (both turned off, or both wrote to the first one's folder). An unsupported
    logger beside save_dir now writes there too."""
    import os

    callbacks = [lv.FilterLogger(on_error="raise"), lv.ActivationLogger(save_dir=tmp_path / "v")]
    fit(tmp_path, callbacks, epochs=1, logger=False)
    assert os.path.isfile(tmp_path / "v" / "lightning_viz" / "summary.json")
    assert os.listdir(tmp_path / "v" / "lightning_viz" / "images")
    fit(tmp_path / "b", [lv.FilterLogger(save_dir=tmp_path / "w")], logger=_elsewhere_logger())
    assert os.path.isdir(tmp_path / "w" / "lightning_viz" / "images")
    both = [lv.FilterLogger(save_dir=tmp_path / "x"), lv.ActivationLogger(save_dir=tmp_path / "y")]
    with pytest.raises(ValueError, match="save_dir differ"):
        fit(tmp_path / "c", both, epochs=1, logger=False)


def test_a_logger_without_backend_gets_one_line_and_the_others_everything(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger

    callbacks = [lv.FilterLogger(on_error="raise"), lv.ActivationLogger(on_error="raise")]
    loggers = [TensorBoardLogger(str(tmp_path), name="run", version=0), _elsewhere_logger()]
    with pytest.warns(UserWarning) as record:
        fit(tmp_path, callbacks, epochs=1, logger=loggers)
    said = [str(w.message) for w in record if "no lightning-viz backend" in str(w.message)]
    assert said == [
        "lightning-viz: Elsewhere has no lightning-viz backend and gets nothing; lightning-viz "
        "writes to TensorBoard (supported: TensorBoardLogger, WandbLogger, MLFlowLogger, "
        "CSVLogger, or save_dir= when no logger has one)"
    ]
    assert _image_steps(tmp_path, "filters/model.block1.conv") == [4]


def test_works_with_the_unified_lightning_package(tmp_path):
    import lightning.pytorch as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_viz.data import SmallCNN

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = SmallCNN(num_classes=5)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, _):
            self.log("val_loss", nn.functional.cross_entropy(self(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    dm = small_datamodule()
    dm.setup("fit")
    cbs = [
        lv.GradCAMLogger(num_samples=3, on_error="raise"),
        lv.ActivationLogger(on_error="raise"),
    ]
    L.seed_everything(0)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=TensorBoardLogger(str(tmp_path), name="run", version=0),
        callbacks=cbs,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_train_batches=2,
        limit_val_batches=1,
    )
    # plain dataloaders, no datamodule: the probe comes from the validation loader
    trainer.fit(
        Module(), train_dataloaders=dm.train_dataloader(), val_dataloaders=dm.val_dataloader()
    )
    ev = read_events(str(tmp_path))
    assert [e[0] for e in ev["images"]["gradcam/gradcam"]] == [2]
    assert "activations/net.block1.conv" in ev["images"]
    assert cbs[0]._layer_name == "net.block3.conv"


def test_resumed_run_keeps_the_probe_and_filter_history(tmp_path, monkeypatch):
    from pytorch_lightning.callbacks import ModelCheckpoint

    first = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise")
    filters = lv.FilterLogger(on_error="raise")
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    fit(tmp_path / "a", [first, filters, ckpt], epochs=1, enable_checkpointing=True)
    saved_indices = list(first._probe_indices)
    saved_images = first._probe.images.clone()

    # a fresh pick would now choose other images: the resumed run must not use it
    monkeypatch.setattr(_probe, "balanced_pick", lambda labels, n: list(range(10, 10 + n)))
    second = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise")
    filters2 = lv.FilterLogger(on_error="raise")
    fit(
        tmp_path / "b",
        [second, filters2, ModelCheckpoint(dirpath=str(tmp_path / "ckpt2"))],
        epochs=2,
        enable_checkpointing=True,
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
    )
    assert second._probe_indices == saved_indices
    assert torch.equal(second._probe.images, saved_images)
    ev = read_events(str(tmp_path / "b"))
    assert [e[0] for e in ev["images"]["saliency/vanilla"]] == [8]  # continues at epoch 1
    # the filter change is measured against the weights saved in the checkpoint
    assert [s for s, _ in ev["scalars"]["filters/model.block1.conv/change"]] == [8]


def test_probe_argument_forms(tmp_path):
    images = torch.rand(6, 3, 32, 32)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    as_tensor = lv.SaliencyLogger(methods=("vanilla",), probe=images, num_samples=4)
    as_tuple = lv.GradCAMLogger(probe=(images, labels), num_samples=3, tag_prefix="cam_tuple")
    as_dataset = lv.ActivationLogger(probe=TensorDataset(images, labels), num_samples=3)
    fit(tmp_path, [as_tensor, as_tuple, as_dataset], epochs=1)
    assert torch.equal(as_tensor._probe.images, images[:4]) and as_tensor._probe.labels is None
    assert as_tuple._probe.labels.tolist() == [0, 1, 2]  # one per class
    assert torch.equal(as_tuple._probe.images, images[[0, 2, 4]])
    assert as_dataset._probe.labels.tolist() == [0, 1, 2]
    tags = read_events(str(tmp_path))["images"]
    assert "saliency/vanilla" in tags and "cam_tuple/gradcam" in tags


def test_dict_batches_and_custom_batch_to_xy():
    images = torch.rand(8, 3, 8, 8)
    labels = torch.arange(8) % 2
    dicts = [{"image": images[:4], "label": labels[:4]}, {"image": images[4:], "label": labels[4:]}]
    probe = _probe.load_probe(dicts, 4)
    assert probe.labels.tolist() == [0, 1, 0, 1]
    custom = _probe.load_probe([(labels[:4], images[:4])], 2, batch_to_xy=lambda b: (b[1], b[0]))
    assert torch.equal(custom.images, images[:2])
    with pytest.raises(TypeError, match="batch_to_xy"):
        _probe.load_probe([(images, labels)], 2, batch_to_xy=lambda b: b[0])


def test_a_resume_with_another_num_samples_says_it_keeps_the_checkpoints_probe(tmp_path):
    """The checkpoint's probe is kept (its history stays paired); a changed
    ``num_samples`` was ignored without a word."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    def probe(n):
        return lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=n)

    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    fit(tmp_path / "a", [probe(8), ckpt], epochs=1, enable_checkpointing=True)
    for n, told in ((8, 0), (12, 1)):
        resumed = probe(n)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            fit(
                tmp_path / f"b{n}",
                [resumed],
                epochs=2,
                ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
            )
        said = [
            w for w in record if "keeps the checkpoint's probe (num_samples=8)" in str(w.message)
        ]
        assert len(said) == told and len(resumed._probe.images) == 8


def test_balanced_pick_round_robin():
    labels = [2, 2, 0, 1, 0, 2, 1, 1]
    # first of each class (0 at 2, 1 at 3, 2 at 0), then the second of each
    assert _probe.balanced_pick(labels, 3) == [0, 2, 3]
    assert _probe.balanced_pick(labels, 5) == [0, 2, 3, 4, 6]  # then the 0 at 4, the 1 at 6
    assert _probe.balanced_pick(labels, 100) == list(range(8))


def test_an_ignore_index_label_is_never_picked_while_labelled_samples_are_there():
    """Validation samples labelled -100 (``ignore_index``) were picked as one more class,
    and the probe was then refused as "not class indices" at setup."""
    labels = [-100, 0, -100, 1, 0, -100, 1]
    assert _probe.balanced_pick(labels, 4) == [1, 3, 4, 6]
    assert _probe.balanced_pick(labels, 100) == [1, 3, 4, 6]
    assert _probe.balanced_pick([-100, -100], 1) == [0]  # nothing labelled: the check says so
    assert _probe.classes_seen([torch.tensor(v) for v in labels]) == [0, 1]
    images = torch.rand(7, 3, 8, 8)
    probe = _probe.load_probe(DataLoader(TensorDataset(images, torch.tensor(labels)), 4), 4)
    assert probe.labels.tolist() == [0, 1, 0, 1]


def test_scan_keeps_only_the_images_a_pick_can_take():
    # 600 samples of 5 classes in a shuffled order: a pick of 8 must not hold 600 images
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(600, 3, 8, 8, generator=gen)
    labels = torch.randint(0, 5, (600,), generator=gen)
    data = TensorDataset(images, labels)
    scanned = _probe.scan(DataLoader(data, batch_size=16), 8)
    kept = [i for i, im in enumerate(scanned.images) if im is not None]
    expected = _probe.balanced_pick(labels.tolist(), 8)
    assert set(expected) <= set(kept) and len(kept) <= 2 * 8  # the pick and the first 8
    assert len(scanned.labels) == 600  # every label is kept
    probe = scanned.probe(8)
    assert probe.indices == expected and torch.equal(probe.images, images[expected])
    assert probe.seen == sorted(set(labels.tolist()))
    # every smaller pick is served by the same scan, as a fresh load would pick it
    for n in (1, 3, 5):
        assert scanned.probe(n).indices == _probe.load_probe(data, n).indices
    with pytest.raises(LookupError):
        scanned.probe(40)  # not kept
    # unlabelled data: the scan stops after num_samples
    bare = _probe.scan(DataLoader(images, batch_size=16), 8)
    assert len(bare.images) == 16 and torch.equal(bare.probe(8).images, images[:8])


class _Counting(TensorDataset):
    reads = 0

    def __getitem__(self, index):
        _Counting.reads += 1
        return super().__getitem__(index)


class _CountingModule:
    """The shapes datamodule with a validation set that counts its reads."""

    @staticmethod
    def make():
        from lightning_viz.data import ShapesTexturesDataModule

        class Module(ShapesTexturesDataModule):
            def setup(self, stage=None):
                super().setup(stage)
                items = [self.val_dataset[i] for i in range(len(self.val_dataset))]
                images = torch.stack([item[0] for item in items])
                labels = torch.as_tensor([int(item[1]) for item in items])
                self.val_dataset = _Counting(images, labels)

        return Module(train_size=64, val_size=48, batch_size=16, seed=0)


class _StoppedAtFirstStepError(Exception):
    pass


def test_callbacks_that_read_the_same_data_share_one_scan(tmp_path):
    import pytorch_lightning as pl

    probes = {}

    class Stop(pl.Callback):  # keeps each probe (teardown after the stop clears them)
        def on_train_batch_start(self, *args):
            probes.update({type(cb).__name__: cb._probe for cb in callbacks})
            raise _StoppedAtFirstStepError

    dm = _CountingModule.make()
    callbacks = [
        lv.GradCAMLogger(num_samples=8),
        lv.SaliencyLogger(methods=("vanilla",), num_samples=8),
        lv.ActivationLogger(num_samples=2),
        lv.AdversarialProbe(num_samples=30),
        lv.EmbeddingProjector(num_samples=1000),  # reads the data its own way, at epoch end
    ]
    _Counting.reads = 0
    with pytest.raises(_StoppedAtFirstStepError):
        fit(tmp_path, [*callbacks, Stop()], epochs=1, datamodule=dm, num_sanity_val_steps=0)
    # one scan for four callbacks, not four; and the first validation batch (16), whose
    # images and channels EmbeddingProjector checks at setup
    assert _Counting.reads == 48 + 16
    labels = dm.val_dataset.tensors[1].tolist()
    assert probes.pop("EmbeddingProjector") is None  # no probe: it reads the data itself
    for cb in callbacks[:-1]:  # each pick is the one a scan of its own would make
        probe = probes[type(cb).__name__]
        assert probe.indices == _probe.balanced_pick(labels, cb.num_samples)
        assert torch.equal(probe.images, dm.val_dataset.tensors[0][probe.indices])
    # copies: one callback's probe is not another's
    assert probes["GradCAMLogger"].images.data_ptr() != probes["SaliencyLogger"].images.data_ptr()


# --------------------------------------------------------------- configuration errors
class _Flagged(LitClassifier):
    """Records whether any training step ran."""

    stepped = False

    def training_step(self, batch, batch_idx):
        type(self).stepped = True
        return super().training_step(batch, batch_idx)


class _NoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3 * 32 * 32, 5)

    def forward(self, x):
        return self.fc(self.flat(x))


def _fails_before_training(tmp_path, callback, match, model=None, datamodule=None):
    _Flagged.stepped = False
    model = model or _Flagged(num_classes=5)
    with pytest.raises(ValueError, match=match):
        fit(tmp_path, [callback], epochs=1, model=model, datamodule=datamodule)
    assert not _Flagged.stepped


def test_gradcam_without_conv_layer_fails_at_setup(tmp_path):
    _fails_before_training(
        tmp_path,
        lv.GradCAMLogger(on_error="raise"),
        "needs a convolutional layer",
        model=_Flagged(model=_NoConv()),
    )


class _FoldedPatches(nn.Module):
    """Its only conv runs over 2x2 patches folded into the batch (TNT's pixel embedding)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        n, c, h, w = x.shape
        patches = x.unfold(2, h // 2, h // 2).unfold(3, w // 2, w // 2)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(n * 4, c, h // 2, w // 2)
        return self.fc(self.conv(patches).mean(dim=(2, 3)).view(n, 4, -1).mean(dim=1))


def test_gradcam_without_a_default_layer_turns_off_and_training_goes_on(tmp_path):
    """No layer the default can pick (TNT, a transformers Swin read as a ViT): the
    ValueError of the layer choice stopped the fit at setup with on_error="warn"."""
    _Flagged.stepped = False
    cb = lv.GradCAMLogger()
    with pytest.warns(UserWarning, match="GradCAMLogger cannot run .* no default layer"):
        fit(tmp_path, [cb], epochs=1, model=_Flagged(model=_FoldedPatches()))
    assert _Flagged.stepped and not cb._enabled
    with pytest.raises(ValueError, match="no default layer on this model"):
        fit(
            tmp_path,
            [lv.GradCAMLogger(on_error="raise")],
            epochs=1,
            model=_Flagged(model=_FoldedPatches()),
        )


def test_misspelt_layer_names_the_closest_match(tmp_path):
    _fails_before_training(
        tmp_path,
        lv.ActivationLogger(layers=["model.block1.cnv"]),
        "Did you mean 'model.block1.conv'",
    )
    _fails_before_training(
        tmp_path, lv.GradCAMLogger(layer="model.block3.conv2"), "unknown layer 'model.block3.conv2'"
    )
    _fails_before_training(
        tmp_path, lv.SaliencyLogger(neuron=("model.blok2.conv", 0)), "Did you mean"
    )


class _VectorData:
    """A datamodule-like object with 1-D (non-image) inputs."""

    def __init__(self):
        import pytorch_lightning as pl

        x = torch.randn(64, 3 * 32 * 32)
        y = torch.arange(64) % 5

        class DM(pl.LightningDataModule):
            def train_dataloader(self):
                return DataLoader(TensorDataset(x, y), batch_size=16)

            def val_dataloader(self):
                return DataLoader(TensorDataset(x, y), batch_size=16)

        self.dm = DM()


def test_non_image_inputs_fail_at_setup(tmp_path):
    class Flat(_Flagged):
        def forward(self, x):
            return super().forward(x.view(-1, 3, 32, 32))

    _fails_before_training(
        tmp_path,
        lv.SaliencyLogger(),
        r"need image inputs of shape \(N, C, H, W\).*\(16, 3072\)",
        model=Flat(num_classes=5),
        datamodule=_VectorData().dm,
    )


def _images_datamodule(x):
    import pytorch_lightning as pl

    y = torch.arange(len(x)) % 5

    class DM(pl.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(TensorDataset(x, y), batch_size=16)

        def val_dataloader(self):
            return DataLoader(TensorDataset(x, y), batch_size=16)

    return DM()


class _ChannelsLast(_Flagged):
    def forward(self, x):  # (N, H, W, 3), as a NumPy pipeline without a permute gives
        return super().forward(x.permute(0, 3, 1, 2))


class _NoChannelAxis(_Flagged):
    def forward(self, x):  # (N, H, W) grayscale
        return super().forward(x.unsqueeze(1))


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        (
            "channels_last",
            r"images of shape \(16, 32, 32, 3\) look channels-last \(N, H, W, C\) with 3 "
            r"channels.*would see 32 channels of 3-px-wide images\. Pass "
            r"`batch_to_xy=lambda b: \(b\[0\]\.permute\(0, 3, 1, 2\), b\[1\]\)` and "
            r"`images_to_input=lambda x: x\.permute\(0, 2, 3, 1\)`",
        ),
        (
            "no_channel_axis",
            r"tensors of shape \(16, 32, 32\)\. If they are grayscale images \(N, H, W\), pass "
            r"`batch_to_xy=lambda b: \(b\[0\]\.unsqueeze\(1\), b\[1\]\)` and "
            r"`images_to_input=lambda x: x\[:, 0\]`",
        ),
    ],
)
def test_channels_last_and_channel_less_images_are_refused_naming_the_adapters(
    tmp_path, layout, match
):
    """They were read as (N, C, H, W) without a word (channels-last: 32 channels of 3-px
    images, maps and corruptions of those); the adapters the refusal names read them."""
    if layout == "channels_last":
        x, make = torch.rand(64, 32, 32, 3), lambda: _ChannelsLast(num_classes=5)
        adapters = {
            "batch_to_xy": lambda b: (b[0].permute(0, 3, 1, 2), b[1]),
            "images_to_input": lambda x: x.permute(0, 2, 3, 1),
        }
    else:
        x, make = torch.rand(64, 32, 32), lambda: _NoChannelAxis(num_classes=5, in_channels=1)
        adapters = {
            "batch_to_xy": lambda b: (b[0].unsqueeze(1), b[1]),
            "images_to_input": lambda x: x[:, 0],
        }
    _fails_before_training(
        tmp_path, lv.SaliencyLogger(), match, model=make(), datamodule=_images_datamodule(x)
    )
    read = lv.SaliencyLogger(num_samples=2, on_error="raise", **adapters)
    trainer, _ = fit(
        tmp_path / "read", [read], epochs=1, model=make(), datamodule=_images_datamodule(x)
    )
    assert read._probe.images.shape[1:] == (3 if layout == "channels_last" else 1, 32, 32)
    images = read_events(str(tmp_path / "read"))["images"]
    assert [step for step, *_ in images["saliency/vanilla"]] == [trainer.global_step]


def test_a_channels_last_probe_tensor_is_refused_naming_what_reads_it(tmp_path):
    """H67: the hint named `batch_to_xy`, which a probe tensor never goes through."""
    _fails_before_training(
        tmp_path,
        lv.SaliencyLogger(probe=torch.rand(4, 32, 32, 3)),
        r"the probe's images of shape \(4, 32, 32, 3\) look channels-last .* Pass the probe "
        r"as `x\.permute\(0, 3, 1, 2\)` and `images_to_input=lambda x: x\.permute\(0, 2, 3, 1\)`",
        model=_ChannelsLast(num_classes=5),
        datamodule=_images_datamodule(torch.rand(64, 32, 32, 3)),
    )


class _PermutesOnTheDevice(_Flagged):
    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch  # uint8 (N, H, W, 3) -> [0, 1] floats (N, 3, H, W), as GPU preprocessing
        return x.permute(0, 3, 1, 2).float() / 255, y


def test_channels_last_data_a_transfer_hook_permutes_is_read(tmp_path):
    """H67: only the batches as the hooks leave them are the probe; the refusal of
    channels-last images reached the dataloader's own batch (read to find a normalization
    in the hooks) and stopped this fit."""
    x = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8)
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=2, on_error="raise")
    fit(
        tmp_path,
        [cb],
        epochs=1,
        model=_PermutesOnTheDevice(num_classes=5),
        datamodule=_images_datamodule(x),
    )
    assert cb._probe.images.shape[1:] == (3, 32, 32)
    assert float(cb._probe.images.max()) <= 1


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: lv.SaliencyLogger(num_samples=0),
            ValueError,
            "`num_samples` must be an int >= 1, got 0",
        ),
        (
            lambda: lv.FilterLogger(every_n_epochs=0),
            ValueError,
            "`every_n_epochs` must be an int >= 1",
        ),
        (lambda: lv.FilterLogger(every_n_epochs=1.5), TypeError, "must be an int >= 1, got 1.5"),
        (lambda: lv.FilterLogger(on_error="ignore"), ValueError, "one of .*'ignore'"),
        # a numpy array is no choice (it was stored as on_error, or numpy's truth-value
        # error leaked)
        (lambda: lv.FilterLogger(on_error=np.array(["warn"])), ValueError, r"one of \['warn'"),
        (lambda: lv.TextureShapeBias(background=np.array([1, 0])), TypeError, "`background`"),
        (lambda: lv.FilterLogger(max_filters=0), ValueError, "`max_filters`"),
        (lambda: lv.FilterLogger(std=[0.5, 0.0, 0.5]), ValueError, "`std` must be positive"),
        (
            lambda: lv.FilterLogger(mean=[0.5, 0.5], std=[1, 1, 1]),
            ValueError,
            "2 values and `std` has 3",
        ),
        (
            lambda: lv.FilterLogger(mean="0.5"),
            TypeError,
            "`mean` must be None, 'auto' or a non-empty list",
        ),
        # one of the two alone: a made-up mean 0 / std 1, or the data's Normalize ignored
        (
            lambda: lv.FilterLogger(mean=None, std=[0.5]),
            ValueError,
            "given together.*std=\\[0.5\\]",
        ),
        (lambda: lv.FilterLogger(std=[0.5]), ValueError, "given together.*mean='auto'"),
        (lambda: lv.FilterLogger(mean=[0.5], std=None), ValueError, "must be given together"),
        (lambda: lv.FilterLogger(probe="dir/"), TypeError, "ImageFolder"),
        # masks spelled out in probe= that are no masks of the images (left out unsaid)
        (
            lambda: lv.SaliencyLogger(
                probe=(torch.rand(4, 3, 16, 16), torch.zeros(4).long(), torch.ones(4, 1, 8, 8))
            ),
            ValueError,
            r"0/1 masks \(4, 1, 16, 16\), got <masks \(4, 1, 8, 8\) of torch.float32",
        ),
        (  # an empty placeholder: torch's min() error leaked
            lambda: lv.SaliencyLogger(
                probe=(torch.rand(4, 3, 8, 8), torch.zeros(4).long(), torch.empty(0))
            ),
            ValueError,
            r"0/1 masks \(4, 1, 8, 8\), got <masks \(0,\)>$",
        ),
        (
            lambda: lv.SaliencyLogger(
                probe=(torch.rand(2, 3, 4, 4), torch.zeros(2).long(), torch.full((2, 4, 4), 0.5))
            ),
            ValueError,
            r"got <masks \(2, 4, 4\) of torch.float32 values in \[0.5, 0.5\]>",
        ),
        # the option the user gave is named, with what is valid (not None, not `root`)
        (
            lambda: lv.CorruptionProbe(severities=[0]),
            ValueError,
            r"^`severities` must be distinct ints in 1\.\.5, got \[0\]$",
        ),
        (
            lambda: lv.TextureShapeBias(cue_conflict="/no/such/folder"),
            ValueError,
            r"^`cue_conflict` must be a Dataset, an existing folder or None, got '/no/such/folder'",
        ),
        (
            lambda: lv.ClassModelLogger(image_shape=(3, 0, 32)),
            ValueError,
            r"^`image_shape` must be 3 positive ints \(C, H, W\), got \(3, 0, 32\)$",
        ),
        # an empty or unbatched tensor probe (a torch min() error at setup)
        (
            lambda: lv.FilterLogger(probe=torch.rand(0, 3, 8, 8)),
            ValueError,
            r"`probe` must be images as a non-empty batch \(N, C, H, W\), got <shape \(0, 3",
        ),
        (
            lambda: lv.SaliencyLogger(probe=(torch.rand(3, 8, 8), torch.tensor([0]))),
            ValueError,
            r"the images of \(images, labels\) as a non-empty .* got <shape \(3, 8, 8\)>",
        ),
        (lambda: lv.FilterLogger(task="regression"), ValueError, "`task` must be one of"),
        (
            lambda: lv.FilterLogger(images_to_input="no_such_module.fn"),
            ValueError,
            "does not import",
        ),
        (lambda: lv.FilterLogger(tag_prefix="/"), ValueError, "`tag_prefix`"),
        (lambda: lv.FilterLogger(save_dir=""), ValueError, "`save_dir` must be a non-empty"),
        (  # H65: written to a folder "s3:" of the current one, without a word
            lambda: lv.FilterLogger(save_dir="s3://bucket/viz"),
            ValueError,
            r"`save_dir` must be a non-empty local folder path \(not a URL, not a file\) or "
            r"None, got 's3://bucket/viz'",
        ),
        (  # H65: a FileExistsError from inside Lightning's CSV logger, at setup
            lambda: lv.FilterLogger(save_dir=__file__),
            ValueError,
            "`save_dir` must be a non-empty local folder path",
        ),
        (lambda: lv.FilterLogger(save_dir=3), TypeError, "`save_dir` must be a folder path"),
        (lambda: lv.FilterLogger(class_names="abc"), TypeError, "`class_names`"),
        (  # H64: a JSON file's {index: name} became the names "0", "1", "2"
            lambda: lv.FilterLogger(class_names={"0": "cat", "1": "dog"}),
            TypeError,
            r"`class_names` must be a list of strings, got \{'0': 'cat', '1': 'dog'\}",
        ),
        (
            lambda: lv.EmbeddingProjector(class_names={"cat", "dog"}),
            TypeError,
            "`class_names` must be a list of strings, got",
        ),
        (
            lambda: lv.FilterLogger(batch_to_xy=3),
            TypeError,
            "`batch_to_xy` must be a callable or an import path",
        ),
        (
            lambda: lv.SaliencyLogger(methods=("vanila",)),
            ValueError,
            "`methods` must be a non-empty list of names from \\['vanilla'",
        ),
        (lambda: lv.SaliencyLogger(target="best"), ValueError, "'predicted', 'true'"),
        (lambda: lv.SaliencyLogger(neuron=("a", -1)), ValueError, "`neuron`"),
        (lambda: lv.SaliencyLogger(reduce="mean"), ValueError, "`reduce`"),
        (lambda: lv.SaliencyLogger(mask_quantile=1.0), ValueError, "`mask_quantile`"),
        (
            lambda: lv.GradCAMLogger(methods=("scorecam",)),
            ValueError,
            "`methods` must be a non-empty list of names from \\['gradcam'",
        ),
        (lambda: lv.GradCAMLogger(layer=3), TypeError, "`layer` must be a layer name"),
        (
            lambda: lv.ActivationLogger(layers="conv1"),
            TypeError,
            "`layers` must be a list of strings",
        ),
        (lambda: lv.ActivationLogger(max_channels=0), ValueError, "`max_channels`"),
    ],
)
def test_bad_arguments_fail_at_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_true_target_without_labels_fails_at_setup(tmp_path):
    _fails_before_training(
        tmp_path,
        lv.SaliencyLogger(target="true", probe=torch.rand(4, 3, 32, 32), on_error="raise"),
        "needs labels",
    )


def test_state_key_tells_instances_apart():
    a = lv.SaliencyLogger(methods=("vanilla",))
    b = lv.SaliencyLogger(methods=("smoothgrad",))
    c = lv.SaliencyLogger(methods=("vanilla",), tag_prefix="other")
    assert len({a.state_key, b.state_key, c.state_key}) == 3


def test_callbacks_are_callbacks_of_both_flavours():
    import lightning.pytorch as L
    import pytorch_lightning as pl

    cb = lv.FilterLogger()
    assert isinstance(cb, pl.Callback) and isinstance(cb, L.Callback)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lv.FilterLogger().state_dict() == {"probe_indices": None, "previous": {}}


def test_warnings_made_errors_by_the_users_filters_do_not_stop_the_fit(tmp_path, caplog):
    """``python -W error`` / pytest's ``filterwarnings = error``: the warning by which a
    failing callback (``on_error="warn"``) turns itself off was raised as an error and
    stopped the fit. It is logged instead; the category filters them."""

    def breaks_later():  # the user's adapter fails once the callback runs
        calls = []

        def adapter(out):
            calls.append(1)
            if len(calls) > 2:
                raise RuntimeError("the adapter broke")
            return out

        return lv.SaliencyLogger(methods=("vanilla",), quality=(), output_to_logits=adapter)

    cb = breaks_later()
    with warnings.catch_warnings(), caplog.at_level("WARNING", logger="lightning_viz"):
        warnings.simplefilter("error")
        warnings.filterwarnings(
            "ignore", module=r"(pytorch_lightning|lightning_fabric|lightning\.|torch)"
        )
        trainer, _ = fit(tmp_path, [cb], epochs=2)
    assert trainer.current_epoch == 2 and not cb._enabled
    said = [r.getMessage() for r in caplog.records if r.name == "lightning_viz"]
    assert any("the adapter broke" in m for m in said), said
    assert issubclass(lv.LightningVizWarning, UserWarning)
    with warnings.catch_warnings(record=True) as caught:  # the category a user filters
        warnings.simplefilter("always")
        fit(tmp_path / "again", [breaks_later()])
    assert any(w.category is lv.LightningVizWarning for w in caught)


def test_a_setup_failure_that_is_no_configuration_error_follows_on_error(tmp_path):
    """Out of memory (or a failing hook) in a callback's setup forward stopped the fit
    under on_error="warn" (setup handled only configuration errors), and the first
    forward's message blamed the probe's shape and channels for it."""

    def out_of_memory(out):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    def saliency(**kwargs):
        adapter = {"output_to_logits": out_of_memory}
        return lv.SaliencyLogger(methods=("vanilla",), quality=(), **adapter, **kwargs)

    cb = saliency()
    with pytest.warns(UserWarning, match=r"failed at setup.*OutOfMemoryError: CUDA out of") as said:
        trainer, _ = fit(tmp_path / "warn", [cb], epochs=1)
    message = next(str(w.message) for w in said if "failed at setup" in str(w.message))
    assert "Traceback (most recent call last)" in message and "out_of_memory" in message
    assert trainer.current_epoch == 1 and not cb._enabled  # the training went on
    with pytest.raises(torch.cuda.OutOfMemoryError):
        fit(tmp_path / "raise", [saliency(on_error="raise")], epochs=1)


def test_out_of_memory_at_a_larger_class_model_image_shape_is_no_configuration_error(tmp_path):
    """ClassModelLogger(image_shape=) checks that the model takes that shape; running out
    of device memory there blamed the shape and stopped the fit under on_error="warn"."""

    class BigImagesOutOfMemory(LitClassifier):
        def forward(self, x):
            if x.shape[-1] > 32:  # larger than the data: out of device memory
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(x)

    cb = lv.ClassModelLogger(classes=[0], steps=2, image_shape=(3, 64, 64))
    with pytest.warns(UserWarning, match=r"ClassModelLogger failed at setup.*OutOfMemoryError"):
        trainer, _ = fit(tmp_path, [cb], epochs=1, model=BigImagesOutOfMemory(num_classes=5))
    assert trainer.current_epoch == 1 and not cb._enabled
    with pytest.raises(ValueError, match=r"`image_shape` must be a shape the model takes"):
        fit(tmp_path / "bad", [lv.ClassModelLogger(classes=[0], image_shape=(2, 32, 32))])


@pytest.mark.parametrize(
    "adapter, match",
    [
        ({"batch_to_xy": lambda b: (b[0], b[3])}, r"`batch_to_xy` raised IndexError"),
        ({"output_to_logits": lambda o: o.logits}, r"`output_to_logits` raised AttributeError"),
        ({"images_to_input": lambda x: x.pixel_values}, r"`images_to_input` raised AttributeError"),
    ],
)
def test_a_failing_adapter_is_a_configuration_error_at_setup(tmp_path, adapter, match):
    """A typo in the user's lambda (an IndexError, KeyError or AttributeError) turned the
    callback off with a warning under on_error="warn": it names the adapter and stops
    the fit before training, as every configuration error does."""
    cb = lv.SaliencyLogger(methods=("vanilla",), quality=(), **adapter)
    trainer = make_trainer(tmp_path, [cb], epochs=1)
    with pytest.raises(ValueError, match=rf"^SaliencyLogger: .*{match}"):
        trainer.fit(LitClassifier(), datamodule=small_datamodule())
    assert trainer.global_step == 0


def test_a_forward_failing_on_the_probe_is_a_configuration_error(tmp_path):
    """A forward that reads an attribute of its input (a Hugging Face model's
    ``pixel_values``) fails on an image tensor: the message says to pass images_to_input."""

    class Attribute(LitClassifier):
        def forward(self, x):
            return super().forward(x.pixel_values)

    trainer = make_trainer(tmp_path, [lv.SaliencyLogger(methods=("vanilla",), quality=())])
    with pytest.raises(ValueError, match=r"on the probe .*AttributeError.*`images_to_input`"):
        trainer.fit(Attribute(), datamodule=small_datamodule())
    assert trainer.global_step == 0


def test_the_models_own_attribute_error_at_setup_follows_on_error(tmp_path):
    """An attribute the module sets later (in on_train_start) is the model's failure,
    not the probe's: with on_error="warn" the callback turns off and training goes on."""

    class Late(LitClassifier):
        def on_train_start(self):
            self.scale = 1.0

        def forward(self, x):
            return super().forward(x) * self.scale

    cb = lv.SaliencyLogger(methods=("vanilla",), quality=())
    with pytest.warns(UserWarning, match=r"SaliencyLogger failed at setup.*AttributeError"):
        trainer, _ = fit(tmp_path, [cb], epochs=1, model=Late(), num_sanity_val_steps=0)
    assert trainer.current_epoch == 1 and not cb._enabled


def test_a_monitored_callback_stops_with_an_error_type_that_takes_other_arguments(tmp_path):
    """A setup failure of a monitored callback is raised again with the monitor named;
    an exception type that is not built from one message ended the fit with a
    TypeError from rebuilding it, the real error only in its context."""
    from pytorch_lightning.callbacks import EarlyStopping

    class DeviceError(Exception):
        def __init__(self, expected, got):
            super().__init__(f"expected {expected}, got {got}")

    class Failing(LitClassifier):
        def forward(self, x):
            if not self.training:  # the callback's setup forward runs in eval mode
                raise DeviceError("cuda", "cpu")
            return super().forward(x)

    cb = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=4)
    stop = EarlyStopping(monitor="robustness/clean_acc", mode="max")
    trainer = make_trainer(tmp_path, [cb, stop], epochs=1, num_sanity_val_steps=0)
    with pytest.raises(RuntimeError, match=r"^DeviceError: expected cuda, got cpu; .*EarlyStop"):
        trainer.fit(Failing(), datamodule=small_datamodule())


def _module_of(flavour):
    """The same small classifier as a ``LightningModule`` of the given package."""
    from lightning_viz.data import SmallCNN

    class Module(flavour.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = SmallCNN(num_classes=5)

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_acc", (self(batch[0]).argmax(1) == batch[1]).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), 1e-2)

    return Module()


def test_every_callback_writes_the_same_under_the_unified_lightning_package(tmp_path):
    """A user of ``import lightning as L`` gets every tag, the dashboard texts and the
    console table, with the values a ``pytorch_lightning`` run of the same model has."""
    import lightning.pytorch as L
    import pytorch_lightning as pl

    from tests.conftest import all_callbacks, lightning_info

    dm = small_datamodule()
    dm.setup("fit")
    events, tables = {}, {}
    for name, flavour in (("pl", pl), ("lightning", L)):
        callbacks = all_callbacks(on_error="raise")
        for cb in callbacks:
            cb.max_overhead = None
        flavour.seed_everything(0)
        trainer = flavour.Trainer(
            max_epochs=2,
            logger=flavour.loggers.TensorBoardLogger(str(tmp_path / name), name="run", version=0),
            callbacks=callbacks,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            deterministic=True,
        )
        with lightning_info() as messages:
            trainer.fit(_module_of(flavour), dm.train_dataloader(), dm.val_dataloader())
        events[name] = read_events(str(tmp_path / name))
        tables[name] = [m for m in messages if m.startswith("lightning-viz, epoch 1")]
    ours, theirs = events["lightning"], events["pl"]
    assert sorted(ours["images"]) == sorted(theirs["images"])
    assert len(ours["images"]) >= 15  # every callback's images (ViT-only methods aside)
    assert (
        sorted(ours["tensors"])
        == sorted(theirs["tensors"])
        == [
            "custom_scalars__config__",
            "lightning_viz/config/text_summary",
            "lightning_viz/summary/text_summary",
        ]
    )
    probe = [t for t in theirs["scalars"] if t.startswith(("robustness/", "bias/", "embedding/"))]
    assert "robustness/pgd_acc@8/255" in probe and "bias/shape_bias" in probe
    for tag in probe:  # the same run, observed the same way
        (steps, values), (their_steps, their_values) = (
            zip(*ours["scalars"][tag], strict=True),
            zip(*theirs["scalars"][tag], strict=True),
        )
        assert steps == their_steps == (6, 12), tag
        assert values == pytest.approx(their_values, abs=1e-6), tag
    assert len(tables["lightning"]) == len(tables["pl"]) == 1


def _assert_no_generator_pickled(obj) -> None:
    import io

    class Pickler(pickle.Pickler):
        def reducer_override(self, value):
            assert not isinstance(value, torch.Generator), "a torch.Generator is pickled"
            return NotImplemented

    Pickler(io.BytesIO()).dump(obj)


def test_callbacks_reused_on_a_new_trainer_start_a_new_run_and_a_resume_continues(tmp_path):
    """A notebook keeps one list of callbacks for several trainers: each fit is its own
    run (schedule, probe, references, previous weights), unless it resumes."""
    import glob

    callbacks = [
        lv.AdversarialProbe(eps=(8 / 255,), steps=2, num_samples=16, on_error="raise"),
        lv.FilterLogger(on_error="raise"),
    ]
    probe, filters = callbacks
    # Lightning appends its own callbacks to the list it is given: pass copies
    fit(tmp_path / "a", list(callbacks), epochs=1, enable_checkpointing=True)  # epoch 0 only
    first_reference = dict(probe.references)
    assert first_reference and filters._previous
    pickle.loads(pickle.dumps(callbacks))  # ddp_spawn pickles them for its processes
    _assert_no_generator_pickled(callbacks)  # torch < 2.3 cannot pickle one
    # Lightning binds the module's `log` to each callback: a copy carried the model (H58)
    assert callable(filters.log)  # (set by this Lightning; the test means it)
    copied = pickle.loads(pickle.dumps(filters))
    assert "log" not in vars(copied) and "log_dict" not in vars(copied)
    model_bytes = len(pickle.dumps(filters.log.__self__.state_dict()))
    assert len(pickle.dumps(filters)) < model_bytes / 4
    # a new trainer, a new model that barely learns
    fit(tmp_path / "b", list(callbacks), epochs=1, model=LitClassifier(num_classes=5, lr=1e-6))
    ev = read_events(str(tmp_path / "b"))
    assert [s for s, *_ in ev["images"]["filters/model.block1.conv"]] == [4]  # epoch 0 runs
    # the previous run's weights are forgotten: the change is since this fit's start (a
    # model at lr=1e-6 barely moves; from run a's trained weights it would be large)
    ((step, change),) = ev["scalars"]["filters/model.block1.conv/change"]
    assert step == 4 and 0 < change < 1e-3
    assert ev["scalars"]["robustness/regression"] == [(4, 0.0)]  # nothing to regress from
    assert all(r.epoch == 0 for r in probe.references.values())
    assert probe.references != first_reference
    # a new trainer resuming run "a": its state comes back from the checkpoint
    (ckpt,) = glob.glob(str(tmp_path / "a" / "**" / "*.ckpt"), recursive=True)
    fit(tmp_path / "c", list(callbacks), epochs=2, enable_checkpointing=True, ckpt_path=ckpt)
    ev = read_events(str(tmp_path / "c"))
    assert [s for s, _ in ev["scalars"]["filters/model.block1.conv/change"]] == [8]
    for tag, before in first_reference.items():  # run a's epoch 0, unless epoch 1 beat it
        now = dict(ev["scalars"][tag])[8]
        expected = (1, now) if now > before.value + 1e-9 else (0, before.value)
        ref = probe.references[tag]
        assert (ref.epoch, ref.value) == (expected[0], pytest.approx(expected[1])), tag


def test_two_callbacks_of_a_type_under_one_tag_prefix_are_a_configuration_error(tmp_path):
    """Two AdversarialProbes with different eps wrote two values a step to the same tags,
    with no word; now an error at setup names `tag_prefix`, also with on_error="warn"."""
    strong = lv.AdversarialProbe(attacks=("fgsm",), eps=(8 / 255,), num_samples=8)
    weak = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8)
    with pytest.raises(ValueError, match="same tag prefix 'robustness'.*tag_prefix='robustness_2'"):
        fit(tmp_path / "same", [strong, weak], epochs=1)
    weak = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(2 / 255,), num_samples=8, tag_prefix="weak", on_error="raise"
    )
    fit(tmp_path / "apart", [strong, weak], epochs=1)
    scalars = read_events(str(tmp_path / "apart"))["scalars"]
    assert len(scalars["robustness/clean_acc"]) == 1 and len(scalars["weak/clean_acc"]) == 1


@pytest.mark.parametrize(
    ("first", "second", "advice"),
    [
        (  # both write ema/clean_acc, ema/regression, ema/examples
            lambda: lv.AdversarialProbe(attacks=("fgsm",), num_samples=8, tag_prefix="ema"),
            lambda: lv.CorruptionProbe(corruptions=("fog",), num_samples=8, tag_prefix="ema"),
            "'ema/robustness' and 'ema/corruption'",
        ),
        (  # both write saliency/regression
            lambda: lv.SaliencyLogger(methods=("vanilla",), num_samples=4),
            lambda: lv.TextureShapeBias(num_images=8, tag_prefix="saliency"),
            "'saliency/saliency' and 'saliency/bias'",
        ),
    ],
)
def test_callbacks_of_two_types_under_one_tag_prefix_are_a_configuration_error(
    tmp_path, first, second, advice
):
    """Callbacks of different types under one prefix wrote two values a step to their
    shared tags, and summary.json and callback_metrics kept one of them, with no word."""
    with pytest.raises(ValueError, match=f"same tag prefix .*{re.escape(advice)}"):
        fit(tmp_path, [first(), second()], epochs=1)


def test_a_resume_into_a_new_log_version_continues_the_run_summary(tmp_path):
    """Lightning's default resume opens a new log version. Its summary.json held only
    the epochs after the resume, so the fit-end table and `compare` forgot the history
    (and the best) that the alert monitor, restored from the checkpoint, still used."""
    import glob
    import json

    from pytorch_lightning.loggers import TensorBoardLogger

    def probe():
        return lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=16)

    fit(tmp_path, [probe()], epochs=2, enable_checkpointing=True)
    (ckpt,) = glob.glob(str(tmp_path / "run" / "version_0" / "**" / "*.ckpt"), recursive=True)
    state = torch.load(ckpt, weights_only=False)["callbacks"]
    (held,) = [s["run_summary"] for s in state.values() if "run_summary" in s]
    first = json.loads(held)["metrics"]["robustness/fgsm_acc@2/255"]["epochs"]
    assert [r["epoch"] for r in first] == [0, 1]
    logger = TensorBoardLogger(str(tmp_path), name="run", version=1)
    fit(tmp_path, [probe()], epochs=4, ckpt_path=ckpt, logger=logger)

    def epochs(version):
        with open(tmp_path / "run" / version / "lightning_viz" / "summary.json") as f:
            data = json.load(f)["metrics"]["robustness/fgsm_acc@2/255"]["epochs"]
        return {r["epoch"]: r["value"] for r in data}

    resumed = epochs("version_1")
    assert sorted(resumed) == [0, 1, 2, 3]
    assert {e: resumed[e] for e in (0, 1)} == epochs("version_0")
    # a resume into the same version keeps its own file (already complete)
    fit(tmp_path, [probe()], epochs=3, ckpt_path=ckpt, logger=logger)
    assert sorted(epochs("version_1")) == [0, 1, 2]  # after the checkpoint: epoch 2 again
    # a resume in which the probe does not run still writes the history it continues
    # (the new version had no summary.json: `compare` on it found nothing), and one
    # back to an earlier checkpoint leaves out the epochs it will run again
    later = lv.AdversarialProbe(
        attacks=("fgsm",), eps=(2 / 255,), num_samples=16, every_n_epochs=9, tolerance=0.3
    )
    quiet = TensorBoardLogger(str(tmp_path), name="run", version=2)
    fit(tmp_path, [later], epochs=3, ckpt_path=ckpt, logger=quiet)
    assert epochs("version_2") == epochs("version_0")
    # with this run's tolerance, which its alerts use (`compare` read the old one)
    with open(tmp_path / "run" / "version_2" / "lightning_viz" / "summary.json") as f:
        stored = json.load(f)["metrics"]["robustness/fgsm_acc@2/255"]
    assert stored["tolerance"] == 0.3 != probe().tolerance
    later = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=16, every_n_epochs=9)
    fit(tmp_path, [later], epochs=3, ckpt_path=ckpt, logger=logger)
    assert sorted(epochs("version_1")) == [0, 1]  # epoch 2 ran again, without the probe


def test_a_resume_from_a_checkpoint_saved_at_the_validation_end_keeps_that_epoch(tmp_path):
    """A checkpoint saved after the last batch and the validation of epoch 1: Lightning
    goes on with that epoch's end and does not run it again; its values were dropped
    from summary.json as if they would come again (with two callbacks: by the second,
    whose state does not hold the summary)."""
    import glob
    import json

    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger

    save = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, save_on_train_epoch_end=False)
    fit(
        tmp_path,
        [lv.FilterLogger(), lv.ActivationLogger(), save],
        epochs=2,
        enable_checkpointing=True,
    )
    logger = TensorBoardLogger(str(tmp_path), name="run", version=1)
    ckpt = str(tmp_path / "ck" / "last.ckpt")
    fit(
        tmp_path,
        [lv.FilterLogger(), lv.ActivationLogger()],
        epochs=3,
        ckpt_path=ckpt,
        logger=logger,
    )

    def epochs(version: str) -> list[int]:
        (path,) = glob.glob(str(tmp_path / "run" / version / "**" / "summary.json"), recursive=True)
        with open(path) as f:
            metrics = json.load(f)["metrics"]
        return sorted({r["epoch"] for hist in metrics.values() for r in hist["epochs"]})

    assert epochs("version_0") == [0, 1]
    assert epochs("version_1") == [0, 1, 2]


def test_a_resume_without_the_callback_holding_the_summary_says_the_history_is_gone(tmp_path):
    """The summary travels in the state of the first callback; resumed into a new log
    version without that callback, the others' history was dropped without a word."""
    import glob

    from pytorch_lightning.loggers import TensorBoardLogger

    def probe():
        return lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=16)

    fit(tmp_path, [lv.FilterLogger(), probe()], epochs=2, enable_checkpointing=True)
    (ckpt,) = glob.glob(str(tmp_path / "run" / "version_0" / "**" / "*.ckpt"), recursive=True)
    for version, callbacks, told in ((1, [lv.FilterLogger(), probe()], 0), (2, [probe()], 1)):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            logger = TensorBoardLogger(str(tmp_path), name="run", version=version)
            fit(tmp_path, callbacks, epochs=3, ckpt_path=ckpt, logger=logger)
        said = [w for w in record if "resumed at epoch 2 without the summary" in str(w.message)]
        assert len(said) == told, version


class _LogsOurTag(LitClassifier):
    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("robustness/clean_acc", 0.999)
        return out


def test_a_tag_the_module_also_logs_is_said_once(tmp_path):
    """The user's self.log("robustness/clean_acc") and the probe's mixed in one series
    (0.25, 0.999, 0.22, 0.999 in TensorBoard) with no word."""

    def probe():
        return lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8)

    with pytest.warns(UserWarning) as said:
        fit(tmp_path / "mixed", [probe()], model=_LogsOurTag(num_classes=5), epochs=2)
    texts = [str(w.message) for w in said if "also logged by something else" in str(w.message)]
    assert len(texts) == 1 and "'robustness/clean_acc'" in texts[0]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        fit(tmp_path / "plain", [probe()], epochs=2)
    assert not [w for w in said if "also logged by something else" in str(w.message)]


@pytest.mark.parametrize("content", ["", '{"format": "lightning-viz-summary", "version": 99}'])
def test_an_unreadable_summary_in_the_log_dir_is_set_aside_not_a_failed_fit(tmp_path, content):
    """A summary.json left in the log dir (a fixed version or save_dir reused by each fit)
    that cannot be read, empty or from a newer lightning-viz, stopped the new fit at
    setup with on_error="warn"."""
    from lightning_viz.monitoring.record import read_summary, summary_path

    log_dir = tmp_path / "run" / "version_0"
    os.makedirs(os.path.dirname(summary_path(log_dir)))
    with open(summary_path(log_dir), "w") as f:
        f.write(content)
    with pytest.warns(UserWarning, match="summary.json.unreadable.* new summary"):
        fit(tmp_path, [lv.AdversarialProbe(num_samples=8, steps=2)], epochs=1)
    assert open(f"{summary_path(log_dir)}.unreadable").read() == content
    assert "robustness/clean_acc" in read_summary(summary_path(log_dir)).metrics


def test_a_new_fit_in_a_used_log_dir_keeps_none_of_the_earlier_fits_metrics(tmp_path):
    """An earlier fit's metrics stayed in summary.json as entries without epochs."""
    from lightning_viz.monitoring.record import RunSummary

    fit(tmp_path, [lv.CorruptionProbe(num_samples=8, corruptions=("fog",))], epochs=1)
    trainer, _ = fit(tmp_path, [lv.AdversarialProbe(num_samples=8, steps=2)], epochs=1)
    metrics = RunSummary.load_or_new(trainer.logger.log_dir).metrics
    assert metrics and all(tag.startswith("robustness/") for tag in metrics)


def test_a_warning_said_once_per_trainer_is_said_to_every_trainer_of_a_sweep(tmp_path):
    """Python's default filter shows a warning once per place: the second trial of a
    sweep in one process turned its callbacks off without a word."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("default")
        for trial in range(2):
            model = _Flagged(model=_NoConv())
            fit(tmp_path / str(trial), [lv.GradCAMLogger()], epochs=1, model=model)
    said = [w for w in record if "needs a convolutional layer" in str(w.message)]
    assert len(said) == 2


def test_a_batch_of_image_lists_names_the_collate_and_the_fix():
    """A detection-style collate returning a list of image tensors got a message naming
    neither the cause nor ``batch_to_xy``."""
    images = [torch.rand(3, 8, 8) for _ in range(2)]
    with pytest.raises(TypeError, match=r"<list> \(a collate_fn .*torch\.stack\(b\[0\]\)"):
        _probe.load_probe([(images, torch.tensor([0, 1]))], 2)
    stacked = _probe.load_probe(
        [(images, torch.tensor([0, 1]))], 2, batch_to_xy=lambda b: (torch.stack(b[0]), b[1])
    )
    assert torch.equal(stacked.images, torch.stack(images))


def test_the_runs_before_an_interrupt_are_in_the_summary(tmp_path):
    """The summary is written once an epoch end; a fit stopped between the callbacks'
    runs (at the validation end) and that epoch end (Ctrl-C) still writes them."""
    import pytorch_lightning as pl

    from lightning_viz.monitoring.record import RunSummary

    class Interrupt(pl.Callback):
        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                raise KeyboardInterrupt

    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8)
    with contextlib.suppress(SystemExit):  # newer Lightning exits with 1 after shutdown
        fit(tmp_path, [probe, Interrupt()], epochs=2)
    assert probe._last_epoch == 0
    metrics = RunSummary.load_or_new(tmp_path / "run" / "version_0").metrics
    assert sorted(metrics["robustness/fgsm_acc@2/255"].epochs) == [0]


def test_numpy_vectors_are_read_as_lists_where_a_tensor_is():
    """They were refused ("must be a list"), or output_mapping leaked numpy's error."""
    eps = np.array([2 / 255, 8 / 255])
    assert lv.AdversarialProbe(eps=eps).eps == pytest.approx(eps.tolist())
    assert lv.ClassModelLogger(classes=np.arange(3)).classes == [0, 1, 2]
    assert lv.CorruptionProbe(severities=np.array([3, 1])).severities == [1, 3]
    assert lv.TextureShapeBias(output_mapping=np.array([0, 1, -1])).output_mapping == [0, 1, -1]
    with pytest.raises(TypeError, match="`classes` must be"):
        lv.ClassModelLogger(classes=np.zeros((2, 2), dtype=int))  # not a list of ints


def test_the_epoch_summary_text_holds_every_callbacks_metrics_without_validation(tmp_path):
    """Without validation every callback runs in its own on_train_epoch_end: the text
    ``lightning_viz/summary`` of an epoch is written after the last one ran, so it holds
    the metrics of the second callback too (not only the first's)."""
    cbs = [
        lv.CorruptionProbe(corruptions=("fog",), num_samples=8, on_error="raise"),
        lv.AdversarialProbe(eps=(8 / 255,), attacks=("fgsm",), num_samples=8, on_error="raise"),
    ]
    fit(tmp_path, cbs, epochs=1, limit_val_batches=0)
    texts = read_events(str(tmp_path))["tensors"]["lightning_viz/summary/text_summary"]
    ((step, strings),) = [t for t in texts if t[0] == 4]
    text = b"".join(strings).decode()
    assert "corruption/fog_acc" in text and "robustness/fgsm_acc@8/255" in text


def test_blank_nonfinite_fills_only_bad_rows_of_any_shape_and_copies_nothing_when_none_is():
    """H50: it copied every layer's activations on each run though no row was bad (the
    code it replaced returned them untouched), and failed on per-sample ``(N,)`` values."""
    from lightning_viz._runtime.rows import blank_nonfinite

    said = []

    class Callback:
        def warn_once(self, key, message):
            said.append((key, message))

    acts = torch.randn(3, 2, 4, 4)
    out, bad = blank_nonfinite(Callback(), "k", acts, 0.0, "rows are bad")
    assert out is acts and bad.tolist() == [False] * 3 and said == []
    scores = torch.tensor([1.0, float("nan"), 2.0, float("-inf")])
    out, bad = blank_nonfinite(Callback(), "k", scores, -1.0, "rows are bad")
    assert out.tolist() == [1.0, -1.0, 2.0, -1.0] and bad.tolist() == [False, True, False, True]
    assert said == [("k", "2 of 4 rows are bad")] and torch.isnan(scores[1])  # not in place
    acts[1, 0, 2, 3] = float("inf")
    out, bad = blank_nonfinite(Callback(), "k", acts, 0.5, "rows are bad")
    assert bad.tolist() == [False, True, False] and bool((out[1] == 0.5).all())
    torch.testing.assert_close(out[[0, 2]], acts[[0, 2]])
    for empty in (torch.zeros(0), torch.zeros(0, 3), torch.zeros(2, 0)):
        out, bad = blank_nonfinite(Callback(), "k", empty, 0.0, "rows are bad")
        assert out is empty and bad.tolist() == [False] * len(empty)


def test_lines_are_said_as_warnings_when_the_progress_bar_shows_nothing():
    """H55: with ``TQDMProgressBar(refresh_rate=0)`` (Lightning's way to silence the bar)
    the bar's ``print`` writes nothing, so alert tables and budget lines were lost."""
    import io
    from types import SimpleNamespace

    from pytorch_lightning.callbacks import TQDMProgressBar
    from tqdm import tqdm

    from lightning_viz._runtime.coordinator import Coordinator

    def said(bar):
        printed = []
        if bar is not None:
            bar.print = lambda text: printed.append(text)
        trainer = SimpleNamespace(is_global_zero=True, progress_bar_callback=bar)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Coordinator.say(Coordinator.__new__(Coordinator), trainer, "a line")
        return printed, [str(w.message) for w in caught]

    assert said(TQDMProgressBar(refresh_rate=0)) == ([], ["a line"])
    assert said(TQDMProgressBar()) == ([], ["a line"])  # no bar open yet
    shown = TQDMProgressBar()
    shown._train_progress_bar = tqdm(total=2, file=io.StringIO())
    assert said(shown) == (["a line"], [])
    shown._train_progress_bar.close()  # closed at the end of training
    assert said(shown) == ([], ["a line"])
    assert said(None) == ([], ["a line"])
    other = SimpleNamespace(is_disabled=False)  # another kind of bar: its print decides
    assert said(other) == (["a line"], [])
    # the cue-conflict bar follows the one rule "on in this process" (no open bar needed)
    from lightning_viz._runtime.progress import shown_bar

    bar = TQDMProgressBar()
    assert shown_bar(SimpleNamespace(is_global_zero=True, progress_bar_callback=bar)) is bar
    assert shown_bar(SimpleNamespace(is_global_zero=False, progress_bar_callback=bar)) is None
    off = TQDMProgressBar(refresh_rate=0)
    assert shown_bar(SimpleNamespace(is_global_zero=True, progress_bar_callback=off)) is None


def test_a_resume_with_other_key_arguments_says_the_callback_starts_anew(tmp_path):
    """H58: resumed with eps=4/255 instead of 2/255, only Lightning's "Please add the
    following callbacks" was said (the user did), then "Restored all states"."""
    import glob

    def probe(eps):
        return lv.AdversarialProbe(attacks=("fgsm",), eps=(eps,), num_samples=8)

    first = probe(2 / 255)
    fit(tmp_path / "a", [first], epochs=1, enable_checkpointing=True)
    (ckpt,) = glob.glob(str(tmp_path / "a" / "**" / "*.ckpt"), recursive=True)
    changed = probe(4 / 255)
    with pytest.warns(UserWarning) as said:
        fit(tmp_path / "b", [changed], epochs=2, ckpt_path=ckpt)
    ours = [str(w.message) for w in said if "the checkpoint holds" in str(w.message)]
    assert ours == [
        f"AdversarialProbe: the checkpoint holds {first.state_key}, not {changed.state_key}: "
        "its state is not restored (probe, references, previous weights); this run starts anew"
    ]
    same = probe(2 / 255)
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        fit(tmp_path / "c", [same], epochs=2, ckpt_path=ckpt)
    assert not [w for w in quiet if "the checkpoint holds" in str(w.message)]

    # Lightning names the state by the class's qualified name (a class defined in a
    # function: "test_x.<locals>.Mine"), and so does the comparison
    class Mine(lv.FilterLogger):
        pass

    saved = {"callbacks": {Mine(tag_prefix="a").state_key: {}}}
    assert Mine(tag_prefix="a").state_key.startswith(Mine.__qualname__ + "{")
    with pytest.warns(UserWarning, match=r"holds test_a_resume_.*<locals>\.Mine\{"):
        Mine(tag_prefix="b").on_load_checkpoint(None, None, saved)
