"""H53 (mutation round three) pinned these; each test fails on a one-line mutation that the
suite let through. Gaps found in monitoring/compare_command.py."""

from lightning_viz import cli
from lightning_viz.monitoring.record import RunSummary


def test_tolerance_0_is_accepted(tmp_path, capsys):
    s = RunSummary()
    s.record("m", 0, 0, outcomes="1" * 20, fingerprint="f", watched=True, tolerance=0.05)
    path = s.write(tmp_path / "run")
    assert cli.main(["compare", path, path, "--tolerance", "0"]) == 0
    out, err = capsys.readouterr()
    assert "tolerance 0 for all" in out and err == ""
