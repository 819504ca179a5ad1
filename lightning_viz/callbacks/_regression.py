"""Regression watch: best values so far, and a warning when a metric falls below its best."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RegressionWatch", "WatchesRegressions"]

_EPS = 1e-12


class RegressionWatch:
    """Remembers each metric's best value and reports drops of more than ``tolerance``.

    A drop is reported once; it is reported again only when the metric falls a
    further ``tolerance``, or after it recovered (came back within ``tolerance``)
    and dropped again. NaN values are skipped. The state travels in the
    callback's ``state_dict``, so a resumed run remembers the best values.

    Args:
        tolerance: How far below its best a metric may fall before it is reported.
    """

    def __init__(self, tolerance: float) -> None:
        self.tolerance = float(tolerance)
        self.best: dict[str, float] = {}  # metric -> best value so far
        self.warned: dict[str, float] = {}  # metric -> value it was last reported at

    def update(
        self, values: Mapping[str, float], tag: Callable[[str], str]
    ) -> tuple[float, list[str]]:
        """Takes this epoch's values; returns the largest drop below best and report lines.

        Args:
            values: Metric name -> value (higher is better).
            tag: Maps a metric name to the tag shown in the report.
        """
        largest = 0.0
        lines = []
        for name, value in values.items():
            if math.isnan(value):
                continue
            best = self.best.get(name)
            if best is None or value >= best:
                self.best[name] = value
                self.warned.pop(name, None)
                continue
            drop = best - value
            largest = max(largest, drop)
            if drop <= self.tolerance + _EPS:
                self.warned.pop(name, None)  # recovered: a later drop reports again
                continue
            last = self.warned.get(name)
            if last is None or value < last - self.tolerance - _EPS:
                self.warned[name] = value
                lines.append(
                    f"  {tag(name)} = {value:.4f}, best so far {best:.4f}, "
                    f"drop {drop:.4f} (tolerance {self.tolerance:g})"
                )
        return largest, lines

    def state_dict(self) -> dict[str, Any]:
        """``{"best": ..., "warned": ...}``, plain floats."""
        return {"best": dict(self.best), "warned": dict(self.warned)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` (missing keys mean an empty history)."""
        self.best = {str(k): float(v) for k, v in (state.get("best") or {}).items()}
        self.warned = {str(k): float(v) for k, v in (state.get("warned") or {}).items()}


class WatchesRegressions:
    """Mixin for a callback with a :class:`RegressionWatch` in ``self._watch``.

    Puts the watch's state in the callback's ``state_dict`` and exposes the best
    values as ``best``.
    """

    _watch: RegressionWatch

    def extra_state(self) -> dict[str, Any]:
        return self._watch.state_dict()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._watch.load_state_dict(state)

    @property
    def best(self) -> dict[str, float]:
        """Best value so far of each watched metric (saved in ``state_dict``)."""
        return self._watch.best
