"""H53 (mutation round three) pinned these; each test fails on a one-line mutation that the
suite let through. Gaps found in monitoring/sources.py (without an MLflow server)."""

import os
import tempfile

import pytest

from lightning_viz.monitoring.record import SummaryError
from lightning_viz.monitoring.sources import resolve_source


def test_a_failed_mlflow_download_is_a_summary_error_and_leaves_no_folder(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    store = tmp_path / "mlruns"
    store.mkdir()
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    uri = store.as_uri()
    with pytest.raises(SummaryError, match="no-such-run"):
        resolve_source("mlflow:no-such-run", uri)  # its own temporary folder
    assert os.listdir(temp) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(SummaryError, match="no-such-run"):
        resolve_source("mlflow:no-such-run", uri, mine)  # the caller's folder: kept
    assert mine.is_dir() and os.listdir(temp) == []
