"""The demo's controlled experiment under common corruptions.

Trains the demo's small CNN (``lightning-viz demo`` defaults: 2,000 training images,
Adam 3e-3, seed 0) twice on the built-in shapes data: once with
``--texture-correlation 1.0`` (the texture gives the class away: a shortcut) and once
with ``0.0`` (only the shape does). Then measures, on 500 held-out images of each
model's own distribution and on 500 cue-free images (texture_correlation 0.0), the
accuracy under every corruption of :func:`lightning_viz.functional.corrupt` at
severities 1-5 (CIFAR-10-C parameters, 32 px), and prints a markdown table.

    python benchmarks/corruption_shortcut.py [--epochs 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl
import torch

from lightning_viz.data import LitClassifier, ShapesTexturesDataModule
from lightning_viz.functional import CORRUPTIONS, corrupt


def train(correlation: float, args: argparse.Namespace) -> tuple[LitClassifier, float]:
    pl.seed_everything(args.seed, verbose=False)
    dm = ShapesTexturesDataModule(
        train_size=args.train_size,
        val_size=args.val_size,
        texture_correlation=correlation,
        seed=args.seed,
    )
    model = LitClassifier(num_classes=dm.num_classes, lr=args.lr)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    began = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return model.eval(), time.perf_counter() - began


def val_set(correlation: float, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    dm = ShapesTexturesDataModule(
        train_size=args.train_size,
        val_size=args.val_size,
        texture_correlation=correlation,
        seed=args.seed,
    )
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


@torch.no_grad()
def accuracy(model: LitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    preds = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return (preds == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {}
    for name, corr in (("texture-shortcut (1.0)", 1.0), ("shape (0.0)", 0.0)):
        models[name], seconds = train(corr, args)
        print(f"trained {name} in {seconds:.0f} s")
    sets = {"own": None, "cue-free": val_set(0.0, args)}
    own = {"texture-shortcut (1.0)": val_set(1.0, args), "shape (0.0)": sets["cue-free"]}
    print(
        f"\n{args.epochs} epochs, {args.train_size} training images; accuracy on "
        f"{args.val_size} held-out images, mean over severities {args.severities}\n"
    )
    header = "| corruption | " + " | ".join(
        f"{m} on {s}" for m in models for s in ("own", "cue-free")
    )
    print(header + " |")
    print("|---" * (1 + 2 * len(models)) + "|")
    for corruption in ("clean", *CORRUPTIONS):
        cells = []
        for mname, model in models.items():
            for which in ("own", "cue-free"):
                x, y = own[mname] if which == "own" else sets["cue-free"]
                if corruption == "clean":
                    cells.append(accuracy(model, x, y))
                    continue
                accs = [
                    accuracy(
                        model,
                        corrupt(x, corruption, s, generator=torch.Generator().manual_seed(s)),
                        y,
                    )
                    for s in args.severities
                ]
                cells.append(sum(accs) / len(accs))
        print(f"| {corruption} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
