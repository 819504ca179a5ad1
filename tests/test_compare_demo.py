"""`lightning-viz compare` on the demo's controlled experiment: a texture shortcut regresses."""

from __future__ import annotations

import json

import pytest

from lightning_viz import cli

DEMO = ["--epochs", "8", "--train-size", "1200", "--val-size", "300"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The demo with texture independent of the class, and with texture = class."""
    out = {}
    for name, corr in (("shape", "0.0"), ("texture", "1.0")):
        path = tmp_path_factory.mktemp(name)
        assert (
            cli.main(["demo", *DEMO, "--texture-correlation", corr, "--output-dir", str(path)]) == 0
        )
        out[name] = str(path)
    return out


def test_the_texture_shortcut_run_regresses_against_the_shape_run(runs, capsys):
    capsys.readouterr()
    code = cli.main(["compare", runs["shape"], runs["texture"], "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    regressed = {r["metric"] for r in report["rows"] if r["regressed"]}
    assert "bias/shape_bias" in regressed
    assert not any(m.startswith("robustness/") for m in regressed)  # robustness improved


def test_a_run_against_itself_does_not_regress(runs, capsys):
    capsys.readouterr()
    assert cli.main(["compare", runs["shape"], runs["shape"]]) == 0
    text = capsys.readouterr().out
    assert "no watched metric regressed" in text and "paired" in text
