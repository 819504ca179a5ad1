"""The CUDA path: every callback, on a GPU, in fp32 and under 16-mixed precision.

For a machine with a GPU (CI has none):

    .venv/bin/python scripts/cuda_check.py                 # accelerator=gpu, 32 and 16-mixed
    .venv/bin/python scripts/cuda_check.py --accelerator cpu --precision 32 bf16-mixed

Each run trains 2 short epochs with every callback (``on_error="raise"``), then
prints what each callback wrote, its seconds, a few values, and whether any hook
was left behind. Exits non-zero when a run fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lightning_viz as lv
from lightning_viz._hooks import has_hooks
from lightning_viz.data import LitClassifier, ShapesTexturesDataModule

KEYS = (
    "val_acc",
    "bias/saliency_in_mask",
    "bias/shape_bias",
    "robustness/clean_acc",
    "robustness/pgd_acc@8/255",
    "embedding/knn_acc",
)


def callbacks() -> list[pl.Callback]:
    common = {"on_error": "raise"}
    return [
        lv.FilterLogger(**common),
        lv.ActivationLogger(**common),
        lv.SaliencyLogger(
            methods=("vanilla", "smoothgrad", "integrated_gradients", "guided_backprop"),
            neuron=("model.block2.conv", 0),
            **common,
        ),
        lv.GradCAMLogger(methods=("gradcam", "gradcam++", "guided_gradcam"), **common),
        lv.EmbeddingProjector(num_samples=200, **common),
        lv.AdversarialProbe(num_samples=64, **common),
        lv.TextureShapeBias(num_images=40, style_steps=20, **common),
        lv.ClassModelLogger(steps=50, every_n_epochs=1, **common),
    ]


def run(accelerator: str, precision: str) -> bool:
    pl.seed_everything(0)
    dm = ShapesTexturesDataModule(train_size=512, val_size=128)
    model = LitClassifier(lr=3e-3)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_epochs=2,
            accelerator=accelerator,
            devices=1,
            precision=precision,
            logger=TensorBoardLogger(tmp, name="cuda_check"),
            callbacks=callbacks(),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        try:
            trainer.fit(model, datamodule=dm)
        except Exception as err:  # noqa: BLE001 - reported, the script goes on
            print(f"[{accelerator} {precision}] FAILED: {type(err).__name__}: {err}")
            return False
        events = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0})
        events.Reload()
        tags = events.Tags()
    seconds = time.perf_counter() - start
    metrics = trainer.callback_metrics
    print(f"[{accelerator} {precision}] ok in {seconds:.1f} s on {model.device}")
    print(f"  images written: {len(tags['images'])}, scalars written: {len(tags['scalars'])}")
    for key in KEYS:
        if key in metrics:
            print(f"  {key:28s} {float(metrics[key]):.4f}")
    for key in sorted(k for k in metrics if k.startswith("viz/")):
        print(f"  {key:40s} {float(metrics[key]):.3f} s")
    leaked = has_hooks(model)
    print(f"  hooks left on the model: {leaked}")
    return not leaked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--precision", nargs="+", default=["32", "16-mixed"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        print(f"device: {torch.cuda.get_device_name(0)}")
    results = [run(args.accelerator, p) for p in args.precision]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
