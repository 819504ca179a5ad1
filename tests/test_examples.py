"""The examples a user copies from keep working, run the way their docstrings say.

Each example's docstring gives the command to run it from the repository root
(``.venv/bin/python examples/<name>.py ...``). These tests read that command, run it in
a subprocess with this test run's interpreter (the ``.venv`` one under
``scripts/test.sh``) from a directory holding a copy of ``examples/`` (so whatever the
example writes stays in ``tmp_path``), with a few options appended to make it short,
and check what it wrote.
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

import lightning_viz as lv
from tests.conftest import read_events

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_command(name: str) -> list[str]:
    """The command in ``examples/<name>.py``'s docstring that runs it, as argv."""
    docstring = ast.get_docstring(ast.parse((EXAMPLES / f"{name}.py").read_text()))
    lines = [
        line.strip()
        for line in docstring.splitlines()
        if line.strip().startswith(f".venv/bin/python examples/{name}.py")
    ]
    assert len(lines) == 1, f"examples/{name}.py: no single '.venv/bin/python' command: {lines}"
    assert "bash scripts/setup.sh" in docstring  # says how .venv comes to be
    return shlex.split(lines[0])


def run_as_documented(name: str, tmp_path: pathlib.Path, *extra: str) -> str:
    """Runs the documented command (plus ``extra``) from a copy of the examples."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    argv = documented_command(name)
    result = subprocess.run(
        [sys.executable, *argv[1:], *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.parametrize("name", ["own_module", "lightning_cli", "style_transfer"])
def test_every_example_names_the_venv_interpreter(name):
    argv = documented_command(name)
    assert argv[:2] == [".venv/bin/python", f"examples/{name}.py"]


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


def test_lightning_cli_example_takes_the_short_class_names(tmp_path):
    """``--trainer.callbacks+=SaliencyLogger`` (the short form that works for
    EarlyStopping) was "Expected a dot import path string": the package imports its
    callbacks lazily. In a fresh process, where nothing imported them before."""
    code = (
        "import sys, runpy\n"
        f"main = runpy.run_path({str(EXAMPLES / 'lightning_cli.py')!r})['main']\n"
        "cli = main(['--trainer.logger=false', '--trainer.callbacks+=EarlyStopping',\n"
        "            '--trainer.callbacks.monitor=val_loss',\n"
        "            '--trainer.callbacks+=SaliencyLogger',\n"
        "            '--trainer.callbacks.methods=[vanilla]'], run=False)\n"
        "print(sorted(type(c).__name__ for c in cli.trainer.callbacks))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'SaliencyLogger'" in result.stdout and "'EarlyStopping'" in result.stdout


def test_lightning_cli_example_runs_as_documented(tmp_path):
    run_as_documented(
        "lightning_cli",
        tmp_path,
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=2",
    )
    images = read_events(str(tmp_path / "lightning_logs" / "cli"))["images"]
    assert any(t.startswith("filters/") for t in images)
    assert "saliency/smoothgrad" in images and "gradcam/gradcam++" in images


def test_own_module_example_runs_as_documented_and_logs_in_pixel_space(tmp_path):
    printed = run_as_documented("own_module", tmp_path, "--epochs", "1", "--limit-batches", "2")
    assert "tensorboard --logdir lightning_logs" in printed
    ev = read_events(str(tmp_path / "lightning_logs"))
    assert "saliency/guided_backprop" in ev["images"]
    assert "gradcam/gradcam++" in ev["images"]
    assert "activations/features.6" in ev["images"]
    # masks came through batch_to_xy, so the bias scalar exists
    assert "bias/saliency_in_mask" in ev["scalars"]


def test_style_transfer_example_runs_as_documented_and_writes_a_png(tmp_path):
    from PIL import Image

    run_as_documented("style_transfer", tmp_path, "--size", "32", "--steps", "5")
    image = Image.open(tmp_path / "style_transfer.png")
    assert image.width >= 3 * 32 and image.height >= 32  # content | style | result
