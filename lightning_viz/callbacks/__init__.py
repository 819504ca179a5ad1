"""The lightning-viz callbacks, one module each."""

from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.callbacks.activations import ActivationLogger
from lightning_viz.callbacks.filters import FilterLogger

__all__ = ["ActivationLogger", "FilterLogger", "RunContext", "VizCallback"]
