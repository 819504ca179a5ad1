"""Gradient plumbing shared by the attribution, CAM and attack methods.

Forward with the output checked, class indices to explain, the summed class score,
its gradient with respect to the inputs, chunked rows. A score without a gradient
path raises :class:`NoGradientError` instead of producing an all-zero map.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.overrides
from torch import Tensor, nn

from lightning_viz._checks import check_reduce, check_target_type, fail
from lightning_viz._guard import ModelView, in_model_dtype, is_compiled, scripted_modules
from lightning_viz._hooks import record_inputs, record_outputs
from lightning_viz.functional._task import class_scores, num_classes, predict, saveable

__all__ = [
    "NoGradientError",
    "adapted_layer",
    "adapter_base",
    "chunked_logits",
    "chunked_rows",
    "conv_layers",
    "feature_conv_layers",
    "forward_logits",
    "in_model_dtype",
    "fresh",
    "grad_of",
    "input_grad",
    "eager_name",
    "logit_head",
    "named_layers",
    "recomputed_tensors",
    "reduce_channels",
    "resolve_layer",
    "score_sum",
    "target_indices",
]


class NoGradientError(RuntimeError):
    """The explained score has no gradient path to what it is differentiated against.

    Raised instead of returning an all-zero map: the model computes its output (or
    the part that leads to the layer) without autograd — ``torch.no_grad()`` or
    ``torch.inference_mode()`` inside ``forward``, ``.detach()``, or an operation
    without a gradient (``argmax``, integer casts). An operation whose gradient is zero
    (``round``, ``floor``, ``sign``, a quantizer without a straight-through estimator)
    has a gradient path: it is not raised, and the maps are zero.
    """


def no_gradient(what: str, wrt: str) -> NoGradientError:
    """The error for a ``what`` (e.g. "class score") that does not depend on ``wrt``."""
    return NoGradientError(
        f"the {what} has no gradient path to {wrt}: the model computes it without autograd "
        "(torch.no_grad()/inference_mode() in forward, .detach(), or a non-differentiable op "
        "such as argmax or an integer cast), so a gradient map would be all zeros. Make that "
        "part of the forward differentiable, or leave gradient methods out for this model"
    )


def fresh(inputs: Tensor) -> Tensor:
    """A graph-free copy of ``inputs`` usable by autograd (also for inference tensors)."""
    return inputs.detach().clone()


def forward_logits(net: nn.Module, x: Tensor) -> Tensor:
    """``net(x)`` checked to be logits ``(N, K)``. A leaf that requires grad goes in as a
    copy in the graph, so a forward that changes its input in place (``x.sub_(0.5)``)
    can, and the gradient still reaches ``x``. Images of another floating dtype than
    the model's (float32 pixels, a float64 or bfloat16 model) are cast on the way in
    and the logits back, as :class:`ModelView` does."""
    x_in = in_model_dtype(net, x.clone() if x.is_leaf and x.requires_grad else x)
    out = net(x_in)
    if x_in.dtype != x.dtype and isinstance(out, Tensor) and out.is_floating_point():
        out = out.to(x.dtype)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the model must return a tensor of logits (N, K), got {type(out).__name__}; "
            "wrap it in lightning_viz.functional.ModelView(model, output_to_logits=...)"
        )
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"the model must return logits of shape (N, K) = ({x.shape[0]}, K), "
            f"got shape {tuple(out.shape)}"
        )
    return out


def target_indices(target: int | Tensor | None, logits: Tensor) -> Tensor:
    """Class indices ``(N,)`` from an int, a tensor (``(N,)``, or a column ``(N, 1)``),
    or ``None`` (the predicted class).

    With one logit (binary) the classes are 0 and 1.

    Raises:
        ValueError: Wrong length or a class index outside ``[0, K)``.
    """
    n, k = logits.shape[0], num_classes(logits)
    if target is None:
        return predict(logits)
    check_target_type(target)
    if not isinstance(target, Tensor):  # an int (numpy's integers too)
        idx = torch.full((n,), operator.index(target), dtype=torch.long, device=logits.device)
    else:
        if target.dim() == 2 and target.shape[0] == n and n > 1 and target.shape[1] != 1:
            fail(
                "target",
                f"{n} class indices (N,), not label rows (N, K): pass the class to explain "
                "(e.g. rows.argmax(dim=1))",
                f"<shape {tuple(target.shape)}>",
            )
        idx = target.to(device=logits.device, dtype=torch.long).flatten()
        if idx.numel() == 1 and n > 1:
            idx = idx.expand(n)
        if idx.numel() != n:
            fail("target", f"{n} class indices (one per input)", f"<{idx.numel()} entries>")
    if bool(((idx < 0) | (idx >= k)).any()):
        fail("target", f"class indices in [0, {k})", idx.tolist())
    return saveable(idx)


def score_sum(logits: Tensor, idx: Tensor) -> Tensor:
    """Sum over the batch of each row's target score (rows are independent in eval)."""
    return class_scores(logits, idx).sum()


def grad_of(score: Tensor, wrt: Tensor, what: str = "class score", name: str = "the inputs"):
    """``d score / d wrt``; :class:`NoGradientError` when the score does not depend on it."""
    if not score.requires_grad:
        raise no_gradient(what, name)
    (grad,) = torch.autograd.grad(score, wrt, allow_unused=True)
    if grad is None:
        raise no_gradient(what, name)
    return grad


def input_grad(net: nn.Module, x: Tensor, target: int | Tensor | None) -> tuple[Tensor, Tensor]:
    """Gradient of each row's target score w.r.t. ``x`` and the class indices used."""
    x = x.requires_grad_(True)
    logits = forward_logits(net, x)
    idx = target_indices(target, logits)
    return grad_of(score_sum(logits, idx), x), idx


def chunked_rows(total: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of consecutive chunks of at most ``chunk_size`` rows."""
    for start in range(0, total, chunk_size):
        yield start, min(start + chunk_size, total)


def row_noise(shape: torch.Size, generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal noise of ``shape`` (rows first) on ``like``'s device and dtype,
    each row drawn as its own whole blocks of 16 values: the CPU generator fills normals
    in blocks of 16 and redraws the last block of an uneven draw, so a chunk's draw
    would otherwise depend on where the chunks start (``chunk_size``). The same values
    as one draw of ``shape`` when a row is a multiple of 16 values."""
    rows, per_row = shape[0], math.prod(shape[1:])
    padded = -(-max(per_row, 16) // 16) * 16
    noise = torch.randn((rows, padded), generator=generator, device=like.device, dtype=like.dtype)
    return noise[:, :per_row].reshape(shape)


def chunked_logits(net: nn.Module, x: Tensor, chunk_size: int) -> Tensor:
    """Logits of ``x`` at most ``chunk_size`` rows per forward pass."""
    return torch.cat([forward_logits(net, x[a:b]) for a, b in chunked_rows(len(x), chunk_size)])


def reduce_channels(attr: Tensor, reduce: str | None) -> Tensor:
    """``(N, C, H, W)`` signed attributions -> ``(N, 1, H, W)`` non-negative map.

    ``"max"``: max of ``|attr|`` over channels; ``"sum"``: sum of ``|attr|``;
    ``None``: ``attr`` unchanged (signed).
    """
    check_reduce(reduce)
    if reduce is None:
        return attr
    if reduce == "max":
        return attr.abs().amax(dim=1, keepdim=True)
    return attr.abs().sum(dim=1, keepdim=True)


def named_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model.named_modules()`` named as the uncompiled model names them.

    A ``torch.compile``'d submodule (``self.net = torch.compile(net)``) is a wrapper
    whose ``_orig_mod`` holds the layers: ``"net._orig_mod.conv1"`` is named
    ``"net.conv1"``, the name of the attribute path, so that tags, summaries and
    ``layer=`` options read the same with compilation on and off. The wrapper's name
    is its ``_orig_mod``'s (the module whose hooks run: a callback runs compiled
    modules' eager forward, which calls it).
    """
    if isinstance(model, ModelView):  # names are those of the user's model
        model = model.model
    raw = dict(model.named_modules())
    scripted = scripted_modules(model)
    out: dict[str, nn.Module] = {}
    for name, module in raw.items():
        if name and any(_within(name, owner) for owner in scripted):
            continue  # TorchScript runs no hooks: not a layer to read (see resolve_layer)
        out[eager_name(name, raw)] = module  # an ``_orig_mod`` comes after its wrapper
    return list(out.items())


def _within(name: str, owner: str) -> bool:
    """Whether module ``name`` is ``owner`` or inside it (``""``: the model)."""
    return not owner or name == owner or name.startswith(f"{owner}.")


def eager_name(name: str, modules: dict[str, nn.Module]) -> str:
    """``name`` (of ``modules``, a model's ``named_modules``) without the ``_orig_mod``
    of its ``torch.compile`` wrappers (a module of the user's named so stays)."""
    parts = name.split(".") if name else []
    kept = [
        part
        for i, part in enumerate(parts)
        if part != "_orig_mod" or not is_compiled(modules[".".join(parts[:i])])
    ]
    return ".".join(kept)


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Finds a submodule by dotted name (see :func:`named_layers`; a compiled
    submodule's ``_orig_mod`` path is accepted too) or identity; ``(name, module)``.

    Raises:
        ValueError: No such module; the message lists the available names and the
            closest match.
        TypeError: ``layer`` is neither a string nor a module.
    """
    if isinstance(model, ModelView):  # names are those of the user's model
        model = model.model
    raw = dict(model.named_modules())
    named = dict(named_layers(model))
    if isinstance(layer, nn.Module):
        found = next((name for name, m in raw.items() if m is layer), None)
        if found is None:
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
        if found == "":
            return "", named[""]
        layer = found
    if not isinstance(layer, str):
        fail("layer", "a module name (str) or an nn.Module", layer, TypeError)
    if layer in raw and layer != "":  # a compiled module's inner name, said the long way
        layer = eager_name(layer, raw)
    if layer in named and layer != "":
        return layer, named[layer]
    owner = next((n for n in scripted_modules(model) if _within(layer, n)), None)
    if owner is not None and layer in raw:
        raise ValueError(
            f"layer {layer!r} is inside the TorchScript module {owner!r} (torch.jit.script): "
            "its compiled forward runs no Python hooks, so its output and gradient cannot "
            "be read. Pick a layer outside it, or script the model after training"
        )
    names = [n for n in named if n]
    tails = [n for n in names if n.endswith(f".{layer}")]  # "fc" for "model.fc"
    close = tails[:1] or difflib.get_close_matches(layer, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
    raise ValueError(f"unknown layer {layer!r}.{hint} Available layers: {shown}")


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """All ``nn.Conv2d`` submodules with their dotted names, in definition order."""
    if isinstance(model, ModelView):
        model = model.model
    return [(n, m) for n, m in named_layers(model) if isinstance(m, nn.Conv2d)]


def adapter_base(module: nn.Module | None) -> nn.Module | None:
    """The frozen layer a PEFT adapter layer (LoRA, LoHa, LoKr, IA3, ...) wraps, else
    ``None``: its ``base_layer``, a layer with a ``weight``, in a module that has PEFT's
    adapter attributes (``adapter_layer_names`` or ``get_delta_weight``). A container
    that only happens to be called ``base_layer`` (the stem of timm's DLA) is none."""
    base = getattr(module, "base_layer", None)
    if not isinstance(base, nn.Module) or not hasattr(base, "weight"):
        return None
    peft = hasattr(module, "adapter_layer_names") or callable(
        getattr(module, "get_delta_weight", None)
    )
    return base if peft else None


def _adapter_of(modules: dict[str, nn.Module], name: str) -> str | None:
    """The innermost module around ``name`` that is a PEFT adapter layer
    (:func:`adapter_base`), else ``None``."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        owner = ".".join(parts[:i])
        if adapter_base(modules.get(owner)) is not None:
            return owner
    return None


def adapted_layer(layer: nn.Module) -> tuple[nn.Module, Tensor]:
    """The plain layer and the weight it computes with, for a PEFT adapter layer.

    A PEFT adapter layer (LoRA, LoHa, LoKr, ...) holds the frozen ``base_layer`` and
    adds each active adapter's ``get_delta_weight``; its effective weight is the sum
    (a DoRA adapter's rescaled to its magnitudes), unless the adapters are merged into
    the base already, or disabled. Any other
    layer is returned with its own ``weight``, computed now when a forward pre-hook
    recomputes it each forward (``torch.nn.utils.prune``'s ``weight_orig * weight_mask``,
    the legacy ``weight_norm`` and ``spectral_norm``: :func:`recomputed_tensors`): the
    attribute holds the last forward's, from before the optimizer's latest step.

    Returns:
        ``(layer whose type and shape the weight has, weight)``.
    """
    base = adapter_base(layer)
    if base is None:
        return layer, _current_weight(layer)
    weight = base.weight
    delta = getattr(layer, "get_delta_weight", None)
    if callable(delta) and not getattr(layer, "merged", False):
        if not getattr(layer, "disable_adapters", False):
            for adapter in getattr(layer, "active_adapters", None) or ():
                try:
                    change = delta(adapter).to(weight.dtype)
                except (KeyError, AttributeError, TypeError):  # not this layer's adapter
                    continue
                weight = _dora_weight(layer, adapter, base.weight, weight, change)
    return base, weight


def _dora_weight(
    layer: nn.Module, adapter: str, base: Tensor, weight: Tensor, delta: Tensor
) -> Tensor:
    """``weight + delta``, rescaled as a DoRA adapter (``use_dora=True``) does: each
    output unit to its learned magnitude over its norm in ``base + delta`` (PEFT's merge)."""
    try:
        entry = layer.lora_magnitude_vector[adapter]  # type: ignore[index]
        magnitude = getattr(entry, "weight", entry)  # a layer (PEFT >= 0.12) or the vector
    except (KeyError, AttributeError, TypeError):  # plain LoRA: no magnitude
        return weight + delta
    norm = (base + delta).flatten(1).norm(dim=1).detach()
    factor = (magnitude.flatten() / norm).view(-1, *([1] * (weight.dim() - 1)))
    return factor.to(weight.dtype) * (weight + delta)


def recomputed_tensors(module: nn.Module) -> list[tuple[str, str, Any]]:
    """The tensors of ``module`` that a forward pre-hook recomputes each forward from
    stored ones: ``(name, kind, hook)``, ``kind`` one of ``"prune"``
    (``torch.nn.utils.prune``: ``<name>_orig * <name>_mask``), ``"weight_norm"``
    (``<name>_g``, ``<name>_v``) and ``"spectral_norm"`` (``<name>_orig``; the legacy
    hooks). The attribute ``<name>`` holds the last forward's value."""
    found = []
    for hook in module._forward_pre_hooks.values():  # noqa: SLF001 - read only
        name = getattr(hook, "_tensor_name", getattr(hook, "name", None))
        if not isinstance(name, str):
            continue
        if hasattr(module, f"{name}_mask") and callable(getattr(hook, "apply_mask", None)):
            found.append((name, "prune", hook))
        elif hasattr(module, f"{name}_g") and hasattr(module, f"{name}_v"):
            found.append((name, "weight_norm", hook))
        elif hasattr(module, f"{name}_orig") and hasattr(module, f"{name}_u"):
            found.append((name, "spectral_norm", hook))
    return found


def _current_weight(layer: nn.Module) -> Tensor:
    """``layer.weight`` as its next forward will compute it (see :func:`adapted_layer`)."""
    for name, kind, hook in recomputed_tensors(layer):
        if name != "weight":
            continue
        if kind == "prune":
            return hook.apply_mask(layer)
        if kind == "weight_norm":
            return hook.compute_weight(layer)
        return hook.compute_weight(layer, do_power_iteration=False)  # its eval-mode weight
    return _conv_weight(layer) if _own_conv_forward(layer) else layer.weight


def _own_conv_forward(layer: nn.Module) -> bool:
    """A conv subclass with a forward of its own (a QAT conv's fake-quantized weight is
    not read: its forward would move the observers)."""
    own = isinstance(layer, nn.Conv2d) and type(layer).forward is not nn.Conv2d.forward
    return own and not hasattr(layer, "weight_fake_quant")


class _FirstConvWeight(torch.overrides.TorchFunctionMode):
    """Records the weight of the first ``conv2d`` call under it."""

    weight: Any = None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is torch.nn.functional.conv2d and self.weight is None:
            self.weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
        return func(*args, **kwargs)


def _conv_weight(layer: nn.Conv2d) -> Tensor:
    """The weight a conv with a forward of its own passes to ``conv2d``: a weight
    standardization (timm's ``StdConv2d``, ``ScaledStdConv2d`` of NFNet and BiT) is
    computed there from the stored ``weight``, whose mean and scale do not matter.
    Its ``forward`` runs once on a small zero input (no hooks); ``layer.weight`` when
    it calls no ``conv2d`` with a weight of that shape."""
    side = [d * (k - 1) + 1 for d, k in zip(layer.dilation, layer.kernel_size, strict=True)]
    x = torch.zeros(
        1, layer.in_channels, *side, device=layer.weight.device, dtype=layer.weight.dtype
    )
    recorder = _FirstConvWeight()
    try:
        with torch.no_grad(), recorder:
            layer.forward(x)
    except Exception:  # noqa: BLE001 - a forward that needs more than an image: as stored
        return layer.weight
    found = recorder.weight
    ok = isinstance(found, Tensor) and found.shape == layer.weight.shape
    return found.detach() if ok else layer.weight


def feature_conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv layers whose outputs are the model's feature maps, in definition order.

    :func:`conv_layers`, with a PEFT adapter layer (LoRA and the other tuners: a module
    holding the frozen ``base_layer`` and the adapter's own small convs) read as one
    layer: the wrapper, whose output is the adapted conv's. Its inner convs are left
    out: the base conv's output misses the adapter, and a LoRA ``lora_B`` conv is
    zero-initialised (its Grad-CAM map would be empty).
    """
    if isinstance(model, ModelView):
        model = model.model
    modules = dict(named_layers(model))
    found: dict[str, nn.Module] = {}
    for name, conv in conv_layers(model):
        owner = _adapter_of(modules, name)
        if owner is None:
            found.setdefault(name, conv)
        else:
            found.setdefault(owner, modules[owner])
    return list(found.items())


def logit_head(linears: dict[str, nn.Module], view: nn.Module, images: Tensor) -> str | None:
    """Of the ``linears`` run by one forward of ``view`` on ``images``: the last whose
    output is the logits; else (two heads averaged, as a distilled DeiT's) the first of
    the last run of those whose output is ``(N, K)`` rows of the logits' shape. An
    inner ``Linear`` that only happens to have ``K`` outputs (a ViT block's MLP over
    tokens, ``(N, T, K)``; a hidden layer of a ``K``-wide MLP head) is not the head."""
    with torch.no_grad(), record_outputs(linears) as calls:
        logits = view(images.float()).float()
    shape = tuple(logits.shape)
    equal = [
        name
        for name, out in calls
        if tuple(out.shape) == shape and torch.allclose(out.float(), logits, atol=1e-5)
    ]
    if equal:
        return equal[-1]
    head, previous_matched = None, False
    for name, out in calls:
        matched = tuple(out.shape) == shape
        if matched and not previous_matched:
            head = name  # the first of a new run
        previous_matched = matched
    return head


def layers_after(
    view: nn.Module, image: Tensor, name: str, *, skip_flat: bool = False
) -> dict[str, nn.Module]:
    """The layers with parameters of their own that run after layer ``name`` (its last
    call) in one forward of ``view`` on ``image``, outside ``name`` itself.

    Args:
        view: The model (or a :class:`ModelView`), run once without gradients.
        image: ``(1, C, H, W)`` input of ``view``.
        name: Dotted layer name in the user's model.
        skip_flat: Leave out the layers whose input is flat ``(N, D)`` (a CNN's pooled or
            flattened head); those that read maps or tokens stay.

    Returns:
        Name -> module, in the order they finish (empty when ``name`` does not run).
    """
    model = view.model if isinstance(view, ModelView) else view

    def inside(n: str) -> bool:
        return n == name or n.startswith(name + ".")

    owners = {
        n: m for n, m in named_layers(model) if next(m.parameters(recurse=False), None) is not None
    }
    with torch.no_grad(), record_inputs(owners) as calls:
        view(image)
    ends = [i for i, (n, *_) in enumerate(calls) if inside(n)]
    if not ends:
        return {}
    return {
        n: owners[n]
        for n, first, _ in calls[ends[-1] + 1 :]
        if not inside(n) and not (skip_flat and isinstance(first, Tensor) and first.dim() <= 2)
    }
