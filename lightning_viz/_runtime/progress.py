"""Lightning's progress bar as lightning-viz prints through it: one rule for "the
trainer's bar is on in this process" (the cue-conflict bar follows it) and one for "a
line printed through it now shows" (the alert tables and the budget's lines)."""

from __future__ import annotations

from typing import Any

__all__ = ["prints_now", "shown_bar"]

# the tqdm bars TQDMProgressBar.print writes through
_TQDM_BARS = ("_train_progress_bar", "_val_progress_bar", "_test_progress_bar")


def shown_bar(trainer: Any) -> Any | None:
    """The trainer's progress bar when it shows anything in this process; ``None``
    without one (``enable_progress_bar=False``), when it is off (``refresh_rate=0``:
    Lightning's bars say ``is_disabled``) and on ranks other than global rank 0."""
    bar = getattr(trainer, "progress_bar_callback", None)
    if bar is None or not getattr(trainer, "is_global_zero", True):
        return None
    return None if getattr(bar, "is_disabled", False) is True else bar


def prints_now(bar: Any) -> bool:
    """Whether ``bar.print`` shows a line now: TQDMProgressBar prints through an open
    tqdm bar only (a line given it with all of them closed was lost)."""
    if not callable(getattr(bar, "print", None)):
        return False
    if not any(hasattr(bar, name) for name in _TQDM_BARS):
        return True  # another progress bar (RichProgressBar): its own print decides
    return any(
        getattr(bar, name, None) is not None and not getattr(getattr(bar, name), "disable", True)
        for name in _TQDM_BARS
    )
