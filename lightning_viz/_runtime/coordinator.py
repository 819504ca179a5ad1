"""What the lightning-viz callbacks on one trainer share.

One :class:`Coordinator` per trainer: the first lightning-viz callback set up on a
trainer creates it and the others find it through their siblings in
``trainer.callbacks`` (:meth:`Coordinator.of`; no module-level registry). Every
callback registers with it at ``setup`` and hands it to its runs through the run
context; a callback never reaches into another
callback's internals, only into the coordinator. It holds the one background worker
(deferred writes, see :meth:`RunLog.defer`) and the messages said once per trainer.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.parameter import is_lazy

from lightning_viz._guard import mark_background_thread
from lightning_viz._runtime.budget import Candidate, OverheadBudget
from lightning_viz._runtime.budget_lines import BudgetLines
from lightning_viz._runtime.compat import (
    MONITORS,
    monitor_name,
    plateau_monitors,
    rank_zero_info,
    rank_zero_warn,
)
from lightning_viz._runtime.distributed import one_probe, rank_world, ranks_without, together
from lightning_viz._runtime.loaders import first_loader, stage_loaders
from lightning_viz._runtime.memory import release_heap
from lightning_viz._runtime.progress import prints_now, shown_bar
from lightning_viz._runtime.run_output import RunOutput
from lightning_viz._runtime.schedule import log_step
from lightning_viz._runtime.writers import (
    SUPPORTED,
    Writers,
    local_dir,
    open_writers,
    remote_log_dirs,
)
from lightning_viz.monitoring.record import RunSummary

__all__ = ["Coordinator", "DeferredJob"]


def _init_worker() -> None:
    """Worker initializer: marks the thread as the background worker (its state guard
    leaves training's RNG streams alone) and lowers its priority, so the background
    work yields the CPU to training (Linux)."""
    mark_background_thread()
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not permitted: normal priority
        pass


def _common_save_dir(trainer: Any, own: str | None) -> str | None:
    """The ``save_dir`` of the trainer's lightning-viz callbacks (any of them may give
    it; they write to one place).

    Raises:
        ValueError: Two of them give different folders.
    """
    given = {
        os.path.abspath(d)
        for cb in getattr(trainer, "callbacks", None) or []
        if hasattr(cb, "_coordinator") and (d := getattr(cb, "save_dir", None)) is not None
    }
    if own is not None:
        given.add(os.path.abspath(own))
    if len(given) > 1:
        raise ValueError(
            f"the lightning-viz callbacks of one trainer write to one folder, but their "
            f"save_dir differ: {sorted(given)}; give save_dir to one of them (or the same "
            "to all)"
        )
    return next(iter(given), None)


@dataclass
class DeferredJob:
    """Work submitted by a callback's run: ``then(result)`` runs on the main thread."""

    owner: Any
    tag: str
    future: Future
    then: Callable[[Any], None] | None
    seconds: list[float] = field(default_factory=list)
    of_run: int = 0  # the index of the owner's run that submitted it
    once: bool = False  # one-time work (the cue-conflict set): counted, never a run's cost
    started: list[float] = field(default_factory=list)  # when the worker took it up


class Coordinator(BudgetLines, RunOutput):
    """Per-trainer shared state of the lightning-viz callbacks.

    Attributes:
        callbacks: The registered callbacks, in registration order.
        background_seconds: Seconds the worker spent on each callback's jobs (by id).
    """

    def __init__(self, trainer: Any = None) -> None:
        self._trainer = None if trainer is None else weakref.ref(trainer)
        self.callbacks: list[Any] = []
        self.summary: RunSummary | None = None  # the run's summary.json, once a logger is known
        self.log_dir: str | None = None
        self.cache_dir: str | None = None  # caches kept between runs (the log dir, or W&B's)
        self.summary_changed = False  # a run added to the summary since it was last written
        self.resumed_at = 0  # the epoch this fit started at (a resumed run: > 0)
        self.summary_found = False  # in the log dir or a checkpoint state: not a new summary
        self.writers: Writers | None = None  # every backend of the trainer, once known
        self._opened = False
        self.background_seconds: dict[int, float] = {}
        self.budget = OverheadBudget(worked=self.unharvested_seconds)
        self._plans: dict[int, list[str]] = {}  # epoch -> keys of the callbacks that run
        self._said: set[str] = set()
        self._claimed: set[str] = set()  # scalar tags lightning-viz has written
        self._executor: ThreadPoolExecutor | None = None
        self._not_again: set[str] = set()  # told: will not run again in this fit
        self._unsaid: dict[str, int] = {}  # intervals set at a fit's last epoch, said later
        self._jobs: list[DeferredJob] = []
        self._started = False  # layout and configuration written
        self._overhead_step: int | None = None  # step of the last viz/overhead written
        self._train_batch: int | None = None
        self._train_batch_found = False
        self._scans: list[tuple[tuple[Any, ...], Any]] = []  # (key, Scan) read this fit
        self._loaders: dict[str, Any] = {}  # stage -> its first dataloader, during setup
        self._finite_at: tuple[int, bool] | None = None  # (step, parameters all finite)

    def serves(self, trainer: Any) -> bool:
        """Whether this is the coordinator of ``trainer``."""
        return self._trainer is not None and self._trainer() is trainer

    @classmethod
    def of(cls, trainer: Any) -> Coordinator:
        """The coordinator of ``trainer``: the one its lightning-viz callbacks hold (found
        through ``trainer.callbacks``), else a new one for it."""
        for cb in getattr(trainer, "callbacks", None) or []:
            held = getattr(cb, "_coordinator", None)
            if isinstance(held, Coordinator) and held.serves(trainer):
                return held
        return cls(trainer)

    def register(self, callback: Any) -> None:
        """Adds ``callback`` (once).

        Raises:
            ValueError: Another callback writes under its tag prefix (two
                ``AdversarialProbe``s with different eps, or an ``AdversarialProbe`` and a
                ``CorruptionProbe`` both under ``"ema"``, would share tags such as
                ``<prefix>/clean_acc`` and ``<prefix>/regression``).
        """
        if any(cb is callback for cb in self.callbacks):
            return
        prefix = callback.tag_prefix
        other = next((cb for cb in self.callbacks if cb.tag_prefix == prefix), None)
        if other is not None:
            name, theirs = type(callback).__name__, type(other).__name__
            both = f"two {name} callbacks" if theirs == name else f"{theirs} and {name}"
            example = f"{name}(..., tag_prefix='{callback.family}_2')"
            if other.family != callback.family:
                example = f"'{prefix}/{other.family}' and '{prefix}/{callback.family}'"
            raise ValueError(
                f"{both} write under the same tag prefix {prefix!r}, so their "
                "values would land on the same tags (its regression scalar, its images...); "
                f"give each its own `tag_prefix` (e.g. {example})"
            )
        self.callbacks.append(callback)

    def open_writers(self, trainer: Any, save_dir: str | None = None) -> Writers | None:
        """The trainer's writers, built once (see
        :func:`~lightning_viz._runtime.writers.open_writers`); ``None`` when there is
        nowhere to write. Loads (a resumed run) or starts the run's summary in the
        run's local folder; says once which loggers have no backend."""
        if self._opened:
            return self.writers
        self._opened = True
        save_dir = _common_save_dir(trainer, save_dir)
        self.writers, unsupported = open_writers(trainer, save_dir)
        if self.writers is None:
            return None
        self.writers.strict = self.raises
        if unsupported:
            used = ", ".join(b.name for b in self.writers.backends) or "the other loggers"
            rank_zero_warn(
                f"lightning-viz: {', '.join(unsupported)} has no lightning-viz backend and gets "
                f"nothing; lightning-viz writes to {used} (supported: {', '.join(SUPPORTED)}, "
                "or save_dir= when no logger has one)"
            )
        for url, stand_in in remote_log_dirs(trainer):
            self.warn_once(
                f"remote {url}",
                f"lightning-viz: the logger writes to {url}, where lightning-viz cannot write "
                f"its own files (summary.json, projector and image files); they are kept in "
                f"{stand_in} (what goes through the logger still goes to {url})",
            )
        local = local_dir(trainer, save_dir)
        log_dir = local or self.writers.log_dir
        self.log_dir = log_dir
        self.cache_dir = local or self.writers.cache_dir
        self.summary = RunSummary() if log_dir is None else self._load_summary(log_dir)
        return self.writers

    def say(self, trainer: Any, text: str) -> None:
        """Prints through the progress bar (which is not torn) while it shows one, or
        warns (rank 0)."""
        if not trainer.is_global_zero:
            return
        bar = shown_bar(trainer)
        if bar is not None and prints_now(bar):
            bar.print(text)
        else:
            rank_zero_warn(text)

    # ------------------------------------------------------------ overhead budget
    def allows(self, callback: Any, trainer: Any) -> bool:
        """Whether ``callback`` (due by its own schedule) runs at this epoch end.

        The plan of the epoch is made once, at the first question, on global rank 0,
        and broadcast, so every rank runs the same probes the same epochs.
        """
        if callback.max_overhead is None:  # a fixed cost from its first run on, not only
            self.budget.unbudgeted.add(callback.state_key)  # from the first plan's
            self.budget.every[callback.state_key] = callback.every_n_epochs
            return True
        epoch = int(trainer.current_epoch)
        if epoch not in self._plans:
            self._plans[epoch] = self._plan(trainer, epoch)
        return callback.state_key in self._plans[epoch]

    @staticmethod
    def monitors_of(trainer: Any, callback: Any = None) -> list[Any]:
        """The trainer's ``EarlyStopping``/``ModelCheckpoint`` callbacks (subclasses too)
        with a ``monitor`` and its ``ReduceLROnPlateau`` schedulers with one
        (:class:`PlateauMonitor`); with ``callback``, those that watch a metric it writes."""
        callbacks = getattr(trainer, "callbacks", None) or []
        found = [
            cb for cb in callbacks if isinstance(cb, MONITORS) and getattr(cb, "monitor", None)
        ]
        return [
            cb
            for cb in [*found, *plateau_monitors(trainer)]
            if callback is None or Coordinator.writes(trainer, callback, {str(cb.monitor)})
        ]

    @staticmethod
    def writes(trainer: Any, callback: Any, tags: set[str]) -> bool:
        """Whether ``callback`` writes one of ``tags``: one it names
        (``VizCallback.known_tags``), or one under its ``tag_prefix`` that no other
        lightning-viz callback of the trainer names or holds under a longer prefix
        (``bias/saliency_in_mask`` is the ``SaliencyLogger``'s, not
        ``TextureShapeBias``'s; ``bias/confidence/mean`` the callback's with
        ``tag_prefix="bias/confidence"``, also before its first run)."""
        others = [
            cb
            for cb in getattr(trainer, "callbacks", None) or []
            if cb is not callback and hasattr(cb, "known_tags")
        ]
        known, theirs = callback.known_tags(), set().union(*(cb.known_tags() for cb in others))
        prefix = f"{callback.tag_prefix}/"
        longer = [p for cb in others if len(p := f"{cb.tag_prefix}/") > len(prefix)]
        return any(
            t in known
            or (
                t.startswith(prefix)
                and t not in theirs
                and not any(t.startswith(p) for p in longer)
            )
            for t in tags
        )

    def _plan(self, trainer: Any, epoch: int) -> list[str]:
        budgeted = [cb for cb in self.callbacks if cb.max_overhead is not None]
        live = {cb.state_key for cb in self.callbacks if getattr(cb, "_enabled", True)}
        self.budget.forget(set(self.budget.cost) - live)  # turned off: their share is free
        # max_overhead=None runs whenever due: a fixed cost, as a monitored callback's
        free = {cb.state_key: cb.every_n_epochs for cb in self.callbacks if cb not in budgeted}
        self.budget.unbudgeted = set(free)  # as now set: max_overhead may change between fits
        self.budget.every.update(free)  # its cost an epoch: a run's over every_n_epochs
        monitored = {str(cb.monitor) for cb in self.monitors_of(trainer)}
        candidates = [
            Candidate(cb.state_key, cb.every_n_epochs, self.writes(trainer, cb, monitored))
            for cb in budgeted
            if cb.scheduled(trainer)
        ]
        limit = min(cb.max_overhead for cb in budgeted) if budgeted else None
        allowance = min(cb.overhead_allowance for cb in budgeted) if budgeted else 0.0
        run, changed = self.budget.plan(epoch, candidates, limit, allowance)
        if getattr(trainer, "world_size", 1) > 1:
            run = trainer.strategy.broadcast(run, src=0)
        names = {cb.state_key: cb for cb in budgeted}
        unsaid = {k: n for k, n in self._unsaid.items() if self.budget.interval.get(k) == n}
        for key, interval in {**unsaid, **changed}.items():  # one set at a last epoch, too
            cb = names.get(key)
            if cb is not None:
                self._say_interval(trainer, epoch, cb, interval, limit, allowance)
        return run

    def log_overhead(self, trainer: Any) -> None:
        """``viz/overhead`` (the fit so far) into ``trainer.callback_metrics``, and to
        the loggers at the current step (global rank 0) once per step: at the fit's end,
        at the step of the last epoch end, only ``callback_metrics`` takes the whole
        fit's value (two points at one step draw a vertical line in TensorBoard)."""
        value = self.budget.overhead()
        self.claim(trainer, "viz/overhead")
        trainer.callback_metrics["viz/overhead"] = torch.tensor(value)
        writers = self._writers(trainer)
        step = log_step(trainer)
        if writers is not None and math.isfinite(value) and step != self._overhead_step:
            self._overhead_step = step
            with self.shared_write("viz/overhead"):
                writers.scalar("viz/overhead", value, step)
                writers.flush()

    # ------------------------------------------------------------ the dashboard
    def start_run(self, trainer: Any, callback: Any) -> None:
        """At the training start (each callback calls it): ``setup``'s probe scans and
        loaders are let go (every callback has its copy); the layout and configuration are
        written, once per run; the backends an earlier fit dropped are tried again."""
        self._scans.clear()
        self._loaders.clear()
        if self.writers is not None and self.callbacks[:1] == [callback]:  # once a fit
            self.writers.reopen()
        with self.together(trainer):  # rank 0 writes: every rank hears of a failure
            self.write_configuration(trainer)
        self.check_monitored_tags(trainer)

    def check_monitored_tags(self, trainer: Any) -> None:
        """Says once when a monitor (:meth:`monitors_of`) watches a tag under a
        lightning-viz callback's ``tag_prefix`` that no callback names (a typo, or an
        ``eps`` the probe does not measure): Lightning stops the fit at its first check,
        after a whole epoch, and its message does not say what is written."""
        ours = [
            cb
            for cb in getattr(trainer, "callbacks", None) or []
            if hasattr(cb, "known_tags") and getattr(cb, "_enabled", False)
        ]
        named = set().union(*(cb.known_tags() for cb in ours))
        for monitor in self.monitors_of(trainer):
            tag = str(monitor.monitor)
            owners = [cb for cb in ours if tag.startswith(f"{cb.tag_prefix}/")]
            if not owners or tag in named:
                continue
            theirs = sorted(set().union(*(cb.known_tags() for cb in owners)))
            close = difflib.get_close_matches(tag, theirs, n=1, cutoff=0.5)
            self.warn_once(
                f"unwritten {tag}",
                f"lightning-viz: {monitor_name(monitor)}(monitor={tag!r}) watches a tag that "
                f"no lightning-viz callback of this trainer names"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; {', '.join(type(cb).__name__ for cb in owners)} writes "
                + (", ".join(theirs[:8]) + (", ..." if len(theirs) > 8 else "") or "none yet")
                + ". If nothing writes it (nor your LightningModule's self.log), Lightning "
                "stops the fit at its first check",
            )

    def info_once(self, key: str, message: str) -> None:
        """Says ``message`` once per trainer for ``key`` (Lightning's rank-zero info)."""
        if key not in self._said:
            self._said.add(key)
            rank_zero_info(message)

    def train_batch_size(self, trainer: Any, find: Callable[[], int | None]) -> int | None:
        """The training batch size, found once per trainer with ``find()``."""
        if not self._train_batch_found:
            self._train_batch_found = True
            try:
                self._train_batch = find()
            except Exception:  # noqa: BLE001 - a loader that cannot be built says nothing
                self._train_batch = None
        return self._train_batch

    def stage_loader(self, trainer: Any, stage: str) -> Any:
        """The fit's first ``"val"`` or ``"train"`` dataloader (``None`` when none), built
        once for every callback's setup: the user's ``*_dataloader`` hook may be costly
        (a folder scan), and a new dataset each call would defeat :meth:`shared_scan`."""
        return first_loader(self.stage_loaders(trainer, stage))

    def stage_loaders(self, trainer: Any, stage: str) -> Any:
        """What the fit's ``"val"`` or ``"train"`` dataloader hook returns, built once
        (see :meth:`stage_loader`)."""
        if stage not in self._loaders:
            self._loaders[stage] = stage_loaders(trainer, stage)
        return self._loaders[stage]

    def shared_scan(self, key: tuple[Any, ...], need: int, read: Callable[[], Any]) -> Any:
        """The scan of the data ``key`` names, read once per trainer.

        ``read()`` runs the first time, or again when a callback needs a larger pick
        than the cached scan kept (``need`` above its ``keep``). ``key`` holds the
        objects themselves (compared by identity, numbers by value), so they stay alive
        while cached. Decoding up to 2,048 validation images once instead of once per
        callback is most of ``setup``'s time at ImageNet size.
        """
        for i, (cached_key, cached) in enumerate(self._scans):
            if len(cached_key) == len(key) and all(
                a is b or (type(a) in (int, str, type(None)) and a == b)
                for a, b in zip(cached_key, key, strict=True)
            ):
                if cached.keep >= need:
                    return cached
                del self._scans[i]
                break
        fresh = read()
        self._scans.append((key, fresh))
        return fresh

    def claim(self, trainer: Any, tag: str) -> None:
        """Before lightning-viz first writes scalar ``tag``: warns once when something
        else (the LightningModule's ``self.log``) already logged it, so two series
        would share one chart."""
        if tag in self._claimed:
            return
        self._claimed.add(tag)
        if tag in trainer.callback_metrics or tag in getattr(trainer, "logged_metrics", {}):
            self.warn_once(
                f"claimed {tag}",
                f"lightning-viz: the scalar {tag!r} that it writes is also logged by something "
                "else (your LightningModule's self.log?): the two series mix in one chart and "
                "in callback_metrics. Rename yours, or give the callback a `tag_prefix=`",
            )

    def model_finite(self, trainer: Any) -> bool:
        """Whether the model's parameters and its normalization layers' running statistics
        (BatchNorm's) are all finite, checked once per step for all callbacks. Other
        buffers are not read: one may hold -inf on purpose (an attention mask) or NaN until
        it is set (a temperature calibrated after training). A diverged model is said once;
        no run observes it (the argmax of NaN outputs is class 0). Under DDP the ranks
        agree (BatchNorm's statistics are each rank's own): one skips, all skip."""
        step = trainer.global_step
        if self._finite_at is None or self._finite_at[0] != step:
            module = trainer.lightning_module
            tensors = [p.detach() for p in module.parameters() if not is_lazy(p)] + [
                stat
                for m in module.modules()
                if getattr(m, "track_running_stats", False)
                for stat in (getattr(m, "running_mean", None), getattr(m, "running_var", None))
                if isinstance(stat, torch.Tensor) and not is_lazy(stat)
            ]
            finite = all(bool(torch.isfinite(t).all()) for t in tensors)
            off = ranks_without(trainer, finite)  # (every rank's word under DDP)
            where = f", on rank {', '.join(map(str, off))}" if rank_world(trainer)[1] > 1 else ""
            self._finite_at = (step, not off)
            if off:
                self.warn_once(
                    "non-finite parameters",
                    "lightning-viz: the model's parameters or normalization statistics hold "
                    f"NaN or inf at epoch {trainer.current_epoch} (step {step}{where}): the "
                    "training diverged. The callbacks skip their runs while it does and write "
                    "nothing (no map, accuracy or score of a NaN model)",
                )
        return self._finite_at[1]

    def warn_once(self, key: str, message: str) -> None:
        """Warns ``message`` once per trainer for ``key`` (a message all callbacks share)."""
        if key not in self._said:
            self._said.add(key)
            rank_zero_warn(message)

    # ------------------------------------------------------------ deferred work
    def pending(self, tag: str) -> int:
        """Jobs for ``tag`` not done yet (for back-pressure)."""
        return sum(1 for job in self._jobs if job.tag == tag and not job.future.done())

    def busy_with(self) -> str:
        """What the worker is on: ``"<Owner>'s <tag>"`` of the first job not done, or ``""``."""
        job = next((j for j in self._jobs if not j.future.done()), None)
        return "" if job is None else f"{type(job.owner).__name__}'s {job.tag}"

    def defer(
        self,
        owner: Any,
        tag: str,
        fn: Callable[..., Any],
        *args: Any,
        then: Any = None,
        once: bool = False,
    ) -> None:
        """Runs ``fn(*args)`` on the one low-priority worker thread, in submission order.

        ``then(result)`` runs on the main thread when the job is harvested. A failure is
        given to ``owner.deferred_failed(err)`` (its ``on_error`` policy) at the harvest.
        Its seconds are the cost of the owner's run that submitted it, or with ``once``
        one-time work (counted in the overhead, never a run's cost).
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="lightning-viz", initializer=_init_worker
            )
        seconds: list[float] = []
        started: list[float] = []

        def timed() -> Any:
            start = time.perf_counter()
            started.append(start)
            try:
                return fn(*args)
            finally:
                release_heap()
                seconds.append(time.perf_counter() - start)

        future = self._executor.submit(timed)
        run = self.budget.runs_done.get(owner.state_key, 0)  # the run in progress
        self._jobs.append(DeferredJob(owner, tag, future, then, seconds, run, once, started))

    def unharvested_seconds(self) -> float:
        """Seconds the worker spent so far on the jobs not harvested yet (charged only
        when harvested): the finished ones' and the running one's so far."""
        now = time.perf_counter()
        return sum(
            sum(job.seconds) if job.seconds else (now - job.started[0]) if job.started else 0.0
            for job in list(self._jobs)
        )

    def picked_probe(self, trainer: Any, callback: Any) -> Any:
        """``callback._load_probe``; under DDP rank 0's, once every rank has one (or left)."""
        with together(trainer, True):
            probe = callback._load_probe(trainer)  # noqa: SLF001 - the callbacks' own step
        return one_probe(trainer, probe, callback._probe_from, self.warn_once)  # noqa: SLF001

    def harvest_before_run(self, trainer: Any) -> None:  # every rank hears of a failure
        with self.together(trainer):
            self.harvest()

    def harvest(self, wait: bool = False) -> None:
        """Finishes the jobs that are done (all of them when ``wait``), in submission order.

        One worker runs the jobs in order, so the first unfinished job ends the harvest.
        """
        while self._jobs and (wait or self._jobs[0].future.done()):
            job = self._jobs.pop(0)
            try:
                result = job.future.result()
                if job.then is not None:
                    job.then(result)
            except Exception as err:  # noqa: BLE001 - the owner's on_error decides
                job.owner.deferred_failed(err)
            finally:
                key = id(job.owner)
                seconds = sum(job.seconds)
                self.background_seconds[key] = self.background_seconds.get(key, 0.0) + seconds
                self.budget.charge(
                    job.owner.state_key,
                    seconds,
                    run=False,
                    once=job.once,
                    background=True,
                    of_run=job.of_run,
                )

    def shutdown(self, wait: bool) -> None:
        """Finishes (``wait``) or cancels the pending jobs and stops the worker; the jobs
        already done are finished either way (a failed fit keeps their work)."""
        settle = not wait  # a failed fit waits a little for its queued work
        try:
            if wait:
                self.harvest(wait=True)
        except KeyboardInterrupt:  # Ctrl-C in the wait: the worker is not joined (its
            wait = False  # running job stops at the fit's on_exception), nor waited for
            raise
        finally:
            if not wait:  # a failed fit: its own error stands, not a job's (on_error=
                # "raise"), and a job's error does not drop the finished jobs after it
                if settle:
                    self._settle()
                while self._jobs and self._jobs[0].future.done():
                    with contextlib.suppress(Exception):
                        self.harvest()
                for job in self._jobs:
                    job.future.cancel()
                self._jobs = []
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=wait, cancel_futures=not wait)

    def _settle(self) -> None:
        """A failed fit (an error, Ctrl-C) gives its finished epochs' queued work (figures,
        projector files; not cue-conflict images) :data:`SETTLE_SECONDS`; Ctrl-C skips it."""
        deadline = time.perf_counter() + SETTLE_SECONDS
        with contextlib.suppress(KeyboardInterrupt):
            for job in list(self._jobs):
                left = deadline - time.perf_counter()
                if (job.once and not job.future.done()) or left <= 0:
                    break
                futures_wait([job.future], timeout=left)


SETTLE_SECONDS = 10.0  # a failed fit waits at most this long for its queued work
