"""H53 (mutation round three) pinned these; each test fails on a one-line mutation that the
suite let through. Gaps found in monitoring/dashboard.py."""

from __future__ import annotations

import pytest

from lightning_viz.monitoring.dashboard import summary_markdown, summary_rows
from lightning_viz.monitoring.record import RunSummary


def _run() -> RunSummary:
    s = RunSummary()
    s.record("robustness/pgd_acc@8/255", 0, 0, n=10, successes=5, watched=True)
    s.record("robustness/pgd_acc@8/255", 1, 10, n=10, successes=9)
    s.record("robustness/pgd_acc@8/255", 2, 20, n=10, successes=6)
    s.record("robustness/pgd_acc@8/255", 3, 30, n=10, successes=10)  # a later, better run
    return s


def test_the_best_of_an_earlier_epoch_is_not_a_later_run():
    (row,) = summary_rows(_run(), 2)
    assert row.best == (1, pytest.approx(0.9))  # not epoch 3's 1.0, which came after
    assert row.since_best == pytest.approx(-0.3)


def test_the_best_cell_names_the_best_runs_epoch():
    text = summary_markdown(summary_rows(_run(), 2), 2, 20)
    assert "-0.300 (best 0.900, epoch 1)" in text  # not "epoch 2", the row's own


def test_a_small_change_is_shown_not_rounded_to_zero():
    s = RunSummary()
    s.record("embedding/knn_acc", 0, 0, 0.750)
    s.record("embedding/knn_acc", 1, 10, 0.752)
    text = summary_markdown(summary_rows(s, 1), 1, 10)
    assert "+0.002 (epoch 0)" in text and "±0 (best 0.752, epoch 1)" in text


def test_epoch_1s_previous_run_is_epoch_0():
    (row,) = summary_rows(_run(), 1)
    assert row.previous == (0, pytest.approx(0.5))
    assert row.since_previous == pytest.approx(0.4)
