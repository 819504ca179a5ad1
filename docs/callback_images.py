"""The pictures on the callback pages: the images the callbacks wrote in a demo run.

Reads the event file of a run of ``lightning-viz demo`` (``--epochs 3``) and saves
the last image of one tag per callback, exactly as TensorBoard received it, to
``docs/screenshots/callbacks/<page>.png``. Not part of the tests. From the repository
root::

    .venv/bin/lightning-viz demo --epochs 3 --output-dir /tmp/demo
    .venv/bin/python docs/callback_images.py /tmp/demo
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

# page -> regex of the tag whose last image it shows
TAGS = {
    "filters": r"^filters/[^/]+$",
    "activations": r"^activations/",
    "saliency": r"^saliency/vanilla$",
    "gradcam": r"^gradcam/gradcam$",
    "embedding": r"^embedding/.+/tsne$",
    "adversarial": r"^robustness/curve$",
    "texture-shape-bias": r"^bias/cue_conflict$",
    "class-model": r"^class_model/grid$",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("logdir", help="the demo's --output-dir (searched for event files)")
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "screenshots", "callbacks"),
        help="where the PNGs go (default docs/screenshots/callbacks)",
    )
    args = parser.parse_args(argv)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images: dict[str, tuple[int, bytes]] = {}  # tag -> (step, png) of its last image
    pattern = os.path.join(args.logdir, "**", "events.out.tfevents.*")
    for path in sorted(glob.glob(pattern, recursive=True)):
        acc = EventAccumulator(path, size_guidance={"images": 0})
        acc.Reload()
        for tag in acc.Tags()["images"]:
            for event in acc.Images(tag):
                if tag not in images or event.step >= images[tag][0]:
                    images[tag] = (event.step, event.encoded_image_string)
    os.makedirs(args.out, exist_ok=True)
    missing = []
    for page, regex in TAGS.items():
        tags = sorted(t for t in images if re.search(regex, t))
        if not tags:
            missing.append(f"{page}: no image tag matches {regex!r}")
            continue
        tag = tags[-1] if page == "activations" else tags[0]  # activations: the late layer
        step, png = images[tag]
        with open(os.path.join(args.out, f"{page}.png"), "wb") as file:
            file.write(png)
        print(f"{page}.png <- {tag} (step {step})")
    for line in missing:
        print(line, file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
