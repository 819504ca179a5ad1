"""The examples a user copies from keep working."""

from __future__ import annotations

import importlib.util
import pathlib

import lightning_viz as lv
from tests.conftest import read_events

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lightning_cli_yaml_builds_the_configured_callbacks():
    cli = _load("lightning_cli").main(
        ["--config", str(EXAMPLES / "lightning_cli.yaml"), "--trainer.logger=false"], run=False
    )
    by_type = {type(cb).__name__: cb for cb in cli.trainer.callbacks}
    assert by_type["FilterLogger"].max_filters == 32
    assert by_type["ActivationLogger"].max_channels == 16
    assert by_type["SaliencyLogger"].methods == ["vanilla", "smoothgrad", "guided_backprop"]
    assert by_type["SaliencyLogger"].class_names[3] == "star"
    assert by_type["GradCAMLogger"].methods == ["gradcam", "gradcam++"]
    assert isinstance(by_type["GradCAMLogger"], lv.GradCAMLogger)


def test_own_module_example_trains_and_logs_in_pixel_space(tmp_path):
    _load("own_module").main(epochs=1, output_dir=str(tmp_path), limit_batches=2)
    ev = read_events(str(tmp_path))
    assert "saliency/guided_backprop" in ev["images"]
    assert "gradcam/gradcam++" in ev["images"]
    assert "activations/features.6" in ev["images"]
    # masks came through batch_to_xy, so the bias scalar exists
    assert "bias/saliency_in_mask" in ev["scalars"]


def test_style_transfer_example_writes_a_png(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    out = tmp_path / "st.png"
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "style_transfer.py"),
            "--out",
            str(out),
            "--size",
            "32",
            "--steps",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    assert image.width >= 3 * 32 and image.height >= 32  # content | style | result
