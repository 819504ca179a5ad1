"""The one place where hooks are registered.

Every hook lives inside a context manager here and is removed in ``finally``,
also when the code inside raises, so no hook outlives the call that needed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "capture_outputs",
    "gradient_leaf",
    "has_hooks",
    "record_calls",
    "record_io",
    "relu_backward",
]


@contextlib.contextmanager
def _forward_hooks(
    modules: Mapping[str, nn.Module], hook: Callable[[str, tuple[Any, ...], Any], None]
) -> Iterator[None]:
    """Calls ``hook(name, args, output)`` after every forward of each module in the block."""
    handles = []
    try:
        for name, module in modules.items():
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


class _ReLUMode(TorchFunctionMode):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inplace = func in _RELUS_IN or (func is F.relu and bool(kwargs.get("inplace", False)))
        if func in _RELUS_OUT or func in _RELUS_IN:
            x = args[0] if args else kwargs["input"]
            self.calls += 1
            y = _GuidedReLU.apply(x, self.mode)
            if inplace:  # keep in-place semantics: the caller may reuse `x`
                return x.copy_(y)
            return y
        return func(*args, **kwargs)


@contextlib.contextmanager
def relu_backward(mode: str) -> Iterator[_ReLUMode]:
    """Replaces the backward of every ReLU called in the block.

    Catches ``nn.ReLU`` modules (in-place or not), ``F.relu``/``F.relu_``,
    ``torch.relu``/``torch.relu_`` and ``Tensor.relu``/``relu_`` alike, by a
    ``TorchFunctionMode``: module swapping or module hooks miss functional calls
    and break on in-place ReLUs.

    Args:
        mode: ``"guided"`` (guided backprop) or ``"deconvnet"``.

    Yields:
        The active mode; ``mode.calls`` counts the ReLUs it replaced.
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
