"""Renders docs/tensorboard.png from the demo's own TensorBoard event files.

    lightning-viz demo --output-dir /tmp/demo
    python docs/make_picture.py /tmp/demo docs/tensorboard.png

The picture shows what TensorBoard's Images and Scalars tabs show for the run: the
latest image of a few tags, and a few scalar curves over the epochs.
"""

from __future__ import annotations

import argparse
import glob
import io
import os

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

IMAGE_TAGS = [
    "saliency/vanilla",
    "gradcam/gradcam",
    "saliency/segmentation",
    "robustness/examples",
    "bias/cue_conflict",
    "class_model/grid",
    "robustness/curve",
]
SCALAR_TAGS = [
    "val_acc",
    "bias/saliency_in_mask",
    "bias/shape_bias",
    "embedding/knn_acc",
    "robustness/clean_acc",
    "robustness/pgd_acc@2/255",
]


def load(logdir: str) -> tuple[dict, dict]:
    """Latest image per tag and all scalar points per tag under ``logdir``."""
    images: dict[str, tuple[int, bytes]] = {}
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
        acc = EventAccumulator(path, size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["images"]:
            last = acc.Images(tag)[-1]
            if tag not in images or last.step >= images[tag][0]:
                images[tag] = (last.step, last.encoded_image_string)
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return images, scalars


def render(logdir: str, out: str) -> None:
    """Writes the picture to ``out``."""
    images, scalars = load(logdir)
    shown = [t for t in IMAGE_TAGS if t in images]
    curves = [t for t in SCALAR_TAGS if t in scalars]
    rows = len(shown) + 1
    fig = Figure(figsize=(12, 2.3 * rows + 0.5), dpi=100)
    fig.suptitle("lightning-viz demo: what TensorBoard shows (latest images, scalar curves)")
    for i, tag in enumerate(shown):
        ax = fig.add_subplot(rows, 1, i + 1)
        step, png = images[tag]
        ax.imshow(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
        ax.set_title(f"{tag}  (step {step})", loc="left", fontsize=9)
        ax.axis("off")
    for j, tag in enumerate(curves):
        ax = fig.add_subplot(rows, len(curves), (rows - 1) * len(curves) + j + 1)
        points = sorted(scalars[tag])
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        ax.set_title(tag, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("logdir")
    parser.add_argument("out", nargs="?", default="docs/tensorboard.png")
    args = parser.parse_args()
    render(args.logdir, args.out)
    print(f"wrote {args.out}")
