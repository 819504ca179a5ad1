"""Old import path of :mod:`lightning_viz.monitoring.compare` (the same module object)."""

import sys

from lightning_viz.monitoring import compare as _module

sys.modules[__name__] = _module
