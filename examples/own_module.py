"""Adding lightning-viz to your own LightningModule.

Your model takes *normalized* inputs and returns a dict; your batches are dicts.
Three options tell the callbacks about that: ``mean``/``std`` (so images are shown
and attacked in pixel space), ``output_to_logits`` and ``batch_to_xy``.

From the repository root, after ``bash scripts/setup.sh`` (it creates ``.venv`` with
lightning-viz and its dependencies; ``source .venv/bin/activate`` lets you drop the
``.venv/bin/`` prefix)::

    .venv/bin/python examples/own_module.py
    .venv/bin/tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

import lightning_viz as lv
from lightning_viz.data import ShapesTexturesDataModule

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class DictShapes(Dataset):
    """Your data: normalized images in dicts."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, label, mask = self.base[i]
        mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
        return {"pixels": (image - mean) / std, "target": label, "object": mask}


def to_xy(batch: dict[str, torch.Tensor]):
    """Tells the callbacks where images, labels and masks are in your batch."""
    return batch["pixels"], batch["target"], batch["object"]


def logits_of(output: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tells the callbacks where the logits are in your model's output."""
    return output["logits"]


class MyModule(pl.LightningModule):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.features(x))}

    def training_step(self, batch, _):
        return nn.functional.cross_entropy(self(batch["pixels"])["logits"], batch["target"])

    def validation_step(self, batch, _):
        logits = self(batch["pixels"])["logits"]
        self.log("val_acc", (logits.argmax(1) == batch["target"]).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def main(epochs: int = 3, output_dir: str = "lightning_logs", limit_batches: float = 1.0) -> None:
    pl.seed_everything(0)
    shapes = ShapesTexturesDataModule(train_size=1000, val_size=200)
    shapes.setup("fit")
    train = DataLoader(DictShapes(shapes.train_dataset), batch_size=64, shuffle=True)
    val = DataLoader(DictShapes(shapes.val_dataset), batch_size=64)
    common = dict(
        mean=MEAN,
        std=STD,
        batch_to_xy=to_xy,
        output_to_logits=logits_of,
        class_names=shapes.class_names,
    )
    callbacks = [
        lv.FilterLogger(**common),
        lv.ActivationLogger(layers=["features.0", "features.3", "features.6"], **common),
        lv.SaliencyLogger(methods=("vanilla", "guided_backprop"), **common),
        lv.GradCAMLogger(layer="features.6", methods=("gradcam", "gradcam++"), **common),
    ]
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=TensorBoardLogger(output_dir, name="own_module"),
        callbacks=callbacks,
        enable_checkpointing=False,
        limit_train_batches=limit_batches,
        limit_val_batches=limit_batches,
    )
    trainer.fit(MyModule(), train_dataloaders=train, val_dataloaders=val)
    print(f"tensorboard --logdir {output_dir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument(
        "--output-dir", default="lightning_logs", help="log dir (default ./lightning_logs)"
    )
    parser.add_argument(
        "--limit-batches",
        type=float,
        default=1.0,
        help="fraction (or number) of batches per epoch (default 1.0: all)",
    )
    args = parser.parse_args()
    main(args.epochs, args.output_dir, args.limit_batches)
