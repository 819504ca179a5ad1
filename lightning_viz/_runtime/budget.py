"""The shared overhead budget: which due callbacks run at an epoch end.

The lightning-viz callbacks on one trainer together spend at most ``max_overhead`` of
the training time so far: ``overhead = callback seconds / (fit seconds - callback
seconds)``, callback seconds counting every run, every setup and the background work.
Pure logic on seconds (the coordinator feeds it and decides on global rank 0), so it
is tested with made-up costs.

The rule, at each epoch end, for the callbacks due by their ``every_n_epochs``:

1. A callback's first due run always happens, and so does every run of a callback
   whose metric an ``EarlyStopping``/``ModelCheckpoint`` monitors (a stale value
   would count as no improvement). Both are charged: ``viz/overhead`` counts them.
2. Steady state: each other callback gets an interval ``k`` (a multiple of its
   ``every_n_epochs``) so that ``sum(cost / k) <= max_overhead * epoch seconds``; the
   costliest (largest ``cost / k``) is spaced out first. A callback runs only when at
   least ``k`` epochs passed since its last run. Epoch seconds are the median of the
   epochs so far and a cost the median of the callback's runs. The intervals are
   worked out anew only when a cost or the epoch's budget moved by more than a tenth
   since they last were, and then an interval moves only by more than a tenth up or a
   quarter down, so timing noise does not make the intervals (and the lines
   announcing them) flicker.
3. Recurring total: the cheapest due callbacks run first, as long as the recurring
   work (every run after a callback's first, without one-time work such as building
   cue-conflict images) stays within ``max_overhead`` of the training time so far;
   the costliest wait. First runs and one-time work do not hold the others back, so
   the views keep coming after an expensive start.
4. Absolute allowance: besides the fraction, the callbacks may always spend
   ``allowance`` seconds per epoch (the recurring total may reach ``allowance`` times
   the epochs planned so far), so views that cost a fraction of a second run every
   due epoch on a short fit; the fraction governs once the probes cost real time.
   A callback's budget cost is the median of its recent runs: the seconds of the run
   on the training thread (what ``viz/<Class>/seconds`` shows, without one-time work)
   plus the background work the run left to the worker thread.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Candidate", "OverheadBudget", "device_clock"]

MAX_INTERVAL = 10_000  # epochs: an interval beyond it means the callback cannot run

_WINDOW = 50  # epochs (and runs) the medians look back on
# the share of the budget the callbacks no monitor reads keep at least, however much the
# monitored ones (never spaced out) cost: one costly monitored probe does not stop them all
OTHERS_SHARE = 0.25


def device_clock(module: Any, *, strict: bool = True) -> float:
    """The clock, after the module's CUDA work is done (so GPU time is counted). With
    ``strict=False`` (after a failed run) a device in an error state is not waited for."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    if device.type == "cuda":
        with contextlib.suppress(*(() if strict else (RuntimeError,))):
            torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass(frozen=True)
class Candidate:
    """A callback due by its own schedule at this epoch end."""

    key: str
    every_n_epochs: int = 1
    protected: bool = False  # monitored by EarlyStopping/ModelCheckpoint: never spaced out


class OverheadBudget:
    """Seconds spent by the callbacks, and the plan of which due callbacks run.

    Args:
        clock: The clock (seconds). Default: ``time.perf_counter``.
        worked: The seconds the background worker has spent so far on work not charged
            yet (see :meth:`train_starts`). Default: ``None`` (none).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        worked: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock
        self.worked = worked  # background seconds done so far, not charged yet
        self.start: float | None = None
        self._paused_at: float | None = None  # the clock stopped there (between fits)
        self.spent = 0.0  # callback seconds: runs, setups, background work
        self.background = 0.0  # of which on the worker thread, alongside training
        self.recurring = 0.0  # runs after each callback's first, one-time work excluded
        self.protected_recurring = 0.0  # of which the monitored callbacks'
        self.cost: dict[str, float] = {}  # seconds of each callback's latest run
        self.totals: dict[str, float] = {}  # all seconds of each callback in this fit
        self.last_run: dict[str, int] = {}  # epoch of each callback's latest run
        self.interval: dict[str, int] = {}  # current steady-state interval (epochs)
        self.every: dict[str, int] = {}  # each callback's own every_n_epochs
        self.protected: set[str] = set()  # monitored callbacks: never spaced out
        self.unbudgeted: set[str] = set()  # max_overhead=None: run whenever due, a fixed cost
        self._epochs: list[float] = []  # training seconds of each epoch so far
        self._runs: dict[str, list[float]] = {}  # each callback's recent run costs
        self._background_runs: dict[str, list[float]] = {}  # of which background work
        self.runs_done: dict[str, int] = {}  # runs of each callback so far (its next run's index)
        self.one_time: dict[str, float] = {}  # one-time seconds of each callback (never a cost)
        self.planned_epochs = 0  # epoch ends planned with a budget
        self._mark: tuple[float, float] | None = None  # (elapsed, spent) at the last plan
        self._planned_at: int | None = None  # the epoch of the last plan
        self._carried = 0  # epochs the fit before trained after its last plan
        self._basis: tuple[Any, ...] | None = None  # what the intervals were worked out from
        self._begun: tuple[float, float] | None = None  # (clock, spent) at begin, until training
        self.suspended = False  # runs outside the budget: every due one runs, none charged

    # ------------------------------------------------------------------ seconds
    def begin(self) -> None:
        """Starts the fit's clock (once), or restarts it after :meth:`pause`."""
        now = self.clock()
        if self.start is None:
            self.start = now
            self._begun = (now, self.spent)
        elif self._paused_at is not None:  # the time between two fits is no training time
            self.start += now - self._paused_at
            self._paused_at = None
            self._begun = (now, self.spent)

    def train_starts(self) -> None:
        """Training starts (``on_train_start``): the wall time since :meth:`begin` that
        no callback spent — Lightning's setup, the sanity check, a tuner's learning-rate
        or batch-size search (its mini-fit) — is no training time. Once per fit. The
        background worker's seconds in it that are not charged yet stay (``worked``):
        charged when collected, as work beside training, they would be left out twice.
        """
        if self._begun is None or self.start is None or self._paused_at is not None:
            return
        since, spent = self._begun
        self._begun = None
        pending = self.worked() if self.worked is not None else 0.0
        idle = (self.clock() - since) - (self.spent - spent) - pending
        if idle > 0:
            self.start += idle

    def pause(self, epoch: int | None = None) -> None:
        """Stops the clock at the end of a fit (``trainer.fit`` again continues it);
        ``epoch``: the trainer's ``current_epoch`` then (the epochs it trained after the
        last plan are in the time the next fit's first plan shares out). A fit that
        never started training (``Tuner.lr_find``'s) adds no training time."""
        self.train_starts()
        if self.start is not None and self._paused_at is None:
            self._paused_at = self.clock()
            if epoch is not None and self._planned_at is not None:
                self._carried = max(epoch - 1 - self._planned_at, 0)

    def rewind(self, epoch: int) -> None:
        """A fit that starts at ``epoch`` (again, from an earlier checkpoint on the same
        trainer): runs planned at that epoch or later are forgotten. Its first plan
        covers the epochs from there, and those the fit before trained after its last
        plan (their time is in the same span)."""
        self.last_run = {key: e for key, e in self.last_run.items() if e < epoch}
        self._planned_at = epoch - 1 - self._carried

    def elapsed(self) -> float:
        """Seconds of fitting since :meth:`begin` (without the pauses between fits)."""
        if self.start is None:
            return 0.0
        now = self.clock() if self._paused_at is None else self._paused_at
        return now - self.start

    def charge(
        self,
        key: str,
        seconds: float,
        *,
        run: bool = True,
        once: bool = False,
        background: bool = False,
        of_run: int | None = None,
    ) -> None:
        """Counts ``seconds`` of callback work.

        Args:
            key: The callback.
            seconds: How long.
            run: A run's seconds (they are its cost); ``False`` for setup and background
                work (background work adds to the cost of the run that submitted it).
            once: One-time work (setup, a cache built once): counted, never a cost.
            background: Work done on the worker thread (with ``run=False``).
            of_run: The index of the run that submitted the background work
                (``runs_done`` then); ``None``: the latest run.
        """
        if self.suspended:  # (a skipped epoch measured at the training start: _resume)
            return
        self.spent += seconds
        if background:
            self.background += seconds
        self.totals[key] = self.totals.get(key, 0.0) + seconds
        if once:
            self.one_time[key] = self.one_time.get(key, 0.0) + seconds
            return
        done = self.runs_done.get(key, 0)
        index = done if run else done - 1 if of_run is None else of_run
        recurring = index > 0  # not the callback's first run (nor that run's background)
        if run:
            self.runs_done[key] = done + 1
            self.cost[key] = seconds
            self._runs.setdefault(key, []).append(seconds)
            self._background_runs.setdefault(key, []).append(0.0)
            del self._runs[key][:-_WINDOW]
            del self._background_runs[key][:-_WINDOW]
        elif key in self._runs:  # background work: the cost of the run that submitted it
            at = index - (done - len(self._runs[key]))  # its place in the recent runs
            if 0 <= at < len(self._runs[key]):  # (a run out of the window: counted only)
                self._runs[key][at] += seconds
                self._background_runs[key][at] += seconds
                if at == len(self._runs[key]) - 1:
                    self.cost[key] += seconds
        if recurring:
            self.recurring += seconds
            if key in self.protected or key in self.unbudgeted:
                self.protected_recurring += seconds

    def forget(self, keys: set[str]) -> None:
        """Callbacks turned off: their costs leave the plan (their seconds stay spent)."""
        for key in keys:
            for table in (self._runs, self._background_runs, self.cost, self.interval):
                table.pop(key, None)

    def charge_shared(self, seconds: float) -> None:
        """Counts ``seconds`` of work no one callback owns (the run summary written at
        each epoch end): part of the overhead and of the recurring total, no callback's
        cost."""
        self.spent += seconds
        self.recurring += seconds

    def overhead(self) -> float:
        """Callback seconds over the rest of the fit's seconds so far.

        Background work is counted as if it had stopped training (on a busy machine
        it takes about that much from it), for at most half of the wall time the
        training thread spent outside the callbacks (see :func:`_training`).
        """
        training = _training(self.elapsed(), self.spent, self.background)
        return self.spent / training if training > 0 else math.inf if self.spent else 0.0

    def run_cost(self, key: str) -> tuple[float, float, int]:
        """What the budget counts as ``key``'s cost: ``(median seconds a run, of which
        background work (median), runs it is the median of)``; zeros before a run."""
        runs = self._runs.get(key)
        if not runs:
            return 0.0, 0.0, 0
        background = self._background_runs.get(key) or [0.0]
        return statistics.median(runs), statistics.median(background), len(runs)

    # ------------------------------------------------------------------- plan
    def plan(
        self,
        epoch: int,
        candidates: list[Candidate],
        max_overhead: float | None,
        allowance: float = 0.0,
    ) -> tuple[list[str], dict[str, int]]:
        """Which of the due ``candidates`` run at ``epoch``.

        Args:
            epoch: The epoch that ends.
            candidates: The callbacks due by their own schedule.
            max_overhead: The fraction of the training time; ``None``: all run.
            allowance: Seconds per epoch the callbacks may always spend (besides the
                fraction). Default: 0.

        Returns:
            ``(keys that run, changed intervals {key: new interval})``.
        """
        elapsed = self.elapsed()
        last = self._mark or (0.0, 0.0, 0.0)
        self._mark = (elapsed, self.spent, self.background)
        if max_overhead is None:
            return [c.key for c in candidates], {}
        # epochs since the last plan: one, or more when no callback was due in between
        # (every_n_epochs > 1 on all of them); the time is shared out over them
        since = self._planned_at
        gap = epoch - since if since is not None and epoch > since else 1
        self._planned_at = epoch
        self.planned_epochs += gap
        deltas = (elapsed - last[0], self.spent - last[1], self.background - last[2])
        self._epochs.extend([max(_training(*deltas) / gap, 1e-9)] * min(gap, _WINDOW))
        del self._epochs[:-_WINDOW]
        per_epoch = max(max_overhead * statistics.median(self._epochs), allowance)
        changed = self._intervals(candidates, per_epoch)
        training = max(_training(elapsed, self.spent, self.background), 1e-9)
        allowed = max(max_overhead * training, allowance * self.planned_epochs)
        # the others' share: what the monitored callbacks (never spaced out) leave of the
        # budget, and at least OTHERS_SHARE of it (the cheap views keep running)
        planned = self.recurring - self.protected_recurring
        forced = self.protected_recurring
        run: list[str] = []
        waiting: list[Candidate] = []
        for c in candidates:
            if c.key not in self.last_run or c.protected:
                run.append(c.key)
                cost = self.cost.get(c.key, 0.0) if c.key in self.last_run else 0.0
                if c.protected:
                    forced += cost
                else:
                    planned += cost
            elif epoch - self.last_run[c.key] >= self.interval.get(c.key, c.every_n_epochs):
                waiting.append(c)
        allowed = max(allowed - forced, OTHERS_SHARE * allowed)
        for c in sorted(waiting, key=lambda c: self.cost.get(c.key, 0.0)):  # cheapest first
            cost = self.cost.get(c.key, 0.0)
            if planned + cost <= allowed:
                run.append(c.key)
                planned += cost
        for key in run:
            self.last_run[key] = epoch
        return run, changed

    def _intervals(self, candidates: list[Candidate], per_epoch: float) -> dict[str, int]:
        """Intervals so that ``sum(cost / interval) <= per_epoch``, the costliest spaced
        out first; returns the ones that changed."""
        self.every.update({c.key: c.every_n_epochs for c in candidates})
        # monitored ones stay fixed also at the epochs they are not due (every_n_epochs > 1)
        self.protected.update(c.key for c in candidates if c.protected)
        fixed = self.protected | self.unbudgeted
        cost = {key: statistics.median(runs) for key, runs in self._runs.items()}
        k = {key: self.every.get(key, 1) for key in cost}
        fixed_cost = sum(cost[key] / k[key] for key in k if key in fixed)
        room = max(per_epoch - fixed_cost, OTHERS_SHARE * per_epoch)  # see plan
        # the intervals are worked out anew only when a cost or the room moved by more
        # than a tenth since they last were (timing noise: a cost near the room would
        # flip an interval between 1 and 2, a tie between two callbacks which one waits)
        basis = (room, cost, frozenset(fixed), dict(k))
        if self._basis is not None and _near(self._basis, basis):
            return {}
        self._basis = basis
        while sum(cost[key] / k[key] for key in k if key not in fixed) > room:
            adjustable = [key for key in k if key not in fixed and cost[key] > 0]
            if not adjustable:
                break
            worst = max(adjustable, key=lambda key: cost[key] / k[key])
            k[worst] += self.every.get(worst, 1)
            if k[worst] > MAX_INTERVAL:  # a budget too small for anything: stop here
                break
        previous = {key: self.interval.get(key, self.every.get(key, 1)) for key in k}
        for key, n in k.items():  # move by more than a tenth up, a quarter down (noise)
            if previous[key] * 0.75 <= n <= previous[key] * 1.1:
                k[key] = previous[key]
        changed = {key: n for key, n in k.items() if previous[key] != n}
        self.interval.update(k)
        return changed


def _near(before: tuple[Any, ...], now: tuple[Any, ...], tenth: float = 0.1) -> bool:
    """Whether ``(room, costs, fixed keys, every_n_epochs)`` are those of ``before`` up
    to a tenth of each number."""

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= tenth * max(abs(a), abs(b))

    (room0, cost0, fixed0, every0), (room1, cost1, fixed1, every1) = before, now
    return (
        close(room0, room1)
        and fixed0 == fixed1
        and every0 == every1
        and cost0.keys() == cost1.keys()
        and all(close(cost0[key], cost1[key]) for key in cost1)
    )


def _training(elapsed: float, spent: float, background: float) -> float:
    """Training seconds in ``elapsed`` wall seconds with ``spent`` callback seconds, of
    which ``background`` on the worker thread: the training thread's time outside the
    callbacks, less the background work as if it had stopped training, but by at most
    half of it (the worker is one thread beside training; counting more would send the
    overhead to infinity when the background work nears the training time)."""
    outside = elapsed - (spent - background)
    return max(outside - background, outside / 2)
