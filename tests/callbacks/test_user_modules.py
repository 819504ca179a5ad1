"""LightningModules and data built unlike the demo's: a network made in
``configure_model`` or ``setup``, lazy modules, a dict of validation loaders, and
preprocessing in the batch transfer hooks."""

from __future__ import annotations

import logging
import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

import lightning_viz as lv
from lightning_viz._runtime.loaders import first_loader
from lightning_viz._runtime.normalization import affine_normalization, compose
from lightning_viz.data import LitClassifier, SmallCNN
from tests.conftest import (
    all_callbacks,
    assert_observing_changes_nothing,
    fit,
    read_events,
    small_datamodule,
)


# ------------------------------------------------------------- the model comes later
class BuiltInConfigureModel(LitClassifier):
    """The network is made in ``configure_model`` (the FSDP pattern), after the
    callbacks' ``setup``."""

    def __init__(self) -> None:
        super().__init__(model=nn.Identity(), num_classes=5)
        self.model = None

    def configure_model(self) -> None:
        if self.model is None:
            self.model = SmallCNN(num_classes=5)


class BuiltInSetup(BuiltInConfigureModel):
    """The network is made in the LightningModule's own ``setup``."""

    def configure_model(self) -> None:
        pass

    def setup(self, stage: str) -> None:
        if self.model is None:
            self.model = SmallCNN(num_classes=5)


def lazy_cnn() -> LitClassifier:
    """SmallCNN with its first conv and classifier lazy (in_channels/features unknown)."""
    net = SmallCNN(num_classes=5)
    net.block1.conv = nn.LazyConv2d(16, 3, padding=1, bias=False)
    net.fc = nn.LazyLinear(5)
    return LitClassifier(model=net, num_classes=5)


@pytest.mark.parametrize(
    "factory", [BuiltInConfigureModel, BuiltInSetup], ids=["configure_model", "setup"]
)
def test_a_network_built_after_the_callbacks_setup_is_observed_and_unchanged(
    tmp_path, factory, events
):
    trainer, model = assert_observing_changes_nothing(
        tmp_path, all_callbacks(on_error="raise"), model_factory=factory, epochs=1
    )
    logged = read_events(str(tmp_path / "observed"))
    for tag in ("robustness/clean_acc", "bias/shape_bias", "corruption/mean_acc"):
        assert len(logged["scalars"][tag]) == 1, tag
    assert any(t.startswith("gradcam/") for t in logged["images"])
    # Grad-CAM found its layer on the network made later
    gradcam = next(cb for cb in trainer.callbacks if isinstance(cb, lv.GradCAMLogger))
    assert gradcam._enabled and gradcam._layer_name == "model.block3.conv"


@pytest.mark.parametrize("sanity_steps", [0, 1])
def test_lazy_modules_are_observed_once_materialized_and_the_run_is_unchanged(
    tmp_path, sanity_steps
):
    """Their parameters are drawn by the first forward: ours must not be it (the draws
    would come at another point of the RNG stream), and the guard leaves them alone."""
    trainer, model = assert_observing_changes_nothing(
        tmp_path,
        all_callbacks(on_error="raise"),
        model_factory=lazy_cnn,
        epochs=1,
        num_sanity_val_steps=sanity_steps,
    )
    assert isinstance(model.model.block1.conv, nn.Conv2d)
    assert model.model.block1.conv.weight.shape == (16, 3, 3, 3)
    logged = read_events(str(tmp_path / "observed"))
    assert len(logged["scalars"]["robustness/clean_acc"]) == 1
    filters = next(cb for cb in trainer.callbacks if isinstance(cb, lv.FilterLogger))
    assert filters._enabled and "model.block1.conv" in filters._chosen


class _NeverUsed(LitClassifier):
    """A lazy head the forward never calls stays uninitialized for the whole fit."""

    def __init__(self) -> None:
        super().__init__(num_classes=5)
        self.spare = nn.LazyLinear(3)


def test_a_lazy_module_the_forward_never_uses_does_not_hold_the_callbacks_back(tmp_path):
    cb = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=8, on_error="raise")
    trainer, model = fit(tmp_path, [cb], model=_NeverUsed(), epochs=1)
    assert cb._enabled and cb._probe is not None
    assert torch.nn.parameter.is_lazy(model.spare.weight)
    assert len(read_events(str(tmp_path))["scalars"]["robustness/clean_acc"]) == 1


# ------------------------------------------------------- a dict of validation loaders
class TwoValidationSets(pl.LightningDataModule):
    """``val_dataloader`` returns ``{"shapes": ..., "noise": ...}`` (Lightning's
    CombinedLoader in sequential mode: index 0 is the first value)."""

    def __init__(self) -> None:
        super().__init__()
        self.base = small_datamodule()

    def setup(self, stage: str) -> None:
        self.base.setup(stage)

    def train_dataloader(self) -> DataLoader:
        return self.base.train_dataloader()

    def val_dataloader(self) -> dict[str, DataLoader]:
        noise = [(torch.rand(3, 32, 32), 0) for _ in range(8)]
        return {"shapes": self.base.val_dataloader(), "noise": DataLoader(noise, batch_size=4)}


class _MultiVal(LitClassifier):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return super().validation_step(batch, batch_idx)


def test_a_dict_of_validation_loaders_gives_the_probe_from_the_first(tmp_path):
    data = TwoValidationSets()
    robust = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=10, on_error="raise")
    projector = lv.EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    trainer, _ = fit(tmp_path, [robust, projector], model=_MultiVal(), datamodule=data, epochs=1)
    assert robust._probe_from == "validation"
    shapes = data.base.val_dataloader().dataset
    expected = torch.stack([shapes[i][0] for i in robust._probe.indices])
    assert torch.equal(robust._probe.images, expected)
    assert len(read_events(str(tmp_path))["scalars"]["robustness/clean_acc"]) == 1


def test_thefirst_loader_of_every_form_lightning_takes():
    from pytorch_lightning.utilities import CombinedLoader

    a, b = DataLoader([1, 2]), DataLoader([3])
    assert first_loader(a) is a
    assert first_loader([a, b]) is a and first_loader((a, b)) is a
    assert first_loader({"x": a, "y": b}) is a and first_loader({"y": b, "x": a}) is b
    assert first_loader(CombinedLoader({"x": a, "y": b}, mode="sequential")) is a
    assert first_loader([{"x": a}]) is a
    assert first_loader([]) is None and first_loader({}) is None


# --------------------------------------------------- preprocessing in the transfer hooks
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def _normalize(x: Tensor) -> Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


class NormalizesAfterTransfer(LitClassifier):
    """Normalizes in ``on_after_batch_transfer`` and augments there in training only
    (the pattern of Lightning's GPU-augmentation docs)."""

    def __init__(self) -> None:
        super().__init__(num_classes=5)
        self.inputs: list[Tensor] = []  # what validation_step got

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch[0], batch[1]
        if self.trainer.training:
            x = x.flip(-1)
        return _normalize(x), y

    def validation_step(self, batch, batch_idx):
        if not self.trainer.sanity_checking:
            self.inputs.append(batch[0].clone())
        return super().validation_step(batch, batch_idx)


def test_a_normalization_in_on_after_batch_transfer_is_read_and_the_probe_is_what_validation_sees(
    tmp_path,
):
    robust = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=16, on_error="raise")
    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality=(), on_error="raise")
    model = NormalizesAfterTransfer()
    trainer, _ = fit(tmp_path, [robust, saliency], model=model, epochs=1, limit_val_batches=2)
    for cb in (robust, saliency):
        assert cb.mean == pytest.approx(MEAN, abs=1e-5) and cb.std == pytest.approx(STD, abs=1e-5)
    # the probe is the validation batches as validation_step got them: normalized, unflipped
    seen = torch.cat(model.inputs)
    assert torch.allclose(robust._probe.images, seen[robust._probe.indices], atol=1e-6)
    # and clean accuracy is that of the model on those inputs
    with torch.no_grad():
        logits = model.eval()(robust._probe.images)
    expected = (logits.argmax(1) == robust._probe.labels).float().mean().item()
    ((_, clean),) = read_events(str(tmp_path))["scalars"]["robustness/clean_acc"]
    assert clean == pytest.approx(expected, abs=1e-6)


def test_a_hook_normalization_on_top_of_a_normalize_transform_is_composed(tmp_path):
    """The dataset's transform normalizes with ImageNet's statistics, the hook again
    with MEAN/STD: one (mean, std) takes the probe back to the original pixels."""
    from torchvision import transforms as T

    from lightning_viz._guard import ModelView
    from tests.callbacks.test_real_setups import MEAN as IMAGENET_MEAN
    from tests.callbacks.test_real_setups import STD as IMAGENET_STD
    from tests.callbacks.test_real_setups import NormalizedShapes

    data = NormalizedShapes(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    robust = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=8, on_error="raise")
    fit(tmp_path, [robust], model=NormalizesAfterTransfer(), datamodule=data, epochs=1)
    mean, std = compose((IMAGENET_MEAN, IMAGENET_STD), (MEAN, STD))
    assert robust.mean == pytest.approx(mean, abs=1e-5)
    assert robust.std == pytest.approx(std, abs=1e-5)
    pixels = ModelView(nn.Identity(), robust.mean, robust.std).to_pixels(robust._probe.images)
    shapes = small_datamodule(train_size=64, val_size=32, batch_size=16)
    shapes.setup("fit")
    expected = torch.stack([shapes.val_dataset[i][0] for i in robust._probe.indices])
    assert torch.allclose(pixels, expected, atol=1e-5)


class ScalesUint8(LitClassifier):
    """The data gives uint8 images; ``on_before_batch_transfer`` makes them [0, 1]."""

    def on_before_batch_transfer(self, batch, dataloader_idx):
        x, y = batch[0], batch[1]
        return x.float() / 255, y


class _Uint8Data(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.base = small_datamodule()

    def setup(self, stage: str) -> None:
        self.base.setup(stage)

    def _bytes(self, loader: DataLoader) -> DataLoader:
        items = [((x * 255).round().to(torch.uint8), y) for x, y, *_ in loader.dataset]
        return DataLoader(items, batch_size=32)

    def train_dataloader(self) -> DataLoader:
        return self._bytes(self.base.train_dataloader())

    def val_dataloader(self) -> DataLoader:
        return self._bytes(self.base.val_dataloader())


def test_uint8_data_made_pixels_in_a_hook_needs_no_normalization(tmp_path):
    robust = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=8, on_error="raise")
    fit(tmp_path, [robust], model=ScalesUint8(), datamodule=_Uint8Data(), epochs=1)
    assert robust.mean is None and robust.std is None
    assert robust._probe.images.dtype == torch.float32
    assert 0.0 <= float(robust._probe.images.min()) and float(robust._probe.images.max()) <= 1.0


class NormalizesUint8OnDevice(LitClassifier):
    """uint8 batches made floats and normalized on the device (FFCV, DALI, GPU decoding)."""

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return _normalize(batch[0].float() / 255), batch[1]


def test_uint8_data_normalized_in_a_hook_is_read_as_that_normalization(tmp_path):
    """The hook's normalization was read only from batches already in [0, 1]: uint8
    data normalized on the device was refused at setup as "outside the pixel range",
    with a single mean/std hint that would have shifted the colours."""
    from lightning_viz._guard import ModelView

    robust = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=8, on_error="raise")
    fit(tmp_path, [robust], model=NormalizesUint8OnDevice(), datamodule=_Uint8Data(), epochs=1)
    assert robust.mean == pytest.approx(MEAN, abs=1e-5)
    assert robust.std == pytest.approx(STD, abs=1e-5)
    pixels = ModelView(nn.Identity(), robust.mean, robust.std).to_pixels(robust._probe.images)
    data = _Uint8Data()
    data.setup("fit")
    raw = torch.cat([x for x, _ in data.val_dataloader()])[robust._probe.indices]
    assert torch.allclose(pixels, raw.float() / 255, atol=1e-5)


class SquaresAfterTransfer(LitClassifier):
    def on_after_batch_transfer(self, batch, dataloader_idx):
        return 4 * batch[0] ** 2 - 1, batch[1]


def test_a_hook_that_is_not_a_normalization_is_named_in_the_error(tmp_path):
    robust = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=8, on_error="warn")
    with pytest.raises(ValueError, match=r"outside the pixel range.*on_after_batch_transfer"):
        fit(tmp_path, [robust], model=SquaresAfterTransfer(), epochs=1)


def test_affine_normalization_is_read_exactly_and_only_when_it_is_one():
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(4, 3, 8, 8, generator=g)
    mean, std = affine_normalization(pixels, _normalize(pixels))
    assert mean == pytest.approx(MEAN, abs=1e-6) and std == pytest.approx(STD, abs=1e-6)
    assert affine_normalization(pixels, pixels) == (
        [pytest.approx(0.0, abs=1e-9)] * 3,
        [pytest.approx(1.0)] * 3,
    )
    assert affine_normalization(pixels, pixels**2) is None  # not affine
    assert affine_normalization(pixels, -pixels) is None  # a negative std
    assert affine_normalization(pixels, pixels + 1e-3 * torch.rand(4, 3, 8, 8, generator=g)) is None
    assert affine_normalization(pixels, pixels[:, :1]) is None  # another shape
    flat = pixels.clone()
    flat[:, 1] = 0.5
    assert affine_normalization(flat, flat) is None  # a flat channel: undetermined
    # a hook normalization on data a Normalize already normalized: one map from pixels
    inner = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    both = compose(inner, (MEAN, STD))
    data = (pixels - 0.5) / 0.5
    inputs = _normalize(data)
    recovered = inputs * torch.tensor(both[1]).view(1, 3, 1, 1) + torch.tensor(both[0]).view(
        1, 3, 1, 1
    )
    assert torch.allclose(recovered, pixels, atol=1e-6)


# ---------------------------------------------------------- what a forward writes
def qat_cnn() -> LitClassifier:
    """SmallCNN prepared for quantization-aware training: its FakeQuantize observers
    update min/max, scale and zero point on every forward, in eval mode too."""
    import torch.ao.quantization as tq

    net = nn.Sequential(tq.QuantStub(), SmallCNN(num_classes=5), tq.DeQuantStub())
    net.qconfig = tq.get_default_qat_qconfig("x86")
    tq.prepare_qat(net, inplace=True)
    return LitClassifier(model=net, num_classes=5)


def test_quantization_aware_training_observers_are_not_moved_by_the_callbacks(tmp_path):
    """The bitwise state includes every observer's buffers (scale, zero point, min/max)."""
    trainer, model = assert_observing_changes_nothing(
        tmp_path,
        all_callbacks(neuron=("model.1.block2.conv", 1), on_error="raise"),
        model_factory=qat_cnn,
        epochs=1,
    )
    observers = [m for m in model.modules() if hasattr(m, "observer_enabled")]
    assert observers and all(int(m.observer_enabled) == 1 for m in observers)
    logged = read_events(str(tmp_path / "observed"))
    assert len(logged["scalars"]["robustness/clean_acc"]) == 1


class CountsInForward(LitClassifier):
    """Updates a counter and a running input mean (buffers) and a torchmetrics metric
    in ``forward``; the metric is read and reset at the validation epoch end, after
    the callbacks' own hook."""

    def __init__(self) -> None:
        import torchmetrics

        super().__init__(num_classes=5)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("input_mean", torch.zeros(3))
        self.top_logit = torchmetrics.MeanMetric()
        self.updates: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen += x.shape[0]
        with torch.no_grad():
            self.input_mean.mul_(0.9).add_(0.1 * x.mean((0, 2, 3)))
            self.seen = self.seen.clone()  # rebinding the buffer is put back too
        out = super().forward(x)
        self.top_logit.update(out.detach().max(1).values)
        return out

    def on_validation_epoch_end(self) -> None:
        self.updates.append(int(self.top_logit._update_count))
        self.top_logit.reset()


def test_buffers_and_metrics_a_forward_updates_are_put_back(tmp_path):
    callbacks = [
        lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=8, on_error="raise"),
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality=(), on_error="raise"),
    ]
    plain_trainer, plain = fit(tmp_path / "plain", [], model=CountsInForward(), epochs=2)
    seen_trainer, seen = fit(tmp_path / "seen", callbacks, model=CountsInForward(), epochs=2)
    assert int(seen.seen) == int(plain.seen) > 0
    assert torch.equal(seen.input_mean, plain.input_mean)
    assert seen.updates == plain.updates and len(seen.updates) == 3  # sanity check, 2 epochs
    assert "seen" in dict(seen.named_buffers())


class _BatchStatsNorm(nn.Module):
    """Normalizes with the batch's statistics and updates its running stats in every
    mode (test-time adaptation): ``F.batch_norm`` with ``training=True`` writes them in
    its native kernel, which leaves the buffers' version counters unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        bn = self.bn
        return F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, 0.1, bn.eps
        )


def batch_stats_cnn() -> LitClassifier:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        _BatchStatsNorm(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        _BatchStatsNorm(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )
    return LitClassifier(model=net, num_classes=5)


def test_running_stats_a_native_kernel_writes_without_a_version_bump_are_put_back(tmp_path):
    x = torch.rand(4, 8, 5, 5)
    norm = _BatchStatsNorm(8)
    before = norm.bn.running_mean._version
    norm(x)
    assert norm.bn.running_mean._version == before  # why the guard compares values
    callbacks = [
        lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8, on_error="raise"),
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, quality=(), on_error="raise"),
        lv.FilterLogger(on_error="raise"),
    ]
    trainer, _ = assert_observing_changes_nothing(
        tmp_path, callbacks, model_factory=batch_stats_cnn, epochs=1
    )
    assert "robustness/clean_acc" in trainer.callback_metrics


class _BigWrite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("hits", torch.zeros(4))
        self.fc = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        self.hits += 1
        return self.fc(x)


def test_a_buffer_too_large_to_copy_that_changes_is_reported(monkeypatch):
    from lightning_viz import LightningVizWarning, _guard

    model = _BigWrite()
    with _guard.preserve_state(model) as net:
        net(torch.ones(1, 4))
    assert torch.equal(model.hits, torch.zeros(4))  # copied and put back
    monkeypatch.setattr(_guard, "_BUFFER_COPY_BYTES", 0)
    with pytest.warns(LightningVizWarning, match=r"changed the buffers \['hits'\]") as said:
        with _guard.preserve_state(model) as net:
            net(torch.ones(1, 4))
    assert torch.equal(model.hits, torch.ones(4))
    assert said[0].filename == __file__  # where the guard was entered
    with warnings.catch_warnings(record=True) as again:  # once a model (H66: once a place,
        warnings.simplefilter("always")  # and again when Lightning set the filters)
        for _ in range(3):
            with _guard.preserve_state(model) as net:
                net(torch.ones(1, 4))
        assert not [w for w in again if "changed the buffers" in str(w.message)]
        new = _BigWrite()  # a new model (a new trial) is told, once
        for _ in range(3):
            with _guard.preserve_state(new) as net:
                net(torch.ones(1, 4))
    assert len([w for w in again if "changed the buffers" in str(w.message)]) == 1
    model, logged = _BigWrite(), []  # under an "error" filter it is logged instead: once too

    class Handler(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())

    handler = Handler()
    logging.getLogger("lightning_viz").addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(3):
                with _guard.preserve_state(model) as net:
                    net(torch.ones(1, 4))
    finally:
        logging.getLogger("lightning_viz").removeHandler(handler)
    assert len([m for m in logged if "changed the buffers" in m]) == 1, logged


# ------------------------------------------------------------------ weight averaging
class _RecordsWeights(LitClassifier):
    """Records the classifier weights each forward ran with, by who called it."""

    def __init__(self) -> None:
        super().__init__(num_classes=5, lr=0.05)
        self.caller = "callbacks"
        self.seen: dict[str, set[float]] = {}

    def forward(self, x: Tensor) -> Tensor:
        if self.trainer.validating and not self.trainer.sanity_checking:
            self.seen.setdefault(self.caller, set()).add(float(self.model.fc.weight.sum()))
        return super().forward(x)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.trained = float(self.model.fc.weight.sum())  # the raw weights, last step

    def validation_step(self, batch, batch_idx):
        self.caller = "validation_step"
        try:
            return super().validation_step(batch, batch_idx)
        finally:
            self.caller = "callbacks"


@pytest.mark.parametrize("split", [False, True], ids=["both_after", "one_before_one_after"])
def test_callbacks_listed_after_ema_weight_averaging_measure_the_averaged_weights(tmp_path, split):
    averaging = pytest.importorskip("pytorch_lightning.callbacks").__dict__.get(
        "EMAWeightAveraging"
    )
    if averaging is None:
        pytest.skip("this Lightning has no EMAWeightAveraging (2.5 and later)")
    ema = averaging(decay=0.5)
    robust = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=8, on_error="raise")
    filters = lv.FilterLogger(on_error="raise")
    listed = [robust, ema, filters] if split else [ema, robust, filters]
    trainer, model = fit(tmp_path, listed, model=_RecordsWeights(), epochs=1)
    order = [type(cb) for cb in trainer.callbacks]
    assert order.index(lv.AdversarialProbe) < order.index(lv.FilterLogger) < order.index(averaging)
    assert model.seen["callbacks"] == model.seen["validation_step"]  # the averaged weights
    assert model.trained not in model.seen["callbacks"]  # not the raw training weights


def test_the_line_on_weight_averaging_says_which_weights_the_callbacks_measure():
    """H55: with ``check_val_every_n_epoch=2`` the callbacks run at the training epoch
    end on the training weights, yet the line said they "measure the averaged weights
    that validation measures"."""
    from types import SimpleNamespace

    from lightning_viz._runtime.schedule import before_weight_averaging
    from lightning_viz.callbacks._base import VizCallback

    averaging = pytest.importorskip("pytorch_lightning.callbacks").__dict__.get(
        "EMAWeightAveraging"
    )
    if averaging is None:
        pytest.skip("this Lightning has no EMAWeightAveraging (2.5 and later)")

    def line(after_validation):
        probe = lv.AdversarialProbe()
        trainer = SimpleNamespace(callbacks=[averaging(decay=0.5), probe])
        return before_weight_averaging(trainer, probe, VizCallback, after_validation)

    assert "measure the averaged weights that validation measures" in line(True)
    off = line(False)
    assert "measure the training weights" in off and "averaged weights that" not in off
    assert "does not validate once at each epoch's end (no validation, every n-th" in off  # H57


# ------------------------------------------------------------------------ PEFT adapters
def test_filter_logger_shows_a_lora_conv_with_its_adapter(tmp_path, events):
    """The base conv of a LoRA layer is frozen: showing it would say the filters never
    change. FilterLogger shows the wrapper with base + delta, which PEFT's own
    ``merge_and_unload`` gives."""
    import copy

    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["block1.conv", "block2.conv"], modules_to_save=["fc"]
    )
    net = peft.get_peft_model(SmallCNN(num_classes=5), config)
    filters = lv.FilterLogger(on_error="raise")
    _, model = fit(tmp_path, [filters], model=LitClassifier(model=net, lr=0.05), epochs=2)
    name = "model.base_model.model.block1.conv"
    assert filters._chosen == [name]
    logged = events(tmp_path)["scalars"]
    merged = copy.deepcopy(model.model).merge_and_unload().block1.conv.weight.detach()
    base = model.model.base_model.model.block1.conv.base_layer.weight.detach()
    assert not torch.equal(merged, base)  # the adapter learned something
    (_, norm) = logged[f"filters/{name}/norm"][-1]
    assert norm == pytest.approx(float(torch.linalg.vector_norm(merged)), rel=1e-5)
    (_, change) = logged[f"filters/{name}/change"][-1]
    assert change > 0  # the frozen base alone would not change


@pytest.mark.parametrize("target", ["block1.conv", "fc"])
def test_a_dora_layer_is_read_with_the_weight_it_computes_with(target):
    """DoRA (``use_dora=True``) rescales each output unit of base + delta to a learned
    magnitude: the weight shown was base + delta, 21 % off the layer's."""
    import copy

    peft = pytest.importorskip("peft")
    from lightning_viz.functional._grad import adapted_layer

    torch.manual_seed(0)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=[target], use_dora=True)
    net = peft.get_peft_model(SmallCNN(num_classes=5), config)
    layer = net.get_submodule(f"base_model.model.{target}")
    with torch.no_grad():  # as after training: lora_B and the magnitudes have moved
        for p in [*layer.lora_B.parameters(), *layer.lora_magnitude_vector.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    shown = adapted_layer(layer)[1].detach()
    merged = copy.deepcopy(net).merge_and_unload().get_submodule(target).weight.detach()
    torch.testing.assert_close(shown, merged, atol=1e-6, rtol=1e-5)
    x = torch.rand(2, 3, 32, 32) if target == "block1.conv" else torch.rand(2, 64)
    plain = (
        F.conv2d(x, shown, layer.base_layer.bias, padding=1)
        if target != "fc"
        else F.linear(x, shown, layer.base_layer.bias)
    )
    with torch.no_grad():
        torch.testing.assert_close(plain, layer(x), atol=1e-5, rtol=1e-4)


def test_a_pruned_or_weight_normed_layer_is_read_with_the_weight_its_next_forward_uses():
    """``torch.nn.utils.prune`` and the legacy ``weight_norm`` and ``spectral_norm``
    recompute ``weight`` in a forward pre-hook: the attribute is the last forward's,
    before the latest step (the spectral norm one raised a TypeError)."""
    from torch.nn.utils import prune

    from lightning_viz.functional._grad import adapted_layer

    torch.manual_seed(0)
    pruned = prune.l1_unstructured(nn.Conv2d(3, 4, 3), "weight", amount=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy hooks are deprecated
        normed = torch.nn.utils.weight_norm(nn.Conv2d(3, 4, 3))
        spectral = torch.nn.utils.spectral_norm(nn.Conv2d(3, 4, 3)).eval()  # as observed
    for layer, part in ((pruned, "weight_orig"), (normed, "weight_v"), (spectral, "weight_orig")):
        layer(torch.rand(1, 3, 8, 8))
        with torch.no_grad():
            getattr(layer, part).add_(0.5)  # an optimizer step after that forward
        stale = layer.weight.detach().clone()
        found = adapted_layer(layer)[1].detach()
        layer(torch.rand(1, 3, 8, 8))  # what the next forward computes with
        assert torch.equal(found, layer.weight.detach()) and not torch.equal(found, stale)


class _StdConv(nn.Conv2d):
    """Weight standardization in ``forward``, as timm's ``StdConv2d`` (BiT, NFNet)."""

    def forward(self, x: Tensor) -> Tensor:
        flat = self.weight.reshape(1, self.out_channels, -1)
        w = F.batch_norm(flat, None, None, training=True, momentum=0.0, eps=1e-6)
        return self._conv_forward(x, w.reshape_as(self.weight), self.bias)


def test_a_weight_standardized_conv_is_read_with_the_weight_it_convolves_with():
    """FilterLogger showed and normed the stored weight, whose mean and scale the layer
    standardizes away: its norm grew while the filters did not change."""
    from lightning_viz.functional._grad import adapted_layer

    torch.manual_seed(0)
    conv = _StdConv(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(5).add_(0.3)  # no effect on the output
    flat = conv.weight.detach().reshape(1, 4, -1)
    expected = F.batch_norm(flat, None, None, training=True, eps=1e-6).reshape_as(conv.weight)
    found = adapted_layer(conv)[1]
    torch.testing.assert_close(found, expected)
    assert float(found.flatten(1).mean(1).abs().max()) < 1e-6  # standardized filters
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(F.conv2d(x, found, conv.bias, padding=1), conv(x))
    plain = nn.Conv2d(3, 4, 3)
    assert adapted_layer(plain)[1] is plain.weight


def test_filter_logger_shows_a_pruned_conv_as_pruned_now_without_validation(tmp_path, events):
    """``ModelPruning`` without ``make_pruning_permanent``, callbacks at the training
    epoch end (no validation forward refreshed the attribute): the norm was a step old."""
    from pytorch_lightning.callbacks import ModelPruning

    class Now(pl.Callback):  # runs just before FilterLogger (callbacks run in list order)
        def on_train_epoch_end(self, trainer, module):
            conv = module.model.block1.conv
            norms.append(torch.linalg.vector_norm(conv.weight_orig * conv.weight_mask).item())

    norms = []
    filters = lv.FilterLogger(on_error="raise")
    pruning = ModelPruning("l1_unstructured", amount=0.3, make_pruning_permanent=False)
    fit(tmp_path, [pruning, Now(), filters], epochs=3, limit_val_batches=0)
    logged = [v for _, v in events(tmp_path)["scalars"]["filters/model.block1.conv/norm"]]
    assert logged == pytest.approx(norms, rel=1e-6)  # epoch 0 showed the unpruned weight


# ------------------------------------------------------ FilterLogger's image templates
class _TemplateAndHead(nn.Module):
    """A pixel-level linear branch (a true template) beside a CNN whose head reads
    48x8x8 = 3072 = 3x32x32 conv features (the same in_features, no template)."""

    def __init__(self) -> None:
        super().__init__()
        self.pixels = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5))
        self.conv = nn.Conv2d(3, 48, 3, padding=1)
        self.pool = nn.MaxPool2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(48 * 8 * 8, 5))

    def forward(self, x: Tensor) -> Tensor:
        return self.pixels(x) + self.head(self.pool(torch.relu(self.conv(x))))


def test_filter_logger_draws_templates_only_of_linears_that_read_the_image(tmp_path, events):
    filters = lv.FilterLogger(on_error="raise")
    fit(tmp_path, [filters], model=LitClassifier(model=_TemplateAndHead()), epochs=1)
    assert filters._chosen == ["model.conv", "model.pixels.1"]
    images = events(tmp_path)["images"]
    assert "filters/model.pixels.1" in images and "filters/model.head.1" not in images


class _LateralFirst(nn.Module):
    """A feature-pyramid-like module whose lateral 1x1 conv is defined before the stem."""

    def __init__(self) -> None:
        super().__init__()
        self.lateral = nn.Conv2d(16, 16, 1)
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.lateral(torch.relu(self.stem(x)))))


def test_filter_logger_default_is_the_first_conv_to_run(tmp_path, events):
    """The stem's RGB filters, not the lateral conv defined first (gray 16-channel tiles)."""
    filters = lv.FilterLogger(on_error="raise")
    fit(tmp_path, [filters], model=LitClassifier(model=_LateralFirst()), epochs=1)
    assert filters._chosen == ["model.stem"]
    images = events(tmp_path)["images"]
    assert "filters/model.stem" in images and "filters/model.lateral" not in images


class _BaseLayerStem(nn.Module):
    """timm's DLA (dla34, dla60, ...): its stem is a ``Sequential`` called ``base_layer``,
    the name PEFT gives the layer an adapter wraps."""

    def __init__(self) -> None:
        super().__init__()
        self.base_layer = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.level1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.level2 = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.level2(self.level1(self.base_layer(x))).mean((2, 3)))


def test_a_stem_called_base_layer_is_no_adapter(tmp_path, events):
    """H51: any module with a ``base_layer`` was read as a PEFT adapter, so on timm's DLA
    FilterLogger failed at setup ('Sequential' object has no attribute 'weight') and
    ActivationLogger and GradCAMLogger took the whole model for its one conv."""
    callbacks = [
        lv.FilterLogger(on_error="raise"),
        lv.ActivationLogger(on_error="raise", num_samples=2),
        lv.GradCAMLogger(on_error="raise", num_samples=2, quality=()),
    ]
    fit(tmp_path, callbacks, model=LitClassifier(model=_BaseLayerStem()), epochs=1)
    assert callbacks[0]._chosen == ["model.base_layer.0"]
    assert all(name.startswith("model.") and name != "model" for name in callbacks[1]._chosen)
    assert callbacks[2]._layer_name == "model.level2.0"
    images = events(tmp_path)["images"]
    assert "filters/model.base_layer.0" in images and "gradcam/gradcam" in images


# ------------------------------------------------------- EmbeddingProjector's head
class _HeadFirst(nn.Module):
    """The head is defined before the backbone (whose MLP ends in a Linear), a
    projection head after it (run in forward, as SimCLR-style training does), and a
    second, distillation head after the first."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 5)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.mlp = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
        self.head_dist = nn.Linear(16, 5)
        self.proj = nn.Linear(16, 8)
        self.projected: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        f = self.mlp(self.backbone(x))
        self.projected = self.proj(f)
        return (self.head(f) + self.head_dist(f)) / 2


def test_embedding_projector_embeds_the_input_of_the_head_that_ran(tmp_path):
    """Not the last Linear defined (``proj``), not ``head_dist``: ``head``, the first
    Linear of the last run of Linears with the logits' width."""
    projector = lv.EmbeddingProjector(num_samples=16, projection="pca", on_error="raise")
    fit(tmp_path, [projector], model=LitClassifier(model=_HeadFirst()), epochs=1)
    assert projector._layer_name == "model.head"
    # without a forward to look at, the last Linear defined (as before)
    assert projector._feature_layer(_HeadFirst())[0] == "proj"


# --------------------------------------------------- ActivationLogger's default picks
class _PreActResNet(nn.Module):
    """A pre-activation residual network: each block runs its shortcut conv before its
    branch (as kuangliu's CIFAR PreActResNet does); the shortcuts are defined last."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in ((8, 16), (16, 32)):
            block = nn.Module()
            block.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            block.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
            block.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2)
            self.blocks.append(block)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for b in self.blocks:
            out = torch.relu(x)
            short = b.shortcut(out)
            x = b.conv2(torch.relu(b.conv1(out))) + short
        return self.head(x.mean((2, 3)))


def test_activation_defaults_never_pick_a_shortcut_conv(tmp_path, events):
    """Execution order without side branches: the shortcut conv reads the same tensor as
    its block's first conv. In definition order the middle and the late pick were
    shortcuts; on torchvision's ResNet-18 at 32 px the middle one was
    ``layer2.0.downsample.0``."""
    from lightning_viz._guard import ModelView
    from lightning_viz.callbacks._layer_picks import main_path_convs
    from lightning_viz.callbacks.activations import default_layers
    from lightning_viz.functional._grad import feature_conv_layers

    acts = lv.ActivationLogger(num_samples=2, on_error="raise")
    fit(tmp_path, [acts], model=LitClassifier(model=_PreActResNet()), epochs=1)
    assert acts._chosen == ["model.stem", "model.blocks.0.conv2", "model.blocks.1.conv2"]
    assert {t for t in events(tmp_path)["images"] if t.startswith("activations/")} == {
        f"activations/{n}" for n in acts._chosen
    }
    net = _PreActResNet()
    assert default_layers(net) == ["stem", "blocks.0.shortcut", "blocks.1.shortcut"]  # before
    torchvision = pytest.importorskip("torchvision")
    resnet = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    convs = dict(feature_conv_layers(resnet))
    order = main_path_convs(ModelView(resnet), torch.rand(1, 3, 32, 32), convs)
    assert not [n for n in order if "downsample" in n]
    assert [n for n in convs if n not in order] == [f"layer{i}.0.downsample.0" for i in (2, 3, 4)]
    assert order == [n for n in convs if "downsample" not in n]  # torchvision runs them in order


class _ResNetD(nn.Module):
    """timm's ResNet-D blocks (``resnet50d``, ``resnet10t``): the shortcut average-pools
    the block's input before its 1x1 conv, so it reads another tensor than ``conv1``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.blocks = nn.ModuleList()
        for cin, cout in ((8, 16), (16, 16)):
            block = nn.Module()
            block.conv1 = nn.Conv2d(cin, cout, 3, 2, 1)
            block.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            block.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1))
            self.blocks.append(block)
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(torch.relu(self.stem(x)))
        for b in self.blocks:
            x = torch.relu(b.conv2(torch.relu(b.conv1(x))) + b.downsample(x))
        return self.head(x.mean((2, 3)))


def test_a_shortcut_conv_behind_an_average_pool_is_no_pick():
    """H51: the late activation pick of timm's ResNet-D was the shortcut's 1x1 conv
    (``layer3.0.downsample.1``): it reads the pooled input, not the tensor ``conv1``
    reads, and runs last in its block."""
    from lightning_viz._guard import ModelView
    from lightning_viz.callbacks._layer_picks import main_path_convs
    from lightning_viz.functional._grad import feature_conv_layers

    net = _ResNetD().eval()
    convs = dict(feature_conv_layers(net))
    order = main_path_convs(ModelView(net), torch.rand(1, 3, 32, 32), convs)
    assert order == ["stem", "blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1", "blocks.1.conv2"]
    # the stem's max pool is on the main path: the first block still reads its output
    assert "blocks.0.conv1" in order


def test_filter_logger_captions_a_grouped_first_conv_with_the_channel_each_filter_reads():
    """A grouped stem (``groups=3``) has one-channel filters: drawn gray without a word,
    nothing said which colour each read. Each tile is now captioned R, G or B."""
    from lightning_viz.callbacks.filters import _group_captions

    grouped = nn.Conv2d(3, 12, 3, groups=3)
    assert _group_captions(grouped, 12, 3) == list("RRRRGGGGBBBB")
    assert _group_captions(nn.Conv2d(6, 12, 3, groups=6), 5, 6) == [
        "in 0",
        "in 0",
        "in 1",
        "in 1",
        "in 2",
    ]
    assert _group_captions(nn.Conv2d(3, 12, 3), 12, 3) is None
    assert _group_captions(nn.Conv2d(1, 4, 3), 4, 1) is None
    logger = lv.FilterLogger()
    captioned = logger._image(grouped, grouped.weight, (3, 32, 32))
    plain = logger._image(nn.Conv2d(1, 12, 3), grouped.weight, (3, 32, 32))
    assert captioned.shape[-1] == plain.shape[-1] and captioned.shape[-2] > plain.shape[-2]


class _TinyMixer(nn.Module):
    """An MLP-Mixer-like model lightning-viz does not know: a patchify conv, then token-
    and channel-mixing MLPs over (N, T, D) that hold nearly all the parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 8, stride=8)  # 16 tokens of 32 px images
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 512), nn.GELU(), nn.Linear(512, 32))
                for _ in range(3)
            ]
        )
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(tokens).mean(1))


def test_a_stem_default_in_a_model_of_unknown_blocks_is_said(tmp_path):
    """Grad-CAM and the activations of an unknown token model showed its patch stem (the
    only conv) with no word; a CNN, whose later layers are convs, is not warned about."""
    callbacks = [
        lv.GradCAMLogger(num_samples=2, quality=(), on_error="raise"),
        lv.ActivationLogger(on_error="raise"),
    ]
    with pytest.warns(UserWarning) as said:
        fit(tmp_path / "mixer", callbacks, model=LitClassifier(model=_TinyMixer()), epochs=1)
    early = [str(w.message) for w in said if "is early in the model" in str(w.message)]
    assert len(early) == 2, early
    assert all("default layer 'model.stem'" in text for text in early)
    assert "Grad-CAM shows little" in early[0] or "Grad-CAM shows little" in early[1]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        fit(tmp_path / "cnn", [lv.GradCAMLogger(num_samples=2, quality=())], epochs=1)
    assert not [w for w in said if "is early in the model" in str(w.message)]


def test_a_cnn_whose_flat_head_holds_most_parameters_is_not_said_early(tmp_path):
    """AlexNet's and VGG's flatten heads (or a 1000-class ``Linear``) hold over 90% of the
    parameters after the last conv: the default layer is right, and was said "early in
    the model ... a transformer or MLP model lightning-viz does not know"."""
    alexnet_like = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(16 * 16, 256),
        nn.ReLU(),
        nn.Linear(256, 5),
    )
    convs = sum(p.numel() for m in alexnet_like if isinstance(m, nn.Conv2d) for p in m.parameters())
    assert convs / sum(p.numel() for p in alexnet_like.parameters()) < 0.05
    callbacks = [
        lv.GradCAMLogger(num_samples=2, quality=(), on_error="raise"),
        lv.ActivationLogger(on_error="raise"),
    ]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        fit(tmp_path, callbacks, model=LitClassifier(model=alexnet_like), epochs=1)
    assert not [w for w in said if "is early in the model" in str(w.message)]
    assert callbacks[0]._layer_name == "model.2"  # the last conv, as before


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 8, 1)
        self.b = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.a(x), self.b(x)], dim=1)


class _InceptionLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.block = _Concat()
        self.head = nn.Linear(16, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block(torch.relu(self.mid(torch.relu(self.stem(x)))))
        return self.head(x.mean((2, 3)))


def test_activation_late_pick_of_a_concatenation_is_the_whole_block(tmp_path):
    """The late pick was the last branch's conv, 8 of the block's 16 channels (GoogLeNet
    ``inception5b.branch4.1.conv``, 128 of 1024; DenseNet a dense layer's 32 of 1024)."""
    acts = lv.ActivationLogger(num_samples=2, on_error="raise")
    fit(tmp_path, [acts], model=LitClassifier(model=_InceptionLike()), epochs=1)
    assert acts._chosen[-1] == "model.block"
    assert acts._chosen[0] == "model.stem"
    images = read_events(str(tmp_path))["images"]
    assert "activations/model.block" in images


class _Expand(nn.Module):
    """A bottleneck's start: a 1x1 expansion conv (the input's size), then a strided conv."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(16, 32, 1)
        self.down = nn.Conv2d(32, 32, 3, stride=4, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(torch.relu(self.expand(x)))


class _CollapsingLastStage(nn.Module):
    """32 px: the stem 16x16, stage1 4x4, the last stage 1x1 (a ResNet-50 or an
    EfficientNet on 32 px images)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stage1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=4, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(_Expand(), nn.ReLU())
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage2(self.stage1(torch.relu(self.stem(x))))
        return self.head(x.flatten(1))


def test_activation_late_pick_is_not_a_conv_inside_a_collapsed_last_stage(tmp_path):
    """The late pick was the expansion conv inside the last stage's first block (the
    pick the Grad-CAM rule passes over: it runs before the block's strided conv);
    ResNet-50, RegNet, EfficientNet, MobileNetV3 on 32 px, Inception v3's Mixed_7a
    branch conv at 75 px. The late pick is now Grad-CAM's block."""
    acts = lv.ActivationLogger(num_samples=2, on_error="raise")
    cam = lv.GradCAMLogger(num_samples=2, quality=(), on_error="raise")
    fit(tmp_path, [acts, cam], model=LitClassifier(model=_CollapsingLastStage()), epochs=1)
    assert cam._layer_name == "model.stage1.0"
    assert acts._chosen == ["model.stem", "model.stage1.0"]


# --------------------------------------------------------- manual optimization
class _TwoOptimizers(LitClassifier):
    """Manual optimization with two optimizers stepped every batch (a GAN-style loop):
    ``trainer.global_step`` counts both, Lightning logs the module's metrics by batches."""

    def __init__(self) -> None:
        super().__init__(num_classes=5, lr=1e-2)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        first, second = self.optimizers()
        loss = F.cross_entropy(self(batch[0]), batch[1])
        first.zero_grad()
        second.zero_grad()
        self.manual_backward(loss)
        first.step()
        second.step()

    def configure_optimizers(self):
        params = list(self.parameters())
        return torch.optim.SGD(params[:-2], lr=1e-2), torch.optim.SGD(params[-2:], lr=1e-2)


def test_two_optimizers_write_on_lightnings_step_axis(tmp_path, events):
    """lightning-viz wrote at ``global_step`` (8, 16 here), twice the batches at which
    Lightning logs the module's metrics (3, 7): the charts no longer lined up."""
    callbacks = [
        lv.FilterLogger(on_error="raise"),
        lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8, on_error="raise"),
    ]
    trainer, _ = fit(tmp_path, callbacks, model=_TwoOptimizers(), epochs=2)
    assert trainer.global_step == 16  # 4 batches an epoch, two optimizer steps each
    scalars = events(tmp_path)["scalars"]
    own = [s for s, _ in scalars["val_acc"]]
    assert own == [3, 7]  # Lightning's axis: batches (one less, as with one optimizer)
    for tag in ("filters/model.block1.conv/norm", "robustness/clean_acc", "viz/overhead"):
        assert [s for s, _ in scalars[tag]] == [s + 1 for s in own], tag
    assert [s for s, *_ in events(tmp_path)["images"]["filters/model.block1.conv"]] == [4, 8]


# ------------------------------------------------------------------ TorchScript blocks
def _scripted_block2() -> LitClassifier:
    model = LitClassifier(num_classes=5, lr=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        model.model.block2 = torch.jit.script(model.model.block2)
    return model


def test_a_scripted_block_is_read_around_and_refused_where_no_hook_reaches():
    """``torch.jit.script`` on a block: every method ran into an AttributeError inside
    the state guard; guided backprop silently mixed its rule with the plain gradient
    of the scripted ReLUs."""
    import lightning_viz.functional as LF

    torch.manual_seed(0)
    model = _scripted_block2().model.eval()
    eager = SmallCNN(num_classes=5).eval()
    eager.load_state_dict(model.state_dict())
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 3])
    torch.testing.assert_close(LF.saliency(model, x, y), LF.saliency(eager, x, y))
    torch.testing.assert_close(
        LF.grad_cam(model, x, y, layer="block3.conv"), LF.grad_cam(eager, x, y, layer="block3.conv")
    )
    with pytest.raises(
        ValueError, match=r"'block2.conv' is inside the TorchScript module 'block2'"
    ):
        LF.grad_cam(model, x, y, layer="block2.conv")
    with pytest.raises(ValueError, match=r"guided backprop .* TorchScript modules 'block2'"):
        LF.guided_backprop(model, x, y)
    assert LF.default_cam_layer(model, x) == "block3.conv"  # not one inside the script
    assert "block2.conv" not in dict(LF.activation_maps(model, x, ["block1.conv"]))


class _Standardize(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return (x - 0.5) / 0.25


def test_a_scripted_step_without_relus_leaves_guided_backprop_to_the_eager_ones():
    """A scripted preprocessing step runs no ReLU-family unit: the rule reaches every
    one the forward runs (it was refused as if the script hid some)."""
    import lightning_viz.functional as LF

    torch.manual_seed(0)
    eager = SmallCNN(num_classes=5).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        front = torch.jit.script(_Standardize())
    scripted, plain = nn.Sequential(front, eager), nn.Sequential(_Standardize(), eager)
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([1, 4])
    torch.testing.assert_close(LF.guided_backprop(scripted, x, y), LF.guided_backprop(plain, x, y))


def test_a_scripted_block_leaves_the_run_unchanged_and_the_views_skip_it(tmp_path):
    saliency = lv.SaliencyLogger(num_samples=2, on_error="raise")  # guided: skipped
    cams = lv.GradCAMLogger(methods=("gradcam", "gradcam++"), num_samples=2, on_error="raise")
    callbacks = [
        saliency
        if isinstance(cb, lv.SaliencyLogger)
        else cams
        if isinstance(cb, lv.GradCAMLogger)
        else cb
        for cb in all_callbacks(neuron=("model.block1.conv", 1), on_error="raise")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert_observing_changes_nothing(
            tmp_path, callbacks, model_factory=_scripted_block2, epochs=1
        )
    tags = read_events(str(tmp_path / "observed"))["images"]
    assert "saliency/vanilla" in tags and "saliency/guided_backprop" not in tags
    assert not [t for t in tags if "block2" in t]  # nothing hooked inside the script
    assert [t for t in tags if t.startswith("activations/")]
    assert [t for t in tags if t.startswith("gradcam/")]
    guided = lv.GradCAMLogger(methods=("guided_gradcam",), on_error="warn")  # asked for
    match = r"apply to this model \(the TorchScript modules 'model.block2' run ReLU-like"
    with pytest.raises(ValueError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        fit(tmp_path / "guided", [guided], model=_scripted_block2(), epochs=1)


@pytest.mark.parametrize(("layer", "kind"), [("model.block1", "Sequential"), ("model.pool", "")])
def test_filter_logger_on_a_layer_without_weights_is_a_configuration_error(tmp_path, layer, kind):
    """A block or a pooling layer: setup raised ``AttributeError: ... no attribute 'weight'``."""
    cb = lv.FilterLogger(layers=[layer], on_error="warn")
    with pytest.raises(
        ValueError,
        match=rf"FilterLogger shows Conv2d or Linear weights; layer {layer!r} is a {kind}",
    ):
        fit(tmp_path, [cb], epochs=1)
