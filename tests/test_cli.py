"""The console script and the package surface."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lightning_viz import cli
from tests.conftest import read_events


def test_functional_does_not_import_lightning():
    code = (
        "import sys, lightning_viz.functional as LF; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_names():
    import lightning_viz as lv

    for name in (
        "FilterLogger",
        "ActivationLogger",
        "SaliencyLogger",
        "GradCAMLogger",
        "EmbeddingProjector",
        "AdversarialProbe",
        "TextureShapeBias",
        "ClassModelLogger",
        "CorruptionProbe",
    ):
        assert isinstance(getattr(lv, name), type), name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        lv.Nope  # noqa: B018


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["demo", "--texture-correlation", "1.5"], "--texture-correlation must lie in"),
        (["demo", "--lr", "-1"], "--lr must be a positive number, got -1.0"),
        (["demo", "--lr", "nan"], "--lr must be a positive number, got nan"),
        (["demo", "--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),
        (["demo", "--seed", "4294967296"], "--seed must be in [0, 4294967295], got 4294967296"),
        (["demo", "--val-size", "3"], "--val-size must be >= 10"),
        (["demo", "--train-size", "0"], "--train-size must be >= 1, got 0"),
        (["demo", "--output-dir", "/proc/no/such/dir"], "is not a writable directory"),
        (
            ["demo", "--data", "digits", "--train-size", "0"],
            "--train-size applies to --data shapes",
        ),
        (
            ["demo", "--data", "digits", "--texture-correlation", "1"],
            "--texture-correlation applies",
        ),
    ],
)
def test_demo_rejects_bad_options(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_demo_rejects_an_output_dir_that_is_a_file(tmp_path, capsys):
    afile = tmp_path / "taken"
    afile.write_text("x")
    assert cli.main(["demo", "--output-dir", str(afile)]) == 2
    assert "is not a writable directory" in capsys.readouterr().err


def test_demo_runs_and_prints_the_tensorboard_line(tmp_path, capsys):
    out = tmp_path / "logs"
    code = cli.main(
        [
            "demo",
            "--epochs",
            "1",
            "--train-size",
            "64",
            "--val-size",
            "40",
            "--output-dir",
            str(out),
            "--fast",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"tensorboard --logdir {out}" in printed
    assert list(out.glob("demo_shapes_small/version_0/events.out.tfevents.*"))
    scalars = read_events(str(out / "demo_shapes_small" / "version_0"))["scalars"]
    assert "val_acc" in scalars and "hp_metric" not in scalars  # Lightning's -1 placeholder


def test_demo_model_choices_are_the_demo_models(tmp_path):
    from lightning_viz.data.models import MODEL_NAMES

    assert tuple(cli.DEMO_DEFAULTS) == MODEL_NAMES

    def resolved(*argv: str) -> tuple[int, float]:
        args = cli._parser().parse_args(["demo", *argv, "--output-dir", str(tmp_path)])
        assert cli._demo_error(args) is None
        return args.epochs, args.lr

    assert resolved("--model", "vit") == (15, 1e-3)  # the ViT's own defaults
    assert resolved("--model", "vit", "--epochs", "2", "--lr", "0.01") == (2, 0.01)
    assert resolved() == (12, 3e-3)


def test_demo_runs_a_vision_transformer(tmp_path, capsys):
    out = tmp_path / "logs"
    argv = ["demo", "--model", "vit", "--epochs", "1", "--train-size", "64"]
    code = cli.main([*argv, "--val-size", "40", "--output-dir", str(out), "--fast"])
    assert code == 0
    assert "Traceback" not in capsys.readouterr().err
    from tests.conftest import read_events

    images = read_events(str(out / "demo_shapes_vit" / "version_0"))["images"]
    assert "saliency/rollout" in images and "saliency/grad_rollout" in images
    assert not any("conv_proj" in t for t in images if t.startswith(("gradcam/", "activations/")))


def _subparsers(parser):
    import argparse

    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


@pytest.mark.parametrize("command", ["demo", "compare"])
def test_every_option_says_what_it_does_and_its_default(command):
    sub = _subparsers(cli._parser())[command]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert options
    for action in options:
        assert action.help, f"{command} {action.option_strings[0]} has no help text"
        assert "default" in action.help, f"{command} {action.option_strings[0]}: {action.help}"
    positionals = [a for a in sub._actions if not a.option_strings]
    assert all(a.help for a in positionals)


@pytest.mark.parametrize(
    "argv",
    [["demo", "--epoch", "2"], ["demo", "--train", "64"], ["compare", "a", "b", "--tol", "0.1"]],
)
def test_abbreviated_options_are_rejected(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli._parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_demo_help_lists_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "lightning_viz.cli", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--data", "--train-size", "--val-size", "--seed", "--fast", "--epochs"):
        assert option in result.stdout
    assert result.stdout.count("default") >= 11


def test_python_m_lightning_viz_is_the_console_script(tmp_path):
    """``python -m lightning_viz`` had no ``__main__``: "is a package and cannot be
    directly executed"."""
    ok = subprocess.run(
        [sys.executable, "-m", "lightning_viz", "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout.startswith("usage: lightning-viz")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_viz",
            "compare",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "cannot read the baseline" in bad.stderr


def test_version_help_and_optimized_python(tmp_path):
    """``--help`` of compare ended in the module's doctest; under ``-OO`` (no
    docstrings) every command crashed on ``None.split``; there was no ``--version``."""
    import lightning_viz

    run = lambda *argv, **env: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "lightning_viz", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    version = run("--version")
    assert (
        version.returncode == 0
        and version.stdout.strip() == f"lightning-viz {lightning_viz.__version__}"
    )
    help_text = run("compare", "--help").stdout
    assert ">>>" not in help_text and ":mod:" not in help_text and "Exit status: 1" in help_text
    for command in ("compare", "demo"):
        optimized = run(command, "--help", PYTHONOPTIMIZE="2")
        assert optimized.returncode == 0 and "usage: lightning-viz" in optimized.stdout, (
            optimized.stderr
        )


def test_compare_piped_into_a_closed_reader_exits_with_its_verdict(tmp_path):
    """``compare ... | head -c 10`` printed a BrokenPipeError traceback."""
    from tests.test_compare import simulated_run, write_run

    run = write_run(tmp_path, "a", simulated_run(1))
    script = f"{sys.executable} -m lightning_viz compare {run} {run} --format json | head -c 10"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stdout == '{\n  "forma' and done.returncode == 0


def test_the_top_level_callbacks_are_typed_for_type_checkers():
    """They were served by a module ``__getattr__ -> Any``: mypy saw ``Any``, so a
    misspelt argument type-checked."""
    import ast
    import inspect

    import lightning_viz

    tree = ast.parse(inspect.getsource(lightning_viz))
    typed = {
        alias.name: node.module
        for block in tree.body
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == lightning_viz._CALLBACKS
    expected = [*lightning_viz._CALLBACKS, "LightningVizWarning", "__version__"]
    assert sorted(lightning_viz.__all__) == sorted(expected)


def test_help_is_plain_text_without_docstring_markup(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "lightning-viz demo trains a small CNN" in out and "``" not in out
