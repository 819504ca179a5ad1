"""The mixin that wires a :class:`~lightning_viz.monitoring.regression.RegressionMonitor`
into a probe callback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_viz._checks import check_float
from lightning_viz.monitoring.record import EpochRecord, SummaryError
from lightning_viz.monitoring.regression import Alert, RegressionMonitor, format_alerts
from lightning_viz.monitoring.rule import same_form

__all__ = ["WatchesRegressions"]


class WatchesRegressions:
    """Mixin for the probe callbacks whose metrics raise regression alerts.

    The callback calls :meth:`init_alerts` in its constructor and :meth:`alert` once
    per run with the records of its watched metrics (from ``RunLog.scalar``); the
    alerts go to the run's summary and are printed as one table per run. The
    monitor's state travels in the callback's ``state_dict``.
    """

    def init_alerts(
        self,
        tolerance: float,
        alpha: float,
        warmup: int,
        patience: int,
        baseline: Any,
        higher_is_better: bool = True,
    ) -> None:
        """Creates the :class:`RegressionMonitor` (its checks name the bad argument)."""
        self.tolerance = check_float(tolerance, "tolerance", minimum=0.0)
        try:
            self._monitor = RegressionMonitor(
                self.tolerance,
                alpha=alpha,
                warmup=warmup,
                patience=patience,
                baseline=baseline,
                higher_is_better=higher_is_better,
            )
        except SummaryError as err:
            raise ValueError(
                f"`baseline` must be an earlier run's log dir or its summary.json, got "
                f"{baseline!r}: {err}"
            ) from err
        self.alpha, self.warmup, self.patience = alpha, warmup, patience
        self.baseline = baseline if baseline is None or isinstance(baseline, str) else None

    def alert(self, ctx: Any, records: Mapping[str, EpochRecord]) -> list[Alert]:
        """Updates the monitor; logs ``<family>/regression``; reports new alerts."""
        base = self._monitor.baseline
        if base is not None and records and not any(t in base for t in records):
            self.warn_once(  # type: ignore[attr-defined]
                "baseline shares nothing",
                f"the `baseline` run holds none of the metrics it watches ({', '.join(records)}"
                f"); its metrics are {', '.join(sorted(base)[:6]) or 'none'}: nothing is "
                "compared with it (the same eps, corruptions and tag_prefix are needed)",
            )
        older = sorted(  # metrics whose every baseline record has a form no test pairs
            t
            for t, r in records.items()
            if base is not None
            and t in base
            and base[t].epochs
            and not any(same_form(b, r) for b in base[t].epochs.values())
        )
        if older:
            self.warn_once(  # type: ignore[attr-defined]
                "baseline form",
                f"the `baseline` run keeps {', '.join(older)} in an older form (one outcome "
                "per decision; this version keeps one value per image), which no test pairs "
                "with this run's: they are not compared. Re-run the baseline with this version",
            )
        alerts = self._monitor.update(ctx.log.epoch, ctx.log.step, records)
        drop = self._monitor.regression_value()
        ctx.log.scalar(self.tag("regression"), drop, summary=False)  # type: ignore[attr-defined]
        coordinator = ctx.coordinator
        for a in alerts:
            if coordinator.summary is not None:
                coordinator.summary.add_alert(a)
        if alerts:
            coordinator.say(ctx.trainer, format_alerts(alerts, type(self).__name__))
        return alerts

    @property
    def references(self) -> dict[str, EpochRecord]:
        """Each watched metric's reference: its best run after ``warmup``."""
        return self._monitor.references

    def measured_with(self) -> dict[str, str]:
        """The settings, beyond :meth:`key_args`, that change the measured values (an
        attack's steps): references measured with others are not compared with."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        return {"monitor": self._monitor.state_dict(), "measured_with": self.measured_with()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        monitor, saved = state.get("monitor") or {}, state.get("measured_with")
        if monitor and saved is not None and saved != self.measured_with():
            changed = ", ".join(
                f"{k}={saved.get(k)} (now {v})"
                for k, v in self.measured_with().items()
                if saved.get(k) != v
            )
            self.warn_once(  # type: ignore[attr-defined]
                "measured_with",
                f"the checkpoint's regression references were measured with {changed}: "
                "this run's values are not compared with them (its own references start "
                "anew; a baseline= run stays)",
            )
            monitor = {}
        self._monitor.load_state_dict(monitor)
