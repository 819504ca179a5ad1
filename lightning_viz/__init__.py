"""lightning-viz: see what an image classifier learns while it trains.

PyTorch Lightning callbacks that write filters, feature maps, saliency, Grad-CAM,
embeddings, robustness and shape-bias probes to TensorBoard at epoch ends.
The callbacks and the subpackages are imported lazily (on first use of
``lv.SaliencyLogger`` or ``lv.functional``), so ``import lightning_viz.functional``
does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lightning_viz._warning import LightningVizWarning

if TYPE_CHECKING:  # the real classes for type checkers (re-exported); lazy at run time
    from lightning_viz.callbacks.activations import ActivationLogger as ActivationLogger
    from lightning_viz.callbacks.class_model import ClassModelLogger as ClassModelLogger
    from lightning_viz.callbacks.corruption import CorruptionProbe as CorruptionProbe
    from lightning_viz.callbacks.embedding import EmbeddingProjector as EmbeddingProjector
    from lightning_viz.callbacks.filters import FilterLogger as FilterLogger
    from lightning_viz.callbacks.gradcam import GradCAMLogger as GradCAMLogger
    from lightning_viz.callbacks.robustness import AdversarialProbe as AdversarialProbe
    from lightning_viz.callbacks.saliency import SaliencyLogger as SaliencyLogger
    from lightning_viz.callbacks.shape_bias import TextureShapeBias as TextureShapeBias

__version__ = "0.1.0"

_CALLBACKS = {
    "FilterLogger": "lightning_viz.callbacks.filters",
    "ActivationLogger": "lightning_viz.callbacks.activations",
    "SaliencyLogger": "lightning_viz.callbacks.saliency",
    "GradCAMLogger": "lightning_viz.callbacks.gradcam",
    "EmbeddingProjector": "lightning_viz.callbacks.embedding",
    "AdversarialProbe": "lightning_viz.callbacks.robustness",
    "TextureShapeBias": "lightning_viz.callbacks.shape_bias",
    "CorruptionProbe": "lightning_viz.callbacks.corruption",
    "ClassModelLogger": "lightning_viz.callbacks.class_model",
}

__all__ = [*_CALLBACKS, "LightningVizWarning", "__version__"]


_SUBPACKAGES = ("callbacks", "data", "functional", "monitoring", "render")


def __getattr__(name: str) -> Any:
    if name in _CALLBACKS:
        return getattr(importlib.import_module(_CALLBACKS[name]), name)
    if name in _SUBPACKAGES:  # ``lv.functional.pgd`` without importing it first
        return importlib.import_module(f"lightning_viz.{name}")
    raise AttributeError(f"module 'lightning_viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
