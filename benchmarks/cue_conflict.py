"""Cue-conflict generation: seconds per image, peak memory, and the shape-bias separation.

Cost. For each ``--sizes`` (default 32, 64, 224 px) a fresh subprocess makes
``--images`` cue-conflict images from random images of 4 classes exactly as
``TextureShapeBias`` does by default (``LF.cue_conflict``: 50 steps coarse, coarse to
fine from ``style_size=64``, 5 refine steps per finer size, in the chunks the
callback uses: ``generation_chunk``, 4 pairs at 224 px) and
reports wall-clock and process CPU seconds per image and the subprocess's peak RSS.
``--old`` adds the previous way at 224 px (all 50 steps at full size, 160 pairs at
once; measured on ``--old-images`` images in one batch, so its RSS is that of that
batch, and 160 pairs held ``160 / old_images`` times the activations).

Separation. The controlled experiment of ``tests/callbacks/test_shape_bias.py`` and
the demo: ``LitClassifier`` trained on ``ShapesTexturesDataModule`` with
``texture_correlation`` 1.0 (texture gives the class away) and 0.0, then
``TextureShapeBias`` (80 generated images, 50 steps) on both; the separation is
shape bias(0.0) - shape bias(1.0). At 32 px the generation is one size (32 <=
style_size), so the new default makes the images of the old one; ``--separation-size
64`` also runs the experiment on 64-px data with ``style_size=32`` (coarse to fine,
32 -> 64) against ``style_size=None`` (all steps at 64 px), which is where the
coarse-to-fine generation could lose separation.

Run::

    python benchmarks/cue_conflict.py [--sizes 32 64 224] [--images 16] [--old]
        [--separation] [--separation-size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import torch

_CHILD = r"""
import json, resource, sys, time, torch
import lightning_viz.functional as LF
size, n, style_size, batch = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
style_size = None if style_size == "none" else int(style_size)
torch.set_num_threads(int(sys.argv[5]))
gen = torch.Generator().manual_seed(0)
images = torch.rand(max(n, 8), 3, size, size, generator=gen)
labels = torch.arange(images.shape[0]) % 4
wall, cpu = time.perf_counter(), time.process_time()
LF.cue_conflict(images, labels, n, steps=50, content_weight=0.5, batch_size=batch,
                style_size=style_size, refine_steps=5)
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _cost(size: int, n: int, style_size: str, batch: int, threads: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(size), str(n), style_size, str(batch), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _separation(image_size: int, style_size: int | None, epochs: int) -> tuple[float, float]:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    import lightning_viz as lv
    from lightning_viz.data import LitClassifier, ShapesTexturesDataModule

    bias = {}
    for tc in (0.0, 1.0):
        pl.seed_everything(0, verbose=False)
        dm = ShapesTexturesDataModule(
            image_size=image_size, train_size=1000, val_size=200, batch_size=32,
            texture_correlation=tc, seed=0,
        )  # fmt: skip
        cb = lv.TextureShapeBias(
            num_images=80, style_steps=50, style_size=style_size, background=False,
            every_n_epochs=epochs, max_overhead=None, on_error="raise",
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            trainer = pl.Trainer(
                max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[cb],
                logger=TensorBoardLogger(tmp), enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, deterministic=True,
            )  # fmt: skip
            trainer.fit(LitClassifier(num_classes=dm.num_classes, lr=3e-3), datamodule=dm)
            bias[tc] = float(trainer.callback_metrics["bias/shape_bias"])
    return bias[0.0], bias[1.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 224])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--old", action="store_true", help="also the old way at 224 px")
    parser.add_argument("--old-images", type=int, default=4)
    parser.add_argument("--separation", action="store_true")
    parser.add_argument("--separation-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} threads, load average {load:.1f} at start"
    )
    print("\n| size | way | images | s/image (wall) | CPU s/image | peak RSS |")
    print("|---|---|---|---|---|---|")
    from lightning_viz.callbacks.shape_bias import generation_chunk

    rows = [
        (
            s,
            f"coarse to fine, chunks of {generation_chunk(s, s)}",
            args.images,
            "64",
            generation_chunk(s, s),
        )
        for s in args.sizes
    ]
    if args.old:
        rows.append((224, "old: 50 steps at full size", args.old_images, "none", 160))
    for size, way, n, style_size, batch in rows:
        r = _cost(size, n, style_size, batch, args.threads)
        print(
            f"| {size} | {way} | {n} | {r['wall'] / n:.3f} | {r['cpu'] / n:.3f} | "
            f"{r['rss'] / 2**30:.2f} GiB |"
        )
    print(f"\nself: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if args.separation:
        print("\n| data | generation | shape bias (texture corr. 0) | (corr. 1) | separation |")
        print("|---|---|---|---|---|")
        runs = [(32, 64, "32 px, one size (old = new)")]
        if args.separation_size:
            s = args.separation_size
            runs += [(s, s // 2, f"coarse to fine {s // 2} -> {s}"), (s, None, "all at full size")]
        for image_size, style_size, what in runs:
            start = time.perf_counter()
            shape, texture = _separation(image_size, style_size, args.epochs)
            print(
                f"| {image_size} px | {what} | {shape:.3f} | {texture:.3f} | "
                f"{shape - texture:.3f} | ({time.perf_counter() - start:.0f} s)"
            )


if __name__ == "__main__":
    main()
