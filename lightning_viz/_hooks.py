"""The one place where hooks are registered.

Every hook lives inside a context manager here and is removed in ``finally``,
also when the code inside raises, so no hook outlives the call that needed it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "RELU_FAMILY",
    "AttentionRecord",
    "capture_attention",
    "capture_outputs",
    "gradient_leaf",
    "has_hooks",
    "record_calls",
    "record_inputs",
    "record_io",
    "record_order",
    "relu_backward",
]


@contextlib.contextmanager
def _forward_hooks(
    modules: Mapping[str, nn.Module], hook: Callable[[str, tuple[Any, ...], Any], None]
) -> Iterator[None]:
    """Calls ``hook(name, args, output)`` after every forward of each module in the block
    (a TorchScript module is left out: its compiled forward runs no Python hooks)."""
    handles = []
    try:
        for name, module in modules.items():
            if isinstance(module, torch.jit.ScriptModule):  # runs no hooks (resolve_layer
                continue  # refuses such a layer when it is asked for by name)
            handles.append(
                module.register_forward_hook(lambda _m, args, out, name=name: hook(name, args, out))
            )
        yield
    finally:
        for handle in handles:
            handle.remove()
        handles.clear()


@contextlib.contextmanager
def capture_outputs(
    modules: Mapping[str, nn.Module], detach: bool = True
) -> Iterator[dict[str, Tensor]]:
    """Records a copy of each module's latest forward output while the block runs.

    The copy is immune to in-place ops that follow the layer (an
    ``nn.ReLU(inplace=True)`` after a BatchNorm would otherwise overwrite a stored
    reference).

    Args:
        modules: Name -> module to watch.
        detach: Store detached copies (no graph kept alive); ``False`` keeps the
            copies attached to the graph, for gradients of a layer's output.

    Yields:
        A dict filled with name -> output of the module's latest forward call.
    """
    store: dict[str, Tensor] = {}

    def hook(name: str, _args: Any, out: Any) -> None:
        t = out[0] if isinstance(out, tuple | list) else out
        if isinstance(t, Tensor):
            store[name] = t.detach().clone() if detach else t.clone()

    with _forward_hooks(modules, hook):
        yield store


@contextlib.contextmanager
def record_calls(modules: Mapping[str, nn.Module]) -> Iterator[list[tuple[str, torch.Size]]]:
    """Appends ``(name, output shape)`` for every forward call, in execution order."""
    calls: list[tuple[str, torch.Size]] = []

    def hook(name: str, _args: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            calls.append((name, out.shape))

    with _forward_hooks(modules, hook):
        yield calls


@contextlib.contextmanager
def record_order(modules: Mapping[str, nn.Module]) -> Iterator[list[str]]:
    """Appends the name of every forward call, whatever it returns (an attention layer's
    tuple too), in the order the calls complete (an enclosing module after what it
    called)."""
    calls: list[str] = []

    def hook(name: str, _args: Any, _out: Any) -> None:
        calls.append(name)

    with _forward_hooks(modules, hook):
        yield calls


@contextlib.contextmanager
def record_outputs(modules: Mapping[str, nn.Module]) -> Iterator[list[tuple[str, Tensor]]]:
    """Appends ``(name, output)`` for every forward call that returns a tensor, in the
    order the calls complete (an enclosing module after what it called). The outputs
    are kept (detached): run one small batch."""
    calls: list[tuple[str, Tensor]] = []

    def hook(name: str, _args: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            calls.append((name, out.detach()))

    with _forward_hooks(modules, hook):
        yield calls


@contextlib.contextmanager
def record_inputs(modules: Mapping[str, nn.Module]) -> Iterator[list[tuple[str, Any, Any]]]:
    """Appends ``(name, first input, output)`` for every forward call, in the order the
    calls complete. The tensors are held, not copied, so that one tensor read by two
    modules is recognisable (no allocation can reuse its memory meanwhile): run one
    small batch."""
    calls: list[tuple[str, Any, Any]] = []

    def hook(name: str, args: tuple[Any, ...], out: Any) -> None:
        calls.append((name, args[0] if args else None, out))

    with _forward_hooks(modules, hook):
        yield calls


@contextlib.contextmanager
def gradient_leaf(module: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Makes ``module``'s output the start of the autograd graph.

    During the block, each forward of ``module`` stores its output detached as a
    leaf that requires grad (``store["leaf"]``) and passes a clone of it on, so
    ``torch.autograd.grad(score, store["leaf"])`` runs backward only from the score
    down to this layer, never further, and in-place ops after the layer stay legal.

    Yields:
        A dict with key ``"leaf"`` once the module has run.
    """
    store: dict[str, Tensor] = {}

    def hook(_m, _inp, out):
        if not isinstance(out, Tensor):
            raise TypeError(f"layer {type(_m).__name__} returns {type(out).__name__}, not a tensor")
        leaf = out.detach().requires_grad_(True)
        store["leaf"] = leaf
        return leaf.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _copy(value: Any) -> Any:
    """A detached copy of a tensor (or of the tensors of a tuple/list); others as they are."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, tuple | list):
        return type(value)(_copy(v) for v in value)
    return value


@contextlib.contextmanager
def record_io(
    modules: Mapping[str, nn.Module], active: Callable[[], bool], inputs_of: tuple[str, ...] = ()
) -> Iterator[dict[str, list[tuple[Any, Any]]]]:
    """Records copies of ``(first input, output)`` of every forward call of each module.

    Unlike :func:`capture_outputs` (the latest output only), every call is kept, for
    recording during a whole validation loop. Copies, so an in-place op after the
    layer (``ReLU(inplace=True)``) does not change what was recorded.

    Args:
        modules: Name -> module to watch.
        active: Called at each forward; nothing is recorded while it returns False.
        inputs_of: Names whose first input is recorded too (``None`` for the others).

    Yields:
        ``{name: [(input0, output), ...]}``, appended to in call order; the caller
        empties the lists when it has read them.
    """
    store: dict[str, list[tuple[Any, Any]]] = {name: [] for name in modules}

    def hook(name: str, args: tuple[Any, ...], out: Any) -> None:
        if active():
            first = _copy(args[0]) if args and name in inputs_of else None
            store[name].append((first, _copy(out)))

    try:
        with _forward_hooks(modules, hook):
            yield store
    finally:
        for calls in store.values():
            calls.clear()


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward is guided backprop (Springenberg et al. 2015) or deconvnet."""

    @staticmethod
    def forward(ctx, x: Tensor, mode: str) -> Tensor:  # noqa: D102
        y = x.clamp(min=0)
        ctx.mode = mode
        if mode == "guided":
            ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        if ctx.mode == "deconvnet":  # pass positive gradients, ignore the forward sign
            return grad.clamp(min=0), None
        (y,) = ctx.saved_tensors  # guided: positive gradient where the input was positive
        return grad.clamp(min=0) * (y > 0).to(grad.dtype), None


_RELUS_OUT = {F.relu, torch.relu, Tensor.relu}
_RELUS_IN = {F.relu_, torch.relu_, Tensor.relu_}


class _RuleActivation(torch.autograd.Function):
    """A ReLU-family unit (GELU, SiLU, ...) whose backward is the guided or deconvnet rule.

    Forward: ``f(x)`` as the model computes it. Backward: ``relu(g) * f'(x)``, times
    ``[x > 0]`` for ``"guided"``; ``f'`` is the unit's own derivative (autograd of
    ``f``, so parameters such as GELU's ``approximate`` or ELU's ``alpha`` are used).
    """

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor], mode: str) -> Tensor:  # noqa: D102
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            y = fn(leaf)
            (slope,) = torch.autograd.grad(y, leaf, torch.ones_like(y))  # f'(x), elementwise
        factor = slope * (x > 0).to(slope.dtype) if mode == "guided" else slope
        ctx.save_for_backward(factor)
        return y.detach()

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        (factor,) = ctx.saved_tensors
        return grad.clamp(min=0) * factor, None, None


# ReLU-family activations besides ReLU: func -> (kind, out-of-place function, (name, default)
# of each argument after the input, always in place). Modules call these functional forms
# (nn.ReLU6 calls F.hardtanh(x, 0, 6)), so the TorchFunctionMode sees both.
_RULE_ACTIVATIONS: dict[
    Any, tuple[str, Callable[..., Tensor], tuple[tuple[str, Any], ...], bool]
] = {
    F.gelu: ("gelu", F.gelu, (("approximate", "none"),), False),
    F.silu: ("silu", F.silu, (("inplace", False),), False),
    F.hardswish: ("hardswish", F.hardswish, (("inplace", False),), False),
    F.mish: ("mish", F.mish, (("inplace", False),), False),
    F.elu: ("elu", F.elu, (("alpha", 1.0), ("inplace", False)), False),
    F.elu_: ("elu", F.elu, (("alpha", 1.0),), True),
    F.leaky_relu: (
        "leaky_relu",
        F.leaky_relu,
        (("negative_slope", 0.01), ("inplace", False)),
        False,
    ),
    F.leaky_relu_: ("leaky_relu", F.leaky_relu, (("negative_slope", 0.01),), True),
    F.relu6: ("relu6", F.relu6, (("inplace", False),), False),
    F.hardtanh: (
        "relu6",
        F.hardtanh,
        (("min_val", -1.0), ("max_val", 1.0), ("inplace", False)),
        False,
    ),
    F.hardtanh_: ("relu6", F.hardtanh, (("min_val", -1.0), ("max_val", 1.0)), True),
}
# Other activations: not replaced (ordinary gradient), only counted, for error messages.
_OTHER_ACTIVATIONS = {
    torch.tanh: "tanh",
    Tensor.tanh: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    Tensor.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.softplus: "softplus",
    F.softsign: "softsign",
    F.hardsigmoid: "hardsigmoid",
    F.logsigmoid: "logsigmoid",
    F.selu: "selu",
    F.celu: "celu",
    F.prelu: "prelu",
    F.rrelu: "rrelu",
    F.glu: "glu",
    F.tanhshrink: "tanhshrink",
}
# The kinds the rule applies to, as counted in ``_ReLUMode.counts``.
RELU_FAMILY: tuple[str, ...] = (
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "gelu",
    "silu",
    "hardswish",
    "mish",
)


class _ReLUMode(TorchFunctionMode):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.calls = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.others: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inplace = func in _RELUS_IN or (func is F.relu and bool(kwargs.get("inplace", False)))
        if func in _RELUS_OUT or func in _RELUS_IN:
            x = args[0] if args else kwargs["input"]
            self.calls += 1
            self.counts["relu"] += 1
            y = _GuidedReLU.apply(x, self.mode)
            if inplace:  # keep in-place semantics: the caller may reuse `x`
                return x.copy_(y)
            return y
        if func in _RULE_ACTIVATIONS:
            return self._rule(func, args, kwargs)
        if func in _OTHER_ACTIVATIONS:
            self.others[_OTHER_ACTIVATIONS[func]] += 1
        return func(*args, **kwargs)

    def _rule(self, func, args, kwargs):
        kind, fn, params, always_inplace = _RULE_ACTIVATIONS[func]
        x = args[0] if args else kwargs["input"]
        values = dict(params)
        values.update(zip((name for name, _ in params), args[1:], strict=False))
        values.update((k, v) for k, v in kwargs.items() if k != "input")
        inplace = always_inplace or bool(values.pop("inplace", False))
        if kind == "relu6" and fn is F.hardtanh and values["min_val"] != 0:
            self.others["hardtanh"] += 1  # a hardtanh that is not a clipped ReLU
            return func(*args, **kwargs)
        self.calls += 1
        self.counts[kind] += 1
        y = _RuleActivation.apply(x, lambda t: fn(t, **values), self.mode)
        if inplace:
            return x.copy_(y)
        return y


@contextlib.contextmanager
def relu_backward(mode: str) -> Iterator[_ReLUMode]:
    """Replaces the backward of every ReLU-family activation called in the block.

    Catches ``nn.ReLU`` modules (in-place or not), ``F.relu``/``F.relu_``,
    ``torch.relu``/``torch.relu_`` and ``Tensor.relu``/``relu_`` alike, by a
    ``TorchFunctionMode``: module swapping or module hooks miss functional calls
    and break on in-place ReLUs.

    ReLU: ``"guided"`` passes ``relu(g)`` where the input was positive (Springenberg
    et al. 2015); ``"deconvnet"`` passes ``relu(g)`` whatever the input (Zeiler &
    Fergus 2014). Both are defined for ReLU only; for the rest of the ReLU family —
    ReLU6 (``F.relu6``, and ``F.hardtanh`` with ``min_val=0`` as ``nn.ReLU6`` calls
    it), LeakyReLU, ELU, GELU, SiLU, Hardswish, Mish; modules, functional and
    in-place calls — this module applies a rule of its own: with ``g`` the incoming
    gradient, ``x`` the unit's input and ``f'`` its own derivative,

    - ``"guided"``: ``relu(g) * [x > 0] * f'(x)`` (only positive gradients, only
      through units with positive input, scaled by the local slope);
    - ``"deconvnet"``: ``relu(g) * f'(x)`` (the positive part of the gradient times
      the local slope, whatever the sign of the input).

    Every other function (tanh, sigmoid, softplus, hardsigmoid, SELU, ...) keeps its
    ordinary gradient; activations among them are counted in ``mode.others``.

    Args:
        mode: ``"guided"`` (guided backprop) or ``"deconvnet"``.

    Yields:
        The active mode: ``mode.calls`` counts the units it replaced, ``mode.counts``
        them by kind (``"relu"``, ``"relu6"``, ``"leaky_relu"``, ``"elu"``,
        ``"gelu"``, ``"silu"``, ``"hardswish"``, ``"mish"``), ``mode.others`` the other
        activations seen (by name, e.g. ``"tanh"``).
    """
    if mode not in ("guided", "deconvnet"):
        raise ValueError(f"mode must be 'guided' or 'deconvnet', got {mode!r}")
    with _ReLUMode(mode) as m:
        yield m


def has_hooks(model: nn.Module) -> bool:
    """True when any submodule of ``model`` still holds a hook (for leak checks)."""
    names = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
    )
    return any(len(getattr(m, n, {})) for m in model.modules() for n in names)


# ----------------------------------------------------------------------------- attention
@dataclasses.dataclass(frozen=True)
class AttentionRecord:
    """One attention module's weights from its latest forward call.

    Attributes:
        weights: ``(N, heads, T, T)`` detached softmax weights; row ``i`` is query
            token ``i``'s distribution over the ``T`` key tokens.
        source: The tensor the forward multiplied with the values, on the autograd
            graph when gradients were recorded (``None`` when the forward ran without
            them): ``torch.autograd.grad(score, source)``, reshaped to
            ``weights.shape``, is the gradient of ``score`` w.r.t. the weights.
    """

    weights: Tensor
    source: Tensor | None


def _is_timm_attention(module: nn.Module) -> bool:
    return isinstance(getattr(module, "fused_attn", None), bool) and isinstance(
        getattr(module, "attn_drop", None), nn.Module
    )


def _is_hf_attention(module: nn.Module) -> bool:
    """A Hugging Face transformers attention block (``ViTAttention``,
    ``DeiTAttention``, ``Dinov2Attention``, their ``Sdpa`` variants): it returns
    ``(output, weights, ...)`` when asked through ``output_attentions`` (transformers
    4) or when its config selects the eager implementation (transformers 5)."""
    if not type(module).__module__.startswith("transformers."):
        return False
    takes_flag = "output_attentions" in inspect.signature(module.forward).parameters
    config = getattr(module, "config", None)
    return takes_flag or isinstance(getattr(config, "_attn_implementation", None), str)


def _hook_hf_attention(
    module: nn.Module, name: str, store: dict[str, AttentionRecord]
) -> list[Any]:
    """Hooks that ask a transformers attention block for its weights and record them;
    the caller gets what it asked for."""
    signature = inspect.signature(module.forward)
    takes_flag = "output_attentions" in signature.parameters
    asked: list[bool] = []

    def pre_hook(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        bound = signature.bind(*args, **kwargs)
        asked.append(bool(bound.arguments.get("output_attentions", False)))
        bound.arguments["output_attentions"] = True
        return bound.args, bound.kwargs

    def hook(_m: nn.Module, _args: tuple, _kwargs: dict, out: Any) -> Any:
        weights = out[1] if isinstance(out, tuple) and len(out) > 1 else None
        if isinstance(weights, Tensor) and weights.dim() == 4:  # (N, heads, T, T)
            source = weights if weights.requires_grad else None
            store[name] = AttentionRecord(weights.detach(), source)
        if takes_flag and asked and not asked.pop():
            return (out[0], *out[2:])  # the weights only we asked for
        return None

    handles = [module.register_forward_hook(hook, with_kwargs=True)]
    if takes_flag:
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
    return handles


@contextlib.contextmanager
def capture_attention(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, AttentionRecord]]:
    """Records the per-head attention weights of attention modules while the block runs.

    The model's outputs are unchanged (up to float rounding: the weights are
    computed by the explicit softmax path instead of a fused kernel), and nothing
    is left behind: hooks are removed and attributes restored in ``finally``.

    - ``nn.MultiheadAttention`` (torchvision's ViT calls it with
      ``need_weights=False``): a forward pre-hook asks for
      ``need_weights=True, average_attn_weights=False``; a forward hook records the
      ``(N, heads, T, T)`` weights and hands the caller what it asked for (``None``
      weights, or their head mean when it asked for averaged weights).
    - timm's ``Attention`` (fused scaled-dot-product attention): ``fused_attn`` is
      set to ``False`` for the block so the explicit softmax runs, and a forward hook
      on its ``attn_drop`` records the weights (identity in eval mode).
    - Hugging Face transformers' attention blocks (ViT, DeiT, DINOv2): transformers 4
      is asked for the weights with ``output_attentions=True`` (the extra output is
      taken out again for a caller that did not ask), transformers 5 by switching its
      config to the eager implementation for the block; a forward hook records the
      weights the block returns (those it multiplied with the values).

    Args:
        modules: Name -> attention module (one of the two kinds above).

    Yields:
        A dict filled with name -> :class:`AttentionRecord` of the module's latest
        forward call.

    Raises:
        TypeError: A module is of neither kind.
    """
    store: dict[str, AttentionRecord] = {}
    handles = []
    fused: list[tuple[nn.Module, bool, bool]] = []  # (module, was an instance attr, value)
    configs: list[tuple[Any, str]] = []  # transformers configs switched to eager
    try:
        for name, module in modules.items():
            if isinstance(module, nn.MultiheadAttention):
                handles.extend(_hook_multihead(module, name, store))
            elif _is_hf_attention(module):
                config = getattr(module, "config", None)
                implementation = getattr(config, "_attn_implementation", None)
                if isinstance(implementation, str) and implementation != "eager":
                    if all(c is not config for c, _ in configs):
                        configs.append((config, implementation))
                        config._attn_implementation = "eager"
                handles.extend(_hook_hf_attention(module, name, store))
            elif _is_timm_attention(module):
                fused.append((module, "fused_attn" in vars(module), module.fused_attn))
                module.fused_attn = False

                def hook(_m: nn.Module, _args: Any, out: Any, name: str = name) -> None:
                    source = out if out.requires_grad else None
                    store[name] = AttentionRecord(out.detach(), source)

                handles.append(module.attn_drop.register_forward_hook(hook))
            else:
                raise TypeError(
                    f"cannot read attention weights of {name!r} ({type(module).__name__}); "
                    "supported: nn.MultiheadAttention, timm's Attention and the attention "
                    "blocks of transformers' ViT, DeiT and DINOv2"
                )
        yield store
    finally:
        for h in handles:
            h.remove()
        handles.clear()
        for config, implementation in configs:
            config._attn_implementation = implementation
        for module, own, value in fused:
            if own:
                module.fused_attn = value
            else:
                del module.fused_attn


_MHA_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)


def _hook_multihead(
    module: nn.MultiheadAttention, name: str, store: dict[str, AttentionRecord]
) -> list[Any]:
    asked: list[tuple[bool, bool]] = []  # what the caller asked for: (need_weights, average)

    def pre_hook(m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        bound = _MHA_SIGNATURE.bind(m, *args, **kwargs)
        asked.append(
            (
                bool(bound.arguments.get("need_weights", True)),
                bool(bound.arguments.get("average_attn_weights", True)),
            )
        )
        bound.arguments["need_weights"] = True
        bound.arguments["average_attn_weights"] = False
        return bound.args[1:], bound.kwargs

    def hook(_m: nn.Module, _args: tuple, _kwargs: dict, out: Any) -> Any:
        need, average = asked.pop() if asked else (False, True)
        attn_out, weights = out
        w = weights if weights.dim() == 4 else weights.unsqueeze(0)  # unbatched: (heads, L, S)
        # The returned weights are a view of the tensor the forward multiplied with the
        # values; that tensor (its base) is where the gradient w.r.t. the weights lives.
        base = weights._base
        source = base if base is not None and base.numel() == weights.numel() else None
        if source is not None and not source.requires_grad:
            source = None
        store[name] = AttentionRecord(w.detach(), source)
        if not need:
            return attn_out, None
        return attn_out, weights.mean(dim=-3) if average else weights

    return [
        module.register_forward_pre_hook(pre_hook, with_kwargs=True),
        module.register_forward_hook(hook, with_kwargs=True),
    ]
