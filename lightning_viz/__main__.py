"""``python -m lightning_viz``: the ``lightning-viz`` console script (``demo``, ``compare``)."""

import sys

from lightning_viz.cli import main

if __name__ == "__main__":
    sys.exit(main())
