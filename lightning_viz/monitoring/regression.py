"""Regression alerts: a drop is an alert when it is large, significant, and new.

:class:`RegressionMonitor` is the rule of the probe callbacks (``AdversarialProbe``,
``TextureShapeBias``). The probe is the same samples every epoch, so two runs of it
are compared sample by sample:

1. **Reference.** Each watched metric's reference is its best run at an epoch
   ``>= warmup`` (a new best replaces it).
2. **Flagged.** A run is flagged when its drop below the reference is practically
   large (``> tolerance``, per metric) *and* significant: the exact one-sided sign
   test on the samples that flipped between the two runs, multiplied by the number of
   runs the best was chosen from (:func:`~lightning_viz.monitoring.rule.chosen_from`:
   the best of many noisy runs is a lucky one) and Holm-adjusted across the metrics
   compared in that update, is ``<= alpha``.
3. **Episodes.** A metric enters a regressed state after ``patience`` consecutive
   flagged runs, which raises exactly one :class:`Alert`; it leaves (and can alert
   again) only once it has recovered, ``value >= reference - tolerance``. A p-value
   hovering around ``alpha`` therefore cannot make the alert flap.
4. **Baseline.** With ``baseline=`` (the :class:`~lightning_viz.monitoring.record.RunSummary`
   of an earlier run) each run is also compared with the baseline at the same epoch
   (its latest epoch at or before it) and with the baseline's best up to that epoch;
   paired when the probe fingerprints match, else Fisher's exact test on the two
   proportions. The same rules, in separate episodes (``kind="baseline"``).

This module does not import Lightning; the callbacks print :func:`format_alerts` and
keep :meth:`RegressionMonitor.state_dict` in their checkpoint (the mixin
``lightning_viz.callbacks._alerts.WatchesRegressions`` wires the monitor into a callback).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lightning_viz._checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_level,
    fail,
)
from lightning_viz.monitoring import rule
from lightning_viz.monitoring.record import EpochRecord, RunSummary, make_record
from lightning_viz.monitoring.rule import ALERT_KINDS, RecordComparison, compare_records
from lightning_viz.monitoring.stats import holm_adjusted
from lightning_viz.monitoring.store import load_summary
from lightning_viz.monitoring.tables import format_p, text_table

__all__ = ["Alert", "RegressionMonitor", "alert_sentence", "format_alerts"]

_RECORD_KEYS = ("value", "n", "successes", "outcomes", "fingerprint", "values")


def _check_per_metric(value: Any, name: str, check: Callable[[Any, str], Any]) -> Any:
    """One value for every metric, or a mapping from metric tags (str) to values."""
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                fail(
                    name, "a value or a mapping from metric tags (str) to values", value, TypeError
                )
            out[key] = check(v, f"{name}[{key!r}]")
        return out
    return check(value, name)


# --------------------------------------------------------------------------- alert
@dataclass(frozen=True)
class Alert:
    """A metric entered a regressed state.

    Attributes:
        metric: The metric's tag.
        kind: ``"best"`` (against this run's best) or ``"baseline"`` (against the
            baseline run).
        epoch: Epoch of the run that entered the regressed state.
        step: Its global step.
        value: The metric's value in that run.
        reference: What it was compared with: ``"best"``, ``"baseline"`` (the
            baseline at the same epoch, or its latest before) or ``"baseline best"``.
        reference_epoch: Epoch of the reference run (in the baseline run for
            ``kind="baseline"``).
        reference_value: The reference's value.
        drop: How much worse the value is (``reference_value - value`` when higher is
            better).
        pvalue: Holm-adjusted one-sided p-value of the test.
        test: ``"paired"`` (sign test) or ``"unpaired (probes differ)"``, ...
        n: Pairs counted (paired) or the run's samples (unpaired).
        worse: Samples that flipped to worse (paired), else ``None``.
        better: Samples that flipped to better (paired), else ``None``.
        tolerance: The metric's tolerance.
        alpha: The significance level.
        flagged_since: Epoch of the first of the ``patience`` flagged runs.
    """

    metric: str
    kind: str
    epoch: int
    step: int
    value: float
    reference: str
    reference_epoch: int
    reference_value: float
    drop: float
    pvalue: float
    test: str
    n: int | None
    worse: int | None
    better: int | None
    tolerance: float
    alpha: float
    flagged_since: int

    @property
    def message(self) -> str:
        """One line: metric, the two runs, values, drop and p-value (:func:`alert_sentence`)."""
        return alert_sentence(asdict(self))

    def to_dict(self) -> dict[str, Any]:
        """Plain types, with ``message``; what :meth:`RunSummary.add_alert` stores."""
        return {**asdict(self), "message": self.message}


def alert_sentence(alert: Mapping[str, Any]) -> str:
    """An alert as one line: the one wording of the console, the dashboard's Markdown,
    the trackers' alerts and ``summary.json``'s ``message``.

    Args:
        alert: :meth:`Alert.to_dict` (or :func:`~dataclasses.asdict` of an
            :class:`Alert`); fields a summary written by an older version lacks are
            left out of the sentence.

    Returns:
        E.g. ``robustness/pgd_acc@8/255 = 0.6000 at epoch 2, best 0.9000 at epoch 1:
        drop 0.3000 > tolerance 0.02, Holm-adjusted p = 1.9e-09 <= 0.01 (exact test:
        paired, 30 worse / 0 better of 100 samples)``.
    """
    get = alert.get
    reference = get("reference") or get("kind") or "reference"
    if reference == "threshold":  # no test and no earlier run: a level crossed
        n = get("n")
        detail = ", ".join(t for t in (get("test"), n and f"mean of {n} samples") if t)
        return (
            f"{get('metric')} = {float(get('value', math.nan)):.4f} at epoch "
            f"{get('epoch', '?')}, above the threshold "
            f"{float(get('reference_value', math.nan)):g}" + (f" ({detail})" if detail else "")
        )
    against = {"baseline": "baseline run", "baseline best": "baseline run's best"}.get(
        reference, reference
    )
    drop = f"drop {float(get('drop', math.nan)):.4f}"
    if get("tolerance") is not None:
        drop += f" > tolerance {float(get('tolerance')):g}"
    pvalue = get("pvalue")
    shown = "-" if pvalue is None or math.isnan(float(pvalue)) else f"{float(pvalue):.2g}"
    p = f"Holm-adjusted p = {shown}"
    if get("alpha") is not None:
        p += f" <= {float(get('alpha')):g}"
    flips = ""
    if get("worse") is not None and get("n") is not None:
        better = "" if get("better") is None else f" / {get('better')} better"
        flips = f"{get('worse')} worse{better} of {get('n')} samples"
    test = ", ".join(t for t in (get("test"), flips) if t)
    since = get("flagged_since")
    return (
        f"{get('metric')} = {float(get('value', math.nan)):.4f} at epoch {get('epoch', '?')}, "
        f"{against} {float(get('reference_value', math.nan)):.4f} at epoch "
        f"{get('reference_epoch', '?')}: {drop}, {p}"
        + (f" (exact test: {test})" if test else "")
        + (
            f", flagged since epoch {since}"
            if since is not None and since < get("epoch", since)
            else ""
        )
    )


def format_alerts(alerts: list[Alert], title: str) -> str:
    """One message for the alerts of one callback at one run: a compact table.

    Args:
        alerts: The alerts of one :meth:`RegressionMonitor.update`.
        title: What raised them, e.g. the callback's class name.

    Returns:
        A multi-line string (no trailing newline); ``""`` when there are no alerts.

    Examples:
        ``TextureShapeBias: 1 regression at epoch 6 (one-sided exact tests, p x runs a
        best is chosen from, Holm-adjusted, alpha 0.01)`` followed by one row per alert:
        metric, the run it is compared with, value, reference value, drop, tolerance, p
        and the test with its flips.
    """
    if not alerts:
        return ""
    if isinstance(alerts, str) or not all(isinstance(a, Alert) for a in alerts):
        fail("alerts", "a list of Alert", alerts, TypeError)
    epochs = sorted({a.epoch for a in alerts})
    count = f"{len(alerts)} regression{'s' if len(alerts) > 1 else ''}"
    tested = [a for a in alerts if a.reference != "threshold"]
    how = "above a threshold"
    if tested:  # a best's p counts the runs it was chosen from (rule.chosen_from)
        how = "one-sided exact tests, p x runs a best is chosen from, Holm-adjusted, alpha "
    how += ", ".join(f"{a:g}" for a in sorted({a.alpha for a in tested}))
    head = f"{title}: {count} at epoch {', '.join(map(str, epochs))} ({how})"
    rows = []
    for a in alerts:
        test = a.test
        if a.worse is not None:
            test += f", {a.worse} worse / {a.better} better of {a.n}"
        elif a.n is not None:
            test += f", n={a.n}"
        rows.append(
            [
                a.metric,
                f"{a.reference} (epoch {a.reference_epoch})",
                f"{a.value:.4f}",
                f"{a.reference_value:.4f}",
                f"{a.drop:.4f}",
                f"{a.tolerance:g}",
                format_p(a.pvalue),
                test,
            ]
        )
    header = ["metric", "compared with", "value", "ref", "drop", "tol", "p", "test"]
    return "\n".join([head, *text_table(header, rows, indent="  ")])


# ------------------------------------------------------------------------- monitor
@dataclass
class _Episode:
    regressed: bool = False  # inside a regressed episode (alerted)
    streak: int = 0  # consecutive flagged runs while not regressed
    first_flagged: int | None = None  # epoch of the first run of the streak
    since: int | None = None  # epoch the current episode's alert was raised


@dataclass
class _Comparison:
    tag: str
    reference: str
    ref: EpochRecord
    result: RecordComparison
    adjusted: float = math.nan


class RegressionMonitor:
    """Alerts when watched metrics regress: large, significant, once per episode.

    See the module docstring for the rule. Feed it one :meth:`update` per probe run
    with the watched metrics' values and per-sample outcomes; print the returned
    alerts with :func:`format_alerts`; save :meth:`state_dict` in the checkpoint.

    Args:
        tolerance: Drop that is practically large: one number for every metric, or a
            mapping from metric tag to number (``>= 0``). Default: ``0.0``.
        alpha: Significance level of the one-sided exact tests after Holm's
            correction, in ``(0, 1)``. Default: ``0.01``.
        warmup: Runs at epochs ``< warmup`` are never references and raise no alert.
            Default: ``0``.
        patience: Consecutive flagged runs before a metric enters a regressed state
            (``1``: the first flagged run). Default: ``2``: a converged model's
            measurements wander, so one flagged run is less rare than ``alpha``
            suggests; two in a row are rare, and a real switch is still caught one
            run later (see the alerts guide for the simulated rates).
        baseline: An earlier run to compare with: its :class:`RunSummary`, or a path
            that :func:`~lightning_viz.monitoring.record.load_summary` accepts. Default: ``None``.
        higher_is_better: Direction of the metrics: one bool or a mapping from tag to
            bool (missing tags: ``True``). Default: ``True``.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: An argument out of range.
        SummaryError: ``baseline`` is a path that holds no readable summary.

    Examples:
        >>> m = RegressionMonitor(tolerance=0.05, patience=1)
        >>> m.update(0, 10, {"bias/shape_bias": {"outcomes": [1] * 20}})
        []
        >>> [a.metric for a in m.update(1, 20, {"bias/shape_bias": {"outcomes": [0] * 20}})]
        ['bias/shape_bias']
    """

    def __init__(
        self,
        tolerance: float | Mapping[str, float] = 0.0,
        *,
        alpha: float = 0.01,
        warmup: int = 0,
        patience: int = 2,
        baseline: RunSummary | str | os.PathLike[str] | None = None,
        higher_is_better: bool | Mapping[str, bool] = True,
    ) -> None:
        self.tolerance = _check_per_metric(
            tolerance, "tolerance", lambda v, n: check_float(v, n, minimum=0.0)
        )
        self.alpha = check_level(alpha, "alpha")
        self.warmup = check_int(warmup, "warmup", minimum=0)
        self.patience = check_int(patience, "patience", minimum=1)
        self.higher_is_better = _check_per_metric(higher_is_better, "higher_is_better", check_bool)
        if baseline is not None and not isinstance(baseline, RunSummary):
            if not isinstance(baseline, str | os.PathLike):
                fail("baseline", "None, a RunSummary or a path", baseline, TypeError)
            baseline = load_summary(baseline)
        self.baseline: RunSummary | None = baseline
        self._refs: dict[str, EpochRecord] = {}  # metric -> its best run after warmup
        self._episodes: dict[str, dict[str, _Episode]] = {kind: {} for kind in ALERT_KINDS}
        self._drops: dict[str, float] = {}  # metric -> drop below its reference, last update
        self._runs: dict[str, int] = {}  # metric -> runs after warmup its best was chosen from

    # ------------------------------------------------------------------ access
    def tolerance_of(self, tag: str) -> float:
        """The tolerance of a metric."""
        if isinstance(self.tolerance, dict):
            if tag not in self.tolerance:
                fail(
                    "tolerance",
                    f"a mapping with the watched metric {tag!r}",
                    sorted(self.tolerance),
                )
            return self.tolerance[tag]
        return self.tolerance

    def higher_is_better_of(self, tag: str) -> bool:
        """The direction of a metric."""
        if isinstance(self.higher_is_better, dict):
            return self.higher_is_better.get(tag, True)
        return self.higher_is_better

    @property
    def references(self) -> dict[str, EpochRecord]:
        """Metric -> its reference run (best after ``warmup``), a copy."""
        return dict(self._refs)

    def regressed(self, kind: str = "best") -> list[str]:
        """The metrics now in a regressed episode of ``kind``."""
        check_choice(kind, "kind", ALERT_KINDS)
        return sorted(t for t, e in self._episodes[kind].items() if e.regressed)

    def regression_value(self) -> float:
        """The largest drop below its reference over the metrics of the last update.

        ``0.0`` when none is below (or before any reference): the scalar the callbacks
        log as ``<family>/regression``.
        """
        return max([0.0, *self._drops.values()])

    # ------------------------------------------------------------------ update
    def _as_record(self, tag: Any, epoch: int, step: int, item: Any) -> EpochRecord:
        if not isinstance(tag, str):
            fail("metrics", "a mapping from metric tags (str)", tag, TypeError)
        if isinstance(item, EpochRecord):
            if item.epoch != epoch:
                fail(f"metrics[{tag!r}].epoch", f"the updated epoch {epoch}", item.epoch)
            rec = item
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - set(_RECORD_KEYS))
            if unknown:
                fail(f"metrics[{tag!r}]", f"a mapping with keys from {list(_RECORD_KEYS)}", unknown)
            rec = make_record(epoch, step, **item)
        else:
            fail(f"metrics[{tag!r}]", "an EpochRecord or a mapping", item, TypeError)
        if (rec.n is None or rec.successes is None) and rec.values is None:
            fail(
                f"metrics[{tag!r}]",
                "given with per-sample `outcomes` or `values` (or `n` and `successes`) "
                "for the test",
                item,
            )
        return rec

    def update(self, epoch: int, step: int, metrics: Mapping[str, Any]) -> list[Alert]:
        """Takes one probe run of the watched metrics; returns the alerts it raises.

        Args:
            epoch: The run's epoch (``trainer.current_epoch``).
            step: Its global step.
            metrics: Watched metric tag -> this run's measurement: an
                :class:`~lightning_viz.monitoring.record.EpochRecord` (e.g. what
                :meth:`RunSummary.record` returned) or a mapping with ``value``,
                ``outcomes`` (per-sample ``1``/``0``/``None`` on the probe, for the
                paired test), ``n``/``successes`` (when there are no outcomes) and
                ``fingerprint`` (of the probe; needed to pair with a baseline). A NaN
                value skips the metric in this run.

        Returns:
            The alerts of metrics that entered a regressed state in this run, own-best
            ones first, in the order of ``metrics``.

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: A bad measurement, or one with neither outcomes nor counts.
        """
        epoch = check_int(epoch, "epoch", minimum=0)
        step = check_int(step, "step", minimum=0)
        if not isinstance(metrics, Mapping):
            fail("metrics", "a mapping from metric tags to measurements", metrics, TypeError)
        recs = {t: self._as_record(t, epoch, step, item) for t, item in metrics.items()}
        recs = {t: r for t, r in recs.items() if not math.isnan(r.value)}
        for t in recs:
            self.tolerance_of(t)  # every watched metric has a tolerance
        self._drops = {}
        if epoch < self.warmup:
            return []
        best = [
            _Comparison(
                t,
                "best",
                self._refs[t],
                rule.chosen_from(self._compare(t, self._refs[t], r, True), self._runs.get(t, 1)),
            )
            for t, r in recs.items()
            if t in self._refs and rule.same_form(self._refs[t], r)
        ]
        self._drops = {c.tag: max(0.0, c.result.drop) for c in best}
        alerts = self._judge("best", best, recs, epoch, step)
        for t, r in recs.items():  # a new best becomes the reference
            self._runs[t] = self._runs.get(t, 0) + 1
            ref = self._refs.get(t)
            if ref is not None and not rule.same_form(ref, r):  # an older version's best
                self._refs[t], self._runs[t] = r, 1  # cannot be tested: it starts again
            elif ref is None or self._better(t, r.value, ref.value):
                self._refs[t] = r
        if self.baseline is not None:
            alerts += self._judge(
                "baseline", self._baseline_comparisons(recs, epoch), recs, epoch, step
            )
        return alerts

    def _better(self, tag: str, a: float, b: float) -> bool:
        return a > b if self.higher_is_better_of(tag) else a < b

    def _compare(
        self, tag: str, ref: EpochRecord, rec: EpochRecord, same_run: bool
    ) -> RecordComparison:
        return compare_records(
            ref,
            rec,
            higher_is_better=self.higher_is_better_of(tag),
            same_probe_if_unknown=same_run,
        )

    def _baseline_comparisons(self, recs: dict[str, EpochRecord], epoch: int) -> list[_Comparison]:
        out: list[_Comparison] = []
        if self.baseline is None:
            return out
        for t, r in recs.items():
            if t not in self.baseline:
                continue
            hist = self.baseline[t]
            same = hist.latest(max_epoch=epoch, min_epoch=self.warmup)
            best = hist.best(min_epoch=self.warmup, max_epoch=epoch)
            if same is not None:
                out.append(_Comparison(t, "baseline", same, self._compare(t, same, r, False)))
            if best is not None and (same is None or best.epoch != same.epoch):
                among = len(hist.records(min_epoch=self.warmup, max_epoch=epoch))
                result = rule.chosen_from(self._compare(t, best, r, False), among)
                out.append(_Comparison(t, "baseline best", best, result))
        return out

    def _judge(
        self,
        kind: str,
        comparisons: list[_Comparison],
        recs: dict[str, EpochRecord],
        epoch: int,
        step: int,
    ) -> list[Alert]:
        """Holm across the comparisons, then the episode rules per metric."""
        tested = [c for c in comparisons if not math.isnan(c.result.pvalue)]
        for c, adjusted in zip(
            tested, holm_adjusted([c.result.pvalue for c in tested]), strict=True
        ):
            c.adjusted = adjusted
        by_tag: dict[str, list[_Comparison]] = {}
        for c in comparisons:
            by_tag.setdefault(c.tag, []).append(c)
        alerts = []
        for tag, comps in by_tag.items():
            tol = self.tolerance_of(tag)
            ep = self._episodes[kind].setdefault(tag, _Episode())
            if ep.regressed:
                if not any(rule.exceeds(c.result.drop, tol) for c in comps):  # recovered: re-arm
                    self._episodes[kind][tag] = _Episode()
                continue
            flagged = [
                c for c in comps if rule.regressed(c.result.drop, tol, c.adjusted, self.alpha)
            ]
            if not flagged:
                ep.streak, ep.first_flagged = 0, None
                continue
            ep.streak += 1
            if ep.first_flagged is None:
                ep.first_flagged = epoch
            if ep.streak < self.patience:
                continue
            c = min(flagged, key=lambda c: (c.adjusted, -c.result.drop))
            ep.regressed, ep.since = True, epoch
            alerts.append(
                Alert(
                    metric=tag,
                    kind=kind,
                    epoch=epoch,
                    step=step,
                    value=recs[tag].value,
                    reference=c.reference,
                    reference_epoch=c.ref.epoch,
                    reference_value=c.ref.value,
                    drop=c.result.drop,
                    pvalue=c.adjusted,
                    test=c.result.label,
                    n=c.result.n,
                    worse=c.result.worse,
                    better=c.result.better,
                    tolerance=tol,
                    alpha=self.alpha,
                    flagged_since=ep.first_flagged,
                )
            )
        return alerts

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """References (with their outcomes), episode flags and streaks: plain types."""
        return {
            "version": 1,
            "references": {t: r.to_dict() for t, r in self._refs.items()},
            "episodes": {
                kind: {t: asdict(e) for t, e in eps.items()} for kind, eps in self._episodes.items()
            },
            "drops": dict(self._drops),
            "runs": dict(self._runs),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` (missing keys mean an empty history)."""
        self._refs = {
            str(t): EpochRecord.from_dict(r) for t, r in (state.get("references") or {}).items()
        }
        episodes = state.get("episodes") or {}
        self._episodes = {
            kind: {str(t): _Episode(**e) for t, e in (episodes.get(kind) or {}).items()}
            for kind in ALERT_KINDS
        }
        self._drops = {str(t): float(v) for t, v in (state.get("drops") or {}).items()}
        self._runs = {str(t): int(v) for t, v in (state.get("runs") or {}).items()}
        if "runs" not in state:  # an older version's state has no count: each best was
            self._runs = {  # chosen from about the epochs after warmup up to its own
                t: max(1, r.epoch + 1 - self.warmup) for t, r in self._refs.items()
            }
