"""The lightning-viz callbacks, one module each."""

from lightning_viz.callbacks._base import RunContext, VizCallback
from lightning_viz.callbacks.activations import ActivationLogger
from lightning_viz.callbacks.class_model import ClassModelLogger
from lightning_viz.callbacks.corruption import CorruptionProbe
from lightning_viz.callbacks.embedding import EmbeddingProjector
from lightning_viz.callbacks.filters import FilterLogger
from lightning_viz.callbacks.gradcam import GradCAMLogger
from lightning_viz.callbacks.robustness import AdversarialProbe
from lightning_viz.callbacks.saliency import SaliencyLogger
from lightning_viz.callbacks.shape_bias import TextureShapeBias

__all__ = [
    "ActivationLogger",
    "AdversarialProbe",
    "ClassModelLogger",
    "CorruptionProbe",
    "EmbeddingProjector",
    "FilterLogger",
    "GradCAMLogger",
    "RunContext",
    "SaliencyLogger",
    "TextureShapeBias",
    "VizCallback",
]
