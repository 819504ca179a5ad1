"""Trust on the user's own setup: models, labels, inputs and data that are not the demo's.

One test (or more) per problem seen when the callbacks met real setups: binary and
multi-label classifiers, dict inputs, a backbone under ``no_grad``, bad normalization,
out-of-range targets, NaN pixels, shuffled probe sources on resume, and the messages.
"""

from __future__ import annotations

import os
import types
import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import lightning_viz as lv
import lightning_viz.functional as LF
from lightning_viz._runtime.probe import balanced_pick
from lightning_viz.data import LitClassifier, SmallCNN
from tests.conftest import all_callbacks, fit, layout_and_scalars, read_events, small_datamodule


# ------------------------------------------------------------------------ helpers
class _Relabel(Dataset):
    """A dataset of ``(image, relabel(label), mask)`` over a built-in dataset."""

    def __init__(self, base: Dataset, relabel, transform=None) -> None:
        self.base, self.relabel, self.transform = base, relabel, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y, m = self.base[i]
        if self.transform is not None:
            x = self.transform(i, x)
        return x, self.relabel(y), m


class TrainOnlyData(pl.LightningDataModule):
    """The small built-in data with labels mapped by ``relabel`` (and validation images by
    ``transform``); a training loader only, shuffled with the global RNG as user code does."""

    def __init__(self, relabel=lambda y: y, transform=None, **kwargs) -> None:
        super().__init__()
        self.base = small_datamodule(**kwargs)
        self.relabel, self.transform = relabel, transform

    def setup(self, stage: str | None = None) -> None:
        self.base.setup(stage)
        self.train = _Relabel(self.base.train_dataset, self.relabel)
        self.val = _Relabel(self.base.val_dataset, self.relabel, self.transform)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=32, shuffle=True)


class RelabelledData(TrainOnlyData):
    """:class:`TrainOnlyData` with an (unshuffled) validation loader."""

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=32)


class TaskModule(pl.LightningModule):
    """A classifier with ``k`` logits trained with BCE (binary, multilabel) or CE."""

    def __init__(self, k: int, loss: str, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # the same initial weights in every process
            torch.manual_seed(seed)
            self.net = SmallCNN(num_classes=k)
        self.loss = loss

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _loss(self, batch) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, y.float().view_as(logits))
        return F.cross_entropy(logits, y)

    def training_step(self, batch, _):
        return self._loss(batch)

    def validation_step(self, batch, _):
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _val_batch(dm: pl.LightningDataModule, n: int):
    x, y, _ = next(iter(DataLoader(dm.val, batch_size=n)))
    return x, y


# ------------------------------------------------------------------ binary models
def test_a_binary_model_is_measured_with_its_one_logit(tmp_path):
    dm = RelabelledData(relabel=lambda y: torch.tensor(float(y == 0)))
    module = TaskModule(1, "bce")
    probe = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=32, on_error="raise")
    others = [
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise"),
        lv.GradCAMLogger(num_samples=4, on_error="raise"),
        lv.TextureShapeBias(num_images=8, num_samples=8, style_steps=1, on_error="raise"),
        lv.ClassModelLogger(steps=3, every_n_epochs=1, on_error="raise"),
        lv.EmbeddingProjector(num_samples=32, projection="pca", on_error="raise"),
    ]
    trainer, _ = fit(tmp_path, [probe, *others], model=module, datamodule=dm, epochs=2)
    assert probe._task == "binary"
    # clean accuracy is that of the decision logit > 0 on the probe images, by hand
    images, labels = probe._probe.images, probe._probe.labels
    assert labels.tolist().count(1) >= 10 and labels.tolist().count(0) >= 16  # balanced pick
    with torch.no_grad():
        decided = (module.eval()(images)[:, 0] > 0).long()
    expected = (decided == labels).float().mean().item()
    assert float(trainer.callback_metrics["robustness/clean_acc"]) == pytest.approx(expected)
    assert 0.0 < expected < 1.0  # a model that predicts one class would score 0.5 here
    assert "bias/shape_bias" in trainer.callback_metrics  # two classes: pairs (0, 1), (1, 0)
    events = read_events(str(tmp_path))
    assert [s for s, *_ in events["images"]["class_model/grid"]] == [4, 8]  # classes 0 and 1
    listed, ours = layout_and_scalars(events)  # the dashboard of a binary run
    assert sorted(listed) == sorted(ours), sorted(set(listed) ^ ours)
    assert "robustness/clean_acc" in ours


class SigmoidModule(TaskModule):
    """:class:`TaskModule` whose forward ends in a sigmoid, trained with ``BCELoss``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.net(x))

    def _loss(self, batch) -> Tensor:
        probabilities = self(batch[0])
        return F.binary_cross_entropy(probabilities, batch[1].float().view_as(probabilities))


def _sigmoid_warnings(caught) -> list[str]:
    return [
        str(w.message) for w in caught if "look like probabilities (a sigmoid" in str(w.message)
    ]


@pytest.mark.parametrize("k", [1, 3])
def test_sigmoid_outputs_are_called_probabilities_and_torch_logit_measures_them(tmp_path, k):
    """A binary (k=1) or multilabel (k=3) model ending in a sigmoid: read as logits,
    every label was predicted positive (clean accuracy = the share of positives, with
    no word). Now one warning per trainer, and its fix gives the model's accuracy."""
    if k == 1:
        dm = RelabelledData(relabel=lambda y: torch.tensor(float(y == 0)))
        decide = lambda p, y: ((p[:, 0] > 0.5).long() == y).float().mean()  # noqa: E731
        tag = "robustness/clean_acc"
    else:
        dm = RelabelledData(relabel=lambda y: torch.tensor([y == 0, y == 1, y <= 1]).float())
        decide = lambda p, y: ((p > 0.5).float() == y).float().mean()  # noqa: E731
        tag = "robustness/clean_label_acc"

    def probes(**kwargs):
        return [
            lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=32, **kwargs),
            lv.CorruptionProbe(corruptions=("gaussian_noise",), num_samples=16, **kwargs),
        ]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(
            tmp_path / "plain",
            probes(on_error="raise"),
            model=SigmoidModule(k, "bce"),
            datamodule=dm,
        )
    said = _sigmoid_warnings(caught)
    assert len(said) == 1, said  # once per trainer, for both callbacks and both epochs
    assert ("binary" if k == 1 else "multilabel") in said[0]
    assert "output_to_logits=lambda p: torch.logit(p, eps=1e-6)" in said[0]

    module = SigmoidModule(k, "bce")
    fix = lambda p: torch.logit(p, eps=1e-6)  # noqa: E731 - the warning's own fix
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = fit(
            tmp_path / "fixed",
            probes(on_error="raise", output_to_logits=fix),
            model=module,
            datamodule=dm,
        )
    assert _sigmoid_warnings(caught) == []
    probe = trainer.callbacks[0]
    with torch.no_grad():
        expected = decide(module.eval()(probe._probe.images), probe._probe.labels).item()
    assert float(trainer.callback_metrics[tag]) == pytest.approx(expected)


def test_a_binary_logit_model_is_not_called_probabilities(tmp_path):
    dm = RelabelledData(relabel=lambda y: torch.tensor(float(y == 0)))
    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=32, on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [probe], model=TaskModule(1, "bce"), datamodule=dm)
    assert probe._task == "binary" and _sigmoid_warnings(caught) == []


class SmallPositiveLogits(TaskModule):
    """Logits that stay just above 0 (0.02-0.04), as a new or collapsed model's can."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.03 + 0.01 * torch.tanh(self.net(x))


def test_logits_all_just_above_0_are_not_called_probabilities(tmp_path):
    """They lie in [0, 1], so they were called probabilities, with the advice to pass
    torch.logit, which would have made the numbers wrong. A sigmoid's outputs start
    around 0.5 (the test above warns); these are all far below it."""
    dm = RelabelledData(relabel=lambda y: torch.tensor(float(y == 0)))
    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=32, on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [probe], model=SmallPositiveLogits(1, "bce"), datamodule=dm, epochs=1)
    with torch.no_grad():
        outputs = SmallPositiveLogits(1, "bce")(probe._probe.images)  # bounded by tanh
    assert bool(((outputs > 0) & (outputs < 0.05)).all())  # in [0, 1], all far below 0.5
    assert _sigmoid_warnings(caught) == []


def test_functional_methods_explain_class_0_of_a_binary_model_by_minus_the_logit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 1))
    x = torch.rand(2, 3, 4, 4)
    w = model[1].weight.detach().view(3, 4, 4)
    grad1 = LF.saliency(model, x, 1, reduce=None)
    grad0 = LF.saliency(model, x, 0, reduce=None)
    torch.testing.assert_close(grad1, w.expand(2, -1, -1, -1))
    torch.testing.assert_close(grad0, -w.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        LF.saliency(model, x, 2)


def test_fgsm_on_a_binary_model_ascends_the_bce_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 1))
    x, y = torch.rand(4, 3, 4, 4) * 0.5 + 0.25, torch.tensor([0, 1, 0, 1])
    w = model[1].weight.detach().view(1, 3, 4, 4)
    adv = LF.fgsm(model, x, y, 0.1)
    # d BCE / dx = (sigmoid(z) - y) w: label 1 moves against w, label 0 along it
    sign = torch.where(y == 1, -1.0, 1.0).view(-1, 1, 1, 1)
    torch.testing.assert_close(adv, (x + 0.1 * sign * w.sign()).clamp(0, 1))


# ------------------------------------------------------------------- multi-label
def _multi_hot(y: Tensor) -> Tensor:
    row = torch.zeros(5)
    row[int(y)] = 1
    row[(int(y) + 2) % 5] = 1  # two labels per image
    return row


def test_a_multilabel_model_gets_per_label_robustness_and_no_shape_bias(tmp_path):
    dm = RelabelledData(relabel=_multi_hot)
    module = TaskModule(5, "bce")
    probe = lv.AdversarialProbe(eps=(2 / 255,), steps=2, num_samples=20, on_error="raise")
    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise")
    bias = lv.TextureShapeBias(num_images=8, num_samples=8, style_steps=1)
    with pytest.warns(UserWarning, match=r"TextureShapeBias cannot run .*multilabel model"):
        trainer, _ = fit(tmp_path, [probe, saliency, bias], model=module, datamodule=dm, epochs=1)
    assert probe._task == "multilabel" and bias._enabled is False
    metrics = trainer.callback_metrics
    assert "robustness/clean_acc" not in metrics and "bias/shape_bias" not in metrics
    with torch.no_grad():
        logits = module.eval()(probe._probe.images)
    expected = ((logits > 0) == (probe._probe.labels > 0.5)).float().mean().item()
    assert float(metrics["robustness/clean_label_acc"]) == pytest.approx(expected)
    assert "robustness/pgd_label_acc@2/255" in metrics
    # one sample per image in the summary, its fraction of labels right: an image's labels
    # are not independent samples for the paired test (they were 100 "outcomes" of 20)
    right = ((logits > 0) == (probe._probe.labels > 0.5)).float().mean(1)
    rec = probe._coordinator.summary["robustness/clean_label_acc"].epochs[0]
    assert rec.outcomes is None and rec.values == pytest.approx(right.tolist())
    assert len(rec.values) == 20 and rec.value == pytest.approx(expected)
    assert "viz/SaliencyLogger/seconds" in metrics  # explains the top label
    events = read_events(str(tmp_path))
    listed, ours = layout_and_scalars(events)  # the turned-off callback adds no chart
    assert sorted(listed) == sorted(ours) and "robustness/pgd_label_acc@2/255" in listed
    assert not any(t.startswith("bias/shape") or "TextureShapeBias" in t for t in listed)
    ((_, summary),) = events["tensors"]["lightning_viz/summary/text_summary"]
    assert "| robustness/clean_label_acc |" in b"".join(summary).decode()


def test_a_multilabel_models_corruption_accuracy_is_tested_on_images(tmp_path):
    dm = RelabelledData(relabel=_multi_hot)
    cb = lv.CorruptionProbe(num_samples=12, corruptions=("fog",), on_error="raise")
    trainer, module = fit(tmp_path, [cb], model=TaskModule(5, "bce"), datamodule=dm, epochs=1)
    rec = cb._coordinator.summary["corruption/fog_label_acc"].epochs[0]
    assert rec.outcomes is None and len(rec.values) == 12  # one sample per image
    assert float(trainer.callback_metrics["corruption/fog_label_acc"]) == pytest.approx(rec.value)
    assert "corruption/accuracy" in read_events(str(tmp_path))["images"]  # no Wilson bands


def test_one_hot_and_soft_labels_stay_multiclass():
    from lightning_viz.functional._task import detect_task

    one_hot = F.one_hot(torch.tensor([0, 2, 1]), 3).float()
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.1, 0.1, 0.8]])  # CutMix / label smoothing
    multi = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    assert detect_task(3, one_hot) == "multiclass"
    assert detect_task(3, soft) == "multiclass"
    assert detect_task(3, multi) == "multilabel"
    assert detect_task(1, torch.tensor([0, 1])) == "binary"
    assert detect_task(3, torch.tensor([0, 2])) == "multiclass"


# ------------------------------------------------------------------- dict inputs
class DictInput(LitClassifier):
    """``forward`` takes ``{"image": x}``, as many multi-input models do."""

    def forward(self, inputs: dict) -> Tensor:
        return self.model(inputs["image"])

    def _shared_step(self, batch, prefix):
        x, y = batch[0], batch[1]
        loss = F.cross_entropy(self({"image": x}), y)
        self.log(f"{prefix}_loss", loss)
        return loss


def as_image_dict(x: Tensor) -> dict:
    """``images_to_input`` for :class:`DictInput`, given as an import path in one test."""
    return {"image": x}


def test_a_dict_input_model_works_with_images_to_input(tmp_path):
    callbacks = all_callbacks(on_error="raise", images_to_input=as_image_dict)
    callbacks[0] = lv.FilterLogger(
        on_error="raise", images_to_input="tests.callbacks.test_trust.as_image_dict"
    )
    trainer, _ = fit(tmp_path, callbacks, model=DictInput(num_classes=5), epochs=1)
    for cb in callbacks:
        assert f"viz/{type(cb).__name__}/seconds" in trainer.callback_metrics, type(cb)
    assert callbacks[0].images_to_input is as_image_dict


def test_a_dict_input_model_without_images_to_input_fails_before_training(tmp_path):
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=2)
    model = DictInput(num_classes=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="running the model on the probe images.*images_to_input"):
        fit(tmp_path, [cb], model=model, epochs=1)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class GeneratorForward(pl.LightningModule):
    """Lightning's GAN example: forward(z) is the generator; the discriminator and a
    classifier are submodules called by name."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(16, 3 * 32 * 32), nn.Sigmoid())
        self.classifier = SmallCNN(num_classes=5)

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z).view(-1, 3, 32, 32)

    def training_step(self, batch, _):
        return F.cross_entropy(self.classifier(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_a_module_whose_forward_is_a_generator_is_told_what_forward_must_be(tmp_path):
    cb = lv.GradCAMLogger(num_samples=2)
    with pytest.raises(ValueError, match="forward: it must take images and return class scores"):
        fit(tmp_path, [cb], model=GeneratorForward(), epochs=1)


# ------------------------------------------------------------- no gradient path
class NoGradBackbone(LitClassifier):
    """A frozen feature extractor run under ``no_grad``: only the head is trained."""

    def forward(self, x: Tensor) -> Tensor:
        net = self.model
        with torch.no_grad():
            feats = net.flatten(net.pool(net.block3(net.block2(net.block1(x)))))
        return net.fc(feats)


def test_a_no_grad_backbone_is_reported_not_shown_as_empty_maps(tmp_path):
    saliency = lv.SaliencyLogger(methods=("vanilla",), num_samples=2)
    probe = lv.AdversarialProbe(eps=(2 / 255,), num_samples=8)
    filters = lv.FilterLogger(on_error="raise")  # needs no gradient: goes on
    with pytest.warns(UserWarning) as record:
        trainer, _ = fit(tmp_path, [saliency, probe, filters], model=NoGradBackbone(), epochs=1)
    messages = [str(w.message) for w in record if "no gradient path" in str(w.message)]
    assert len(messages) == 2
    assert all("torch.no_grad()" in m and "turns itself off" in m for m in messages)
    assert not saliency._enabled and not probe._enabled
    assert "viz/FilterLogger/seconds" in trainer.callback_metrics
    with pytest.raises(ValueError, match="no gradient path"):
        fit(tmp_path / "raise", [lv.GradCAMLogger(on_error="raise")], model=NoGradBackbone())


class NoGradStem(LitClassifier):
    """Only the first block is frozen and run under ``no_grad``: the last conv, and so
    Grad-CAM, still has a gradient path; the input (saliency, guided Grad-CAM) has none."""

    def forward(self, x: Tensor) -> Tensor:
        net = self.model
        with torch.no_grad():
            x = net.block1(x)
        return net.fc(net.flatten(net.pool(net.block3(net.block2(x)))))


def test_grad_cam_runs_when_only_the_input_has_no_gradient_path(tmp_path):
    gradcam = lv.GradCAMLogger(methods=("gradcam", "gradcam++"), num_samples=4, on_error="raise")
    trainer, model = fit(tmp_path / "stem", [gradcam], model=NoGradStem(), epochs=1)
    images = read_events(str(tmp_path / "stem"))["images"]
    assert gradcam._layer_name == "model.block3.conv"
    assert [s for s, *_ in images["gradcam/gradcam"]] == [4]
    assert [s for s, *_ in images["gradcam/gradcam++"]] == [4]
    # the map at that layer does not depend on the no_grad below it: the same weights
    # run without it give the same maps, not all of them empty
    plain = LitClassifier(model.model).eval()
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for target in range(5):
        cam = LF.grad_cam(model.eval(), x, target, layer="model.block3.conv")
        assert torch.equal(cam, LF.grad_cam(plain, x, target, layer="model.block3.conv"))
    assert LF.grad_cam(model, x, layer="model.block3.conv").abs().sum() > 0
    # guided Grad-CAM multiplies by guided backprop's input gradient: said at setup
    guided = lv.GradCAMLogger(methods=("gradcam", "guided_gradcam"), on_error="raise")
    with pytest.raises(ValueError, match="no gradient path to the input images"):
        fit(tmp_path / "guided", [guided], model=NoGradStem(), epochs=1)
    # a layer inside the no_grad part is named at setup, not found empty at an epoch end
    inside = lv.GradCAMLogger(layer="model.block1.conv", on_error="raise")
    with pytest.raises(
        ValueError, match=r"no gradient path to layer 'model.block1.conv'.*`layer=`"
    ):
        fit(tmp_path / "inside", [inside], model=NoGradStem(), epochs=1)


def test_functional_methods_raise_instead_of_returning_zero_maps():
    model = NoGradBackbone(num_classes=5).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(dim=1)  # correct at the clean input: the attacks need a gradient
    for call in (
        lambda: LF.saliency(model, x),
        lambda: LF.smoothgrad(model, x, samples=2),
        lambda: LF.integrated_gradients(model, x, steps=2),
        lambda: LF.guided_backprop(model, x),
        lambda: LF.grad_cam(model, x, layer="model.block3.conv"),
        lambda: LF.fgsm(model, x, y, 0.01),
        lambda: LF.robust_accuracy(model, x, y, 0.01, steps=1),
        lambda: LF.class_model(model, [0], (3, 32, 32), steps=1),
        lambda: LF.neuron_gradient(model, x, neuron=("model.fc", 0)),
    ):
        with pytest.raises(LF.NoGradientError, match="no gradient path"):
            call()


# ------------------------------------------------------- configuration before step 1
class _Stepped(LitClassifier):
    steps = 0

    def training_step(self, batch, batch_idx):
        type(self).steps += 1
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize(
    ("callback", "match"),
    [
        (
            lambda: lv.FilterLogger(mean=[0.5, 0.5], std=[0.2, 0.2]),
            r"`mean`/`std` have 2 values but the probe images have 3 channels",
        ),
        (lambda: lv.SaliencyLogger(target=99), r"class index in \[0, 5\) for this model, got 99"),
        (lambda: lv.GradCAMLogger(target=5), r"in \[0, 5\) for this model, got 5"),
        (
            lambda: lv.SaliencyLogger(neuron=("model.block1.conv", 16)),
            r"channel in \[0, 16\) for layer 'model.block1.conv'",
        ),
        (
            lambda: lv.GradCAMLogger(layer="model.fc"),
            r"layer 'model.fc' outputs shape \(1, 5\), not feature maps",
        ),
        (
            lambda: lv.ActivationLogger(layers=["model.fc"]),
            r"layer 'model.fc' outputs shape \(1, 5\), not feature maps",
        ),
        (lambda: lv.ClassModelLogger(classes=[9]), r"class indices in \[0, 5\)"),
        (
            lambda: lv.SaliencyLogger(probe=torch.rand(4, 1, 32, 32)),
            r"probe images of shape \(1, 32, 32\) failed.*input channels",
        ),
    ],
)
def test_configuration_errors_fail_before_the_first_step_whatever_on_error_says(
    tmp_path, callback, match
):
    _Stepped.steps = 0
    with pytest.raises(ValueError, match=match):
        fit(tmp_path, [callback()], model=_Stepped(num_classes=5), epochs=1)
    assert _Stepped.steps == 0


# ------------------------------------------------------------------------ bad data
def _nan_first(i: int, x: Tensor) -> Tensor:
    if i == 0:
        x = x.clone()
        x[0, 3, 3] = float("nan")
    return x


def test_a_nan_pixel_leaves_the_other_probe_images_on_screen_every_epoch(tmp_path):
    dm = RelabelledData(transform=_nan_first)
    callbacks = [
        lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise"),
        lv.GradCAMLogger(num_samples=4, on_error="raise"),
        lv.ActivationLogger(num_samples=2, on_error="raise"),
        lv.AdversarialProbe(eps=(2 / 255,), steps=1, num_samples=8, on_error="raise"),
        lv.TextureShapeBias(num_images=8, num_samples=8, style_steps=1, on_error="raise"),
        lv.EmbeddingProjector(num_samples=16, projection="pca", on_error="raise"),
    ]
    with pytest.warns(UserWarning, match=r"probe images at positions \[0\] .*non-finite") as said:
        trainer, _ = fit(tmp_path, callbacks, datamodule=dm, epochs=2)
    # once for the trainer (it was once per callback), and once from EmbeddingProjector,
    # which leaves out the validation samples it captures
    assert len([w for w in said if "non-finite" in str(w.message)]) == 2
    events = read_events(str(tmp_path))
    for tag in ("saliency/vanilla", "gradcam/gradcam", "robustness/examples", "bias/cue_conflict"):
        assert [s for s, *_ in events["images"][tag]] == [4, 8], tag
    dm.setup("fit")
    labels = [int(dm.val[i][1]) for i in range(len(dm.val))]
    for cb in callbacks[:5]:
        picked = balanced_pick(labels, cb.num_samples)  # the pick, before the NaN image left
        assert cb._enabled and cb._probe.indices == [i for i in picked if i != 0], type(cb)
        assert bool(torch.isfinite(cb._probe.images).all())
    assert [s for s, _ in events["scalars"]["embedding/knn_acc"]] == [4, 8]
    ours = {k: v for k, v in trainer.callback_metrics.items() if not k.startswith(("val", "train"))}
    assert len(ours) > 10 and all(bool(torch.isfinite(v).all()) for v in ours.values()), ours
    assert not bool(torch.isfinite(trainer.callback_metrics["val_loss"]))  # the user's own


def test_a_three_image_validation_set_does_not_stop_training(tmp_path):
    dm = small_datamodule()
    dm.setup("fit")
    three = torch.utils.data.Subset(dm.val_dataset, [0, 1, 2])
    dm.val_dataloader = lambda: DataLoader(three, batch_size=3)
    labels = [int(dm.val_dataset[i][1]) for i in range(3)]
    callbacks = [lv.TextureShapeBias(), lv.SaliencyLogger(methods=("vanilla",))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer, _ = fit(tmp_path, callbacks, datamodule=dm, epochs=2)
    assert trainer.current_epoch == 2
    assert "viz/SaliencyLogger/seconds" in trainer.callback_metrics
    if len(set(labels)) >= 2:  # few pairs: fewer images, with a warning
        assert "bias/shape_bias" in trainer.callback_metrics
    else:
        assert not callbacks[0]._enabled


# ------------------------------------------------------------------------- resume
def test_a_resumed_run_with_a_shuffled_probe_source_shows_the_same_images(tmp_path):
    """No validation loader: the probe comes from the training loader, which shuffles."""
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    first = lv.SaliencyLogger(methods=("vanilla",), num_samples=6, on_error="raise")
    fit(
        tmp_path / "a",
        [first, ckpt],
        datamodule=TrainOnlyData(),
        epochs=1,
        enable_checkpointing=True,
        limit_val_batches=0,
    )
    second = lv.SaliencyLogger(methods=("vanilla",), num_samples=6, on_error="raise")
    torch.manual_seed(99)  # a different shuffle than the first run's
    fit(
        tmp_path / "b",
        [second],
        datamodule=TrainOnlyData(),
        epochs=2,
        limit_val_batches=0,
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
    )
    assert torch.equal(second._probe.images, first._probe.images)
    assert second._probe.fingerprint() == first._probe.fingerprint()


def test_a_probe_that_cannot_be_rebuilt_is_reported(tmp_path, monkeypatch):
    """Positions only (large probes are not saved): a changed dataset is said, not hidden."""
    from lightning_viz.callbacks import _probe_setup

    monkeypatch.setattr(_probe_setup, "_STORE_PROBE_BYTES", 0)
    cb = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise")
    fit(tmp_path / "a", [cb], epochs=1)
    state = cb.state_dict()
    assert "probe" not in state and len(state["probe_fingerprint"]) == 16
    resumed = lv.SaliencyLogger(methods=("vanilla",), num_samples=4, on_error="raise")
    resumed.load_state_dict(state)
    with pytest.warns(UserWarning, match="not the one saved .*data's order or content changed"):
        fit(tmp_path / "b", [resumed], epochs=1, datamodule=small_datamodule(seed=1))
    assert resumed._probe.fingerprint() != state["probe_fingerprint"]


def test_saved_positions_beyond_a_smaller_dataset_pick_a_new_probe_and_say_so(
    tmp_path, monkeypatch
):
    """H58: positions only (a large probe) and a validation set that shrank since: the
    resumed fit stopped with "saved probe positions [...] exceed the 12 samples", with
    on_error="warn". A new probe is picked, said, and its paired history forgotten."""
    from lightning_viz.callbacks import _probe_setup

    monkeypatch.setattr(_probe_setup, "_STORE_PROBE_BYTES", 0)
    cb = lv.AdversarialProbe(attacks=("fgsm",), eps=(8 / 255,), num_samples=24)
    fit(tmp_path / "a", [cb], epochs=1, datamodule=small_datamodule(val_size=24))
    state = cb.state_dict()
    assert "probe" not in state and max(state["probe_indices"]) >= 12 and cb.references
    resumed = lv.AdversarialProbe(attacks=("fgsm",), eps=(8 / 255,), num_samples=24)
    resumed.load_state_dict(state)
    with pytest.warns(UserWarning, match=r"probe does not fit the data \(saved probe positions"):
        fit(tmp_path / "b", [resumed], epochs=1, datamodule=small_datamodule(val_size=12))
    assert resumed._enabled and len(resumed._probe) == 12
    assert [r.n for r in resumed.references.values()] == [12]  # the new probe's (was 24)


def test_a_resume_with_a_new_probe_argument_uses_it_and_says_so(tmp_path):
    """The checkpoint's saved images were used, the probe= given was never looked at,
    and nothing was said; the same probe= again resumes without a word."""
    g = torch.Generator().manual_seed(0)
    old = (torch.rand(8, 3, 32, 32, generator=g), torch.arange(8) % 5)
    new = (torch.rand(8, 3, 32, 32, generator=g), torch.arange(8) % 5)

    def make(probe):
        return lv.SaliencyLogger(methods=("vanilla",), num_samples=8, probe=probe, quality=())

    first = make(old)
    fit(tmp_path / "a", [first], epochs=1)
    state = first.state_dict()
    assert "probe" in state  # the images travel in the checkpoint
    same = make(old)
    same.load_state_dict(state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path / "b", [same], epochs=1)
    assert not [w for w in caught if "probe" in str(w.message)]
    assert same._probe.fingerprint() == state["probe_fingerprint"]
    changed = make(new)
    changed.load_state_dict(state)
    with pytest.warns(UserWarning, match=r"the probe= given is not the one saved"):
        fit(tmp_path / "c", [changed], epochs=1)
    assert torch.equal(changed._probe.images, new[0])


# ------------------------------------------------------------------------ messages
def test_fast_dev_run_says_once_that_the_callbacks_only_check_their_setup(tmp_path):
    callbacks = [lv.FilterLogger(), lv.SaliencyLogger(), lv.AdversarialProbe()]
    with pytest.warns(UserWarning) as record:
        fit(tmp_path, callbacks, fast_dev_run=True)
    said = [str(w.message) for w in record if "lightning-viz" in str(w.message)]
    assert said == [
        "lightning-viz: Lightning replaced the logger for fast_dev_run, so the lightning-viz "
        "callbacks write nothing in this dry run; their setup checks run, so a configuration "
        "error shows here (and a metric a strict ReduceLROnPlateau steps on is measured for it)"
    ]
    assert not any("needs a TensorBoardLogger" in str(w.message) for w in record)
    assert all(cb._probe is not None and not cb._enabled for cb in callbacks)
    assert not os.path.exists(tmp_path / "run")  # nothing written


@pytest.mark.parametrize(
    "callback",
    [
        lambda: lv.GradCAMLogger(layer="model.block9.conv"),  # misspelt
        lambda: lv.SaliencyLogger(class_names=["a", "b"]),  # 5 classes
    ],
)
def test_fast_dev_run_shows_a_configuration_error(tmp_path, callback):
    """The smoke run is where a misspelt layer should show, not the real run's setup."""
    with pytest.raises(ValueError):
        fit(tmp_path, [callback()], fast_dev_run=True)


def test_embedding_projector_says_when_there_is_no_validation(tmp_path):
    cb = lv.EmbeddingProjector(num_samples=8)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], epochs=2, limit_val_batches=0)
    said = [str(w.message) for w in record if "EmbeddingProjector" in str(w.message)]
    assert len(said) == 1, said  # said once at setup, not again at every epoch end
    assert "trainer runs none (limit_val_batches=0)" in said[0]
    cb = lv.EmbeddingProjector(num_samples=8, projection="pca")
    with pytest.warns(UserWarning, match="no validation ran at epoch 0"):
        fit(tmp_path / "b", [cb], epochs=2, check_val_every_n_epoch=2)
    assert cb._last_epoch == 1  # epoch 1 had validation and ran


def test_embedding_projector_says_when_the_fit_has_no_validation_data(tmp_path):
    data = small_datamodule()
    data.setup("fit")
    cb = lv.EmbeddingProjector(num_samples=8)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        # train_dataloaders only: no val_dataloader anywhere (the probe comes from training)
        pl.Trainer(
            max_epochs=2,
            callbacks=[cb],
            logger=pl.loggers.TensorBoardLogger(str(tmp_path)),
            enable_progress_bar=False,
            enable_checkpointing=False,
            limit_train_batches=2,
        ).fit(LitClassifier(num_classes=5), train_dataloaders=data.train_dataloader())
    said = [str(w.message) for w in record if "EmbeddingProjector" in str(w.message)]
    assert len(said) == 1, said  # at setup; it names the cause, not a trainer flag
    assert "this fit has no validation data (no val_dataloader)" in said[0]
    assert "check_val_every_n_epoch" not in said[0]
    # a datamodule that has one is not told so, although it is loaded only later
    cb = lv.EmbeddingProjector(num_samples=8, projection="pca")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit(tmp_path / "b", [cb], epochs=1, num_sanity_val_steps=0)
    assert not [w for w in record if "no validation data" in str(w.message)]
    assert cb._last_epoch == 0


def test_images_to_input_import_path_is_checked_at_construction():
    with pytest.raises(ValueError, match="does not import"):
        lv.SaliencyLogger(images_to_input="tests.callbacks.test_trust.no_such_function")
    with pytest.raises(TypeError, match="a callable or an import path"):
        lv.SaliencyLogger(output_to_logits=3)


def test_probe_given_as_a_tensor_dataset_of_one_channel_images_for_a_gray_model(tmp_path):
    gray = TensorDataset(torch.rand(8, 1, 32, 32), torch.arange(8) % 5)
    cb = lv.SaliencyLogger(methods=("vanilla",), probe=gray, num_samples=4, on_error="raise")
    model = LitClassifier(num_classes=5, in_channels=1)
    with pytest.raises(ValueError, match=r"probe images of shape \(1, 32, 32\)"):
        fit(tmp_path, [cb], epochs=1)  # the RGB demo model
    fit(tmp_path / "gray", [cb], epochs=1, model=model, datamodule=_GrayData())
    assert os.path.isdir(tmp_path / "gray")


class _GrayData(pl.LightningDataModule):
    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(64, 1, 32, 32, generator=g), torch.arange(64) % 5
        return DataLoader(TensorDataset(x, y), batch_size=16)


def test_a_default_layer_that_cannot_be_read_turns_the_callback_off_not_the_fit(
    tmp_path, monkeypatch
):
    """The user named no layer, so a default pick that is no feature map is not their
    configuration error: one warning, that callback off, training on (it raised and
    stopped fit whatever on_error said). A layer the user names still raises."""
    import lightning_viz.functional as LF_

    monkeypatch.setattr(LF_, "default_cam_layer", lambda view, x: "model.fc")
    cam = lv.GradCAMLogger(num_samples=2)
    with pytest.warns(UserWarning, match=r"default layers \['model.fc'\] cannot be read"):
        trainer, _ = fit(tmp_path / "default", [cam], epochs=1)
    assert not cam._enabled and trainer.current_epoch == 1  # the fit went on
    with pytest.raises(ValueError, match="layer 'model.fc' outputs shape"):
        fit(tmp_path / "named", [lv.GradCAMLogger(layer="model.fc", num_samples=2)], epochs=1)


def test_activation_logger_without_a_feature_map_says_so_in_its_own_words(tmp_path):
    """A model whose one conv is off the forward path: ActivationLogger stopped the
    fit with Grad-CAM's error ("GradCAM needs a convolutional layer ... pass
    `layer=`"), an option it does not have."""

    class OffPath(LitClassifier):
        def __init__(self):
            super().__init__(num_classes=5)
            self.aux = nn.Conv2d(3, 4, 3)  # an unused branch
            self.head = nn.Linear(3 * 32 * 32, 5)

        def forward(self, x):
            return self.head(x.flatten(1))

    with pytest.warns(UserWarning) as caught:
        trainer, _ = fit(tmp_path, [lv.ActivationLogger()], epochs=1, model=OffPath())
    said = [str(w.message) for w in caught if "ActivationLogger" in str(w.message)]
    assert said and "cannot be read as feature maps" in said[0], said
    assert "GradCAM" not in said[0] and "`layer=`" not in said[0]
    assert trainer.current_epoch == 1  # the fit went on


# ----------------------------------------------------------- a diverged model
class DivergingModule(LitClassifier):
    """Its loss turns NaN in epoch ``at`` (a diverging run): SGD makes every weight NaN."""

    def __init__(self, at: int = 1) -> None:
        super().__init__(num_classes=5, lr=1e-2)
        self.at = at

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.current_epoch >= self.at else loss


def test_a_diverged_model_is_said_once_and_no_callback_reports_on_it(tmp_path):
    """Weights turned NaN: the probes wrote clean, PGD and corruption accuracies of 0.25
    (the argmax of a NaN row is class 0, the share of class 0 in the probe), the
    gradient views failed and turned off, EmbeddingProjector failed on an empty batch."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, module = fit(tmp_path, all_callbacks(on_error="raise"), model=DivergingModule())
    assert not all(torch.isfinite(p).all() for p in module.parameters())  # it diverged
    said = [str(w.message) for w in caught if "the training diverged" in str(w.message)]
    assert len(said) == 1 and "at epoch 1 (step 8)" in said[0], said
    events = read_events(os.path.join(tmp_path, "run", "version_0"))
    ours = {t: [s for s, _ in v] for t, v in events["scalars"].items() if not t.startswith("val")}
    assert ours["robustness/clean_acc"] == [4]  # epoch 0 only: nothing of the NaN model
    assert all(8 not in steps for tag, steps in ours.items() if tag != "viz/overhead"), ours
    assert all(step == 4 for v in events["images"].values() for step, *_ in v)


class _NaNStatistics(LitClassifier):
    """Finite weights, BatchNorm running statistics NaN from epoch 1 (what a skipped
    16-mixed step can leave): every eval-mode output is NaN."""

    def on_train_epoch_end(self) -> None:
        if self.current_epoch == 0:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_var.fill_(float("nan"))


def test_nan_batchnorm_statistics_are_a_diverged_model(tmp_path):
    """Only the parameters were checked: with NaN running statistics the probes wrote
    accuracies of 0 and the regression scalars jumped."""
    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [probe], model=_NaNStatistics(num_classes=5), num_sanity_val_steps=0)
    said = [str(w.message) for w in caught if "the training diverged" in str(w.message)]
    assert len(said) == 1 and "parameters or normalization statistics hold NaN" in said[0], said
    events = read_events(os.path.join(tmp_path, "run", "version_0"))
    assert [s for s, _ in events["scalars"]["robustness/clean_acc"]] == [4]  # epoch 0 only
    # a buffer that holds -inf on purpose (an attention mask) is no divergence
    masked = LitClassifier(num_classes=5)
    masked.register_buffer("mask", torch.tensor([0.0, float("-inf")]))
    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8)
    fit(tmp_path / "mask", [probe], model=masked, num_sanity_val_steps=0)
    events = read_events(os.path.join(tmp_path, "mask", "run", "version_0"))
    assert [s for s, _ in events["scalars"]["robustness/clean_acc"]] == [4, 8]
    # nor one that holds NaN until it is set (H45: every callback skipped the whole fit)
    unset = LitClassifier(num_classes=5)
    unset.register_buffer("temperature", torch.tensor(float("nan")))
    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=8)
    fit(tmp_path / "unset", [probe], model=unset, num_sanity_val_steps=0)
    events = read_events(os.path.join(tmp_path, "unset", "run", "version_0"))
    assert [s for s, _ in events["scalars"]["robustness/clean_acc"]] == [4, 8]


def test_inf_batchnorm_statistics_are_a_diverged_model():
    from lightning_viz._runtime.coordinator import Coordinator

    module = LitClassifier(num_classes=5)
    trainer = types.SimpleNamespace(lightning_module=module, global_step=0, current_epoch=0)
    coordinator = Coordinator()
    assert coordinator.model_finite(trainer)
    module.model.block1.bn.running_var[0] = float("inf")
    trainer.global_step = 1
    with pytest.warns(UserWarning, match="normalization statistics hold NaN or inf"):
        assert not coordinator.model_finite(trainer)


class _NaNOutputs(LitClassifier):
    """Finite parameters and buffers, NaN outputs in eval mode (an overflow)."""

    def forward(self, x):
        out = super().forward(x)
        return out if self.training else out * float("nan")

    def validation_step(self, batch, batch_idx):
        pass


def test_nan_outputs_make_no_shape_or_texture_decision(tmp_path):
    """TextureShapeBias took the argmax of a NaN row (class 0) as the decision: a NaN
    model got shape_bias 0.5 and cue accuracies of the class-0 share."""
    cb = lv.TextureShapeBias(num_images=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, [cb], model=_NaNOutputs(num_classes=5), epochs=1)
    events = read_events(os.path.join(tmp_path, "run", "version_0"))["scalars"]
    for name in ("shape_acc", "texture_acc", "shape_only_acc", "texture_only_acc"):
        assert events[f"bias/{name}"][-1][1] == 0.0, name  # wrong, not class 0
    assert "bias/shape_bias" not in events  # no decision for either cue
    assert any("none of the 8 cue-conflict images" in str(w.message) for w in caught)


def test_nan_outputs_count_as_wrong_and_are_said():
    logits = torch.tensor([[0.0, 2.0], [float("nan"), 1.0], [3.0, 0.0], [float("nan")] * 2])
    labels = torch.tensor([1, 0, 0, 0])  # argmax of rows 1 and 3 is 0: "correct" before
    assert LF._task.correct(logits, labels, "multiclass").tolist() == [True, False, True, False]
    binary = torch.tensor([[1.0], [float("nan")], [-2.0]])
    assert LF._task.correct(binary, torch.tensor([1, 0, 0]), "binary").tolist() == [
        True,
        False,
        True,
    ]
    multi = torch.tensor([[1.0, float("nan")], [-1.0, 2.0]])
    assert LF._task.correct(
        multi, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "multilabel"
    ).tolist() == [
        [True, False],
        [True, True],
    ]


class HalfNaN(LitClassifier):
    """Finite weights, but NaN logits for images whose first pixel is bright (an
    overflow seen on some inputs only)."""

    def forward(self, x):
        logits = super().forward(x)
        bright = (x[:, 0, 0, 0] > 0.5).view(-1, 1)
        return torch.where(bright, torch.full_like(logits, float("nan")), logits)


def test_nan_outputs_of_a_finite_model_count_as_wrong_in_the_accuracy(tmp_path):
    probe = lv.AdversarialProbe(attacks=("fgsm",), eps=(2 / 255,), num_samples=32, on_error="raise")
    module = HalfNaN(num_classes=5, lr=1e-2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path, [probe], model=module, epochs=1)
    x, y = probe._probe.images, probe._probe.labels
    with torch.no_grad():
        out = module.eval()(x)
    nan = torch.isnan(out).any(dim=1)
    assert 0 < int(nan.sum()) < len(y)  # some NaN rows, some finite ones
    expected = ((out.argmax(dim=1) == y) & ~nan).float().mean().item()
    assert float(trainer.callback_metrics["robustness/clean_acc"]) == pytest.approx(expected)
    said = [str(w.message) for w in caught if "outputs hold NaN" in str(w.message)]
    assert len(said) == 1 and f"for {int(nan.sum())} of {len(y)} probe samples" in said[0]


def test_an_unused_lazy_layer_is_not_read_by_the_divergence_check():
    """H48: the check detached every parameter before leaving the lazy ones out, and an
    uninitialized LazyLinear (an auxiliary head training never calls) stopped the fit."""
    from lightning_viz._runtime.coordinator import Coordinator

    module = LitClassifier(num_classes=5)
    module.aux = torch.nn.LazyLinear(3)
    trainer = types.SimpleNamespace(lightning_module=module, global_step=0, current_epoch=0)
    assert Coordinator().model_finite(trainer)
