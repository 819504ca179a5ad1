"""Regression alerts on real training runs: silence on noise, one alert on a real switch."""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

import lightning_viz as lv
from lightning_viz.data import LitClassifier, ShapesTexturesDataModule
from lightning_viz.monitoring.store import load_summary
from tests.conftest import fit


def _alert_messages(record) -> list[str]:
    return [str(w.message) for w in record if "regression" in str(w.message)]


def test_a_converged_model_fine_tuned_with_a_small_learning_rate_raises_no_alert(tmp_path):
    dm = ShapesTexturesDataModule(train_size=640, val_size=160, batch_size=32, seed=0)
    torch.manual_seed(0)
    model = LitClassifier(num_classes=5, lr=1e-2)
    fit(tmp_path / "pretrain", [], model=model, datamodule=dm, epochs=12, limit_train_batches=20)
    model.lr = 1e-4  # fine-tuning: the model barely moves, its probe outcomes jitter
    probes = [
        lv.AdversarialProbe(eps=(2 / 255, 8 / 255), steps=5, num_samples=100, on_error="raise"),
        lv.TextureShapeBias(num_images=80, num_samples=40, style_steps=10, on_error="raise"),
    ]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer, _ = fit(
            tmp_path / "finetune",
            probes,
            model=model,
            datamodule=dm,
            epochs=8,
            limit_train_batches=20,
            limit_val_batches=5,
        )
    summary = load_summary(trainer.logger.log_dir)
    assert summary.alerts == [] and _alert_messages(record) == []
    # the probes did run every epoch and the values did move (it is not a frozen model)
    pgd = [r.value for r in summary["robustness/pgd_acc@2/255"].records()]
    assert len(pgd) == 8
    bias = [r.value for r in summary["bias/shape_bias"].records()]
    assert len(bias) == 8 and max(bias) > 0.5  # a converged shape model
    outcomes = {r.outcomes for r in summary["bias/shape_bias"].records()}
    assert len(outcomes) > 1  # decisions flip from epoch to epoch: the noise alerts ignore


class _ShapeThenTexture(Dataset):
    """Training images whose shape and texture are independent; ``(x, shape, mask, texture)``."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y, m = self.base[i]
        return x, y, m, self.base.textures[i]


class SwitchData(pl.LightningDataModule):
    """Training data with texture independent of shape; validation data where texture
    gives the class away (so a cue-conflict image's texture names a class)."""

    def __init__(self, val_size: int = 160) -> None:
        super().__init__()
        self.val_size = val_size

    def setup(self, stage: str | None = None) -> None:
        train = ShapesTexturesDataModule(train_size=2000, val_size=10, seed=0)
        val = ShapesTexturesDataModule(
            train_size=10, val_size=self.val_size, texture_correlation=1.0
        )
        train.setup(stage)
        val.setup(stage)
        self.train, self.val = _ShapeThenTexture(train.train_dataset), val.val_dataset

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=64)


class SwitchToTexture(LitClassifier):
    """Learns the shape label for ``switch`` epochs, then the texture label."""

    switch = 5

    def training_step(self, batch, batch_idx):
        x, shape, mask, texture = batch
        y = shape if self.current_epoch < self.switch else texture
        return super().training_step((x, y, mask), batch_idx)


def test_a_switch_to_texture_labels_is_one_alert_within_three_epochs(tmp_path):
    """Shape bias alerts once, 1 to 3 epochs after the switch, and nothing alerts
    before it; shape accuracy may alert too, once (with seed 1 it did, an epoch after
    shape bias). 320 cue-conflict images, made at the first run: with 160, the drop of
    seed 0 (0.64 to 0.47) had p = 0.004 before the correction for a best chosen among
    six runs, and no alert on this machine's package versions."""
    torch.manual_seed(0)  # the model's initial weights
    model = SwitchToTexture(num_classes=5, lr=3e-3)
    bias = lv.TextureShapeBias(
        num_images=320, num_samples=80, style_steps=50, on_error="raise", background=False
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer, _ = fit(
            tmp_path,
            [bias],
            model=model,
            datamodule=SwitchData(val_size=320),
            epochs=10,
            limit_train_batches=None,
        )
    summary = load_summary(trainer.logger.log_dir)
    values = [r.value for r in summary["bias/shape_bias"].records()]
    assert max(values[:5]) - max(values[6:]) > 0.15  # the switch really happened
    messages = _alert_messages(record)
    alerts = summary.alerts
    metrics = [a["metric"] for a in alerts]
    assert sorted(set(metrics)) == sorted(metrics), alerts  # one alert per metric: one episode
    assert set(metrics) <= {"bias/shape_bias", "bias/shape_acc"}
    assert len(messages) == len({a["epoch"] for a in alerts}), messages  # a message an epoch
    assert min(a["epoch"] for a in alerts) >= SwitchToTexture.switch  # none before the switch
    alert = next(a for a in alerts if a["metric"] == "bias/shape_bias")
    assert SwitchToTexture.switch <= alert["epoch"] <= SwitchToTexture.switch + 3
    assert alert["reference_epoch"] < SwitchToTexture.switch and alert["pvalue"] < 0.01
    (text,) = [m for m in messages if "bias/shape_bias" in m]
    for part in (
        f"regression at epoch {alert['epoch']}",
        f"best (epoch {alert['reference_epoch']})",
        f"{alert['value']:.4f}",
        f"{alert['reference_value']:.4f}",
        "paired",
    ):
        assert part in text, (part, text)
    assert torch.isfinite(trainer.callback_metrics["bias/regression"])
