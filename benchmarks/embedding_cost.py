"""What the EmbeddingProjector costs the training loop, on the demo's settings.

Its features are captured during the normal validation loop (no extra forward);
the projector files and the t-SNE figure are written off the training thread. What
blocks training is the epoch-end work: gathering, k-NN accuracy, silhouette. This
script trains the demo model with the callback and prints that blocking time next
to the validation loop's time (target: under 10 %).

    python benchmarks/embedding_cost.py [--epochs 6]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_viz import EmbeddingProjector
from lightning_viz.data import LitClassifier, ShapesTexturesDataModule


class ValidationTimer(pl.Callback):
    """Seconds of each validation loop (sanity check excluded)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    pl.seed_everything(0)
    dm = ShapesTexturesDataModule(train_size=2000, val_size=500, seed=0)
    timer = ValidationTimer()
    projector = EmbeddingProjector(num_samples=500, class_names=list(dm.class_names))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            logger=TensorBoardLogger(tmp, name="cost"),
            callbacks=[timer, projector],  # the timer's epoch end runs before the projector's
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_train_batches=3,
        )
        trainer.fit(LitClassifier(lr=3e-3), datamodule=dm)
        events = EventAccumulator(trainer.logger.log_dir, size_guidance={"scalars": 0})
        events.Reload()
        blocking = [e.value for e in events.Scalars("viz/EmbeddingProjector/seconds")]
    val = statistics.median(timer.seconds)
    block = statistics.median(blocking)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(
        "| validation loop (500 images), median "
        "| EmbeddingProjector epoch-end blocking, median | ratio |"
    )
    print("|---:|---:|---:|")
    print(f"| {val * 1000:.0f} ms | {block * 1000:.1f} ms | {block / val:.1%} |")


if __name__ == "__main__":
    main()
