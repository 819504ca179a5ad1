"""What the lightning-viz callbacks of one trainer write together: the run summary
(``summary.json``, its checkpoint copy, the epoch's summary text and the console
table) and the run's layout and configuration.

:class:`RunOutput` is the part of the :class:`~lightning_viz._runtime.coordinator.Coordinator`
that writes them. A write that fails (a full or read-only disk, a logger that refuses
it) is said once and training goes on, as for a callback's own run; it raises only
when a callback of the trainer asked for ``on_error="raise"``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from lightning_viz._runtime.compat import rank_zero_info
from lightning_viz._runtime.config import config_markdown
from lightning_viz._runtime.distributed import together
from lightning_viz._runtime.schedule import log_step
from lightning_viz._runtime.writers import Writers
from lightning_viz.monitoring.dashboard import (
    console_table,
    custom_scalars_layout,
    latest_rows,
    summary_markdown,
    summary_rows,
)
from lightning_viz.monitoring.record import RunSummary, SummaryError, summary_path
from lightning_viz.monitoring.regression import alert_sentence

__all__ = ["RunOutput"]


def _own_titles(callback: Any) -> dict[str, dict[str, list[str]]]:
    """``callback.layout()``; under a custom ``tag_prefix`` each chart title starts with
    it, so two instances of one callback get charts of their own."""
    charts = callback.layout()
    if callback.tag_prefix == callback.family:
        return charts
    return {
        category: {f"{callback.tag_prefix}: {title}": tags for title, tags in by_title.items()}
        for category, by_title in charts.items()
    }


def _config_name(callback: Any) -> str:
    """The name of a callback in the run's configuration (its tag prefix when custom)."""
    name = type(callback).__name__
    return name if callback.tag_prefix == callback.family else f"{name}({callback.tag_prefix})"


def _measured_last(saved: str | None) -> int | None:
    """The last epoch with a value in a checkpoint's summary (JSON), if any."""
    try:
        metrics = json.loads(saved or "{}").get("metrics", {})
        return max((int(r["epoch"]) for m in metrics.values() for r in m["epochs"]), default=None)
    except (ValueError, TypeError, KeyError, AttributeError):  # not a summary: nothing kept
        return None


class RunOutput:
    """The run summary, layout and configuration of a trainer's callbacks (a part of
    the coordinator, which holds the state these methods use)."""

    callbacks: list[Any]
    summary: RunSummary | None
    log_dir: str | None
    writers: Writers | None
    _plans: dict[int, list[str]]  # epoch -> keys of the callbacks that run (the budget's plan)

    def raises(self) -> bool:
        """Whether a callback of the trainer asked for ``on_error="raise"``."""
        return any(getattr(cb, "on_error", None) == "raise" for cb in self.callbacks)

    def together(self, trainer: Any) -> contextlib.AbstractContextManager[None]:
        """A block of rank 0's writes: with ``on_error="raise"`` every rank hears of a
        failure there (:func:`~lightning_viz._runtime.distributed.together`)."""
        return together(trainer, self.raises())

    def write_epoch_end(self, trainer: Any) -> None:
        """``summary.json``, ``viz/overhead`` and the summary text of the epoch."""
        with self.together(trainer):
            self.write_summary(trainer)
            self.log_overhead(trainer)  # type: ignore[attr-defined] - the coordinator's
            self.write_epoch_summary(trainer)

    @contextlib.contextmanager
    def shared_write(self, what: str) -> Iterator[None]:
        """Runs a write of ``what`` that every callback shares: a failure is said once
        (per ``what``) and the fit goes on; it is raised when a callback asked for
        ``on_error="raise"``."""
        try:
            yield
        except Exception as err:
            if self.raises():
                raise
            self.warn_once(  # type: ignore[attr-defined]
                f"write {what}",
                f"lightning-viz could not write {what} ({type(err).__name__}: {err}); "
                "training goes on, and later epochs try again",
            )

    def _load_summary(self, log_dir: str) -> RunSummary:
        """The log dir's summary (a resumed run continues it), or a new one; one that
        cannot be read (empty, another format, a newer lightning-viz) is set aside as
        ``summary.json.unreadable`` with one warning: it stops no fit."""
        try:
            self.summary_found = os.path.isfile(summary_path(log_dir))
            return RunSummary.load_or_new(log_dir)
        except SummaryError as err:
            kept = f"{summary_path(log_dir)}.unreadable"
            with contextlib.suppress(OSError):
                os.replace(summary_path(log_dir), kept)
            self.warn_once(
                "unreadable summary",
                f"lightning-viz: {err}; it is kept as {kept} and this run starts a new summary",
            )
            return RunSummary()

    def summary_state(self, callback: Any) -> dict[str, Any]:
        """The run summary as JSON text for the checkpoint, in the state of the first
        registered callback only (``{}`` for the others)."""
        if self.summary is None or not self.callbacks or self.callbacks[0] is not callback:
            return {}
        return {"run_summary": self.summary.to_json()}  # each record's text made once

    def continue_summary(self, epoch: int) -> None:
        """At the training start: a run resumed at ``epoch`` into a log dir without its
        summary (Lightning's default resume opens a new version) continues the summary
        saved in the checkpoint; the epochs from ``epoch`` on are forgotten (they run
        again). The summary travels in one callback's state (the first registered at
        the save), so the first one there is among the callbacks is taken."""
        saved = next((t for c in self.callbacks if (t := getattr(c, "_saved_summary", None))), None)
        # fit again from an earlier epoch: those run again, planned anew on every rank
        # (only rank 0 has a summary; a plan is broadcast from it to all)
        self.budget.train_starts()  # the time before (a tuner's search) is no training
        self.budget.rewind(epoch)
        self._plans = {e: keys for e, keys in self._plans.items() if e < epoch}
        self._not_again.clear()  # "will not run again in this fit": said anew in a new fit
        if self.summary is None:
            return
        self.resumed_at = epoch
        # a summary kept from a fit before on this trainer is found too
        self.summary_found = self.summary_found or saved is not None or bool(self.summary.metrics)
        if saved is not None and epoch > 0 and not self.summary.metrics:
            try:
                self.summary = RunSummary.from_dict(json.loads(saved), "the checkpoint's summary")
                self.summary_changed = True  # the new log dir gets it, even if nothing runs
            except ValueError as err:  # a SummaryError, or not JSON
                self.warn_once("checkpoint summary", f"lightning-viz: {err}; a new one starts")
        kept = self.summary.to_json()
        # a checkpoint saved at the validation end of ``epoch`` holds its values, and
        # Lightning goes on after that epoch's batches and validation: they stand
        self.summary.drop_after(epoch if _measured_last(saved) == epoch else epoch - 1)
        self.summary_changed = self.summary_changed or self.summary.to_json() != kept

    def retune(self, trainer: Any, callback: Any) -> None:
        """A resumed run's summary holds ``callback``'s watched metrics with the
        ``tolerance`` of their last measurement (a metric measured every few runs may
        not be measured again soon): they get the tolerance of this run, which its
        alerts use and `compare` reads from the file."""
        tolerance = getattr(callback, "tolerance", None)
        if self.summary is None or not isinstance(tolerance, float | int):
            return
        for tag, hist in self.summary.metrics.items():
            if hist.callback != type(callback).__name__ or hist.tolerance in (None, tolerance):
                continue
            if self.writes(trainer, callback, {tag}):  # type: ignore[attr-defined]
                hist.tolerance = float(tolerance)
                self.summary_changed = True

    def write_summary(self, trainer: Any) -> None:
        """Writes ``<log_dir>/lightning_viz/summary.json`` and gives it to every backend
        (global rank 0) when a run added to it: once per epoch end, after every callback
        ran; its seconds count in the overhead budget."""
        changed, self.summary_changed = self.summary_changed, False
        if changed and self.summary is not None and self.log_dir and trainer.is_global_zero:
            if self.resumed_at and not self.summary_found:
                self.warn_once(  # the checkpoint's first callback held it, and is gone
                    "summary lost",
                    f"lightning-viz: this run resumed at epoch {self.resumed_at} without the "
                    "summary of the epochs before (neither in the log dir nor in the checkpoint "
                    "state of a callback here): summary.json and `compare` start at this epoch",
                )
            start = self.budget.clock()
            writers = self.writers  # the run's folder is its first backend's, when dropped
            if writers and writers.log_dir is not None and self.log_dir in writers.dropped_dirs:
                self.log_dir = writers.log_dir  # (a folder that takes no file): the next one's
            with self.shared_write("the run summary"):
                path = self.summary.write(self.log_dir)
                if self.writers:
                    self.writers.summary_file(path)
                changed = False
            self.summary_changed = self.summary_changed or changed  # not written: next time
            self.budget.charge_shared(self.budget.clock() - start)

    def _writers(self, trainer: Any) -> Writers | None:
        """The writers on global rank 0 (when there is a backend), else ``None``."""
        if not trainer.is_global_zero or not self.writers:
            return None
        return self.writers

    def layout(self) -> dict[str, dict[str, list[Any]]]:
        """The custom-scalars layout of every enabled callback, ``viz/`` costs last."""
        active = [cb for cb in self.callbacks if cb._enabled]
        cost = {"cost": {"seconds per run": [cb._seconds_tag() for cb in active]}}
        cost["cost"]["overhead (callback / training seconds)"] = ["viz/overhead"]
        return custom_scalars_layout([*(_own_titles(cb) for cb in active), cost])

    def write_configuration(self, trainer: Any) -> None:
        """Writes the custom-scalars layout and the configuration text, once per run."""
        if self._started:
            return
        self._started = True
        writers = self._writers(trainer)
        if writers is None:
            return
        with self.shared_write("the run's layout and configuration"):
            writers.layout(self.layout())
            active = [cb for cb in self.callbacks if cb._enabled]
            options = {_config_name(cb): cb.config() for cb in active}
            writers.config(options, config_markdown(active), log_step(trainer))
            writers.flush()

    def write_epoch_summary(self, trainer: Any) -> None:
        """Text ``lightning_viz/summary`` at an epoch a probe ran: every probe metric of
        the epoch with its interval and changes, and the epoch's alerts."""
        if self.summary is None:
            return
        epoch, step = int(trainer.current_epoch), log_step(trainer)
        rows = summary_rows(self.summary, epoch)
        if not rows:
            return
        writers = self._writers(trainer)
        if writers is None:
            return
        with self.shared_write("the epoch's summary text"):
            alerts = [a for a in self.summary.alerts if a["epoch"] == epoch]
            writers.epoch_summary(summary_markdown(rows, epoch, step, alerts), rows, step)
            for alert in alerts:
                writers.alert(f"lightning-viz: {alert['metric']} regressed", alert_sentence(alert))
            writers.flush()

    def print_summary(self, trainer: Any) -> None:
        """Every probe metric at its latest run, in the console (Lightning's rank-zero
        logging): the last epoch's table when every probe ran then."""
        if self.summary is None or not trainer.is_global_zero:
            return
        rows = latest_rows(self.summary)
        if rows:
            rank_zero_info(console_table(rows))
