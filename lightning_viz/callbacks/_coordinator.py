"""What the lightning-viz callbacks on one trainer share.

One :class:`Coordinator` per trainer, found with :meth:`Coordinator.of`. Every
callback registers with it at ``setup``; a callback never reaches into another
callback's internals, only into the coordinator.
"""

from __future__ import annotations

import weakref
from typing import Any

from lightning_viz.callbacks._compat import rank_zero_warn

__all__ = ["Coordinator"]

_COORDINATORS: weakref.WeakKeyDictionary[Any, Coordinator] = weakref.WeakKeyDictionary()


class Coordinator:
    """Per-trainer shared state of the lightning-viz callbacks.

    Attributes:
        callbacks: The registered callbacks, in registration order.
    """

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self._said: set[str] = set()

    @classmethod
    def of(cls, trainer: Any) -> Coordinator:
        """The coordinator of ``trainer`` (created at the first call)."""
        found = _COORDINATORS.get(trainer)
        if found is None:
            found = _COORDINATORS[trainer] = cls()
        return found

    def register(self, callback: Any) -> None:
        """Adds ``callback`` (once)."""
        if all(cb is not callback for cb in self.callbacks):
            self.callbacks.append(callback)

    def warn_once(self, key: str, message: str) -> None:
        """Warns ``message`` once per trainer for ``key`` (a message all callbacks share)."""
        if key not in self._said:
            self._said.add(key)
            rank_zero_warn(message)
