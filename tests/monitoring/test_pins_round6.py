"""Round-six mutation pins for lightning_viz.monitoring (each test fails on one
one-line mutation that the suite let through; see REPORT.txt)."""

from __future__ import annotations

import pytest
from scipy import stats

from lightning_viz.monitoring.compare import compare_summaries, render
from lightning_viz.monitoring.record import RunSummary, make_record
from lightning_viz.monitoring.regression import RegressionMonitor
from lightning_viz.monitoring.rule import compare_records


def test_per_sample_values_that_did_not_change_are_neither_worse_nor_better():
    # R03: ties carry no information in the sign test (rule._paired_values)
    ref = make_record(0, 0, values=[0.9] * 10, fingerprint="f")
    cand = make_record(1, 1, values=[0.9] * 5 + [0.8] * 5, fingerprint="f")
    r = compare_records(ref, cand)
    assert (r.test, r.n, r.worse, r.better) == ("paired", 10, 5, 0)
    assert r.pvalue == pytest.approx(0.5**5)  # P(X >= 5), X ~ Bin(5, 1/2)
    assert r.pvalue == pytest.approx(stats.binomtest(5, 5, 0.5, alternative="greater").pvalue)
    up = make_record(1, 1, values=[0.9] * 5 + [1.0] * 5, fingerprint="f")
    r = compare_records(ref, up)
    assert (r.worse, r.better, r.pvalue) == (0, 5, 1.0)


# ----------------------------------------------------------------- RegressionMonitor


def _base(epochs: dict[int, list[int]]) -> RunSummary:
    s = RunSummary()
    for e, outcomes in epochs.items():
        s.record("m", e, 10 * e, outcomes=outcomes, fingerprint="f", watched=True, tolerance=0.05)
    return s


def test_the_baselines_best_is_chosen_after_warmup_and_counts_those_runs():
    # G06: the baseline's best comes from epochs >= warmup, not from its warmup epochs
    base = _base({0: [1] * 40, 1: [1] * 40, 2: [1] * 28 + [0] * 12, 3: [1] * 28 + [0] * 12})
    m = RegressionMonitor(0.05, patience=1, warmup=2, baseline=base)
    assert m.update(2, 20, {"m": {"outcomes": [1] * 28 + [0] * 12, "fingerprint": "f"}}) == []
    assert m.update(3, 30, {"m": {"outcomes": [1] * 28 + [0] * 12, "fingerprint": "f"}}) == []


def test_a_baseline_best_counts_the_runs_after_warmup_it_was_chosen_from():
    # G08: chosen_from counts the baseline's records in [warmup, epoch]
    high, low = [1] * 40, [1] * 30 + [0] * 10
    base = _base({0: high, 1: high, 2: high, 3: low, 4: low})
    m = RegressionMonitor(0.05, patience=1, warmup=2, baseline=base)
    alerts = m.update(4, 40, {"m": {"outcomes": [1] * 20 + [0] * 20, "fingerprint": "f"}})
    (alert,) = [a for a in alerts if a.kind == "baseline"]
    # same epoch (4): 10 worse of 10 flips, p = 2**-10; best (epoch 2): 20 worse,
    # p = 2**-20 x 3 runs (epochs 2, 3, 4). Holm over the two: min is the best's
    assert (alert.reference, alert.reference_epoch) == ("baseline best", 2)
    assert alert.pvalue == pytest.approx(2 * 3 * 2**-20)


def test_format_alerts_says_1_regression_singular():
    # G14
    from lightning_viz.monitoring.regression import format_alerts

    m = RegressionMonitor(0.05, patience=1)
    m.update(0, 0, {"m": {"outcomes": [1] * 20}})
    alerts = m.update(1, 10, {"m": {"outcomes": [0] * 20}})
    head = format_alerts(alerts, "X").splitlines()[0]
    assert head.startswith("X: 1 regression at epoch 1 ("), head


def test_a_tag_missing_from_the_direction_mapping_is_higher_is_better():
    # G15: higher_is_better={"err": False}: every other tag is higher-is-better
    m = RegressionMonitor(0.05, patience=1, higher_is_better={"err": False})
    assert m.higher_is_better_of("acc") is True
    m.update(0, 0, {"acc": {"outcomes": [1] * 20}})
    (alert,) = m.update(1, 10, {"acc": {"outcomes": [0] * 20}})
    assert alert.metric == "acc" and alert.drop == pytest.approx(1.0)


# ----------------------------------------------------------------------- RunSummary
def test_a_metric_without_watched_in_the_file_reads_as_not_watched():
    # F02
    s = RunSummary()
    s.record("m", 0, 0, outcomes=[1, 0])
    data = s.to_dict()
    del data["metrics"]["m"]["watched"]
    assert RunSummary.from_dict(data)["m"].watched is False


# ------------------------------------------------------------------------ compare


def _rec(s, e, ones, n=20, **kw):
    return s.record("m", e, 10 * e, outcomes=[1] * ones + [0] * (n - ones), fingerprint="f", **kw)


def test_the_preamble_counts_the_tests_holm_ran_over():
    # C11: a watched row without a test (no counts) is not one of Holm's tests
    a, b = RunSummary(), RunSummary()
    _rec(a, 0, 20, watched=True, tolerance=0.05)
    _rec(b, 0, 20)
    a.record("v", 0, 0, 0.5, watched=True, tolerance=0.05)  # a value, no counts
    b.record("v", 0, 0, 0.4)
    result = compare_summaries(a, b)
    assert sorted(r.test for r in result.rows) == ["none (no counts)", "paired"]
    text = render(result, "text")
    assert "Holm-adjusted across the 1 tests" in text, text


def test_values_of_one_run_of_unknown_probes_but_other_lengths_are_probes_that_differ():
    # R08: same_probe_if_unknown, but the sample counts differ: not the same probe
    ref = make_record(0, 0, values=[0.9] * 6 + [0.8] * 4)
    cand = make_record(1, 1, values=[0.5] * 12)
    r = compare_records(ref, cand, same_probe_if_unknown=True)
    assert r.label == "ranks (probes differ)"
    expected = stats.mannwhitneyu([0.5] * 12, [0.9] * 6 + [0.8] * 4, alternative="less").pvalue
    assert r.pvalue == pytest.approx(expected) and r.n == 12
    assert compare_records(ref, cand).label == "ranks (probes unknown)"


# ---------------------------------------------------------------------- dashboard
# --------------------------------------------------------------------------- cli
def _demo_args(tmp_path, **kw):
    import argparse

    from lightning_viz.cli import _SHAPES_ONLY

    args = dict(_SHAPES_ONLY, data="shapes", model="small", epochs=None, lr=None, seed=0)
    args.update(output_dir=str(tmp_path), fast=True, **kw)
    return argparse.Namespace(**args)


def test_the_demo_accepts_the_smallest_validation_set(tmp_path):
    # L03: --val-size 10 (two images per class) is enough; 9 is not
    from lightning_viz.cli import _demo_error

    assert _demo_error(_demo_args(tmp_path, val_size=10)) is None
    assert "--val-size must be >= 10" in _demo_error(_demo_args(tmp_path, val_size=9))


def test_the_demo_runs_the_class_model_logger_twice_per_fit(monkeypatch):
    # L04: every epochs // 2 epochs (at least 1)
    import argparse

    import lightning_viz as lv
    from lightning_viz.cli import build_callbacks

    made = {}
    for name in ("FilterLogger", "ActivationLogger", "SaliencyLogger", "GradCAMLogger",
                 "EmbeddingProjector", "AdversarialProbe", "TextureShapeBias",
                 "CorruptionProbe", "ClassModelLogger"):  # fmt: skip
        monkeypatch.setitem(vars(lv), name, lambda _n=name, **kw: made.setdefault(_n, kw))
    for epochs, every in ((12, 6), (3, 1), (1, 1)):
        made.clear()
        build_callbacks(["a", "b"], argparse.Namespace(fast=True, epochs=epochs))
        assert made["ClassModelLogger"]["every_n_epochs"] == every
        assert made["ClassModelLogger"]["steps"] == 10


# ----------------------------------------------------------------- compare command
def _two_runs(tmp_path):
    a, b = RunSummary(), RunSummary()
    _rec(a, 0, 20, watched=True, tolerance=0.05)
    _rec(b, 0, 0)
    return a.write(tmp_path / "a"), b.write(tmp_path / "b")


def test_alpha_1_and_0_are_refused_with_the_options_message(tmp_path, capsys):
    # K01: a clean message, not a traceback
    from lightning_viz import cli

    a, b = _two_runs(tmp_path)
    for alpha in ("1", "0"):
        assert cli.main(["compare", a, b, "--alpha", alpha]) == 2
        err = capsys.readouterr().err
        assert f"--alpha must lie in (0, 1), got {float(alpha)}" in err
        assert "Traceback" not in err


def test_an_mlflow_run_is_named_by_its_id_in_the_output(tmp_path, capsys, monkeypatch):
    # K02: the JSON names mlflow:<id>, not the removed temporary copy
    import json

    from lightning_viz import cli
    from lightning_viz.monitoring import compare_command

    a, b = _two_runs(tmp_path)
    monkeypatch.setattr(
        compare_command, "resolve_source", lambda s, uri, folder: a if s == "mlflow:abc" else s
    )
    assert cli.main(["compare", "mlflow:abc", b, "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["baseline"] == "mlflow:abc" and out["candidate"] == b


def test_the_wide_table_says_not_watched_for_a_metric_no_run_watches():
    # H02
    a, b = RunSummary(), RunSummary()
    _rec(a, 0, 20, watched=True, tolerance=0.05)
    _rec(b, 0, 20)
    a.record("u", 0, 0, outcomes=[1] * 10, fingerprint="f", tolerance=0.2)
    b.record("u", 0, 0, outcomes=[1] * 10, fingerprint="f")
    lines = render(compare_summaries(a, b), "text", wide=True).splitlines()
    (u,) = [line for line in lines if line.startswith("u ")]
    (m,) = [line for line in lines if line.startswith("m ")]
    assert "not watched" in u and "0.05" in m and "not watched" not in m


def test_a_best_of_another_form_is_no_drop():
    # H05: a best the run cannot be tested against is not compared (no regression scalar)
    m = RegressionMonitor(0.05, patience=1)
    m.update(0, 0, {"m": make_record(0, 0, outcomes=[1] * 12)})  # per-decision, 1.0
    assert m.update(1, 10, {"m": make_record(1, 10, values=[0.5] * 12)}) == []
    assert m.regression_value() == 0.0
    assert m.references["m"].epoch == 1


def test_a_summary_of_a_newer_format_version_is_refused():
    # F01: version 2 is newer than this reader's 1: refused, not read as version 1
    from lightning_viz.monitoring.record import VERSION, SummaryError

    s = RunSummary()
    s.record("m", 0, 0, outcomes=[1, 0])
    data = s.to_dict()
    assert data["version"] == VERSION == 1
    data["version"] = 2
    with pytest.raises(SummaryError, match="newer lightning-viz .*version 2"):
        RunSummary.from_dict(data)


def test_an_mlflow_run_id_is_read_without_surrounding_spaces(tmp_path, monkeypatch):
    # U01: "mlflow: abc " is run abc; "mlflow: " names no run
    import sys
    import types

    from lightning_viz.monitoring.record import SummaryError
    from lightning_viz.monitoring.sources import resolve_source

    asked = []

    class Client:
        def __init__(self, tracking_uri=None):
            pass

        def download_artifacts(self, run_id, path, dst):
            asked.append(run_id)
            return f"{dst}/{path}"

    fake = types.ModuleType("mlflow.tracking")
    fake.MlflowClient = Client
    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))
    monkeypatch.setitem(sys.modules, "mlflow.tracking", fake)
    got = resolve_source("mlflow: abc ", None, str(tmp_path))
    assert asked == ["abc"] and got == f"{tmp_path}/lightning_viz/summary.json"
    with pytest.raises(SummaryError, match="give the run id after 'mlflow:'"):
        resolve_source("mlflow:   ", None, str(tmp_path))
    assert asked == ["abc"]
