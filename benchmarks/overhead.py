"""What the lightning-viz callbacks add to a real fit, with the shared overhead budget.

The workload: torchvision ResNet-18 with a 3x3 stem and no max pooling
(``lightning_viz.data.resnet18_small``), 32 px images, 4 classes of the built-in
``ShapesTexturesDataModule``, 2,048 training images at batch 64 (32 steps an epoch),
512 validation images, Adam 1e-3. One process, in this order:

1. the fit without callbacks (``--epochs``, default 8);
2. the same fit (same seed, same data) with all nine callbacks at their defaults,
   so with the default shared budget ``max_overhead=0.10``;
3. the same fit with ``AdversarialProbe`` alone at its defaults and the budget off,
   so it runs every epoch: the cost of each run in training epochs (the once-per-fit
   gradient-masking check on 32 samples is counted apart);
4. the same with ``CorruptionProbe`` alone (corrupting the probe, once per fit, is
   counted apart);
5. fit 2 again with two loggers, ``[TensorBoardLogger, CSVLogger]`` (issue 21: every
   artifact rendered once and written to both; the overhead should not change beyond
   noise).

A small warm-up fit comes first: the first fit of a process pays one-time set-ups
that would otherwise count against the fit without callbacks.

It prints the whole-fit and steady-epoch overhead, each callback's share of the
callback seconds (runs, set-up and background work, as the budget counts them), the
``viz/overhead`` the library logged at the end next to the measured overhead
``(fit with callbacks - fit without) / fit without``, and ``AdversarialProbe`` in
training epochs. The targets (issue 10): whole fit <= +35 %, logged within 5 points
of measured, one ``AdversarialProbe`` run <= 1.0 training epoch; (issue 19) one
``CorruptionProbe`` run <= 0.25 training epoch. For ``SaliencyLogger`` and
``GradCAMLogger`` in fit 2 it prints what scoring their maps cost (issue 20:
``viz/<Class>/quality_seconds``) against computing and drawing the maps (the rest of
``viz/<Class>/seconds``), per scored run and over the fit.

    python benchmarks/overhead.py [--epochs 8] [--threads 2] [--quick]

``--quick`` is a smoke run (256 images, 2 epochs) that checks the script, not the
targets.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

import lightning_viz as lv
from lightning_viz._runtime.coordinator import Coordinator
from lightning_viz.data import LitClassifier, ShapesTexturesDataModule, resnet18_small

CALLBACKS = [n for n in lv.callbacks.__all__ if n not in ("RunContext", "VizCallback")]
TARGET_FIT = 0.35  # whole fit, first runs and one-time set-up included
TARGET_AGREE = 0.05  # logged viz/overhead vs measured, absolute
TARGET_PROBE_EPOCHS = 1.0  # one AdversarialProbe run, budget off
TARGET_CORRUPTION_EPOCHS = 0.25  # one CorruptionProbe run, budget off


class EpochClock(pl.Callback):
    """Wall seconds of each training epoch, from one epoch start to the next
    (so the epoch-end work of every other callback is inside its epoch)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.end = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.starts.append(time.perf_counter())

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.end = time.perf_counter()

    def epochs(self) -> list[float]:
        marks = [*self.starts, self.end]
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"Lightning {pl.__version__}"
    )


def fit(
    args: argparse.Namespace,
    callbacks: list[Any],
    log_dir: str,
    *,
    epochs: int,
    module: LitClassifier | None = None,
    csv: bool = False,
) -> tuple[float, list[float], Any, LitClassifier]:
    """One fit; returns (whole-fit seconds, epoch seconds, trainer, module)."""
    pl.seed_everything(0)
    dm = ShapesTexturesDataModule(
        num_classes=4, train_size=args.train_size, val_size=args.val_size, batch_size=64
    )
    dm.prepare_data()
    dm.setup("fit")  # drawn before the clock starts, the same for every fit
    if module is None:
        module = LitClassifier(resnet18_small(num_classes=4), num_classes=4, lr=1e-3)
    clock = EpochClock()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=[TensorBoardLogger(log_dir, name="", version="")]
        + ([CSVLogger(log_dir, name="csv", version="")] if csv else []),
        callbacks=[*callbacks, clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return time.perf_counter() - start, clock.epochs(), trainer, module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--val-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: 256 images, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.train_size, args.val_size = 2, 256, 128
    torch.set_num_threads(args.threads)
    print(machine_info())
    names = [f"shape {i}" for i in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        warm = argparse.Namespace(**{**vars(args), "train_size": 256, "val_size": 128})
        fit(warm, [], f"{tmp}/warm-up", epochs=1)  # the process's first fit pays set-ups
        plain_s, plain_epochs, _, _ = fit(args, [], f"{tmp}/plain", epochs=args.epochs)
        callbacks = [getattr(lv, name)(class_names=names) for name in CALLBACKS]
        viz_s, viz_epochs, trainer, _ = fit(args, callbacks, f"{tmp}/viz", epochs=args.epochs)
        budget = Coordinator.of(trainer).budget
        logged = float(trainer.callback_metrics["viz/overhead"])
        totals = {type(cb).__name__: budget.totals.get(cb.state_key, 0.0) for cb in callbacks}
        runs = {type(cb).__name__: _run_seconds(trainer, cb) for cb in callbacks}
        quality = {
            type(cb).__name__: _quality(trainer, cb)
            for cb in callbacks
            if hasattr(cb, "_quality_seconds_tag")
        }

        # AdversarialProbe alone at its defaults, budget off: every epoch, the same fit
        probe = lv.AdversarialProbe(class_names=names, max_overhead=None)
        _, _, probe_trainer, _ = fit(args, [probe], f"{tmp}/probe", epochs=args.epochs)
        probe_runs = _run_seconds(probe_trainer, probe)
        subset = _one_time(probe_trainer, probe)
        corruption = lv.CorruptionProbe(class_names=names, max_overhead=None)
        _, _, c_trainer, _ = fit(args, [corruption], f"{tmp}/corruption", epochs=args.epochs)
        c_runs = _run_seconds(c_trainer, corruption)
        c_once = _one_time(c_trainer, corruption)
        both = [getattr(lv, name)(class_names=names) for name in CALLBACKS]
        both_s, _, both_trainer, _ = fit(args, both, f"{tmp}/both", epochs=args.epochs, csv=True)
        both_logged = float(both_trainer.callback_metrics["viz/overhead"])

    measured = viz_s / plain_s - 1
    steady_plain = statistics.median(plain_epochs[1:] or plain_epochs)
    steady_viz = statistics.mean(viz_epochs[1:] or viz_epochs)
    spent = sum(totals.values())
    print(
        f"\n{args.train_size} training / {args.val_size} validation images, batch 64, "
        f"{args.epochs} epochs; a training epoch (with validation) takes {steady_plain:.1f} s"
    )
    print("\n| | seconds | overhead | target |")
    print("|---|---:|---:|---|")
    print(f"| fit without callbacks | {plain_s:.0f} | | |")
    print(
        f"| fit with all nine at their defaults (`max_overhead=0.10`) | {viz_s:.0f} | "
        f"{measured:+.1%} | <= +{TARGET_FIT:.0%} {'ok' if measured <= TARGET_FIT else 'MISSED'} |"
    )
    print(
        f"| steady epoch (epochs 2-{args.epochs}: mean with, median without) | "
        f"{steady_viz:.1f} vs {steady_plain:.1f} | {steady_viz / steady_plain - 1:+.1%} | |"
    )
    agree = abs(logged - measured)
    print(
        f"| `viz/overhead` logged at the end | | {logged:+.1%} | within "
        f"{TARGET_AGREE:.0%} of measured: {agree:.1%} "
        f"{'ok' if agree <= TARGET_AGREE else 'MISSED'} |"
    )
    steady_runs = [s - subset if i == 0 else s for i, s in enumerate(probe_runs)]
    mean_e = statistics.mean(steady_runs) / steady_plain
    max_e = max(steady_runs) / steady_plain
    print(
        f"| `AdversarialProbe` alone, budget off, one run per epoch | "
        f"{statistics.mean(steady_runs):.1f} mean, {max(steady_runs):.1f} max | "
        f"{mean_e:.2f} mean, {max_e:.2f} max training epochs | <= {TARGET_PROBE_EPOCHS:.1f} "
        f"{'ok' if max_e <= TARGET_PROBE_EPOCHS else 'MISSED'} |"
    )
    print(
        f"| its masking check, once per fit (32 samples, every attack and eps) | {subset:.1f} | | |"
    )
    c_steady = [r - c_once if i == 0 else r for i, r in enumerate(c_runs)]
    c_mean, c_max = statistics.mean(c_steady) / steady_plain, max(c_steady) / steady_plain
    c_ok = "ok" if c_max <= TARGET_CORRUPTION_EPOCHS else "MISSED"
    print(
        f"| `CorruptionProbe` alone, budget off, one run per epoch | "
        f"{statistics.mean(c_steady):.1f} mean, {max(c_steady):.1f} max | "
        f"{c_mean:.2f} mean, {c_max:.2f} max training epochs | <= "
        f"{TARGET_CORRUPTION_EPOCHS:.2f} {c_ok} |"
    )
    print(f"| its corrupting of the probe, once per fit (64 images x 14) | {c_once:.1f} | | |")
    print("\n| callback | seconds (runs, set-up, background) | share | runs | seconds per run |")
    print("|---|---:|---:|---:|---|")
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = seconds / spent if spent else 0.0
        per_run = ", ".join(f"{s:.1f}" for s in runs[name])
        print(f"| {name} | {seconds:.1f} | {share:.0%} | {len(runs[name])} | {per_run} |")
    print(f"| all | {spent:.1f} | 100% | | |")
    print(f"\nAdversarialProbe runs, budget off (s): {', '.join(f'{s:.1f}' for s in probe_runs)}")
    print(
        f"\nTwo loggers (TensorBoard + CSV), all nine at their defaults: fit {both_s:.0f} s, "
        f"{both_s / plain_s - 1:+.1%} over the fit without (one logger: {measured:+.1%}); "
        f"viz/overhead logged {both_logged:+.1%}"
    )
    print("\n| callback | scored runs | maps s (each scored run) | scoring s | scoring / maps |")
    print("|---|---:|---|---|---|")
    for name, pairs in quality.items():
        scored = [(m, q) for m, q in pairs if q > 0]
        maps = sum(m for m, _ in pairs)
        ratio = ", ".join(f"{q / m:.2f}" for m, q in scored if m > 0)
        print(
            f"| {name} | {len(scored)} of {len(pairs)} | "
            f"{', '.join(f'{m:.2f}' for m, _ in scored)} | "
            f"{', '.join(f'{q:.2f}' for _, q in scored)} | {ratio} per scored run; "
            f"{sum(q for _, q in pairs) / maps if maps else 0:.2f} over the fit |"
        )


def _events(trainer: Any) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(trainer.logger.log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def _run_seconds(trainer: Any, callback: Any) -> list[float]:
    """Seconds of each run of ``callback`` in the fit (its seconds scalar)."""
    acc = _events(trainer)
    tag = callback._seconds_tag()
    return [e.value for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def _quality(trainer: Any, callback: Any) -> list[tuple[float, float]]:
    """Per run of ``callback``: (maps and drawing seconds, scoring seconds)."""
    acc = _events(trainer)
    tag = callback._quality_seconds_tag()
    runs = _run_seconds(trainer, callback)
    scores = {e.step: e.value for e in acc.Scalars(tag)} if tag in acc.Tags()["scalars"] else {}
    steps = [e.step for e in acc.Scalars(callback._seconds_tag())] if runs else []
    pairs = zip(runs, steps, strict=True)
    return [(s - scores.get(step, 0.0), scores.get(step, 0.0)) for s, step in pairs]


def _one_time(trainer: Any, callback: Any) -> float:
    """One-time seconds inside ``callback``'s runs (its masking check)."""
    budget = Coordinator.of(trainer).budget
    runs = _run_seconds(trainer, callback)
    return max(0.0, sum(runs) - sum(budget._runs.get(callback.state_key, [])))


if __name__ == "__main__":
    main()
