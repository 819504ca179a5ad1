"""Old import path of :mod:`lightning_viz.monitoring.stats`, kept as an alias.

``import lightning_viz.stats`` gives the very module ``lightning_viz.monitoring.stats``.
"""

import sys

from lightning_viz.monitoring import stats as _module

sys.modules[__name__] = _module
