"""``lightning-viz compare`` on synthetic run summaries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as ss

from lightning_viz import cli
from lightning_viz.monitoring.compare import compare_summaries, render
from lightning_viz.monitoring.record import RunSummary
from lightning_viz.monitoring.regression import RegressionMonitor
from lightning_viz.monitoring.stats import holm_adjusted
from lightning_viz.monitoring.store import load_summary
from tests.conftest import run_python

SB, SA, PGD, KNN = (
    "bias/shape_bias",
    "bias/shape_acc",
    "robustness/pgd_acc@8/255",
    "embedding/knn_acc",
)


def simulated_run(
    seed: int,
    to_texture: float = 0.0,
    *,
    epochs: int = 6,
    fingerprint: str = "9f2c41",
    flip: float = 0.03,
) -> RunSummary:
    """A run of TextureShapeBias, AdversarialProbe and EmbeddingProjector metrics.

    The probe and the model's decisions on it are the same for every run (80
    cue-conflict images decided by shape 64 %, by texture 24 %; PGD accuracy 0.3 on
    128 images); ``to_texture`` of the shape decisions become texture decisions (a
    texture shortcut), and each epoch a fraction ``flip`` of all outcomes changes at
    random (drawn from ``seed``).
    """
    probe = np.random.default_rng(0)
    decisions = probe.choice(3, size=80, p=[0.64, 0.24, 0.12])  # 0 shape, 1 texture, 2 other
    pgd = probe.random(128) < 0.3
    rng = np.random.default_rng(seed)
    decisions = np.where((rng.random(80) < to_texture) & (decisions == 0), 1, decisions)
    s = RunSummary()
    for epoch in range(epochs):
        step = 63 * (epoch + 1) - 1
        changed = rng.random(80) < flip
        d = np.where(changed, (decisions + rng.integers(1, 3, size=80)) % 3, decisions)
        common = {"fingerprint": fingerprint, "watched": True}
        s.record(
            SB,
            epoch,
            step,
            outcomes=[1 if v == 0 else 0 if v == 1 else None for v in d.tolist()],
            callback="TextureShapeBias",
            tolerance=0.05,
            **common,
        )
        s.record(
            SA,
            epoch,
            step,
            outcomes=(d == 0).astype(int).tolist(),
            callback="TextureShapeBias",
            tolerance=0.05,
            **common,
        )
        s.record(
            PGD,
            epoch,
            step,
            outcomes=(pgd ^ (rng.random(128) < flip)).astype(int).tolist(),
            callback="AdversarialProbe",
            tolerance=0.02,
            **common,
        )
        s.record(KNN, epoch, step, 0.8 + 0.01 * epoch, callback="EmbeddingProjector")
    return s


def write_run(tmp_path, name: str, summary: RunSummary) -> str:
    run = tmp_path / name / "version_0"
    run.mkdir(parents=True)
    (run / "events.out.tfevents.0.host.1.0").write_bytes(b"")
    summary.write(run)
    return str(run)


def example_pair(tmp_path) -> tuple[str, str]:
    """The runs of docs/alerts.md: a shape-biased run and a texture-shortcut run."""
    shape = write_run(tmp_path, "shape", simulated_run(1))
    texture = write_run(tmp_path, "texture", simulated_run(2, to_texture=0.6))
    return shape, texture


def compare(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------- the CLI
def test_a_run_against_itself_exits_0(tmp_path, capsys):
    run = write_run(tmp_path, "a", simulated_run(1))
    code, out, err = compare([run, run], capsys)
    assert code == 0 and err == ""
    assert "REGRESSED" not in out
    assert "no watched metric regressed (3 watched)" in out
    for tag in (SB, SA, PGD, KNN):
        assert tag in out


def test_a_clearly_worse_candidate_exits_1_and_is_marked(tmp_path, capsys):
    shape, texture = example_pair(tmp_path)
    code, out, err = compare([shape, texture], capsys)
    assert code == 1 and err == ""
    sb_rows = [line for line in out.splitlines() if line.startswith(SB + " ")]
    assert [line.split()[1] for line in sb_rows] == ["latest", "best"]
    assert all(line.endswith("REGRESSED") and " paired " in line for line in sb_rows)
    wide = compare([shape, texture, "--wide"], capsys)[1]  # --wide: the flips too
    wide_sb = [line for line in wide.splitlines() if line.startswith(SB + " ")]
    assert all(line.endswith("REGRESSED") and " paired, " in line for line in wide_sb)
    assert "REGRESSED: bias/shape_acc, bias/shape_bias (2 of 3 watched metrics)" in out
    pgd_rows = [line for line in out.splitlines() if line.startswith(PGD)]
    assert pgd_rows and not any("REGRESSED" in line for line in pgd_rows)
    # the other way round, nothing got worse
    assert compare([texture, shape], capsys)[0] == 0


def test_compare_runs_without_importing_torch(tmp_path):
    """The CLI reads JSON and runs SciPy's tests: torch (seconds, ~700 MB) stays out."""
    shape, texture = example_pair(tmp_path)
    code = (
        "import sys; from lightning_viz import cli; "
        f"rc = cli.main(['compare', {shape!r}, {texture!r}]); "
        "print('RESULT', rc, sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    assert run_python(code).splitlines()[-1] == "RESULT 1 []"


def test_a_run_under_the_home_folder_is_found_by_a_tilde_path(tmp_path, capsys, monkeypatch):
    """H59: `compare '~/logs/a' ...` (quoted in a CI step) and `baseline="~/..."` were
    "no such file or directory", though the loggers read "~" as the home folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    run = write_run(tmp_path, "a", simulated_run(1))
    tilde = "~" + run[len(str(tmp_path)) :]
    assert load_summary(tilde).path == load_summary(run).path
    code, out, err = compare([tilde, run], capsys)
    assert code == 0 and err == ""


def test_a_path_the_console_cannot_print_is_replaced_not_a_crash(tmp_path):
    """H59: a run under a folder named 実験 on a latin-1 console: the comparison worked,
    then the print raised (a traceback, exit 2)."""
    import os
    import subprocess
    import sys

    run = write_run(tmp_path, "実験", simulated_run(1))
    env = {**os.environ, "PYTHONIOENCODING": "latin-1", "PYTHONPATH": os.pathsep.join(sys.path)}
    code = (
        f"from lightning_viz import cli; raise SystemExit(cli.main(['compare', {run!r}, {run!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode("latin-1")
    assert "??" in done.stdout.decode("latin-1") and b"Traceback" not in done.stderr


def test_default_output_fits_100_columns_and_counts_one_thing(tmp_path, capsys):
    shape, texture = example_pair(tmp_path)
    out = compare([shape, texture], capsys)[1]
    lines = out.splitlines()
    assert max(len(line) for line in lines[2:]) <= 100  # the two path lines aside
    assert (
        max(len(line) for line in compare([shape, texture, "--wide"], capsys)[1].splitlines()) > 100
    )
    tests = sum(1 for r in compare_summaries(load_summary(shape), load_summary(texture)).rows
                if r.watched)  # fmt: skip
    assert f"Holm-adjusted across the {tests} tests" in out
    assert "of 3 watched metrics;" in out and "(2 of 3 watched metrics)" in out


def test_regressed_rows_of_26_character_tags_and_long_lists_fit_100_columns(tmp_path, capsys):
    """REGRESSED rows whose epoch says "(ends 9/3)" were 105 columns, the verdict listing
    the regressed metrics 140, "only in baseline: ..." 112."""
    tags = [f"robustness/noise_acc@{k}/255" for k in range(2, 8)]  # 26 characters
    base, cand = RunSummary(), RunSummary()
    for tag in tags:
        for epoch in range(10):
            base.record(tag, epoch, epoch, outcomes=[1] * 90 + [0] * 10, watched=True)
        for epoch in range(4):
            cand.record(tag, epoch, epoch, outcomes=[1] * 40 + [0] * 60, watched=True)
        base.record(tag.replace("noise", "other"), 0, 0, 0.5)
    out = compare([write_run(tmp_path, "b", base), write_run(tmp_path, "c", cand)], capsys)[1]
    lines = out.splitlines()
    assert max(len(line) for line in lines[2:]) <= 100, max(lines[2:], key=len)
    assert sum(line.endswith("REGRESSED") for line in lines) == 12  # latest and best rows
    flat = " ".join(out.split())  # the wrapped lines joined
    verdict = flat[flat.index("REGRESSED: ") : flat.index("(6 of 6 watched metrics)")]
    assert all(tag in verdict for tag in tags)
    assert "robustness/other_acc@7/255" in flat[flat.index("only in baseline: ") :]


def test_each_row_says_which_epoch_and_why(tmp_path, capsys):
    base = write_run(tmp_path, "long", simulated_run(1, epochs=6))  # epochs 0..5
    cand = write_run(tmp_path, "short", simulated_run(1, epochs=4))  # stopped at 3
    out = compare([base, cand], capsys)[1]
    latest = [line for line in out.splitlines() if line.startswith(SB + " ")][0]
    assert latest.split()[1:4] == ["latest", "3", "(5/3)"]
    assert "epoch N (B/C): the last epoch both runs measured; each run's own last: B, C" in out
    data = json.loads(compare([base, cand, "--format", "json"], capsys)[1])
    row = next(r for r in data["rows"] if r["metric"] == SB and r["at"].startswith("latest"))
    assert (row["baseline"]["epoch"], row["baseline"]["last_epoch"]) == (3, 5)
    assert (row["candidate"]["epoch"], row["candidate"]["last_epoch"]) == (3, 3)


def test_probes_that_differ_use_the_unpaired_test(tmp_path, capsys):
    a = write_run(tmp_path, "a", simulated_run(1))
    b = write_run(tmp_path, "b", simulated_run(2, 0.6, fingerprint="other"))
    code, out, _ = compare([a, b, "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 1
    tests = {r["test"] for r in data["rows"] if r["metric"] != KNN}
    assert tests == {"unpaired (probes differ)"}
    assert all(r["worse"] is None for r in data["rows"])
    text = compare([a, b], capsys)[1]
    assert "unpaired (probes differ)" in text


@pytest.mark.parametrize("form", ["missing", "empty", "bad_json", "other_format", "events_only"])
def test_an_unreadable_run_exits_2_with_a_message(tmp_path, capsys, form):
    good = write_run(tmp_path, "good", simulated_run(1))
    bad = tmp_path / "bad"
    if form != "missing":
        bad.mkdir()
    if form == "bad_json":
        (bad / "lightning_viz").mkdir()
        (bad / "lightning_viz" / "summary.json").write_text("{oops", encoding="utf-8")
    if form == "events_only":  # a TensorBoard run in which no callback has run yet
        (bad / "version_0").mkdir()
        (bad / "version_0" / "events.out.tfevents.1.host").write_bytes(b"")
    if form == "other_format":
        bad = bad / "file.json"
        bad.write_text('{"format": "something-else"}', encoding="utf-8")
    for argv, side in (([good, str(bad)], "candidate"), ([str(bad), good], "baseline")):
        code, out, err = compare(argv, capsys)
        assert code == 2 and out == ""
        assert err.startswith(f"lightning-viz compare: cannot read the {side}: ")
        assert "Traceback" not in err
    expected = {
        "missing": "no such file or directory",
        "empty": "no lightning-viz run found",
        "bad_json": "is not valid JSON",
        "other_format": "is not a lightning-viz run summary",
        "events_only": "a run in which none has run yet",
    }[form]
    assert expected in err


def test_bad_options_exit_2(tmp_path, capsys):
    run = write_run(tmp_path, "a", simulated_run(1))
    code, _, err = compare([run, run, "--alpha", "1.5"], capsys)
    assert code == 2 and "--alpha must lie in (0, 1), got 1.5" in err
    code, _, err = compare([run, run, "--tolerance", "-1"], capsys)
    assert code == 2 and "--tolerance must be a number >= 0, got -1.0" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", run, run, "--format", "xml"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


@pytest.mark.parametrize("watched", [False, True])
def test_no_metric_in_common_exits_2(tmp_path, capsys, watched):
    a, b = RunSummary(), RunSummary()
    a.record("x", 0, 0, 0.5, watched=watched)  # a watched one the candidate lacks too
    b.record("y", 0, 0, 0.5)
    code, _, err = compare([a.write(tmp_path / "a"), b.write(tmp_path / "b")], capsys)
    assert code == 2 and "no lightning-viz metric in common" in err


def test_shared_metrics_never_both_measured_are_named_and_exit_2(tmp_path, capsys):
    """A run against itself whose only metric never had a value: the runs share it, so
    the message names it (it said "no lightning-viz metric in common")."""
    a = RunSummary()
    a.record("bias/shape_bias", 0, 0, outcomes=[None, None], watched=True)
    run = a.write(tmp_path / "a")
    code, _, err = compare([run, run], capsys)
    assert code == 2 and "share bias/shape_bias, but no epoch where both measured" in err


def test_an_error_of_ours_exits_2_not_1(tmp_path, capsys, monkeypatch):
    """Exit 1 means "regressed": a crash (a bug, an unforeseen file) must not say so."""
    import lightning_viz.monitoring.compare as compare_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(compare_module, "compare_summaries", broken)
    baseline, candidate = example_pair(tmp_path)
    code, _, err = compare([baseline, candidate], capsys)
    assert code == 2 and "ZeroDivisionError: injected" in err and "nothing compared" in err


def test_a_watched_drop_no_test_can_pair_fails_closed(tmp_path, capsys):
    """A corruption accuracy of an older version (one outcome per image and corruption)
    against this version's per-image values: no test pairs them, and compare said "no
    watched metric regressed" (exit 0) while every accuracy fell to 0."""
    kw = {"fingerprint": "f", "watched": True, "tolerance": 0.02}
    base, cand, same = RunSummary(), RunSummary(), RunSummary()
    base.record("corruption/mean_acc", 0, 9, outcomes=[1, 1, 0] * 32, **kw)  # 16 x 6
    cand.record("corruption/mean_acc", 0, 9, values=[0.0] * 16, **kw)
    same.record("corruption/mean_acc", 0, 9, values=[2 / 3] * 16, **kw)
    result = compare_summaries(base, cand)
    assert result.rows[0].test == "none (forms differ)"
    assert result.untested == ["corruption/mean_acc"]
    assert result.exit_code == 2 and "UNTESTED drop larger than its tolerance" in render(result)
    code, out, err = compare([base.write(tmp_path / "b"), cand.write(tmp_path / "c")], capsys)
    assert code == 2 and "could not be tested: corruption/mean_acc" in err
    # no drop beyond the tolerance: nothing to say, exit 0
    assert compare_summaries(base, same).exit_code == 0
    # a watched metric with a value only (no counts, no per-sample data) has no test
    # either, as before: not UNTESTED, and it does not decide the exit status
    plain_base, plain_cand = RunSummary(), RunSummary()
    plain_base.record("custom/score", 0, 9, 0.9, watched=True, tolerance=0.01)
    plain_cand.record("custom/score", 0, 9, 0.1, watched=True, tolerance=0.01)
    plain = compare_summaries(plain_base, plain_cand)
    assert plain.rows[0].test == "none (no counts)" and plain.untested == []
    assert plain.exit_code == 0


def test_tolerance_and_alpha_options(tmp_path, capsys):
    shape, texture = example_pair(tmp_path)
    assert compare([shape, texture, "--tolerance", "0.6"], capsys)[0] == 0  # drops are < 0.6
    assert compare([shape, texture, "--alpha", "1e-30"], capsys)[0] == 0
    data = json.loads(
        compare([shape, texture, "--tolerance", "0.1", "--format", "json"], capsys)[1]
    )
    assert data["tolerance"] == 0.1 and {r["tolerance"] for r in data["rows"]} == {0.1}


# ------------------------------------------------------------------- formats
def test_json_output_is_machine_readable(tmp_path, capsys):
    shape, texture = example_pair(tmp_path)
    code, out, _ = compare([shape, texture, "--format", "json"], capsys)
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert code == data["exit_code"] == 1
    assert data["format"] == "lightning-viz-compare" and data["regressed"] is True
    assert data["regressions"] == [SA, SB]
    assert data["watched"] == [SA, SB, PGD]
    assert data["baseline"].endswith("shape/version_0/lightning_viz/summary.json")
    row = next(r for r in data["rows"] if r["metric"] == SB and r["at"].startswith("latest"))
    assert row["regressed"] is True and row["test"] == "paired"
    assert row["baseline"]["epoch"] == row["candidate"]["epoch"] == 5
    assert len(row["baseline"]["interval"]) == 2
    knn = next(r for r in data["rows"] if r["metric"] == KNN)
    assert knn["watched"] is False and knn["pvalue"] is None and knn["test"] == "none (no counts)"
    assert knn["pvalue_holm"] is None and knn["regressed"] is False


def test_markdown_output_is_a_table(tmp_path, capsys):
    shape, texture = example_pair(tmp_path)
    code, out, _ = compare([shape, texture, "--format", "markdown"], capsys)
    assert code == 1
    lines = out.splitlines()
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:5] == ["metric", "at", "epoch", "baseline", "candidate"]
    assert header[-1] == "regressed"
    assert set(table[1]) <= set("|-:")
    result = compare_summaries(load_summary(shape), load_summary(texture))
    assert len(table) == 2 + len(result.rows)
    for line, row in zip(table[2:], result.rows, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header)
        assert cells[0] == (f"**{row.metric}**" if row.regressed else row.metric)
        assert cells[-1] == ("**yes**" if row.regressed else "")
    assert "**REGRESSED: bias/shape_acc, bias/shape_bias" in out
    # the runs' paths are code: a folder `_base_` is no italics in a pull request (H59)
    paths = [load_summary(run).path for run in (shape, texture)]
    assert lines[:2] == [f"baseline:  `` {paths[0]} ``  ", f"candidate: `` {paths[1]} ``  "]
    text = compare([shape, texture], capsys)[1].splitlines()
    assert text[:2] == [f"baseline:  {paths[0]}", f"candidate: {paths[1]}"]


def test_render_rejects_an_unknown_format():
    with pytest.raises(ValueError, match=r"`format` must be one of \['text', 'markdown', 'json'\]"):
        render(compare_summaries(RunSummary(), RunSummary()), "html")


# ------------------------------------------------------------- the comparison
def test_rows_latest_common_epoch_best_and_holm(tmp_path):
    base = simulated_run(1, epochs=6)
    cand = simulated_run(2, 0.6, epochs=4)  # stopped earlier
    result = compare_summaries(base, cand)
    latest = [r for r in result.rows if r.at.startswith("latest")]
    assert {(r.baseline.epoch, r.candidate.epoch) for r in latest} == {(3, 3)}
    for r in result.rows:  # each run's best up to epoch 3, where it differs from the latest
        if r.at == "best":
            assert r.baseline.epoch == base[r.metric].best(max_epoch=3).epoch
            assert r.candidate.epoch == cand[r.metric].best().epoch
        else:
            assert r.at in ("latest", "latest = best")
    watched = [r for r in result.rows if r.watched]
    assert [r.pvalue_holm for r in watched] == pytest.approx(
        holm_adjusted([r.pvalue for r in watched])
    )
    for r in watched:
        bo = base[r.metric].epochs[r.baseline.epoch].outcome_list()
        co = cand[r.metric].epochs[r.candidate.epoch].outcome_list()
        worse = sum(a == 1 and b == 0 for a, b in zip(bo, co, strict=True))
        better = sum(a == 0 and b == 1 for a, b in zip(bo, co, strict=True))
        assert (r.worse, r.better) == (worse, better)
        expected = ss.binomtest(worse, worse + better, alternative="greater").pvalue
        # a best row: Bonferroni for the baseline runs its best was chosen from (0-3)
        chosen = len(base[r.metric].records(max_epoch=3)) if r.at == "best" else 1
        assert chosen in (1, 4)
        assert r.pvalue == pytest.approx(min(1.0, expected * chosen))
        assert r.delta == pytest.approx(r.candidate.value - r.baseline.value)
        assert r.regressed == (r.drop > r.tolerance and r.pvalue_holm <= 0.01)


def test_a_lucky_baseline_best_fails_compare_no_more_than_the_live_rule():
    """One rule for the live alerts and ``compare``: the baseline's best, chosen from 10
    runs (one lucky 30/30 among 22/30), counts those runs in both. ``compare`` tested it
    as if fixed in advance (p = 0.0039, REGRESSED) while ``baseline=`` did not alert."""
    tag, typical, lucky = "robustness/pgd_acc@8/255", "1" * 22 + "0" * 8, "1" * 30
    base, cand = RunSummary(), RunSummary()
    for e in range(10):
        outcomes = lucky if e == 3 else typical
        base.record(tag, e, e, outcomes=outcomes, fingerprint="f", watched=True, tolerance=0.05)
    monitor = RegressionMonitor(tolerance=0.05, alpha=0.01, patience=1, baseline=base)
    alerts = []
    for e in range(5, 10):
        rec = cand.record(tag, e, e, outcomes=typical, fingerprint="f", watched=True)
        alerts += monitor.update(e, e, {tag: rec})
    result = compare_summaries(base, cand, alpha=0.01)
    best = next(r for r in result.rows if r.at == "best")
    raw = ss.binomtest(8, 8, alternative="greater").pvalue  # 8 samples worse, none better
    assert (best.baseline.epoch, best.worse, best.better) == (3, 8, 0)
    assert best.pvalue == pytest.approx(raw * 10)  # chosen from epochs 0-9
    assert alerts == [] and not best.regressed and result.exit_code == 0
    assert "p counts the baseline runs its best was chosen from" in render(result)


def test_a_watched_metric_the_candidate_never_measured_with_a_value_is_named(tmp_path, capsys):
    base, cand = RunSummary(), RunSummary()
    kw = {"fingerprint": "f", "watched": True, "tolerance": 0.05}
    base.record("bias/shape_bias", 0, 9, outcomes="1" * 30, **kw)
    cand.record("bias/shape_bias", 0, 9, outcomes="-" * 30, **kw)  # no decision at all
    result = compare_summaries(base, cand)
    assert result.rows == [] and result.unmeasured == ["bias/shape_bias"]
    assert "NOT MEASURED by the candidate" in render(result)
    assert result.exit_code == 2  # nothing compared: no pass for a CI gate
    # the command says so too (not "no lightning-viz metric in common")
    code, out, err = compare([base.write(tmp_path / "b"), cand.write(tmp_path / "c")], capsys)
    assert code == 2 and "NOT MEASURED by the candidate" in out
    assert "nothing compared: no metric has a value in both runs" in err
    # beside a metric that was compared, it is named and the verdict is that metric's
    base.record("robustness/clean_acc", 0, 9, outcomes="1" * 30, **kw)
    cand.record("robustness/clean_acc", 0, 9, outcomes="1" * 30, **kw)
    code, out, err = compare([base.write(tmp_path / "b2"), cand.write(tmp_path / "c2")], capsys)
    assert (code, err) == (0, "") and "NOT MEASURED by the candidate" in out


def test_a_candidate_stopped_early_is_held_to_the_baselines_best_up_to_its_end():
    """The baseline's first 4 epochs, then better ones: the candidate is those same 4
    epochs. Its best row compared with the baseline's best at epoch 6 and regressed
    (a CI smoke run shorter than its baseline always failed); now both bests are up
    to epoch 3, and equal."""
    base, cand = RunSummary(), RunSummary()
    for epoch, successes in enumerate([40, 55, 50, 52, 70, 80, 95, 90]):
        outcomes = [1] * successes + [0] * (100 - successes)
        base.record("acc", epoch, epoch, outcomes=outcomes, watched=True, tolerance=0.01)
        if epoch <= 3:
            cand.record("acc", epoch, epoch, outcomes=outcomes, watched=True, tolerance=0.01)
    result = compare_summaries(base, cand)
    best = next(r for r in result.rows if r.at == "best")
    assert (best.baseline.epoch, best.candidate.epoch) == (1, 1)
    assert best.delta == 0 and not best.regressed and result.exit_code == 0
    # the reverse keeps each run's best up to epoch 3 too: the longer run's later best
    # is not held against the baseline
    best = next(r for r in compare_summaries(cand, base).rows if r.at == "best")
    assert (best.baseline.epoch, best.candidate.epoch) == (1, 1)


def test_only_in_one_run_and_no_common_epoch():
    a, b = RunSummary(), RunSummary()
    a.record("shared", 0, 0, n=100, successes=90, watched=True, tolerance=0.05)
    b.record("shared", 3, 0, n=100, successes=60)
    a.record("old", 0, 0, 0.5)
    b.record("new", 0, 0, 0.5)
    result = compare_summaries(a, b)
    (row,) = result.rows
    assert (row.baseline.epoch, row.candidate.epoch, row.at) == (0, 3, "latest = best")
    assert row.test == "unpaired (no per-sample outcomes)" and row.regressed
    assert row.tolerance == 0.05  # the baseline's, the candidate stored none
    assert (result.only_in_baseline, result.only_in_candidate) == (["old"], ["new"])
    text = render(result)
    assert "only in baseline: old" in text and "only in candidate: new" in text
    assert "0 / 3" in text  # the epochs compared


def test_watched_metrics_the_candidate_no_longer_measures_are_in_the_verdict():
    """A candidate without TextureShapeBias exited 0 with "no watched metric regressed",
    its two missing watched metrics named only in the last line, after the notes."""
    a, b = RunSummary(), RunSummary()
    for s in (a, b):
        s.record("robustness/pgd_acc@8/255", 0, 0, n=100, successes=50, watched=True)
    a.record("bias/shape_bias", 0, 0, n=100, successes=70, watched=True)
    a.record("embedding/knn_acc", 0, 0, 0.9)  # not watched: not in the verdict
    result = compare_summaries(a, b)
    assert result.unmeasured == ["bias/shape_bias"] and result.exit_code == 0
    flat = " ".join(render(result).split())  # the verdict wraps at 100 columns
    assert (
        "no watched metric regressed (1 watched); NOT MEASURED by the candidate: 1 watched "
        "metric of the baseline (bias/shape_bias)"
    ) in flat
    assert result.to_dict()["unmeasured"] == ["bias/shape_bias"]


def test_nan_only_metric_is_left_out():
    a, b = RunSummary(), RunSummary()
    a.record("m", 0, 0, math.nan)
    b.record("m", 0, 0, 0.4)
    assert compare_summaries(a, b).rows == []


def test_compare_summaries_rejects_bad_arguments():
    with pytest.raises(TypeError, match="`baseline` must be a RunSummary"):
        compare_summaries("a", RunSummary())
    with pytest.raises(ValueError, match="`tolerance` must be a finite number >= 0"):
        compare_summaries(RunSummary(), RunSummary(), tolerance=-0.1)
    with pytest.raises(ValueError, match=r"`alpha` must be a number in \(0, 1\)"):
        compare_summaries(RunSummary(), RunSummary(), alpha=2.0)


def test_compare_records_names_a_record_that_is_none():
    """A public function: a dict or None given as a record raised AttributeError."""
    from lightning_viz.monitoring.record import make_record
    from lightning_viz.monitoring.rule import compare_records

    rec = make_record(0, 0, 0.5)
    with pytest.raises(TypeError, match="`reference` must be an EpochRecord, got None"):
        compare_records(None, rec)
    with pytest.raises(
        TypeError, match=r"`candidate` must be an EpochRecord, got \{'value': 0.5\}"
    ):
        compare_records(rec, {"value": 0.5})


def test_per_sample_values_of_different_probes_get_the_rank_test(capsys, tmp_path):
    """A deletion AUC (lower is better) of two runs whose probes differ had no test
    ("none"): a faithfulness regression between runs on other data went unreported."""
    from lightning_viz.monitoring.record import make_record
    from lightning_viz.monitoring.rule import compare_records

    rng = np.random.default_rng(0)
    good = (0.2 + 0.05 * rng.random(24)).tolist()
    bad = (0.3 + 0.05 * rng.random(24)).tolist()
    ref = make_record(0, 0, values=good, fingerprint="aaaa")
    cand = make_record(0, 0, values=bad, fingerprint="bbbb")
    r = compare_records(ref, cand, higher_is_better=False)
    assert (r.test, r.reason, r.n) == ("ranks", "probes differ", 24)
    expected = ss.mannwhitneyu(bad, good, alternative="greater").pvalue  # higher is worse
    assert r.pvalue == pytest.approx(expected) and r.pvalue < 1e-6
    assert compare_records(cand, ref, higher_is_better=False).pvalue > 0.99  # it improved
    # in compare: a watched deletion AUC regresses, named as the rank test
    a, b = RunSummary(), RunSummary()
    for s, v, f in ((a, good, "aaaa"), (b, bad, "bbbb")):
        s.record("explain/vanilla/deletion_auc", 0, 0, values=v, fingerprint=f, watched=True,
                 tolerance=0.01, higher_is_better=False)  # fmt: skip
    result = compare_summaries(a, b)
    (row,) = result.rows
    assert row.regressed and row.test == "ranks (probes differ)"
    assert "Mann-Whitney U test on the per-sample values" in render(result)
    # H53: without fingerprints nobody knows the probes differ (the outcomes said so)
    unknown = compare_records(make_record(0, 0, values=good), make_record(1, 1, values=bad))
    assert (unknown.test, unknown.reason) == ("ranks", "probes unknown")
    same_probe = make_record(1, 1, values=bad[:10], fingerprint="aaaa")  # other lengths
    assert compare_records(ref, same_probe).reason == "probes differ"


def test_long_explain_tags_fit_100_columns_and_chance_rows_are_in_wide(tmp_path, capsys):
    """The faithfulness tags (up to 49 characters with ``_random``) made the demo's
    compare 118 columns wide; their random-map baselines were rows like any result."""
    rng = np.random.default_rng(0)
    long_tag = "explain/guided_backprop/randomization_corr"  # 42 characters
    base, cand = RunSummary(), RunSummary()
    for s, shift in ((base, 0.0), (cand, 0.3)):
        for tag in (long_tag, "explain/guided_backprop/deletion_auc"):
            v = (rng.random(40) * 0.2 + 0.3 + shift).tolist()
            s.record(tag, 0, 0, values=v, fingerprint="aaaa", watched=True, tolerance=0.01,
                     higher_is_better=False)  # fmt: skip
            s.record(f"{tag}_random", 0, 0, values=rng.random(40).tolist(), fingerprint="aaaa")
        s.record(SB, 0, 0, outcomes=[1] * 30 + [0] * 10, fingerprint="aaaa", watched=True)
    runs = [write_run(tmp_path, "b", base), write_run(tmp_path, "c", cand)]
    code, out, _ = compare(runs, capsys)
    lines = out.splitlines()
    assert code == 1 and max(len(line) for line in lines[2:]) <= 100, max(lines[2:], key=len)
    # the long names on a line of their own, the row below with a blank metric cell
    i = lines.index(long_tag)
    assert lines[i + 1].split()[0] == "latest" and lines[i + 1].endswith("REGRESSED")
    assert lines[i + 1].index("latest") == lines[5].index("at")  # the "at" column
    assert lines[lines.index("explain/guided_backprop/deletion_auc") + 1].endswith("REGRESSED")
    assert f"{SB}  " in out  # a short name stays in its column
    assert "_random" not in "\n".join(lines[:-2])  # no chance rows in the table
    assert "the 2 rows of the random-map baselines (*_random)" in " ".join(out.split())
    wide = compare([*runs, "--wide"], capsys)[1]
    assert sum(line.startswith(f"{long_tag}_random ") for line in wide.splitlines()) == 1
    md = compare([*runs, "--format", "markdown"], capsys)[1]
    assert f"{long_tag}_random" in md


def test_latest_compares_near_the_runs_ends_when_the_budget_spaced_them_differently():
    """The budget ran the probe at even epochs in the baseline and at odd ones (after
    epochs 0 and 1) in the candidate, which lost its robustness from epoch 80 on. The
    only common epoch is 0: the "latest" row compared the untrained models there and the
    collapse passed (exit 0)."""
    tag = "robustness/pgd_acc@8/255"

    def run(epochs, collapse_at=None):
        s = RunSummary()
        for e in epochs:
            good = 115 if collapse_at is None or e < collapse_at else 26  # of 128
            if e == 0:
                good = 26  # the untrained model, in both runs
            outcomes = [1] * good + [0] * (128 - good)
            s.record(
                tag, e, e * 10, outcomes=outcomes, fingerprint="p", watched=True, tolerance=0.02
            )
        return s

    base = run([0, *range(2, 100, 2)])
    cand = run([0, 1, *range(3, 100, 2)], collapse_at=80)
    result = compare_summaries(base, cand)
    latest = next(r for r in result.rows if r.at.startswith("latest"))
    assert (latest.baseline.epoch, latest.candidate.epoch) == (98, 97)  # the earlier of 97, 99
    assert latest.test.startswith("paired") and latest.regressed and result.exit_code == 1
    assert "98 / 97" in render(result)
    # both measured at the shorter run's end: that epoch, as before
    cand = run([0, *range(2, 60, 2)])
    latest = next(r for r in compare_summaries(base, cand).rows if r.at.startswith("latest"))
    assert (latest.baseline.epoch, latest.candidate.epoch) == (58, 58)


def _one_epoch(tolerance: float | None, good: int, watched: bool = True, tag: str = "m"):
    summary = RunSummary()
    outcomes = [1] * good + [0] * (100 - good)
    summary.record(
        tag, 0, 0, outcomes=outcomes, fingerprint="f", watched=watched, tolerance=tolerance
    )
    return summary


def test_the_candidates_tolerance_wins_over_the_baselines():
    report = compare_summaries(_one_epoch(0.5, 90), _one_epoch(0.01, 80))
    assert report.rows[0].tolerance == 0.01


def test_holm_runs_across_the_watched_rows_only():
    baseline, candidate = RunSummary(), RunSummary()
    for summary, watched_good, other_good in ((baseline, 90, 90), (candidate, 80, 60)):
        summary.record(
            "w",
            0,
            0,
            outcomes=[1] * watched_good + [0] * (100 - watched_good),
            fingerprint="f",
            watched=True,
            tolerance=0.05,
        )
        summary.record(
            "u",
            0,
            0,
            outcomes=[1] * other_good + [0] * (100 - other_good),
            fingerprint="f",
            watched=False,
        )
    rows = {row.metric: row for row in compare_summaries(baseline, candidate).rows}
    assert rows["u"].pvalue_holm is None  # not in the family
    assert rows["w"].pvalue_holm == rows["w"].pvalue  # a family of one: p unchanged
