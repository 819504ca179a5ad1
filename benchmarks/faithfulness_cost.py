"""What scoring the maps costs next to computing them (issue 20).

Runs the demo's ``SaliencyLogger`` and ``GradCAMLogger`` (``lightning-viz demo``'s
settings: 8 probe images, SmoothGrad with 25 samples; small CNN on the built-in shapes
data) for a short fit and times, per callback and run, the map computations (the
methods the callback calls for its images) and the scoring (``quality`` at its
defaults: deletion and insertion curves, randomization, random-map baselines), split
into its parts. Target: scoring <= 0.5 x the maps.

    python benchmarks/faithfulness_cost.py [--epochs 3] [--threads 2] [--model small]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

import lightning_viz.functional as LF
from lightning_viz.callbacks import gradcam as gradcam_module
from lightning_viz.cli import build_callbacks
from lightning_viz.data import LitClassifier, ShapesTexturesDataModule, build_model

TIMES: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
STATE = {"owner": "", "scoring": False}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Any, part: str) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _sync()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync()
        key = part if part != "maps" or not STATE["scoring"] else "randomization maps"
        TIMES[STATE["owner"]][key].append(time.perf_counter() - start)
        return out

    return wrapper


def _instrument(callbacks: list[Any]) -> None:
    import lightning_viz.callbacks._quality as quality

    quality.LF = type("TimedLF", (), {})  # the scoring's view of the functional API
    for name in dir(LF):
        if not name.startswith("_"):
            setattr(quality.LF, name, staticmethod(getattr(LF, name)))
    for name, part in (
        ("perturbation_curves", "deletion + insertion"),
        ("randomization_similarity", "randomization (total)"),
    ):
        setattr(quality.LF, name, staticmethod(_timed(getattr(LF, name), part)))
    for cb in callbacks:
        owner = type(cb).__name__
        score = cb.score_maps

        def scoring(*args: Any, _score: Any = score, _owner: str = owner, **kwargs: Any) -> Any:
            STATE["owner"], STATE["scoring"] = _owner, True
            try:
                return _timed(_score, "scoring (total)")(*args, **kwargs)
            finally:
                STATE["scoring"] = False

        cb.score_maps = scoring
        run = cb.run

        def running(ctx: Any, _run: Any = run, _owner: str = owner) -> Any:
            STATE["owner"] = _owner
            return _run(ctx)

        cb.run = running
        if owner == "SaliencyLogger":
            cb._map = _timed(cb._map, "maps")
    for key, fn in list(gradcam_module.METHODS.items()):
        gradcam_module.METHODS[key] = _timed(fn, "maps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="small", choices=("small", "resnet18", "vit"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["circle", "square", "triangle", "star", "cross"]
    ns = argparse.Namespace(fast=False, epochs=args.epochs)
    callbacks = [
        cb
        for cb in build_callbacks(names, ns)
        if type(cb).__name__ in ("SaliencyLogger", "GradCAMLogger")
    ]
    for cb in callbacks:
        cb.quality_cost = None  # every run scored: the ratio per run, over every run
    _instrument(callbacks)
    pl.seed_everything(0, verbose=False)
    data = ShapesTexturesDataModule(train_size=512, val_size=128, batch_size=64, seed=0)
    model = LitClassifier(model=build_model(args.model, 5), num_classes=5, lr=3e-3)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_epochs=args.epochs,
            callbacks=callbacks,
            accelerator="auto",
            devices=1,
            logger=TensorBoardLogger(tmp, name="cost"),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, datamodule=data)
    device = "cuda" if torch.cuda.is_available() else f"cpu ({args.threads} threads)"
    print(f"model {args.model}, {args.epochs} runs per callback, {device}; seconds per run")
    print(f"{'callback':<16} {'part':<24} {'s/run':>8} {'x maps':>8}")
    for owner, parts in TIMES.items():
        runs = len(parts["scoring (total)"]) or 1
        maps = sum(parts["maps"]) / runs
        for part in (
            "maps",
            "scoring (total)",
            "deletion + insertion",
            "randomization (total)",
            "randomization maps",
        ):
            per_run = sum(parts.get(part, [])) / runs
            print(f"{owner:<16} {part:<24} {per_run:8.3f} {per_run / maps:8.2f}")


if __name__ == "__main__":
    main()
