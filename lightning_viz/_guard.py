"""The one place where model state is saved and restored.

Every method that runs the user's model (the functional methods and the callbacks
through them) enters :func:`preserve_state`. It puts the model into the state a
visualization needs (eval mode, gradients enabled even under ``inference_mode``,
parameters frozen) and restores, in ``finally``, exactly what it found: every
submodule's ``training`` flag, every parameter's ``requires_grad`` and ``.grad``
reference and the global RNG streams.

:class:`ModelView` adapts the user's model for the methods: it unwraps
``torch.compile`` and DDP wrappers, maps pixel-space inputs through ``mean``/``std``,
maps the model output to logits and runs the forward under the trainer's precision
context (autocast) while gradients are taken outside it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.utils.checkpoint as _checkpoint
from torch import Tensor, nn
from torch.nn.parameter import is_lazy

from lightning_viz._checks import (
    call_adapter,
    check_callable,
    check_model,
    check_normalization,
    fail,
)
from lightning_viz._warning import warn_at

__all__ = [
    "ModelView",
    "NotLogitsError",
    "has_lazy_parameters",
    "in_model_dtype",
    "is_compiled",
    "make_generator",
    "mark_background_thread",
    "plain_checkpoint_calls",
    "preserve_state",
    "scripted_modules",
    "unwrap_model",
]

# which thread is lightning-viz's background worker (see mark_background_thread)
_THREAD = threading.local()


def unwrap_model(model: nn.Module) -> nn.Module:
    """Returns the module whose forward is the user's own.

    Strips ``DistributedDataParallel``/``DataParallel`` (``.module``) and
    ``torch.compile`` (``._orig_mod``) wrappers, so hooks and gradients act on the
    real submodules, never through the DDP reducer.

    Args:
        model: Any ``nn.Module``.

    Returns:
        The innermost wrapped module (``model`` itself when it is not wrapped).
    """
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
    return model


def eager_forward(module: nn.Module) -> Callable[..., Any] | None:
    """The eager forward of a module whose forward is compiled, else ``None``.

    Two kinds of compiled modules have their compiled forward on the instance: a
    ``torch.compile`` wrapper (``OptimizedModule``, whose eager forward is its
    ``_orig_mod``) and a LightningModule that Lightning unwrapped from
    ``torch.compile(lit_module)`` (``trainer.fit`` sets the compiled forward on the
    instance and keeps the original one in ``_compiler_ctx["original_forward"]``).
    """
    own = vars(module).get("forward")
    if own is None or isinstance(module, torch.jit.ScriptModule):  # TorchScript: no wrapper
        return None
    inner = vars(module).get("_modules", {}).get("_orig_mod")
    if isinstance(inner, nn.Module):
        return inner.__call__
    ctx = vars(module).get("_compiler_ctx")
    original = ctx.get("original_forward") if isinstance(ctx, dict) else None
    if callable(original) and original is not own:
        return original
    return None


def scripted_modules(model: nn.Module) -> list[str]:
    """Names of the outermost TorchScript modules in ``model`` (``torch.jit.script``;
    ``""``: the model itself). Their forward runs compiled code: no Python hooks,
    function modes or submodule calls reach inside."""
    found: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule) and not any(
            name == f or name.startswith(f"{f}.") or f == "" for f in found
        ):
            found.append(name)
    return found


def is_compiled(module: nn.Module) -> bool:
    """A module whose forward is compiled (see :func:`eager_forward`), or compiled in
    place (``module.compile()``: Dynamo runs its ``_compiled_call_impl``)."""
    return eager_forward(module) is not None or compiled_in_place(module)


def compiled_in_place(module: nn.Module) -> bool:
    """``module.compile()`` was called: its calls run a compiled ``_call_impl`` (bound
    to this module: a deep copy would call the original)."""
    return vars(module).get("_compiled_call_impl") is not None


def make_eager(module: nn.Module) -> nn.Module:
    """Makes every compiled submodule of ``module`` run its eager forward, for good.

    For a deep copy of a compiled model: the copied compiled forward still calls the
    original model (a function is copied by reference), the eager one the copy's own.
    Returns ``module``.
    """
    for m in module.modules():
        forward = eager_forward(m)
        if forward is not None:
            m.__dict__["forward"] = forward
        if compiled_in_place(m):
            m.__dict__["_compiled_call_impl"] = None
    return module


# module flags that switch activation checkpointing on (timm, Hugging Face)
_CHECKPOINT_FLAGS = ("grad_checkpointing", "gradient_checkpointing")
# what torch.utils.checkpoint.checkpoint looks up at each call: the reentrant variant's
# autograd Function and the non-reentrant variant's generator (named "..._impl" from
# torch 2.10 on, the shim keeps the old name); whichever this torch has is replaced
_NON_REENTRANT = (
    "_checkpoint_without_reentrant_generator",
    "_checkpoint_without_reentrant_generator_impl",
)
_MISSING = object()
_PLAIN_LOCK = threading.Lock()
_plain_depth = 0
_saved: list[tuple[Any, str, Any]] = []


def mark_background_thread() -> None:
    """Marks the calling thread as lightning-viz's background worker.

    The worker runs alongside training, so :func:`preserve_state` there must not
    save and restore what training shares with it: the global RNG streams (restoring
    them would rewind the draws training made meanwhile, dropout's for example) and
    ``torch.utils.checkpoint`` (training's own checkpointed forward would run plain).
    """
    _THREAD.background = True


def _on_background_thread() -> bool:
    return getattr(_THREAD, "background", False)


def _run_plainly(function: Callable[..., Any], _preserve_rng: bool, *args: Any) -> Any:
    return function(*args)


def _no_recomputation(*_args: Any, **_kwargs: Any) -> Iterator[None]:
    # checkpoint() runs the function between this generator's two steps; doing nothing
    # around it is a plain call
    yield


@contextlib.contextmanager
def plain_checkpoint_calls() -> Iterator[None]:
    """Inside the block ``torch.utils.checkpoint.checkpoint`` runs its function plainly.

    For a model that calls ``checkpoint`` inside ``forward`` (with or without
    reentrant autograd, directly, through ``checkpoint_sequential`` or a checkpoint
    wrapper): a recomputation during a backward would run without the hooks and
    gradient rules of the forward it repeats (a ``CheckpointError``, or a different
    graph), and reentrant checkpointing refuses ``torch.autograd.grad``. Nested blocks
    share one replacement; the last to exit puts back what was there. Process-wide
    while it lasts, so only the thread running the training loop may enter it.
    """
    global _plain_depth
    with _PLAIN_LOCK:
        if _plain_depth == 0:
            targets = [(_checkpoint.CheckpointFunction, "apply", staticmethod(_run_plainly))]
            targets += [
                (_checkpoint, name, _no_recomputation)
                for name in _NON_REENTRANT
                if hasattr(_checkpoint, name)
            ]
            for owner, name, replacement in targets:
                _saved.append((owner, name, vars(owner).get(name, _MISSING)))
                setattr(owner, name, replacement)
        _plain_depth += 1
    try:
        yield
    finally:
        with _PLAIN_LOCK:
            _plain_depth -= 1
            if _plain_depth == 0:
                while _saved:
                    owner, name, original = _saved.pop()
                    if original is _MISSING:
                        delattr(owner, name)
                    else:
                        setattr(owner, name, original)


_BUFFER_COPY_BYTES = 256 * 2**20  # buffers copied at most, to undo what a forward writes
_METRIC_FIELDS = ("_update_count", "_computed", "_forward_cache")


def _version(tensor: Tensor) -> int | None:
    """The tensor's in-place version counter (``None`` for inference tensors)."""
    try:
        return int(tensor._version)
    except RuntimeError:
        return None


class _ForwardWrites:
    """What a forward may write besides parameters, saved to be put back.

    Buffers that ``forward`` updates even in eval mode (a counter, a running input
    statistic, the min/max, scale and zero point of quantization-aware training's
    observers, running statistics of ``F.batch_norm(..., training=True)``) and the
    states of ``torchmetrics`` metrics updated in ``forward``:
    the callbacks' forwards on probe, adversarial or corrupted images must not move
    them. Buffers are copied up to :data:`_BUFFER_COPY_BYTES` in all; a larger one
    that changes is reported (a warning) instead of put back. Quantization observers
    are also switched off while the block runs, so the model is measured with the
    quantization it has.
    """

    def __init__(self, modules: list[nn.Module]) -> None:
        self.model = modules[0] if modules else None  # the guarded module
        self.buffers: list[tuple[nn.Module, str, Tensor, Tensor | None, int | None]] = []
        left = _BUFFER_COPY_BYTES
        for m in modules:
            for name, buf in m._buffers.items():
                if buf is None:
                    continue
                size = buf.numel() * buf.element_size()
                copy = None
                if size <= left:
                    copy, left = buf.detach().clone(), left - size
                self.buffers.append((m, name, buf, copy, _version(buf)))
        self.metrics = [(m, self._metric_state(m)) for m in modules if _is_metric(m)]
        with torch.no_grad():
            for m in modules:  # torch.ao.quantization's FakeQuantize: observe no more
                enabled = getattr(m, "observer_enabled", None)
                if isinstance(enabled, Tensor) and enabled.numel() == 1:
                    enabled.fill_(0)

    @staticmethod
    def _metric_state(metric: nn.Module) -> dict[str, Any]:
        state = {}
        fields = [name for name in _METRIC_FIELDS if name in vars(metric)]  # not properties
        for name in [*metric._defaults, *fields]:  # type: ignore[union-attr]
            if hasattr(metric, name):
                value = getattr(metric, name)
                if isinstance(value, Tensor):
                    value = value.detach().clone()
                elif isinstance(value, list):
                    value = list(value)
                state[name] = value
        return state

    def restore(self) -> None:
        unrestored = []
        with torch.no_grad():
            for m, name, buf, copy, version in self.buffers:
                bound = m._buffers[name] if name in m._buffers else None  # TorchScript: no get
                if bound is not buf:  # rebound by the forward
                    m._buffers[name] = buf
                if copy is None:  # too large to copy: its version tells a change
                    if version is None or _version(buf) != version:
                        unrestored.append(name)
                    continue
                # compared by value: a native kernel (F.batch_norm with training=True
                # updates the running stats) writes without bumping the version
                if _version(buf) == version and torch.equal(buf, copy):
                    continue
                try:
                    buf.copy_(copy)
                except RuntimeError:  # an inference tensor
                    unrestored.append(name)
        for metric, state in self.metrics:
            for name, value in state.items():
                setattr(metric, name, value)
        model = self.model
        said = set() if model is None else _UNRESTORED_SAID.setdefault(model, set())
        if unrestored and not said.issuperset(unrestored):  # once a model, not a place
            said.update(unrestored)
            warn_at(
                f"lightning-viz: the model's forward changed the buffers {unrestored[:5]}, "
                f"too large to be copied before and put back (over {_BUFFER_COPY_BYTES >> 20} "
                "MiB of buffers); the callbacks' forwards may have changed them",
                sys._getframe(3),  # noqa: SLF001 - where the guard was entered
            )


# model -> the buffers said to be changed: each place that guards a model said it again,
# and again once Lightning changed the warning filters (15 times in a 3-epoch run)
_UNRESTORED_SAID: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()


def _is_metric(module: nn.Module) -> bool:
    """A ``torchmetrics.Metric`` (recognised by its state registry)."""
    return isinstance(getattr(module, "_defaults", None), dict) and hasattr(module, "_update_count")


@contextlib.contextmanager
def preserve_state(model: nn.Module) -> Iterator[nn.Module]:
    """Runs a block with ``model`` in eval mode, frozen and with gradients enabled.

    Inside the block every submodule is in eval mode, every parameter has
    ``requires_grad=False`` (so no graph is built for parameters and nothing is
    ever accumulated into ``.grad``), and gradient recording is on even when the
    caller is under ``torch.no_grad`` or ``torch.inference_mode``. On exit, also
    when the block raises, each submodule's ``training`` flag, each parameter's
    ``requires_grad`` and ``.grad`` and the CPU and CUDA RNG states are put back.
    ``torch.compile``d submodules, and a LightningModule trained as
    ``trainer.fit(torch.compile(module))``, run their original (eager) forward inside
    the block, so hooks and gradient rules apply; the compiled forward is restored.
    Activation checkpointing is off inside the block and back on after: switched on by
    a module flag (timm's ``grad_checkpointing``, Hugging Face's
    ``gradient_checkpointing``) or called in ``forward``
    (:func:`plain_checkpoint_calls`); its recomputation during a backward would run
    without the hooks and gradient rules of the forward it repeats.

    On lightning-viz's background worker (:func:`mark_background_thread`), which only
    runs lightning-viz's own networks beside training, the RNG states and
    ``torch.utils.checkpoint`` are left alone: they are shared with training.

    Args:
        model: The model to guard. Wrappers are stripped (see :func:`unwrap_model`).

    Yields:
        The unwrapped module.
    """
    module = unwrap_model(check_model(model))  # the first use of a functional method's model
    modules = list(module.modules())
    flags = [m.training for m in modules]
    # a lazy module's parameters not materialized yet are left alone (they cannot
    # change requires_grad, and no forward of ours materializes them)
    params = [p for p in module.parameters() if not is_lazy(p)]
    requires = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    shared = not _on_background_thread()  # the RNG streams, torch.utils.checkpoint
    cpu_rng = torch.get_rng_state() if shared else None
    cuda_rng = torch.cuda.get_rng_state_all() if shared and torch.cuda.is_initialized() else None
    # torch.compile'd submodules: run their original forward (hooks, ReLU overrides and
    # gradients w.r.t. inputs need eager execution); the compiled one is put back after.
    # A LightningModule given to fit as torch.compile(module) is one of them, and so is a
    # module compiled in place (module.compile(): its compiled call is put aside).
    eager = [(m, eager_forward(m)) for m in modules]
    compiled = [(m, m.__dict__["forward"], forward) for m, forward in eager if forward is not None]
    in_place = [(m, m.__dict__["_compiled_call_impl"]) for m in modules if compiled_in_place(m)]
    checkpointing = [
        (m, flag) for m in modules for flag in _CHECKPOINT_FLAGS if vars(m).get(flag) is True
    ]
    writes = _ForwardWrites(modules)
    try:
        for m, _, forward in compiled:
            m.__dict__["forward"] = forward
        for m, _ in in_place:
            m.__dict__["_compiled_call_impl"] = None
        for m, flag in checkpointing:
            setattr(m, flag, False)
        for m in modules:
            m.training = False
        for p in params:
            p.requires_grad_(False)
        plain = plain_checkpoint_calls() if shared else contextlib.nullcontext()
        with plain, torch.inference_mode(False), torch.enable_grad():
            yield module
    finally:
        for m, forward, _ in compiled:
            m.__dict__["forward"] = forward
        for m, impl in in_place:
            m.__dict__["_compiled_call_impl"] = impl
        for m, flag in checkpointing:
            setattr(m, flag, True)
        for m, flag in zip(modules, flags, strict=True):
            m.training = flag
        for p, req, grad in zip(params, requires, grads, strict=True):
            p.requires_grad_(req)
            if p.grad is not grad:
                p.grad = grad
        writes.restore()
        if cpu_rng is not None:
            torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def has_lazy_parameters(model: nn.Module) -> bool:
    """Whether ``model`` has parameters of lazy modules not materialized yet."""
    return any(is_lazy(p) for p in model.parameters())


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Returns a private ``torch.Generator`` on ``device`` seeded with ``seed``.

    Methods that need randomness draw only from such a generator, never from the
    global RNG, so a run with and without them sees the same random numbers.
    """
    device = torch.device(device)
    gen = torch.Generator(device=device.type if device.type != "cpu" else "cpu")
    gen.manual_seed(int(seed))
    return gen


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the first floating parameter (or buffer) of ``model``, else ``None``."""
    for tensors in (model.parameters(), model.buffers()):
        for t in tensors:
            if t.is_floating_point():
                return t.dtype
    return None


def in_model_dtype(net: nn.Module, x: Tensor) -> Tensor:
    """Floating images ``x`` in the dtype of ``net``'s parameters (float32 pixels for a
    float64 or bfloat16 model; differentiable), as :class:`ModelView` casts them."""
    dtype = model_dtype(net) if x.is_floating_point() else None
    return x if dtype is None or dtype == x.dtype else x.to(dtype)


def _as_stat(values: list[float] | None) -> Tensor | None:
    if values is None:
        return None
    with torch.inference_mode(False):  # a view made there must still take gradients
        return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


class NotLogitsError(TypeError):
    """The model's output is not a tensor of logits (a tuple or dict of heads) and no
    ``output_to_logits`` maps it to one."""


class ModelView(nn.Module):
    """The user's model as the methods see it: pixel images in, float logits out.

    ``ModelView(model)(x)`` computes
    ``output_to_logits(model(images_to_input((x - mean) / std)))`` with the forward
    under ``forward_context`` (for example the trainer's autocast) and returns
    float32 logits, so gradients are taken outside autocast. The normalized images
    are cast to the dtype of the model's first floating parameter (``float64`` or
    ``bfloat16`` under ``precision="64-true"``/``"bf16-true"``). It is the one adapter
    between pixel-space images and any classifier: normalized inputs, dict or
    multi-input ``forward`` signatures and tuple/dict outputs.

    Args:
        model: The user's model; DDP and ``torch.compile`` wrappers are stripped.
        mean: Per-channel input mean (pixel units), or ``None`` when the model takes
            pixels. Default: ``None``.
        std: Per-channel input standard deviation (positive), or ``None``.
        output_to_logits: Maps the model output (tuple, dict, ...) to logits
            ``(N, K)``; ``None`` takes the output as it is. Default: ``None``.
        forward_context: A callable returning a context manager entered around
            the forward (``trainer.precision_plugin.forward_context``), or ``None``.
        images_to_input: Maps the normalized image tensor ``(N, C, H, W)`` to what
            ``model.forward`` takes: a dict (``lambda x: {"image": x}``) or a tuple of
            positional arguments. ``None`` passes the tensor. Default: ``None``.

    Raises:
        TypeError, ValueError: Bad ``mean``/``std`` (see ``_checks.check_normalization``)
            or a non-callable adapter.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float] | Tensor | None = None,
        std: Sequence[float] | Tensor | None = None,
        output_to_logits: Callable[[Any], Tensor] | None = None,
        forward_context: Callable[[], contextlib.AbstractContextManager] | None = None,
        images_to_input: Callable[[Tensor], Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = unwrap_model(model)
        mean_list, std_list = check_normalization(mean, std)
        self._mean, self._std = _as_stat(mean_list), _as_stat(std_list)
        self.output_to_logits = check_callable(output_to_logits, "output_to_logits")
        self.images_to_input = check_callable(images_to_input, "images_to_input")
        self.forward_context = forward_context

    @property
    def mean(self) -> Tensor | None:
        """The per-channel mean ``(C,)`` (pixel units), or ``None``."""
        return None if self._mean is None else self._mean.flatten()

    @property
    def num_stats(self) -> int | None:
        """How many channels ``mean``/``std`` describe (``None``: no normalization, or 1)."""
        sizes = [t.numel() for t in (self._mean, self._std) if t is not None and t.numel() > 1]
        return sizes[0] if sizes else None

    def normalize(self, x: Tensor) -> Tensor:
        """Maps pixel-space images ``(N, C, H, W)`` to the model's input space.

        Raises:
            ValueError: ``mean``/``std`` have one value per channel for another number of
                channels (they would broadcast the images to that many).
        """
        stats = self.num_stats
        if stats is not None and x.dim() == 4 and x.shape[1] != stats:
            fail(
                "mean/std",
                f"one value, or one per channel of the {x.shape[1]}-channel images",
                f"<{stats} values>",
            )
        if self._mean is not None:
            x = x - self._mean.to(x.device, x.dtype)
        if self._std is not None:
            x = x / self._std.to(x.device, x.dtype)
        return x

    def to_pixels(self, x: Tensor) -> Tensor:
        """Maps model-space images ``(N, C, H, W)`` back to pixel space."""
        if self._std is not None:
            x = x * self._std.to(x.device, x.dtype)
        if self._mean is not None:
            x = x + self._mean.to(x.device, x.dtype)
        return x

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) pixels -> (N, K) float logits
        x = in_model_dtype(self.model, self.normalize(x))  # "64-true"/"bf16-true" models
        ctx = (
            self.forward_context() if self.forward_context is not None else contextlib.nullcontext()
        )
        with ctx:
            adapt = self.images_to_input
            inputs = x if adapt is None else call_adapter("images_to_input", adapt, x)
            if isinstance(inputs, tuple):
                out = self.model(*inputs)
            else:
                out = self.model(inputs)
        if self.output_to_logits is not None:
            out = call_adapter("output_to_logits", self.output_to_logits, out)
        if not isinstance(out, Tensor):
            raise (TypeError if self.output_to_logits is not None else NotLogitsError)(
                f"`output_to_logits` returned {type(out).__name__}, not a tensor of logits"
                if self.output_to_logits is not None
                else "the model output is not a tensor of logits but "
                f"{type(out).__name__}; pass `output_to_logits` to map it to logits"
            )
        return out.float()
