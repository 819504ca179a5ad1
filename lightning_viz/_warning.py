"""The category of lightning-viz's warnings, and how they are given."""

from __future__ import annotations

import logging
import warnings
from types import FrameType


class LightningVizWarning(UserWarning):
    """A warning of the lightning-viz callbacks (a ``UserWarning``).

    Filter them by category, e.g.
    ``warnings.filterwarnings("ignore", category=LightningVizWarning)``. One that the
    user's filters turn into an error (``python -W error``, pytest's
    ``filterwarnings = error``) is logged to the ``lightning_viz`` logger instead: a
    message never stops the fit (``on_error="raise"`` does that).
    """


_LOGGED: set[tuple[str, str, int]] = set()  # once-warnings logged under an "error" filter


def warn_at(message: str, caller: FrameType, *, once: bool = False) -> None:
    """Warns ``message`` as if from ``caller``: ``once`` per place, as ``warnings.warn``
    does, or with no memory of earlier warnings from the same place (the callbacks say
    each message once per trainer or run themselves)."""
    registry = caller.f_globals.setdefault("__warningregistry__", {}) if once else {}
    try:
        warnings.warn_explicit(
            message,
            LightningVizWarning,
            caller.f_code.co_filename,
            caller.f_lineno,
            module=caller.f_globals.get("__name__"),
            registry=registry,
            module_globals=caller.f_globals,
        )
    except Warning:  # an "error" filter: said, and the fit goes on
        place = (message, caller.f_code.co_filename, caller.f_lineno)
        if once and place in _LOGGED:
            return  # the registry records only a warning that was shown
        if once:
            _LOGGED.add(place)
        logging.getLogger("lightning_viz").warning(message)
