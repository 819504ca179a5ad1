"""The overhead budget's words to the user: what a callback costs, and the one line
said when the budget spaces it out (a mixin of the trainer's ``Coordinator``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning_viz._runtime.budget import MAX_INTERVAL

__all__ = ["BudgetLines"]


def _secs(seconds: float) -> str:
    """Seconds in words, two significant digits for small values (``0.044 s``)."""
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2g} s"


class BudgetLines:
    """Mixin: the lines of the budget; needs ``budget``, ``callbacks``, ``say`` and
    ``_not_again`` (the callbacks told that they will not run again in this fit)."""

    budget: Any
    callbacks: list[Any]
    _not_again: set[str]
    _unsaid: dict[str, int]
    say: Callable[[Any, str], None]

    def cost_words(self, callback: Any) -> str:
        """The cost the budget uses for ``callback``, in words: the median of its runs,
        split into the epoch-end seconds (``viz/<Class>/seconds``, without one-time
        work) and the background work; one-time work is named as not counted."""
        key, name = callback.state_key, type(callback).__name__
        total, background, runs = self.budget.run_cost(key)
        if runs == 0:
            return "it has not run yet"
        median = "" if runs == 1 else f" (median of its last {runs} runs)"
        text = (
            f"it costs {_secs(total)} a run{median}: {_secs(total - background)} at the epoch end"
        )
        text += f" (viz/{name}/seconds)"
        if background > 0:
            text += f" + {_secs(background)} of background work on the worker thread"
        once = self.budget.one_time.get(key, 0.0)
        if once > 0:
            text += f"; its setup and one-time work ({_secs(once)}) count in viz/overhead, not here"
        return text

    def _costlier_words(self, callback: Any) -> str:
        """``"; the costliest, <Class>, costs <s> a run"`` when another callback of the
        trainer costs more a run than ``callback`` (what the budget went to), else ``""``."""
        own = self.budget.run_cost(callback.state_key)[0]
        costs = [
            (self.budget.run_cost(cb.state_key)[0], type(cb).__name__)
            for cb in self.callbacks
            if cb is not callback and self.budget.run_cost(cb.state_key)[2] > 0
        ]
        top = max(costs, default=None)
        if top is None or top[0] <= own:
            return ""
        return f"; the costliest, {top[1]}, costs {_secs(top[0])} a run"

    def _say_interval(
        self,
        trainer: Any,
        epoch: int,
        callback: Any,
        interval: int,
        limit: float | None,
        allowance: float = 0.0,
    ) -> None:
        """One line on a new interval; when the next run would fall after the fit's last
        epoch, that it will not run again (said once, until it would again)."""
        key, name = callback.state_key, type(callback).__name__
        cost = self.cost_words(callback) + self._costlier_words(callback)
        within = f"max_overhead={limit:g} of the training time"
        if allowance > 0:
            within += f" or overhead_allowance={allowance:g} s an epoch"
        max_epochs = getattr(trainer, "max_epochs", None)
        if isinstance(max_epochs, int) and 0 < max_epochs <= epoch + 1:
            self._unsaid[key] = interval  # the last epoch: said if a later fit goes on
            return
        self._unsaid.pop(key, None)
        last = self.budget.last_run.get(key, epoch)
        if isinstance(max_epochs, int) and max_epochs > 0 and last + interval > max_epochs - 1:
            if key not in self._not_again:
                self._not_again.add(key)
                self.say(
                    trainer,
                    f"lightning-viz: {name} will not run again in this fit "
                    f"(max_epochs={max_epochs}): {cost}, and within {within} it "
                    + (
                        f"can run every {interval} epochs"
                        if interval <= MAX_INTERVAL
                        else "cannot run"
                    )
                    + ". Pass a larger max_overhead or overhead_allowance, or "
                    "max_overhead=None, to run it more often",
                )
            return
        self._not_again.discard(key)
        runs = "now runs every epoch" if interval == 1 else f"now runs every {interval} epochs"
        self.say(
            trainer,
            f"lightning-viz: {name} {runs if interval <= MAX_INTERVAL else 'stops running'} "
            f"({cost}; all lightning-viz callbacks together stay within {within})",
        )
