"""The TensorBoard view: custom-scalars layout, per-epoch summary text, configuration."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from lightning_viz._runtime.config import config_markdown
from lightning_viz.monitoring.dashboard import (
    console_table,
    custom_scalars_layout,
    latest_rows,
    summary_markdown,
    summary_rows,
)
from lightning_viz.monitoring.record import RunSummary
from tests.conftest import all_callbacks, fit, layout_and_scalars, lightning_info, read_events


def layout_tags(layout: Mapping[str, Mapping[str, Sequence[Any]]]) -> list[str]:
    """The tags a layout built by :func:`custom_scalars_layout` lists, in order."""
    return [
        re.sub(r"\\(.)", r"\1", pattern[1:-1])
        for charts in layout.values()
        for _, patterns in charts.values()
        for pattern in patterns
    ]


# ------------------------------------------------------------------- pure functions
def test_layout_merges_categories_in_order_and_lists_each_tag_once():
    layout = custom_scalars_layout(
        [
            {"cost": {"seconds": ["viz/A/seconds"]}},
            {"robustness": {"pgd": ["robustness/pgd_acc@8/255", "robustness/pgd_acc@2/255"]}},
            {"filters": {"model.conv1": ["filters/model.conv1/norm"]}},
            {"robustness": {"again": ["robustness/pgd_acc@8/255"]}, "mine": {"x": []}},
        ]
    )
    assert list(layout) == [
        "lightning-viz: robustness",
        "lightning-viz: filters",
        "lightning-viz: cost",
    ]  # no empty chart or category, the repeated tag only at its first place
    assert layout["lightning-viz: robustness"] == {
        "pgd": ["Multiline", [r"^robustness/pgd_acc@8/255$", r"^robustness/pgd_acc@2/255$"]]
    }
    (pattern,) = layout["lightning-viz: filters"]["model.conv1"][1]
    assert re.match(pattern, "filters/model.conv1/norm")
    assert not re.match(pattern, "filters/modelXconv1/norm")  # dots are escaped
    assert layout_tags(layout) == [
        "robustness/pgd_acc@8/255",
        "robustness/pgd_acc@2/255",
        "filters/model.conv1/norm",
        "viz/A/seconds",
    ]


def _summary() -> RunSummary:
    s = RunSummary()
    for epoch, outcomes in enumerate(([1] * 8 + [0] * 2, [1] * 9 + [0], [1] * 6 + [0] * 4)):
        s.record("robustness/pgd_acc@8/255", epoch, 10 * epoch, outcomes=outcomes, watched=True)
    s.record("embedding/knn_acc", 2, 20, 0.75)
    s.record("filters/conv/norm", 2, 20, 3.0)  # weights, not a probe metric
    s.add_alert(
        {
            "epoch": 2,
            "metric": "robustness/pgd_acc@8/255",
            "kind": "best",
            "value": 0.6,
            "reference_value": 0.9,
            "reference_epoch": 1,
            "drop": 0.3,
            "pvalue": 0.03,
            "n": 10,
            "worse": 3,
        }
    )
    return s


def test_summary_rows_changes_since_previous_and_best():
    rows = {r.tag: r for r in summary_rows(_summary(), 2)}
    assert set(rows) == {"robustness/pgd_acc@8/255", "embedding/knn_acc"}
    pgd = rows["robustness/pgd_acc@8/255"]
    assert pgd.value == pytest.approx(0.6)
    assert pgd.previous == (1, pytest.approx(0.9)) and pgd.best == (1, pytest.approx(0.9))
    assert pgd.since_previous == pytest.approx(-0.3) and pgd.since_best == pytest.approx(-0.3)
    low, high = pgd.interval
    assert low < 0.6 < high  # the Wilson interval of 6 of 10
    knn = rows["embedding/knn_acc"]
    assert knn.interval is None and knn.previous is None and knn.since_best == 0.0


def test_summary_markdown_and_console_table():
    s = _summary()
    text = summary_markdown(summary_rows(s, 2), 2, 20, s.alerts)
    assert "**Epoch 2** (step 20)" in text
    assert "| **robustness/pgd_acc@8/255** | 0.600 | 0.31–0.83 | -0.300 (epoch 1) |" in text
    assert "| embedding/knn_acc | 0.750 | — | — | ±0 (best 0.750, epoch 2) |" in text
    assert "**1 alert:**" in text
    # an alert without the newer fields (tolerance, alpha, test) still reads as a sentence
    line = (
        "- robustness/pgd_acc@8/255 = 0.6000 at epoch 2, best 0.9000 at epoch 1: drop 0.3000, "
        "Holm-adjusted p = 0.03 (exact test: 3 worse of 10 samples)"
    )
    assert line in text.splitlines()
    assert "No new alert at this epoch (a regression alerts once, when it starts)." in (
        summary_markdown(summary_rows(s, 1), 1, 10, [])
    )
    table = console_table(summary_rows(s, 2), 2).splitlines()
    assert table[0] == "lightning-viz, epoch 2 (* watched):"  # the console has no bold
    assert table[1].split()[:2] == ["metric", "value"] and set(table[2]) <= {"-", " "}
    assert table[3].startswith("robustness/pgd_acc@8/255 *  0.600")
    assert table[4].startswith("embedding/knn_acc  ")  # not watched


def test_console_table_at_the_end_shows_every_metric_at_its_latest_run():
    s = _summary()
    s.record("bias/shape_bias", 0, 0, 0.7)  # a callback that ran only at epoch 0
    rows = {r.tag: r for r in latest_rows(s)}
    assert set(rows) == {"robustness/pgd_acc@8/255", "embedding/knn_acc", "bias/shape_bias"}
    assert rows["bias/shape_bias"].epoch == 0 and rows["bias/shape_bias"].value == 0.7
    assert rows["robustness/pgd_acc@8/255"].epoch == 2
    assert rows["robustness/pgd_acc@8/255"].value == pytest.approx(0.6)
    table = console_table(list(rows.values())).splitlines()
    assert table[0] == "lightning-viz, each probe metric at its latest run (* watched):"
    assert table[1].split()[:3] == ["metric", "value", "epoch"]
    assert table[3].split()[:4] == ["robustness/pgd_acc@8/255", "*", "0.600", "2"]
    assert [line.split()[:3] for line in table[3:]][-1] == ["bias/shape_bias", "0.700", "0"]
    # rows of one epoch: no epoch column, the title names it
    one = console_table(summary_rows(s, 2)).splitlines()
    assert one[0] == "lightning-viz, epoch 2 (* watched):" and "epoch" not in one[1].split()[:3]


# ------------------------------------------------------------------ a real run
def _text(values: list[bytes]) -> str:
    return b"".join(values).decode()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    names = ["circle", "square", "triangle", "star", "cross"]
    callbacks = all_callbacks(class_names=names, on_error="raise")
    with lightning_info() as records:
        fit(tmp, callbacks, epochs=2)
    return callbacks, read_events(str(tmp)), records


def test_layout_lists_every_lightning_viz_scalar_exactly_once(run):
    from tensorboard.plugins.custom_scalar import layout_pb2

    _, ev, _ = run
    listed, ours = layout_and_scalars(ev)
    assert len(listed) == len(set(listed))  # exactly once
    assert set(listed) == ours, (set(listed) - ours, ours - set(listed))
    ((_, values),) = ev["tensors"]["custom_scalars__config__"]
    layout = layout_pb2.Layout.FromString(values[0])
    titles = [c.title for c in layout.category]
    assert titles == [
        "lightning-viz: robustness",
        "lightning-viz: bias",
        "lightning-viz: explanations",
        "lightning-viz: embeddings",
        "lightning-viz: filters",
        "lightning-viz: cost",
    ]
    charts = {c.title: [t.title for t in c.chart] for c in layout.category}
    assert "pgd accuracy per eps" in charts["lightning-viz: robustness"]
    assert "shape bias and cue accuracies" in charts["lightning-viz: bias"]


def test_a_second_instance_under_its_own_prefix_gets_charts_of_its_own(tmp_path):
    from tensorboard.plugins.custom_scalar import layout_pb2

    import lightning_viz as lv

    callbacks = [
        lv.AdversarialProbe(eps=(8 / 255,), steps=2, num_samples=8, on_error="raise"),
        lv.AdversarialProbe(
            eps=(0.5,), attacks=("pgd",), norm="l2", steps=2, num_samples=8,
            tag_prefix="robust_l2", on_error="raise",
        ),
    ]  # fmt: skip
    fit(tmp_path, callbacks, epochs=1)
    ev = read_events(str(tmp_path))
    ((_, values),) = ev["tensors"]["custom_scalars__config__"]
    (robustness,) = [
        c for c in layout_pb2.Layout.FromString(values[0]).category if "robustness" in c.title
    ]
    charts = {
        c.title: [re.sub(r"\\(.)", r"\1", t[1:-1]) for t in c.multiline.tag]
        for c in robustness.chart
    }
    assert all(t.startswith("robustness/") for t in charts["pgd accuracy per eps"])
    assert all(t.startswith("robust_l2/") for t in charts["robust_l2: pgd accuracy per eps"])
    assert "robust_l2: fgsm accuracy per eps" not in charts  # it runs PGD only
    assert charts["robust_l2: pgd accuracy per eps"] == ["robust_l2/pgd_acc@0.5"]  # an L2 size
    listed = [t for tags in charts.values() for t in tags]
    ours = [t for t in ev["scalars"] if t.startswith(("robustness/", "robust_l2/"))]
    assert sorted(listed) == sorted(ours)


def _table(text: str) -> dict[str, float]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5 and cells[0] != "metric":
            rows[cells[0].strip("*")] = float(cells[1])
    return rows


def test_summary_text_holds_the_scalars_of_each_probe_epoch(run):
    _, ev, _ = run
    texts = ev["tensors"]["lightning_viz/summary/text_summary"]
    assert [step for step, _ in texts] == [4, 8]  # each epoch a probe ran
    for step, values in texts:
        table = _table(_text(values))
        assert "robustness/pgd_acc@8/255" in table and "bias/shape_bias" in table
        assert "embedding/knn_acc" in table and "bias/saliency_in_mask" in table
        for tag, value in table.items():
            scalar = dict(ev["scalars"][tag])[step]
            assert value == pytest.approx(scalar, abs=6e-4), (tag, step)  # 3 decimals


def test_configuration_text_once_and_console_table_at_the_end(run):
    callbacks, ev, records = run
    ((step, values),) = ev["tensors"]["lightning_viz/config/text_summary"]
    text = _text(values)
    for cb in callbacks:
        assert f"**{type(cb).__name__}**" in text
    assert "| eps | `(0.00784314, 0.0313725)` |" in text  # AdversarialProbe's own option
    assert "| every_n_epochs | `1` |" in text
    tables = [r for r in records if r.startswith("lightning-viz, epoch 1")]
    assert len(tables) == 1 and "robustness/pgd_acc@8/255" in tables[0]


def test_config_markdown_lists_options_as_built():
    import lightning_viz as lv

    text = config_markdown([lv.GradCAMLogger(methods=("gradcam++",), num_samples=3)])
    assert "**GradCAMLogger** (tags `gradcam/...`)" in text
    assert "| methods | `['gradcam++']` |" in text and "| num_samples | `3` |" in text


def test_config_markdown_writes_a_value_with_a_pipe_or_backtick_as_plain_text():
    """Inside a code span TensorBoard showed the table's ``\\|`` escape literally, and a
    backtick in a class name ended the span early."""
    import lightning_viz as lv

    text = config_markdown([lv.SaliencyLogger(class_names=["a/b|c", "`code`"])])
    row = next(line for line in text.splitlines() if line.startswith("| class_names |"))
    assert row == "| class_names | ['a/b\\|c', '`code`'] |"  # the pipe escaped, no code span
    assert "| num_samples | `" in text  # plain values stay code


def test_a_new_best_epoch_is_its_own_best_with_nothing_since():
    summary = RunSummary()
    summary.record("robustness/pgd_acc@8/255", 0, 0, outcomes=[1] * 5 + [0] * 5, watched=True)
    summary.record("robustness/pgd_acc@8/255", 1, 10, outcomes=[1] * 9 + [0], watched=True)
    (row,) = summary_rows(summary, 1)
    assert row.best[0] == 1 and row.since_best == 0.0
