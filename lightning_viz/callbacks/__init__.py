"""The lightning-viz callbacks, one module each."""

from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.callbacks.activations import ActivationLogger
from lightning_viz.callbacks.embedding import EmbeddingProjector
from lightning_viz.callbacks.filters import FilterLogger
from lightning_viz.callbacks.gradcam import GradCAMLogger
from lightning_viz.callbacks.robustness import AdversarialProbe
from lightning_viz.callbacks.saliency import SaliencyLogger

__all__ = [
    "ActivationLogger",
    "AdversarialProbe",
    "EmbeddingProjector",
    "FilterLogger",
    "GradCAMLogger",
    "RunContext",
    "SaliencyLogger",
    "VizCallback",
]
