"""Tests for the demo models and the LitClassifier."""

from __future__ import annotations

import math
import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lightning_viz.data import (
    LitClassifier,
    ShapesTexturesDataModule,
    SmallCNN,
    build_model,
    resnet18_small,
)


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a busy machine
    yield
    torch.set_num_threads(threads)


def test_small_cnn_forward_and_layer_names():
    model = SmallCNN(num_classes=7, in_channels=3, width=4)
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    names = dict(model.named_modules())
    for name in (
        "block1.conv",
        "block1.bn",
        "block1.relu",
        "block1.pool",
        "block2.conv",
        "block3.conv",
        "block3.relu",
        "pool",
        "flatten",
        "fc",
    ):
        assert name in names
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == 16
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    # spatial sizes 32 -> 16 -> 8, and block3 keeps 8x8 (the Grad-CAM layer)
    h1 = model.block1(x)
    h2 = model.block2(h1)
    h3 = model.block3(h2)
    assert h1.shape == (2, 4, 16, 16) and h2.shape == (2, 8, 8, 8) and h3.shape == (2, 16, 8, 8)
    # the logits are fc applied to the globally averaged block3 output
    model.eval()
    with torch.no_grad():
        expected = model.fc(model.block3(model.block2(model.block1(x))).mean(dim=(2, 3)))
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_small_cnn_gray_input():
    model = SmallCNN(num_classes=10, in_channels=1)
    assert model(torch.rand(3, 1, 32, 32)).shape == (3, 10)
    assert model.block1.conv.in_channels == 1 and model.fc.in_features == 64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 0}, ValueError, r"num_classes.*got 0"),
        ({"in_channels": 3.0}, TypeError, r"in_channels.*got 3\.0"),
        ({"width": -1}, ValueError, r"width.*got -1"),
    ],
)
def test_small_cnn_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        SmallCNN(**kwargs)


def test_resnet18_small(one_thread):
    model = resnet18_small(num_classes=6, in_channels=1)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.conv1.in_channels == 1
    assert isinstance(model.maxpool, nn.Identity)
    x = torch.rand(2, 1, 32, 32)
    assert model(x).shape == (2, 6)
    model.eval()
    with torch.no_grad():
        h = model.layer1(model.relu(model.bn1(model.conv1(x))))
        assert h.shape[-2:] == (32, 32)  # no stem downsampling
        h = model.layer4(model.layer3(model.layer2(h)))
        assert h.shape == (2, 512, 4, 4)
    with pytest.raises(ValueError, match=r"num_classes.*got 0"):
        resnet18_small(0)


def test_build_model():
    assert isinstance(build_model("small", 4, 1), SmallCNN)
    assert build_model("small", 4, 1).fc.out_features == 4
    resnet = build_model("resnet18", num_classes=3)
    assert resnet.fc.out_features == 3 and resnet.conv1.in_channels == 3
    with pytest.raises(
        ValueError, match=r"`name` must be one of \['small', 'resnet18', 'vit'\], got 'vgg'"
    ):
        build_model("vgg")


class _ConstantLogits(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), -1)


@pytest.mark.filterwarnings("ignore:.*self.trainer. reference is not registered")
def test_lit_classifier_loss_and_batch_formats():
    lit = LitClassifier(model=_ConstantLogits(4), num_classes=4)
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    mask = torch.ones(6, 1, 8, 8, dtype=torch.bool)
    # uniform logits: cross entropy is log(K) whatever the labels
    for batch in ((x, y), (x, y, mask), [x, y, mask], {"image": x, "label": y}):
        loss = lit.training_step(batch, 0).detach()
        assert math.isclose(float(loss), math.log(4), rel_tol=1e-6)
    with pytest.raises(TypeError, match=r"`batch` must be \(images, labels.* got <Tensor>"):
        lit.training_step(x, 0)
    assert lit(x).shape == (6, 4)
    assert torch.equal(lit.predict_step((x, y), 0), lit(x))


def test_lit_classifier_builds_model_and_saves_hparams():
    lit = LitClassifier(num_classes=3, in_channels=1, lr=0.05, model_name="small")
    assert isinstance(lit.model, SmallCNN) and lit.model.fc.out_features == 3
    assert lit(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    assert lit.hparams["lr"] == 0.05 and lit.hparams["model_name"] == "small"
    assert "model" not in lit.hparams
    adam = lit.configure_optimizers()
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 0.05
    sgd = LitClassifier(optimizer="sgd", lr=0.1).configure_optimizers()
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "small"}, TypeError, "`model` must be an nn.Module or None, got <str>"),
        ({"lr": 0.0}, ValueError, "`lr` must be a finite number > 0, got 0.0"),
        ({"lr": -1}, ValueError, "`lr` .* got -1"),
        ({"lr": "0.1"}, TypeError, "`lr` must be a finite number > 0, got '0.1'"),
        (
            {"model_name": "vgg"},
            ValueError,
            r"`model_name` .* \['small', 'resnet18', 'vit'\], got 'vgg'",
        ),
        ({"optimizer": "rmsprop"}, ValueError, r"`optimizer` .* \['adam', 'sgd'\], got 'rmsprop'"),
    ],
)
def test_lit_classifier_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        LitClassifier(**kwargs)


def _fit(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    pl.seed_everything(seed)
    dm = ShapesTexturesDataModule(train_size=320, val_size=64, seed=0)
    lit = LitClassifier(num_classes=5)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=10,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(lit, datamodule=dm)
    weights = {k: v.detach().clone() for k, v in lit.state_dict().items()}
    return weights, dict(trainer.callback_metrics)


def test_fit_runs_logs_and_is_deterministic(one_thread, restore_seeds):
    pl.seed_everything(0)
    init = {k: v.clone() for k, v in LitClassifier(num_classes=5).state_dict().items()}
    first, metrics = _fit(0)
    second, _ = _fit(0)
    other, _ = _fit(1)
    for key in ("train_loss_epoch", "train_acc", "val_loss", "val_acc"):
        assert key in metrics, key
    assert 0.0 <= float(metrics["val_acc"]) <= 1.0 and float(metrics["val_loss"]) > 0
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)  # bitwise identical
    assert not all(torch.equal(first[k], other[k]) for k in first)
    # training changed the (same-seed) initial weights and the BatchNorm statistics
    assert not torch.equal(init["model.fc.weight"], first["model.fc.weight"])
    assert not torch.equal(
        init["model.block1.bn.running_mean"], first["model.block1.bn.running_mean"]
    )
    assert int(first["model.block1.bn.num_batches_tracked"]) == 5  # 320 images / 64
