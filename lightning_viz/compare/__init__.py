"""Old import path of :mod:`lightning_viz.monitoring.compare`, kept as an alias.

``import lightning_viz.compare`` gives the very module ``lightning_viz.monitoring.compare``.
"""

import sys

from lightning_viz.monitoring import compare as _module

sys.modules[__name__] = _module
