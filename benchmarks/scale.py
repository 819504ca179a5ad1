"""The lightning-viz callbacks on an ImageNet-size setup: memory, setup time, run costs.

The workload (issue 16): torchvision ResNet-50 (random init, 1000 classes) at 224 px,
an ``ImageFolder`` of generated PNGs (6 classes, written to a temporary directory)
with ``Normalize(ImageNet mean/std)`` in its transform, batch 16, SGD, CPU. Each
configuration is fitted in a subprocess of its own, so each peak RSS is that
process's alone (``getrusage(RUSAGE_SELF).ru_maxrss`` reported by the child, the same
number ``RUSAGE_CHILDREN`` gives the parent for that one child):

* ``none``: the fit without callbacks;
* ``all``: the eight callbacks at their defaults (``mean``/``std`` not given: read
  from the transform; ``max_batch_size``: the training batch size), except
  ``ClassModelLogger(every_n_epochs=1)`` so that a short fit measures it too;
* any comma-separated list of callback class names (defaults as above).

For each it reports the peak RSS, the setup time before training step 1 (from
``trainer.fit`` to the first ``on_train_batch_start``; no sanity check), the median
training step, and for each callback its seconds per run (median, epoch-end plus
background work, as the budget counts it) and its one-time seconds (setup and
caches built once), both in training steps. Targets: peak RSS with all callbacks at
most 1.25x the peak without, setup under 15 s.

    python benchmarks/scale.py [--train-size 480] [--val-size 2048] [--epochs 1]
        [--limit-train-batches N] [--limit-val-batches N] [--configs none all]
        [--threads 2] [--timeout 3600]

On a small CPU machine use ``--limit-train-batches`` and ``--limit-val-batches``
(a "reduced run"): the callbacks' costs per run do not depend on the epoch length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = 6
TARGET_RSS = 1.25
TARGET_SETUP = 15.0


# ------------------------------------------------------------------------- data
def write_image_folder(root: str, per_class: int, size: int, seed: int) -> None:
    """``root/<class>/<i>.png``: each class a shape of its own, random colours,
    position, size and a noisy background."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for k in range(CLASSES):
        folder = os.path.join(root, f"class{k}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            image = Image.fromarray((noise * 0.3).astype(np.uint8) + 60)
            draw = ImageDraw.Draw(image)
            r = int(size * rng.uniform(0.2, 0.35))
            cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
            box = (cx - r, cy - r, cx + r, cy + r)
            colour = tuple(int(c) for c in rng.integers(80, 256, 3))
            if k == 0:
                draw.ellipse(box, fill=colour)
            elif k == 1:
                draw.rectangle(box, fill=colour)
            elif k == 2:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
            elif k == 3:
                draw.line([(cx - r, cy), (cx + r, cy)], fill=colour, width=r // 3)
                draw.line([(cx, cy - r), (cx, cy + r)], fill=colour, width=r // 3)
            elif k == 4:
                draw.ellipse(box, outline=colour, width=max(2, r // 4))
            else:
                draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
            image.save(os.path.join(folder, f"{i}.png"))


# ------------------------------------------------------------------------ child
def child(args: argparse.Namespace) -> dict[str, Any]:
    """One fit in this process; returns what it measured."""
    torch_threads = args.threads
    import pytorch_lightning as pl
    import torch
    import torchvision
    from pytorch_lightning.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    import lightning_viz as lv
    from lightning_viz._runtime.coordinator import Coordinator

    torch.set_num_threads(torch_threads)
    pl.seed_everything(0, verbose=False)
    transform = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    train = torchvision.datasets.ImageFolder(os.path.join(args.data, "train"), transform)
    val = torchvision.datasets.ImageFolder(os.path.join(args.data, "val"), transform)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = torchvision.models.resnet50(num_classes=1000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.log("val_acc", (self(x).argmax(1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.first: float | None = None
            self.steps: list[float] = []
            self._start = 0.0

            self.peaks: dict[str, float] = {}  # phase -> peak RSS (MB) when it ended

        def _mark(self, phase: str) -> None:
            self.peaks[phase] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        def on_train_batch_start(self, trainer: Any, *rest: Any) -> None:
            self._start = time.perf_counter()
            if self.first is None:
                self.first = self._start
                self._mark("setup")

        def on_train_batch_end(self, trainer: Any, *rest: Any) -> None:
            self.steps.append(time.perf_counter() - self._start)
            self._mark("training steps")

        def on_train_end(self, trainer: Any, *rest: Any) -> None:
            self._mark("epoch ends")

    names = _callback_names(args.config)
    callbacks: list[Any] = []
    for name in names:
        kwargs = {"every_n_epochs": 1} if name == "ClassModelLogger" else {}
        callbacks.append(getattr(lv, name)(**kwargs))
    clock = Clock()
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(args.logs, name=args.config.replace(",", "_")),
        callbacks=[*callbacks, clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
    )
    start = time.perf_counter()
    trainer.fit(
        Module(),
        DataLoader(train, batch_size=args.batch_size, shuffle=True),
        DataLoader(val, batch_size=args.batch_size),
    )
    fit_s = time.perf_counter() - start
    steps = clock.steps[1:] or clock.steps
    step_s = statistics.median(steps)
    budget = Coordinator.of(trainer).budget
    per_callback = {}
    for cb in callbacks:
        run_s, background_s, runs = budget.run_cost(cb.state_key)
        once = budget.one_time.get(cb.state_key, 0.0)
        per_callback[type(cb).__name__] = {
            "runs": runs,
            "enabled": bool(cb._enabled),
            "run_s": run_s,
            "background_s": background_s,
            "once_s": once,
            "run_steps": run_s / step_s,
            "once_steps": once / step_s,
        }
    return {
        "config": args.config,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "setup_s": (clock.first or time.perf_counter()) - start,
        "step_s": step_s,
        "steps": len(clock.steps),
        "fit_s": fit_s,
        "peak_by_phase_mb": clock.peaks,
        "callbacks": per_callback,
    }


def _callback_names(config: str) -> list[str]:
    import lightning_viz as lv
    import lightning_viz.callbacks  # noqa: F401 - lv.callbacks is a lazy attribute

    if config == "none":
        return []
    if config == "all":
        skip = ("RunContext", "VizCallback", "CorruptionProbe")  # issue 16 counts eight
        return [n for n in lv.callbacks.__all__ if n not in skip]
    return [n.strip() for n in config.split(",") if n.strip()]


# ----------------------------------------------------------------------- parent
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=480, help="training images (6 classes)")
    parser.add_argument(
        "--val-size",
        type=int,
        default=2048,
        help="validation images (the probe scan reads up to 2,048, as on a real val set)",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit-train-batches", type=_limit, default=1.0, help="int: batches")
    parser.add_argument("--limit-val-batches", type=_limit, default=1.0, help="int: batches")
    parser.add_argument("--configs", nargs="+", default=["none", "all"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per configuration")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--logs", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with open(args.out, "w") as f:
            json.dump(child(args), f)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        began = time.perf_counter()
        write_image_folder(
            os.path.join(data, "train"), args.train_size // CLASSES, args.image_size, 0
        )
        write_image_folder(os.path.join(data, "val"), args.val_size // CLASSES, args.image_size, 1)
        print(
            f"wrote {args.train_size + args.val_size} PNGs in {time.perf_counter() - began:.1f} s"
        )
        for config in args.configs:
            out = os.path.join(tmp, f"{len(results)}.json")
            command = [sys.executable, __file__, "--child", "--config", config]
            command += ["--data", data, "--logs", os.path.join(tmp, "logs"), "--out", out]
            for name in ("epochs", "batch_size", "limit_train_batches", "limit_val_batches"):
                command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            command += ["--threads", str(args.threads)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            began = time.perf_counter()
            try:
                subprocess.run(command, check=True, timeout=args.timeout, env=env)
                with open(out) as f:
                    result = json.load(f)
            except subprocess.TimeoutExpired:
                result = {"config": config, "timeout_s": args.timeout}
            except subprocess.CalledProcessError as err:
                result = {"config": config, "error": f"exit status {err.returncode}"}
            result["wall_s"] = time.perf_counter() - began
            result["children_max_rss_mb"] = (
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            )
            results.append(result)
            print(json.dumps(result), flush=True)
    report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The tables: each configuration, then each callback's costs in training steps."""
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs visible, {args.threads} "
        f"threads, torch {_torch_version()}; ResNet-50 at {args.image_size} px, batch "
        f"{args.batch_size}, limit_train_batches={args.limit_train_batches}, "
        f"limit_val_batches={args.limit_val_batches}, epochs={args.epochs}\n"
    )
    print("| configuration | peak RSS | setup before step 1 | median step | fit |")
    print("|---|---|---|---|---|")
    for r in results:
        if "peak_rss_mb" not in r:
            print(f"| {r['config']} | {r.get('error') or 'timed out'} | | | |")
            continue
        print(
            f"| {r['config']} | {r['peak_rss_mb'] / 1024:.2f} GB | {r['setup_s']:.1f} s | "
            f"{r['step_s']:.2f} s | {r['fit_s']:.0f} s |"
        )
    base = next((r for r in results if r["config"] == "none" and "peak_rss_mb" in r), None)
    for r in results:
        if base is None or r is base or "peak_rss_mb" not in r:
            continue
        ratio = r["peak_rss_mb"] / base["peak_rss_mb"]
        extra = r["setup_s"] - base["setup_s"]
        print(f"\n{r['config']}: peak RSS by the end of {_phases(r)} (without: {_phases(base)})")
        print(
            f"\n{r['config']}: peak RSS {ratio:.2f}x without (target <= {TARGET_RSS}x); setup "
            f"{r['setup_s']:.1f} s ({extra:+.1f} s over the fit without; target < "
            f"{TARGET_SETUP:.0f} s)"
        )
        print("\n| callback | runs | seconds a run | in training steps | one-time seconds |")
        print("|---|---|---|---|---|")
        for name, c in r["callbacks"].items():
            background = f" (+{c['background_s']:.1f} s background)" if c["background_s"] else ""
            state = "" if c["enabled"] else " (turned off)"
            print(
                f"| {name}{state} | {c['runs']} | {c['run_s']:.1f}{background} | "
                f"{c['run_steps']:.1f} | {c['once_s']:.1f} ({c['once_steps']:.1f} steps) |"
            )


def _phases(result: dict[str, Any]) -> str:
    """``setup 1.20 GB, training steps 2.80 GB, ...``: the peak RSS as each phase ended."""
    peaks = result.get("peak_by_phase_mb", {})
    return ", ".join(f"{phase} {mb / 1024:.2f} GB" for phase, mb in peaks.items())


def _limit(text: str) -> int | float:
    """Lightning's ``limit_*_batches``: an int counts batches, a float is a fraction."""
    return float(text) if "." in text else int(text)


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
