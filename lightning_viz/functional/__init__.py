"""The pure-torch methods behind the callbacks (no Lightning import).

One convention for every model-based method::

    method(model, inputs, target=None, *, option=...)

* ``inputs`` are what ``model`` takes: a float image batch ``(N, C, H, W)``.
* ``target`` is the class to explain — class indices ``(N,)``, one int for all
  inputs, or ``None`` for the predicted class — or, for the attacks, the true
  labels. The attacks keep ``eps`` as their fourth positional argument; every
  other option is keyword-only.
* To work in pixel space, wrap the model: ``ModelView(model, mean, std)`` takes
  pixel images in ``[0, 1]`` and normalizes them inside the differentiated
  function (the attacks' ``clamp`` then means the pixel range). ``ModelView`` also
  maps other inputs (``images_to_input``) and outputs (``output_to_logits``), so it
  is the one adapter between pixel images and any classifier.
* One logit is a binary classifier (decision ``logit > 0``, the class-0 score is
  ``-logit``); the attacks also take multi-hot labels ``(N, K)`` (multilabel).
* A neuron is always ``neuron=(layer, channel)``; a layer is a module or its
  dotted name.

Methods with a class target: ``saliency``, ``smoothgrad``, ``integrated_gradients``,
``guided_backprop``, ``deconvnet``, ``grad_cam``, ``grad_cam_pp``,
``guided_grad_cam``, ``fgsm``, ``pgd``, ``apgd``, ``apgd_mask``, ``square_mask``,
``robust_mask``, ``robust_accuracy``.
Faithfulness scores of maps (``deletion_curve``, ``insertion_curve``,
``perturbation_curves`` with a list of maps, ``road``)
take ``(model, inputs, maps, target, ...)``; ``randomization_similarity(map_fn,
model, inputs, target, ...)`` takes the map method first.
Methods without one: ``neuron_gradient`` (``neuron=``), ``activation_maps``,
``default_cam_layer``, ``class_model`` (images from noise).

Every method leaves the model as it found it (see
:func:`lightning_viz._guard.preserve_state`), draws random numbers only from a
private generator, and raises :class:`NoGradientError` rather than return an
all-zero map when the score has no gradient path to the input::

    import lightning_viz.functional as LF

    view = LF.ModelView(model, mean=(0.5,) * 3, std=(0.25,) * 3)  # pixels in [0, 1]
    maps = LF.saliency(view, images, labels)                      # (N, 1, H, W)
    cams = LF.grad_cam(view, images, labels, layer="layer4")      # (N, 1, H, W)
    adv = LF.pgd(view, images, labels, 8 / 255)                   # (N, C, H, W)
"""

from lightning_viz._guard import ModelView
from lightning_viz.functional._grad import NoGradientError
from lightning_viz.functional.apgd import apgd, apgd_mask
from lightning_viz.functional.attacks import fgsm, noise, pgd, robust_accuracy, robust_mask
from lightning_viz.functional.bias import (
    cue_conflict,
    decisions,
    per_class_shape_bias,
    saliency_in_mask,
    shape_bias,
    shape_only,
    stylize,
    texture_only,
)
from lightning_viz.functional.cam import default_cam_layer, grad_cam, grad_cam_pp, guided_grad_cam
from lightning_viz.functional.class_model import class_model
from lightning_viz.functional.corruptions import CORRUPTIONS, corrupt
from lightning_viz.functional.embedding import knn_accuracy, pca, silhouette, tsne
from lightning_viz.functional.faithfulness import (
    PerturbationCurve,
    RoadResult,
    deletion_curve,
    insertion_curve,
    linear_impute,
    perturbation_curves,
    random_maps,
    road,
)
from lightning_viz.functional.randomization import (
    RandomizationResult,
    randomizable_layers,
    randomization_similarity,
    rank_correlation,
    ssim,
)
from lightning_viz.functional.relu_rules import relu_rule_counts
from lightning_viz.functional.rollout import attention_rollout, grad_rollout
from lightning_viz.functional.saliency import (
    activation_maps,
    deconvnet,
    guided_backprop,
    integrated_gradients,
    neuron_gradient,
    saliency,
    saliency_mask,
    smoothgrad,
)
from lightning_viz.functional.square import square_mask
from lightning_viz.functional.style import RandomFeatureExtractor, gram_matrix, style_transfer
from lightning_viz.functional.tokens import (
    TokenLayout,
    default_transformer_activation_layers,
    default_transformer_cam_layer,
    is_transformer,
    token_layout,
    tokens_to_grid,
)

__all__ = [
    "CORRUPTIONS",
    "ModelView",
    "PerturbationCurve",
    "RandomizationResult",
    "RoadResult",
    "deletion_curve",
    "insertion_curve",
    "linear_impute",
    "perturbation_curves",
    "random_maps",
    "randomizable_layers",
    "randomization_similarity",
    "rank_correlation",
    "road",
    "ssim",
    "NoGradientError",
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
    "activation_maps",
    "apgd",
    "apgd_mask",
    "class_model",
    "corrupt",
    "cue_conflict",
    "decisions",
    "deconvnet",
    "default_cam_layer",
    "fgsm",
    "grad_cam",
    "grad_cam_pp",
    "gram_matrix",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "knn_accuracy",
    "neuron_gradient",
    "noise",
    "pca",
    "per_class_shape_bias",
    "pgd",
    "robust_accuracy",
    "robust_mask",
    "saliency",
    "saliency_in_mask",
    "saliency_mask",
    "shape_bias",
    "shape_only",
    "stylize",
    "silhouette",
    "smoothgrad",
    "square_mask",
    "style_transfer",
    "texture_only",
    "tsne",
]
