"""How long the built-in datamodules take to draw their images (``setup("fit")``).

The default ``ShapesTexturesDataModule`` draws 2,000 training and 500 validation
images with numpy when ``setup`` runs; the target is under 5 s on 2 CPU cores (a
wall-clock limit measured here rather than asserted in the test suite, where a
loaded machine could miss it). ``DigitsDataModule`` is timed alongside.

    python benchmarks/data_speed.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from lightning_viz.data import DigitsDataModule, ShapesTexturesDataModule

TARGET_S = 5.0  # the default shapes setup, on 2 CPU cores


def _seconds(make, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        dm = make()
        start = time.perf_counter()
        dm.setup("fit")
        out.append(time.perf_counter() - start)
        assert len(dm.train_dataset) > 0 and len(dm.val_dataset) > 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch threads {args.threads}")
    print("| datamodule (setup 'fit') | images | median s | min s |")
    print("|---|---:|---:|---:|")
    rows = [
        ("ShapesTexturesDataModule()", 2500, ShapesTexturesDataModule),
        (
            "ShapesTexturesDataModule(image_size=64)",
            2500,
            lambda: ShapesTexturesDataModule(image_size=64),
        ),
        ("DigitsDataModule()", 1797, DigitsDataModule),
    ]
    medians = {}
    for name, n, make in rows:
        s = _seconds(make, args.repeats)
        medians[name] = statistics.median(s)
        print(f"| `{name}` | {n} | {medians[name]:.2f} | {min(s):.2f} |")
    default = medians["ShapesTexturesDataModule()"]
    verdict = "within" if default < TARGET_S else "OVER"
    print(f"\ndefault shapes setup: {default:.2f} s, {verdict} the {TARGET_S:.0f} s target")


if __name__ == "__main__":
    main()
