"""The run summary file: recording, the JSON form, atomic writes, finding and reading runs."""

from __future__ import annotations

import json
import math
import os

import pytest
from scipy import stats as ss

from lightning_viz.monitoring import record as record_module
from lightning_viz.monitoring.record import (
    FORMAT,
    VERSION,
    EpochRecord,
    RunSummary,
    SummaryError,
    make_record,
    summary_path,
)
from lightning_viz.monitoring.rule import compare_records
from lightning_viz.monitoring.store import load_summary


def sample_summary() -> RunSummary:
    s = RunSummary()
    for epoch, outcomes in enumerate(["1101-10", "1111-10", "0101-00"]):
        s.record(
            "bias/shape_bias",
            epoch,
            10 * epoch + 9,
            outcomes=outcomes,
            fingerprint="ab12",
            callback="TextureShapeBias",
            watched=True,
            tolerance=0.05,
        )
    s.record("embedding/knn_acc", 0, 9, 0.81, callback="EmbeddingProjector")
    s.record("bias/shape_bias_nan", 0, 9, math.nan)
    s.add_alert({"epoch": 2, "metric": "bias/shape_bias", "kind": "best", "pvalue": 0.004})
    return s


# ------------------------------------------------------------------ recording
def test_record_derives_counts_and_interval_from_outcomes():
    s = RunSummary()
    rec = s.record("m", 3, 40, outcomes=[1, 0, None, 1, True, False])
    assert (rec.n, rec.successes, rec.outcomes) == (5, 3, "10-110")
    assert rec.value == pytest.approx(0.6)
    ci = ss.binomtest(3, 5).proportion_ci(method="wilson")
    assert rec.interval == pytest.approx((ci.low, ci.high))
    assert rec.outcome_list() == [1, 0, None, 1, 1, 0]
    plain = s.record("k", 3, 40, 0.5)
    assert plain.interval is None and plain.outcome_list() is None


def test_record_replaces_the_same_epoch_and_keeps_metric_settings():
    s = RunSummary()
    s.record("m", 0, 1, 0.5, callback="AdversarialProbe", watched=True, tolerance=0.02)
    s.record("m", 1, 2, 0.6)
    s.record("m", 0, 1, 0.7)  # a resumed run re-recording epoch 0
    hist = s["m"]
    assert [(e, r.value) for e, r in sorted(hist.epochs.items())] == [(0, 0.7), (1, 0.6)]
    assert (hist.callback, hist.watched, hist.tolerance, hist.higher_is_better) == (
        "AdversarialProbe",
        True,
        0.02,
        True,
    )
    s.record("m", 2, 3, 0.4, watched=False)
    assert s["m"].watched is False and s["m"].tolerance == 0.02


def test_history_latest_and_best():
    s = RunSummary()
    for epoch, v in enumerate([0.5, 0.9, math.nan, 0.9, 0.7]):
        s.record("m", epoch, epoch, v)
    h = s["m"]
    assert h.latest().epoch == 4
    assert h.latest(max_epoch=2).epoch == 1  # NaN skipped
    assert h.best().epoch == 1  # the earliest of equal values
    assert h.best(min_epoch=2).epoch == 3
    assert h.best(max_epoch=0).epoch == 0
    assert h.latest(min_epoch=5) is None
    h.higher_is_better = False
    assert h.best().epoch == 0


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"tag": ""}, ValueError, "`tag` must be a non-empty str"),
        ({"tag": 3}, TypeError, "`tag` must be a non-empty str"),
        ({"epoch": -1}, ValueError, "`epoch` must be an int >= 0, got -1"),
        ({"value": "high"}, TypeError, r"`value` must be a number \(NaN allowed\)"),
        ({"value": math.inf}, ValueError, "`value` must be a finite number or NaN"),
        ({"value": None}, ValueError, "`value` must be a number"),
        ({"n": 3, "successes": 4}, ValueError, r"`successes` must be an int <= `n` \(3\)"),
        ({"successes": 1}, ValueError, "`n` must be given with `successes`"),
        ({"outcomes": "11-", "n": 3}, ValueError, r"`n` must be the number of counted outcomes"),
        ({"outcomes": "110", "successes": 1}, ValueError, r"the number of 1s in `outcomes` \(2\)"),
        ({"outcomes": "1x"}, ValueError, "`outcomes` must be a sequence of 1, 0 or None"),
        ({"fingerprint": 12}, TypeError, "`fingerprint` must be a str or None"),
        ({"tolerance": -1}, ValueError, "`tolerance` must be a finite number >= 0"),
        ({"watched": 1}, TypeError, "`watched` must be a bool"),
    ],
)  # fmt: skip
def test_record_rejects_bad_arguments(kwargs, kind, match):
    args = {"tag": "m", "epoch": 0, "step": 0, "value": 0.5, **kwargs}
    with pytest.raises(kind, match=match):
        RunSummary().record(**args)


def test_value_from_counts_and_nan_without_samples():
    assert make_record(0, 0, n=4, successes=3).value == 0.75
    assert math.isnan(make_record(0, 0, outcomes="--").value)


def test_add_alert_replaces_the_same_epoch_metric_and_kind():
    s = RunSummary()
    s.add_alert({"epoch": 2, "metric": "m", "kind": "best", "pvalue": 0.01})
    s.add_alert({"epoch": 2, "metric": "m", "kind": "baseline", "pvalue": 0.02})
    s.add_alert({"epoch": 2, "metric": "m", "kind": "best", "pvalue": 0.001})
    assert [(a["kind"], a["pvalue"]) for a in s.alerts] == [("baseline", 0.02), ("best", 0.001)]
    with pytest.raises(
        ValueError, match=r"`alert\['kind'\]` must be one of \['best', 'baseline'\]"
    ):
        s.add_alert({"epoch": 2, "metric": "m", "kind": "worst"})
    with pytest.raises(ValueError, match="`alert` must be a mapping with the key 'metric'"):
        s.add_alert({"epoch": 2, "kind": "best"})
    with pytest.raises(TypeError, match="`alert` must be a mapping or an object with to_dict"):
        s.add_alert(3)


# ------------------------------------------------------------------- the file
def test_json_form_round_trip(tmp_path):
    s = sample_summary()
    path = s.write(tmp_path / "run")
    assert (
        path == summary_path(tmp_path / "run") == str(tmp_path / "run/lightning_viz/summary.json")
    )
    text = open(path, encoding="utf-8").read()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert (data["format"], data["version"], data["confidence"]) == (FORMAT, VERSION, 0.95)
    shape = data["metrics"]["bias/shape_bias"]
    assert (shape["callback"], shape["watched"], shape["tolerance"]) == (
        "TextureShapeBias",
        True,
        0.05,
    )
    first = shape["epochs"][0]
    assert first["outcomes"] == "1101-10" and first["fingerprint"] == "ab12"
    assert (first["n"], first["successes"], first["epoch"], first["step"]) == (6, 4, 0, 9)
    assert first["interval"] == pytest.approx(list(s["bias/shape_bias"].epochs[0].interval))
    assert data["metrics"]["embedding/knn_acc"]["epochs"] == [
        {"epoch": 0, "step": 9, "value": 0.81}
    ]
    assert data["metrics"]["bias/shape_bias_nan"]["epochs"][0]["value"] is None
    back = load_summary(path)
    assert back.to_dict() == s.to_dict()
    assert math.isnan(back["bias/shape_bias_nan"].epochs[0].value)
    assert back.path == path
    assert os.listdir(os.path.dirname(path)) == ["summary.json"]  # no temp file left


def test_each_record_is_encoded_once_so_writing_every_epoch_stays_linear(tmp_path, monkeypatch):
    s = sample_summary()
    s.write(tmp_path)  # every record encoded (and its Wilson interval computed) once
    encoded, intervals = [], []
    to_dict, wilson = EpochRecord.to_dict, record_module.wilson_interval
    monkeypatch.setattr(EpochRecord, "to_dict", lambda r: encoded.append(r.epoch) or to_dict(r))
    monkeypatch.setattr(
        record_module, "wilson_interval", lambda *a: intervals.append(a) or wilson(*a)
    )
    for epoch in (3, 4):  # two more epoch ends: only the new records are encoded
        s.record("bias/shape_bias", epoch, 10 * epoch + 9, outcomes="11-1100", fingerprint="ab12")
        text = open(s.write(tmp_path), encoding="utf-8").read()
    assert encoded == [3, 4] and intervals == [(4, 6, 0.95)] * 2
    assert json.loads(text) == s.to_dict()  # the file's text is the documented content
    lines = text.splitlines()
    assert sum('"epoch": ' in line for line in lines) == 5 + 1 + 1 + 1  # a line per record
    assert lines[-3].startswith('  {"epoch": 2, "metric": "bias/shape_bias"')  # and per alert


def test_write_is_atomic_and_leaves_the_old_file_when_it_fails(tmp_path, monkeypatch):
    s = sample_summary()
    path = s.write(tmp_path)
    before = open(path, encoding="utf-8").read()
    s.alerts.append({"epoch": 3, "metric": "m", "kind": "best", "bad": object()})
    with pytest.raises(TypeError):
        s.write(tmp_path)
    assert open(path, encoding="utf-8").read() == before
    assert os.listdir(os.path.dirname(path)) == ["summary.json"]
    s.alerts.pop()
    s.record("m", 0, 0, 0.5)

    def interrupted(src, dst):
        assert os.path.basename(src).startswith(".summary.")  # the complete temp file
        assert json.load(open(src, encoding="utf-8"))["metrics"]["m"]["epochs"][0]["value"] == 0.5
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        s.write(tmp_path)
    assert open(path, encoding="utf-8").read() == before
    assert os.listdir(os.path.dirname(path)) == ["summary.json"]


def test_resumed_run_loads_and_keeps_appending(tmp_path):
    assert len(RunSummary.load_or_new(tmp_path)) == 0  # a new run
    sample_summary().write(tmp_path)
    resumed = RunSummary.load_or_new(tmp_path)
    resumed.record("bias/shape_bias", 3, 49, outcomes="1111-11")
    resumed.write(tmp_path)
    again = load_summary(tmp_path)
    assert sorted(again["bias/shape_bias"].epochs) == [0, 1, 2, 3]
    assert again["bias/shape_bias"].watched is True
    assert len(again.alerts) == 1


def test_drop_after_forgets_what_a_resumed_run_will_redo():
    s = sample_summary()
    s.add_alert({"epoch": 1, "metric": "bias/shape_bias", "kind": "baseline"})
    s.drop_after(1)
    assert sorted(s["bias/shape_bias"].epochs) == [0, 1]
    assert [a["epoch"] for a in s.alerts] == [1]
    s.drop_after(-1)
    assert s.alerts == [] and all(not h.epochs for h in s.metrics.values())
    with pytest.raises(ValueError, match="`epoch` must be an int >= -1, got -2"):
        s.drop_after(-2)


# --------------------------------------------------------------------- finding
def test_load_summary_accepts_log_dir_file_and_a_folder_with_one_run(tmp_path):
    run = tmp_path / "lightning_logs" / "demo" / "version_0"
    run.mkdir(parents=True)
    (run / "events.out.tfevents.1.host").write_bytes(b"")
    sample_summary().write(run)
    for path in (
        run,
        run / "lightning_viz" / "summary.json",
        tmp_path / "lightning_logs",
        tmp_path,
    ):
        assert load_summary(path)["bias/shape_bias"].tolerance == 0.05
        assert load_summary(str(path)).path == summary_path(run)


def test_load_summary_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(SummaryError, match="no such file or directory"):
        load_summary(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SummaryError, match="no lightning-viz run found"):
        load_summary(empty)
    tb_only = tmp_path / "tb_only" / "version_0"
    tb_only.mkdir(parents=True)
    (tb_only / "events.out.tfevents.1.host").write_bytes(b"")
    with pytest.raises(SummaryError, match=r"the run in .*version_0 has no lightning_viz/summary"):
        load_summary(tmp_path / "tb_only")
    two = tmp_path / "two"
    sample_summary().write(two / "version_0")
    sample_summary().write(two / "version_1")
    with pytest.raises(SummaryError, match=r"holds 2 runs; pass one of them:\n  .*version_0\n"):
        load_summary(two)
    with pytest.raises(TypeError, match="`path` must be a str or os.PathLike"):
        load_summary(3)


def test_a_run_reached_twice_through_a_link_is_one_run(tmp_path):
    """W&B's offline folder holds the run and ``latest-run``, a link to it: "holds 2 runs"."""
    import os

    wandb = tmp_path / "wandb"
    sample_summary().write(wandb / "offline-run-1" / "files")
    os.symlink(wandb / "offline-run-1", wandb / "latest-run")
    loaded = load_summary(wandb)
    assert "offline-run-1" in loaded.path


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not a lightning-viz run summary"),
        ('{"format": "other", "version": 1}', r"format 'other', expected 'lightning-viz-summary'"),
        ('{"format": "lightning-viz-summary", "version": 99}', "newer lightning-viz .*version 99"),
        ('{"format": "lightning-viz-summary", "version": "1"}', "bad format version '1'"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"epochs": [{}]}}}',
         r"malformed lightning-viz run summary: metrics\['m'\]: epochs\[0\]: missing key 'epoch'"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"epochs": '
         '[{"epoch": 0, "step": 0, "value": 0.5, "n": 2, "successes": 3}]}}}',
         "malformed .*`successes` must be an int <= `n`"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": []}', "malformed"),
        ('{"format": "lightning-viz-summary", "version": 1, "alerts": [{"epoch": 1}]}',
         "malformed .*`alert` must be a mapping with the key 'metric'"),
        # what the writer never makes: a file edited, merged or corrupted by hand
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"epochs": '
         '[{"epoch": 2, "step": 0, "value": 1.0}, {"epoch": 2, "step": 1, "value": 0.0}]}}}',
         r"metrics\['m'\]: epochs\[1\]: a second record of epoch 2"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"epochs": []}, '
         '"m": {"epochs": []}}}', "not a readable run summary: the key 'm' is there twice"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": '
         '{"watched": "false"}}}',
         r"metrics\['m'\]: `watched` must be true or false, got 'false'"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": '
         '{"higher_is_better": 0}}}', "`higher_is_better` must be true or false, got 0"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"callback": NaN}}}',
         "`callback` must be a str or null, got nan"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"epochs": '
         '[{"epoch": 0, "step": 0, "value": 1.0, "outcomes": "0000"}]}}}',
         r"epochs\[0\]: `value` must be 0, what the counts or per-sample values give, got 1.0"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"epochs": '
         '[{"epoch": 0, "step": 0, "values": [0.5, Infinity]}]}}}',
         "`values` must be finite numbers .*, got inf"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"epochs": '
         '[{"epoch": 0, "step": 0, "n": 1000000000000000000000000000000, "successes": 0}]}}}',
         "`n` must be an int >= 0 and <= "),
        ('{"format": "lightning-viz-summary", "version": 1, "alerts": null}',
         "alerts: `alerts` must be a JSON list, got None"),
        ('{"format": "lightning-viz-summary", "version": 1, "metrics": {"m": {"epochs": 5}}}',
         r"metrics\['m'\]: `epochs` must be a JSON list, got 5"),
        ('{"format": "lightning-viz-summary", "x": ' + "[" * 100000 + "]" * 100000 + "}",
         "not a readable run summary"),
        ('{"format": "lightning-viz-summary", "x": ' + "9" * 5000 + "}",
         "not a readable run summary"),
    ],
)  # fmt: skip
def test_load_summary_rejects_malformed_files(tmp_path, content, match):
    path = tmp_path / "summary.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SummaryError, match=match):
        load_summary(path)
    assert issubclass(SummaryError, ValueError)


# ----------------------------------------------------------------- comparisons
def test_compare_records_chooses_the_test():
    a = make_record(0, 0, outcomes="1111100000", fingerprint="f")
    b = make_record(1, 1, outcomes="0011100001", fingerprint="f")
    r = compare_records(a, b)
    assert (r.test, r.label, r.n, r.worse, r.better) == ("paired", "paired", 10, 2, 1)
    assert r.pvalue == pytest.approx(ss.binomtest(2, 3, alternative="greater").pvalue)
    assert r.drop == pytest.approx(0.1)
    c = make_record(1, 1, outcomes="0011100001", fingerprint="g")
    r = compare_records(a, c)
    assert r.label == "unpaired (probes differ)"
    assert r.pvalue == pytest.approx(ss.fisher_exact([[4, 6], [5, 5]], alternative="less")[1])
    plain_a, plain_b = (
        make_record(0, 0, outcomes="1111100000"),
        make_record(1, 1, outcomes="0011100001"),
    )
    assert compare_records(plain_a, plain_b).label == "unpaired (probes unknown)"
    assert compare_records(plain_a, plain_b, same_probe_if_unknown=True).test == "paired"
    counts = make_record(0, 0, n=10, successes=5, fingerprint="f")
    assert compare_records(a, counts).label == "unpaired (no per-sample outcomes)"
    scalar = compare_records(make_record(0, 0, 0.9), make_record(1, 1, 0.5))
    assert scalar.label == "none (no counts)" and math.isnan(scalar.pvalue)
    assert scalar.drop == pytest.approx(0.4)
    short = make_record(1, 1, outcomes="001", fingerprint="f")
    assert compare_records(a, short).label == "unpaired (probes differ)"  # lengths differ


def test_per_sample_values_are_kept_as_the_file_keeps_them(tmp_path):
    """Values 3e-7 apart: the live record and the one read back from summary.json give
    the same paired test (before, the live one saw 12 samples worse, p = 2e-4, and the
    file 12 ties)."""
    base = [0.1 + 0.01 * i for i in range(12)]
    s = RunSummary()
    s.record("explain/vanilla/deletion_auc", 0, 0, values=base, fingerprint="f")
    s.record("explain/vanilla/deletion_auc", 1, 1, values=[v - 3e-7 for v in base], fingerprint="f")
    live = s["explain/vanilla/deletion_auc"].epochs
    back = load_summary(s.write(tmp_path / "run"))["explain/vanilla/deletion_auc"].epochs
    assert live[1].values == back[1].values == tuple(round(v - 3e-7, 6) for v in base)
    assert live[1].value == pytest.approx(sum(base) / 12 - 3e-7, abs=1e-12)  # the exact mean
    a, b = compare_records(live[0], live[1]), compare_records(back[0], back[1])
    assert (a.test, a.n, a.worse, a.better) == (b.test, b.n, b.worse, b.better)
    assert a.pvalue == b.pvalue or (math.isnan(a.pvalue) and math.isnan(b.pvalue))


def test_a_value_is_checked_against_its_samples_relative_to_its_size(tmp_path):
    """A float32 mean of large values (a custom view's) is its values' mean up to float32
    error: refused with an absolute 1e-6 tolerance; a file of values of 1e12 read back."""
    import torch

    x = torch.rand(64, generator=torch.Generator().manual_seed(0)) * 100
    assert make_record(0, 0, float(x.mean()), values=x.tolist()).value == float(x.mean())
    with pytest.raises(ValueError, match="`value` must be "):
        make_record(0, 0, float(x.mean()) * 1.001, values=x.tolist())  # another number
    s = RunSummary()
    s.record("custom/err", 0, 0, values=[1e12 * (i + 0.123456789) for i in range(50)])
    back = load_summary(s.write(tmp_path / "run"))["custom/err"].epochs[0]
    assert back.value == s["custom/err"].epochs[0].value


def test_compare_records_lower_is_better_flips_the_outcomes():
    a = make_record(0, 0, outcomes="0000011111", fingerprint="f")  # error rate 0.5
    b = make_record(1, 1, outcomes="1110011111", fingerprint="f")  # error rate 0.8: worse
    r = compare_records(a, b, higher_is_better=False)
    assert (r.worse, r.better) == (3, 0) and r.drop == pytest.approx(0.3)
    assert compare_records(a, b).drop == pytest.approx(-0.3)
    assert isinstance(EpochRecord.from_dict(a.to_dict()), EpochRecord)


def test_numpy_and_tensor_scalars_are_numbers_and_outcomes_like_pythons():
    import numpy as np
    import torch

    rec = make_record(0, 0, values=[np.float32(0.5), torch.tensor(0.25), None])
    assert rec.values[:2] == (0.5, 0.25) and math.isnan(rec.values[2])
    assert rec.value == pytest.approx(0.375)
    rec = make_record(0, 0, outcomes=[*np.array([True, False]), torch.tensor(1), None])
    assert (rec.outcomes, rec.n, rec.successes) == ("101-", 3, 2)
    with pytest.raises(TypeError, match="values"):
        make_record(0, 0, values=[np.array([0.5, 0.25])])  # not a scalar


def test_per_image_means_against_outcomes_are_not_tested():
    """A run with one corruption severity (0/1 per image) against one with three (each
    image's mean accuracy), or a multilabel summary of an earlier version (one outcome
    per label): ranking means against 0/1 outcomes is no test of accuracy (at equal
    accuracy it gave p = 1e-5), and their counts are not comparable, so no test runs."""
    means = make_record(0, 0, values=[2 / 3] * 30, fingerprint="three")  # accuracy 2/3
    outcomes = make_record(0, 0, outcomes=[1, 1, 0] * 10, fingerprint="one")  # 2/3 too
    for ref, cand in ((means, outcomes), (outcomes, means)):
        c = compare_records(ref, cand)
        assert c.label == "none (forms differ)" and math.isnan(c.pvalue)
