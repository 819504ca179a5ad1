"""Old import path of :mod:`lightning_viz.monitoring.record`, kept as an alias.

``import lightning_viz.summary`` gives the very module ``lightning_viz.monitoring.record``.
"""

import sys

from lightning_viz.monitoring import record as _module

sys.modules[__name__] = _module
