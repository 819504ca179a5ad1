"""H53 (mutation round three) pinned these; each test fails on a one-line mutation that the
suite let through. Gaps found in monitoring/summary_file.py and callbacks/_quality.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import lightning_viz as lv
from lightning_viz.monitoring.compare import compare_summaries
from lightning_viz.monitoring.record import RunSummary, SummaryError


def _dict() -> dict:
    s = RunSummary()
    s.record("m", 0, 0, outcomes="1" * 10, fingerprint="f", watched=True, tolerance=0.05)
    return s.to_dict()


def test_a_metric_without_higher_is_better_reads_as_higher_is_better():
    data = _dict()
    del data["metrics"]["m"]["higher_is_better"]
    read = RunSummary.from_dict(data)
    assert read["m"].higher_is_better is True
    cand = RunSummary()
    cand.record("m", 0, 0, outcomes="0" * 10, fingerprint="f")
    # judged in the candidate's direction, here the default (higher is better): all 10 worse
    assert compare_summaries(cand, RunSummary.from_dict(data)).rows[0].drop == pytest.approx(-1.0)


def test_format_version_0_is_refused():
    data = _dict()
    data["version"] = 0
    with pytest.raises(SummaryError, match="bad format version 0"):
        RunSummary.from_dict(data)


def test_a_negative_tolerance_in_a_file_is_refused():
    data = _dict()
    data["metrics"]["m"]["tolerance"] = -0.1
    with pytest.raises(SummaryError, match="tolerance"):
        RunSummary.from_dict(data)


def test_a_randomization_correlation_at_the_threshold_is_not_above_it():
    cb = lv.GradCAMLogger(quality=("randomization",), randomization_threshold=0.5)
    ctx = SimpleNamespace(log=SimpleNamespace(epoch=3, step=30))
    assert cb._threshold_alert(ctx, "explain/gradcam/randomization_corr", 0.5, 4) is None
    alert = cb._threshold_alert(ctx, "explain/gradcam/randomization_corr", 0.5001, 4)
    assert alert is not None and alert.reference == "threshold"


def test_a_summary_written_when_the_deletion_auc_was_watched_reads_it_as_not_watched():
    """H72: a run resumed from, or compared with, a summary of the versions that watched
    the raw deletion AUC kept it watched: `compare` tested it again (REGRESSED for a
    model that only grew confident) and the resumed run's table starred it."""
    from lightning_viz.monitoring.record import RunSummary

    old = RunSummary()
    for tag, callback in (
        ("explain/vanilla/deletion_auc", "SaliencyLogger"),
        ("explain/gradcam/deletion_auc", "GradCAMLogger"),
        ("robustness/deletion_auc", "MyProbe"),  # another callback's: its own flag
    ):
        old.record(tag, 0, 4, 0.3, watched=True, tolerance=0.05, callback=callback)
    read = RunSummary.from_dict(old.to_dict())
    assert read["explain/vanilla/deletion_auc"].watched is False
    assert read["explain/gradcam/deletion_auc"].watched is False
    assert read["robustness/deletion_auc"].watched is True
