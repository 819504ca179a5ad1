"""The pure-torch methods behind the callbacks (no Lightning import).

Model-based methods take ``(model, inputs, target, ...)`` and leave the model as
they found it (see :func:`lightning_viz._guard.preserve_state`)::

    import lightning_viz.functional as LF

    maps = LF.saliency(model, images, target=labels)            # (N, 1, H, W)
    cams = LF.grad_cam(model, images, labels, layer="layer4")   # (N, 1, H, W)
    adv = LF.pgd(model, images, labels, eps=8 / 255)            # (N, C, H, W)
"""

from lightning_viz._guard import ModelView
from lightning_viz.functional.attacks import fgsm, noise, pgd, robust_accuracy
from lightning_viz.functional.bias import (
    per_class_shape_bias,
    shape_bias,
    shape_only,
    texture_only,
)
from lightning_viz.functional.cam import default_cam_layer, grad_cam, grad_cam_pp, guided_grad_cam
from lightning_viz.functional.embedding import knn_accuracy, pca, silhouette, tsne
from lightning_viz.functional.relu_rules import relu_rule_counts
from lightning_viz.functional.rollout import attention_rollout, grad_rollout
from lightning_viz.functional.saliency import (
    activation_maps,
    deconvnet,
    guided_backprop,
    integrated_gradients,
    neuron_gradient,
    saliency,
    saliency_in_mask,
    saliency_mask,
    smoothgrad,
)
from lightning_viz.functional.synthesis import (
    RandomFeatureExtractor,
    class_model,
    cue_conflict,
    gram_matrix,
    style_transfer,
)
from lightning_viz.functional.tokens import (
    TokenLayout,
    default_transformer_activation_layers,
    default_transformer_cam_layer,
    is_transformer,
    token_layout,
    tokens_to_grid,
)

__all__ = [
    "ModelView",
    "TokenLayout",
    "attention_rollout",
    "default_transformer_activation_layers",
    "default_transformer_cam_layer",
    "grad_rollout",
    "is_transformer",
    "relu_rule_counts",
    "token_layout",
    "tokens_to_grid",
    "RandomFeatureExtractor",
    "class_model",
    "cue_conflict",
    "gram_matrix",
    "per_class_shape_bias",
    "shape_bias",
    "shape_only",
    "style_transfer",
    "texture_only",
    "activation_maps",
    "deconvnet",
    "default_cam_layer",
    "fgsm",
    "grad_cam",
    "grad_cam_pp",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "knn_accuracy",
    "neuron_gradient",
    "noise",
    "pca",
    "pgd",
    "robust_accuracy",
    "saliency",
    "saliency_in_mask",
    "saliency_mask",
    "silhouette",
    "smoothgrad",
    "tsne",
]
