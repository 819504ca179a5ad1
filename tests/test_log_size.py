"""How much a demo epoch adds to the log directory, and that the projector still reads it."""

from __future__ import annotations

import argparse
import os

import pytorch_lightning as pl
from google.protobuf import text_format
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz.cli import build_callbacks
from lightning_viz.data import LitClassifier, ShapesTexturesDataModule

MB = 1e6


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


class _Sizes(pl.Callback):
    """The log directory's size at every epoch end, once the background writes are done."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_train_epoch_end(self, trainer, pl_module):
        Coordinator.of(trainer).harvest(wait=True)
        trainer.logger.experiment.flush()
        self.sizes.append(_size(trainer.logger.log_dir))


def test_a_demo_epoch_adds_at_most_1_25_megabytes_and_the_projector_reads_every_epoch(tmp_path):
    dm = ShapesTexturesDataModule(train_size=256, val_size=500, seed=0)  # the demo's val set
    dm.setup("fit")
    sizes = _Sizes()
    callbacks = build_callbacks(list(dm.class_names), argparse.Namespace(fast=False, epochs=3))
    pl.seed_everything(0)
    trainer = pl.Trainer(
        max_epochs=3,
        logger=TensorBoardLogger(str(tmp_path), name="demo"),
        callbacks=[*callbacks, sizes],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LitClassifier(num_classes=5, lr=3e-3), datamodule=dm)
    growth = [b - a for a, b in zip(sizes.sizes, sizes.sizes[1:], strict=False)]
    assert len(growth) == 2 and max(growth) <= 1.25 * MB, [g / MB for g in growth]
    # the projector config lists every epoch's embedding; its files and thumbnails exist
    log_dir = trainer.logger.log_dir
    config = ProjectorConfig()
    with open(os.path.join(log_dir, "projector_config.pbtxt")) as f:
        text_format.Merge(f.read(), config)
    *per_step, latest = config.embeddings
    steps = [int(e.tensor_name.rsplit(":", 1)[1]) for e in per_step]
    assert len(steps) == 3 and steps == sorted(steps)
    assert latest.tensor_name.endswith(f"(latest, step {steps[-1]})")
    for entry in config.embeddings:
        for path in (entry.tensor_path, entry.metadata_path, entry.sprite.image_path):
            assert os.path.isfile(os.path.join(log_dir, path)), path
        with open(os.path.join(log_dir, entry.tensor_path)) as f:
            assert len(f.read().splitlines()) == 500
    assert len({e.sprite.image_path for e in config.embeddings}) == 1  # written once
