"""Shared test helpers: a tiny training run and reading TensorBoard event files back."""

from __future__ import annotations

import glob
import os
from typing import Any

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def read_events(logdir: str) -> dict[str, dict[str, list[Any]]]:
    """All scalars and images under ``logdir``: {"scalars": {tag: [(step, value)]},
    "images": {tag: [(step, width, height, png_bytes)]}}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[str, list[Any]]] = {"scalars": {}, "images": {}}
    files = sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True))
    for path in files:
        acc = EventAccumulator(path, size_guidance={"images": 0, "scalars": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            out["scalars"].setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
        for tag in tags.get("images", []):
            out["images"].setdefault(tag, []).extend(
                (e.step, e.width, e.height, e.encoded_image_string) for e in acc.Images(tag)
            )
    return out


def decode_png(data: bytes) -> torch.Tensor:
    """PNG bytes -> (H, W, C) uint8 tensor."""
    import io

    import numpy as np
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB")))


def small_datamodule(**kwargs: Any):
    from lightning_viz.data import ShapesTexturesDataModule

    args = {"train_size": 192, "val_size": 64, "batch_size": 32, "seed": 0}
    args.update(kwargs)
    return ShapesTexturesDataModule(**args)


def fit(
    tmp_path: Any,
    callbacks: list[Any],
    *,
    epochs: int = 2,
    model: Any = None,
    datamodule: Any = None,
    seed: int = 0,
    flavour: str = "pytorch_lightning",
    ckpt_path: str | None = None,
    **trainer_kwargs: Any,
):
    """A short seeded CPU fit; returns (trainer, module)."""
    if flavour == "lightning":
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import TensorBoardLogger
    else:
        import pytorch_lightning as pl
        from pytorch_lightning.loggers import TensorBoardLogger
    from lightning_viz.data import LitClassifier

    pl.seed_everything(seed, verbose=False)
    datamodule = datamodule if datamodule is not None else small_datamodule()
    model = model if model is not None else LitClassifier(num_classes=5, lr=1e-2)
    args = dict(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(str(tmp_path), name="run", version=0),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        deterministic=True,
        limit_train_batches=4,
        limit_val_batches=2,
    )
    args.update(trainer_kwargs)
    trainer = pl.Trainer(callbacks=callbacks, **args)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, model


@pytest.fixture
def events():
    return read_events


def inject_failure(monkeypatch: Any, message: str = "injected failure inside a method"):
    """Makes every ``ModelView`` forward raise *after* the model ran (hooks are active),
    once training has started (setup, which runs the model to check it, is left alone).

    Returns ``(calls, arm)``: ``calls["n"]`` counts the raised failures; ``arm`` is a
    callback to add to the trainer.
    """
    import pytorch_lightning as pl

    from lightning_viz._guard import ModelView

    original = ModelView.forward
    calls = {"n": 0, "armed": False}

    def broken(self, x):
        out = original(self, x)
        if calls["armed"]:
            calls["n"] += 1
            raise RuntimeError(message)
        return out

    class Arm(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            calls["armed"] = True

    monkeypatch.setattr(ModelView, "forward", broken)
    return calls, Arm()
