"""Where guided backprop and deconvnet apply: the ReLU-family units of a model.

Guided backprop and deconvnet are rules for ReLU units. :func:`lightning_viz._hooks.
relu_backward` applies them to ReLU and, by a documented extension, to ReLU6,
LeakyReLU, ELU, GELU, SiLU, Hardswish and Mish; every other function keeps its
ordinary gradient. A model without any of these units (tanh or sigmoid only, or
linear) would get the plain gradient under another name: the methods refuse it
(:func:`require_relu_family`), and a callback can ask beforehand
(:func:`relu_rule_counts`) whether the methods apply.

Examples:
    >>> import torch, lightning_viz.functional as LF
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GELU(),
    ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> LF.relu_rule_counts(net, torch.rand(1, 3, 8, 8))
    {'gelu': 1}
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_viz._checks import check_images
from lightning_viz._guard import ModelView, preserve_state, scripted_modules, unwrap_model
from lightning_viz._hooks import RELU_FAMILY, relu_backward
from lightning_viz.functional._grad import in_model_dtype

__all__ = [
    "relu_family_summary",
    "relu_rule_counts",
    "relu_rules_unusable",
    "require_relu_family",
]

_NAMES = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "hardswish": "Hardswish",
    "mish": "Mish",
}
_METHODS = {"guided": "guided backprop", "deconvnet": "deconvnet"}


def relu_rule_counts(model: nn.Module, inputs: Tensor) -> dict[str, int]:
    """Counts the ReLU-family units that guided backprop and deconvnet would modify.

    One forward pass without gradients, under the same ``TorchFunctionMode`` the
    methods use, so modules, functional and in-place calls are all counted. An
    empty result means the methods do not apply to this model (they raise).

    Args:
        model: Any ``nn.Module`` taking ``inputs``.
        inputs: Images ``(N, C, H, W)``, float (one is enough).

    Returns:
        Kind -> calls in one forward, only kinds that ran, in the order
        ``"relu"``, ``"relu6"``, ``"leaky_relu"``, ``"elu"``, ``"gelu"``, ``"silu"``,
        ``"hardswish"``, ``"mish"``; e.g. ``{"gelu": 4}`` for a 4-block ViT.

    Raises:
        TypeError: ``inputs`` is not a float tensor.
        ValueError: ``inputs`` is not a non-empty ``(N, C, H, W)`` batch.
    """
    check_images(inputs)
    with preserve_state(model) as net, torch.no_grad(), relu_backward("guided") as mode:
        net(in_model_dtype(net, inputs.detach().clone()))
    return {kind: mode.counts[kind] for kind in RELU_FAMILY if mode.counts[kind]}


def _user_model(model: nn.Module) -> nn.Module:
    return unwrap_model(model.model if isinstance(model, ModelView) else model)


def _scripted_units(model: nn.Module) -> list[str]:
    """The outermost TorchScript modules of ``model`` whose code runs a ReLU-family
    unit (a scripted preprocessing step with none is a plain function of the input)."""
    found = []
    for name in scripted_modules(model):
        try:
            graph = str((model.get_submodule(name) if name else model).inlined_graph)
        except (AttributeError, RuntimeError):  # cannot tell: it may
            graph = "aten::relu"
        if any(f"aten::{op}" in graph for op in (*RELU_FAMILY, "hardtanh")):
            found.append(name)
    return found


def relu_rules_unusable(model: nn.Module, inputs: Tensor) -> str | None:
    """Why guided backprop and deconvnet do not apply to ``model`` (``None``: they do):
    it holds TorchScript modules, whose units no rule reaches, or its forward on
    ``inputs`` (one image is enough) runs no ReLU-family unit."""
    if scripted := _scripted_units(_user_model(model)):
        names = ", ".join(repr(n) for n in scripted)
        return f"the TorchScript modules {names} run ReLU-like units that no rule reaches"
    if not relu_rule_counts(model, inputs):
        return "the forward runs no ReLU-family unit; " + relu_family_summary(_user_model(model))
    return None


def _activation_modules(model: nn.Module, limit: int = 12) -> list[str]:
    found = [
        f"{name} ({type(m).__name__})"
        for name, m in model.named_modules()
        if name and type(m).__module__ == "torch.nn.modules.activation"
    ]
    if len(found) > limit:
        found = found[:limit] + [f"... {len(found) - limit} more"]
    return found


def relu_family_summary(model: nn.Module) -> str:
    """``"activation modules: a (GELU), ..."``: what a model uses instead of ReLUs."""
    return f"activation modules: {', '.join(_activation_modules(model)) or 'none'}"


def require_relu_family(model: nn.Module, mode: object) -> None:
    """Raises when the forward under ``mode`` (a ``relu_backward`` mode) ran no ReLU-family unit.

    Args:
        model: The model that ran (its activation modules are named in the message).
        mode: The object yielded by :func:`lightning_viz._hooks.relu_backward`.

    Raises:
        ValueError: No ReLU-family unit ran (the message names the activation
            modules of ``model`` and the other activation functions the forward called),
            or ``model`` holds TorchScript modules, whose units no rule reaches.
    """
    method = _METHODS.get(mode.mode, mode.mode)
    scripted = _scripted_units(_user_model(model))
    if scripted:
        raise ValueError(
            f"{method} changes the gradient of each ReLU-like unit as the forward runs it, "
            f"but the TorchScript modules {', '.join(repr(n) for n in scripted)} "
            "(torch.jit.script) run theirs in compiled code that no rule reaches: the map "
            "would mix the rule with plain gradients. Use saliency or integrated_gradients "
            "instead, or script the model after training"
        )
    if mode.calls:
        return
    modules = _activation_modules(model)
    calls = [f"{name} x{count}" for name, count in sorted(mode.others.items())]
    raise ValueError(
        f"{method} is defined for ReLU-like units, but the forward ran none of "
        f"{', '.join(_NAMES[k] for k in RELU_FAMILY)}: it would return the plain gradient. "
        f"Activation modules: {', '.join(modules) or 'none'}; activation calls: "
        f"{', '.join(calls) or 'none'}. Use saliency or integrated_gradients instead"
    )
