"""Old import path of :mod:`lightning_viz.monitoring.stats` (the same module object)."""

import sys

from lightning_viz.monitoring import stats as _module

sys.modules[__name__] = _module
