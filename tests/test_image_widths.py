"""Every picture the demo's callbacks write fits a TensorBoard card (about 500 px wide).

A picture wider than about 1000 px is shrunk by TensorBoard until its captions cannot
be read; the feature maps used to be one 1652 px row per probe image.
"""

from __future__ import annotations

import argparse

from lightning_viz.cli import build_callbacks
from tests.conftest import decode_png, fit, read_events, small_datamodule

MAX_WIDTH = 1100  # px: the grids aim at 1000, figures are at most 1000

# the demo model's default activation layers: (channels shown, tile side in px)
ACTIVATIONS = {
    "model.block1.conv": (16, 64),  # 32 px maps, 2x (tiles are at least 48 px)
    "model.block2.conv": (32, 48),  # 16 px maps, 3x
    "model.block3.conv": (32, 48),  # 32 of 64 channels, 8 px maps, 6x
}
EXPECTED = {
    "filters/model.block1.conv",
    *(f"activations/{layer}" for layer in ACTIVATIONS),
    *(f"saliency/{m}" for m in ("vanilla", "smoothgrad", "guided_backprop", "deconvnet")),
    "saliency/segmentation",
    *(f"gradcam/{m}" for m in ("gradcam", "gradcam++", "guided_gradcam")),
    "robustness/curve",
    "robustness/examples",
    "bias/per_class",
    "bias/cue_conflict",
    "class_model/grid",
}


def test_every_demo_image_is_at_most_1100_px_wide_and_feature_maps_wrap(tmp_path):
    dm = small_datamodule()
    dm.setup("fit")
    # the demo's callbacks with their default settings (not --fast)
    callbacks = build_callbacks(list(dm.class_names), argparse.Namespace(fast=False, epochs=1))
    fit(tmp_path, callbacks, epochs=1, datamodule=dm)
    images = read_events(str(tmp_path))["images"]
    assert EXPECTED <= set(images), sorted(EXPECTED - set(images))
    widths = {tag: max(width for _, width, _, _ in entries) for tag, entries in images.items()}
    too_wide = {tag: w for tag, w in widths.items() if w > MAX_WIDTH}
    assert not too_wide, too_wide
    probes = callbacks[1].num_samples  # ActivationLogger: 2 probe images
    for layer, (channels, tile) in ACTIVATIONS.items():
        (_, width, height, png) = images[f"activations/{layer}"][-1]
        assert decode_png(png).shape == (height, width, 3)
        # the input and 8 channels a row (was: the input and every channel in one row)
        assert width == 2 + 9 * (tile + 2)
        rows = channels // 8  # block rows per probe image
        assert rows >= 2 and height > probes * rows * (tile + 2)


def test_photo_sized_images_make_grids_of_one_card_not_long_columns(tmp_path):
    """224-px inputs: tiles are shrunk to 128 px, so 8 samples with their row labels
    stay about one card in both directions."""
    import lightning_viz as lv

    kw = {"on_error": "raise", "class_names": ["circle", "square", "triangle", "star", "cross"]}
    callbacks = [
        lv.SaliencyLogger(methods=("vanilla",), **kw),
        lv.GradCAMLogger(**kw),
        lv.AdversarialProbe(eps=(8 / 255,), steps=1, num_samples=8, **kw),
    ]
    dm = small_datamodule(image_size=224, train_size=32, val_size=40, batch_size=16)
    fit(tmp_path, callbacks, epochs=1, datamodule=dm, limit_train_batches=1)
    images = read_events(str(tmp_path))["images"]
    for tag in ("saliency/vanilla", "saliency/segmentation", "gradcam/gradcam"):
        ((_, width, height, png),) = images[tag]
        assert width <= MAX_WIDTH and height <= MAX_WIDTH, (tag, width, height)
        assert decode_png(png).shape[:2] == (height, width)
    ((_, width, height, _),) = images["robustness/examples"]
    assert width <= MAX_WIDTH and height <= MAX_WIDTH, (width, height)  # 3 rows, 2 blocks
