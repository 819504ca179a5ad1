"""Built-in data and demo models: procedurally drawn shapes/textures, sklearn digits."""

from lightning_viz.data.digits import DigitsDataModule
from lightning_viz.data.models import (
    LitClassifier,
    SmallCNN,
    build_model,
    resnet18_small,
    vit_small,
)
from lightning_viz.data.shapes import SHAPE_NAMES, ShapesTexturesDataModule, draw_shapes

__all__ = [
    "SHAPE_NAMES",
    "DigitsDataModule",
    "LitClassifier",
    "ShapesTexturesDataModule",
    "SmallCNN",
    "build_model",
    "draw_shapes",
    "resnet18_small",
    "vit_small",
]
