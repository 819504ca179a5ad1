"""The one set of argument checks.

Every public function and constructor validates its arguments with these helpers,
so every message has one form: the option, the value received, and what is
allowed. A wrong *type* raises :class:`TypeError`, a wrong *value* of the right
type raises :class:`ValueError`.

Examples:
    >>> check_int(3, "steps", minimum=1)
    3
    >>> check_int(0, "steps", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: `steps` must be an int >= 1, got 0
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a check needs it: compare runs without it
    import torch
    from torch import Tensor

__all__ = [
    "check_model",
    "check_reshape",
    "check_level",
    "REDUCES",
    "TASKS",
    "check_bool",
    "check_bool_or_auto",
    "check_clamp",
    "check_normalization",
    "check_normalization_kinds",
    "check_tag_prefix",
    "check_pixels",
    "check_reduce",
    "check_target_type",
    "check_task",
    "check_callable",
    "check_choice",
    "check_class_names",
    "check_choices",
    "check_float",
    "check_generator",
    "check_images",
    "check_int",
    "check_int_list",
    "is_vector",
    "check_labels",
    "check_maps",
    "check_layer_names",
    "check_neuron",
    "check_str_list",
    "check_target",
    "check_tensor",
    "check_unit_range",
    "fail",
    "python_scalar",
]


def check_model(model: Any) -> Any:
    """A ``torch.nn.Module`` given as ``model`` (a function or a tensor is a TypeError)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        fail("model", "a torch.nn.Module", f"<{type(model).__name__}>", TypeError)
    return model


def fail(name: str, allowed: str, value: Any, kind: type[Exception] = ValueError) -> None:
    """Raises ``kind`` with the one message form: ``\\`name\\` must be <allowed>, got <value>``."""
    shown = value if isinstance(value, str) and value.startswith("<") else repr(value)
    raise kind(f"`{name}` must be {allowed}, got {shown}")


_ADAPTERS = {
    "batch_to_xy": "a batch of the data to (images, labels) or (images, labels, masks)",
    "images_to_input": "the images (N, C, H, W) to what the model's forward takes",
    "output_to_logits": "what the model returns to its logits (N, K)",
}


def call_adapter(name: str, fn: Callable[[Any], Any], value: Any) -> Any:
    """``fn(value)`` for the user's adapter ``name`` (a key of ``_ADAPTERS``). An error
    it raises is a configuration error: a ``ValueError`` naming the adapter (a
    ``ValueError`` or ``TypeError`` of its own, and out of memory, pass as raised)."""
    import torch

    try:
        return fn(value)
    except (ValueError, TypeError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - a typo in the user's lambda: b[3], o.logits
        raise ValueError(
            f"`{name}` raised {type(err).__name__}: {err}; it must map {_ADAPTERS[name]}"
        ) from err


def _range_text(
    minimum: float | None, maximum: float | None, strict_min: bool = False, strict_max: bool = False
) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if strict_min else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"{'<' if strict_max else '<='} {maximum:g}")
    return " and ".join(parts)


def python_scalar(value: Any) -> Any:
    """A NumPy scalar or 0-d tensor as the Python number or bool it holds; else ``value``."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An ``int`` (not a ``bool``) within ``[minimum, maximum]``."""
    allowed = "an int" + (
        " " + _range_text(minimum, maximum) if minimum is not None or maximum is not None else ""
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, allowed, value, TypeError)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        fail(name, allowed, value)
    return value


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    strict_max: bool = False,
) -> float:
    """A finite real number (not a ``bool``) in ``[minimum, maximum]`` (``> 0`` if ``positive``,
    ``< maximum`` if ``strict_max``)."""
    if positive:
        minimum = 0.0 if minimum is None else minimum
    rng = _range_text(minimum, maximum, strict_min=positive, strict_max=strict_max)
    allowed = "a finite number" + (f" {rng}" if rng else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, allowed, value, TypeError)
    v = float(value)
    if (
        not math.isfinite(v)
        or (minimum is not None and (v < minimum or (positive and v <= minimum)))
        or (maximum is not None and (v > maximum or (strict_max and v >= maximum)))
    ):
        fail(name, allowed, value)
    return v


def check_folder(value: Any, name: str) -> str | None:
    """A folder path (``str`` or ``os.PathLike``) as a non-empty ``str``; ``None`` stays."""
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        fail(name, "a folder path (str or os.PathLike) or None", value, TypeError)
    path = os.path.expanduser(os.fspath(value))  # "~/viz": in the home folder, as loggers do
    if not isinstance(path, str) or not path.strip() or "://" in path or os.path.isfile(path):
        fail(name, "a non-empty local folder path (not a URL, not a file) or None", value)
    return path


def check_bool(value: Any, name: str) -> bool:
    """A ``bool``."""
    if not isinstance(value, bool):
        fail(name, "a bool", value, TypeError)
    return value


def check_bool_or_auto(value: Any, name: str) -> bool | str:
    """A ``bool`` or ``"auto"``."""
    if not (isinstance(value, bool) or isinstance(value, str) and value == "auto"):
        fail(name, 'a bool or "auto"', value, TypeError)
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    choices = tuple(choices)
    if not any(value is c or isinstance(value, type(c)) and value == c for c in choices):
        fail(name, f"one of {list(choices)}", value)  # (a numpy array is none of them)
    return value


def check_choices(values: Any, name: str, choices: Iterable[str]) -> list[str]:
    """A non-empty list of names from ``choices`` (a single name is accepted), in order, unique."""
    choices = tuple(choices)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, Iterable) or not all(isinstance(v, str) for v in values):
        fail(name, f"a list of names from {list(choices)}", values, TypeError)
    values = list(dict.fromkeys(values))
    bad = [v for v in values if v not in choices]
    if bad or not values:
        fail(name, f"a non-empty list of names from {list(choices)}", bad or values)
    return values


def check_str_list(
    values: Any, name: str, *, length: int | None = None, optional: bool = True
) -> list[str] | None:
    """``None`` if ``optional``, or a list (not a dict or set) of strings, ``length`` if given."""
    if values is None and optional:
        return None
    what = "a list of strings" + (f" ({length} of them)" if length is not None else "")
    if isinstance(values, str | Mapping | set | frozenset) or not isinstance(values, Iterable):
        fail(name, what, values, TypeError)
    values = list(values)
    if not all(isinstance(v, str) for v in values):
        fail(name, what, values, TypeError)
    if length is not None and len(values) != length:
        fail(name, what, f"<{len(values)} strings: {values!r:.120}>")
    return values


def check_class_names(values: Any) -> list[str] | None:
    """``None`` or class names (strings), each run of control characters (a tab, a line
    break) made one space: a name is one line in captions, legends, tables and the
    projector's TSV."""
    names = check_str_list(values, "class_names")
    return None if names is None else [re.sub(r"[\x00-\x1f\x7f]+", " ", n) for n in names]


def check_layer_names(values: Any, name: str) -> list[str] | None:
    """``None`` or a non-empty list of dotted layer names."""
    out = check_str_list(values, name)
    if out is not None and not out:
        fail(name, "None or a non-empty list of layer names", values)
    return out


def is_vector(value: Any) -> bool:
    """A 1-d torch tensor or numpy array (read as the list of its values)."""
    torch = sys.modules.get("torch")  # no tensor exists before torch is imported
    tensor = torch is not None and isinstance(value, torch.Tensor)
    return (tensor or type(value).__module__ == "numpy") and getattr(value, "ndim", None) == 1


def check_int_list(values: Any, name: str, *, minimum: int | None = None) -> list[int] | None:
    """``None``, an int (a one-element list) or a non-empty list of ints ``>= minimum``."""
    if values is None:
        return None
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = [values]
    what = "None or a non-empty list of ints" + (f" >= {minimum}" if minimum is not None else "")
    if isinstance(values, str | bytes) or not (isinstance(values, Sequence) or is_vector(values)):
        fail(name, what, values, TypeError)
    items = values.tolist() if is_vector(values) else list(values)
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items):
        fail(name, what, values, TypeError)
    if not items or (minimum is not None and any(v < minimum for v in items)):
        fail(name, what, items)
    return [int(v) for v in items]


def check_callable(value: Any, name: str) -> Callable[..., Any] | None:
    """``None``, a callable, or an import path ``"package.module.function"`` (for YAML configs)."""
    if value is None or callable(value):
        return value
    if isinstance(value, str) and "." in value:
        module_name, _, attr = value.rpartition(".")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(
                f"`{name}` must be a callable or an import path 'package.module.function', "
                f"got {value!r}, which does not import ({type(err).__name__}: {err})"
            ) from None
        if callable(fn):
            return fn
    fail(name, "a callable or an import path 'package.module.function'", value, TypeError)
    return None  # unreachable


def check_generator(generator: Any, name: str = "generator") -> torch.Generator | None:
    """``None`` or a ``torch.Generator``."""
    import torch

    if generator is not None and not isinstance(generator, torch.Generator):
        fail(name, "a torch.Generator or None", generator, TypeError)
    return generator


# ------------------------------------------------------------ method and callback options
TASKS = ("binary", "multiclass", "multilabel")
REDUCES = ("max", "sum", None)


def check_task(task: Any, name: str = "task") -> str | None:
    """``None`` (detect) or one of :data:`TASKS`."""
    return None if task is None else check_choice(task, name, TASKS)


def check_reshape(reshape: Any, *, paths: bool = False) -> Any:
    """``None``, a ``TokenLayout`` or a callable ``(Tensor) -> (N, D, h, w)``; with
    ``paths``, also its import path ``"package.module.function"`` (for YAML configs)."""
    if paths and isinstance(reshape, str):
        return check_callable(reshape, "reshape")
    if reshape is not None and not callable(reshape):
        fail(
            "reshape",
            "None, a TokenLayout or a callable (Tensor) -> (N, D, h, w)",
            reshape,
            TypeError,
        )
    return reshape


def check_reduce(reduce: Any) -> None:
    """``"max"``, ``"sum"`` or ``None``."""
    check_choice(reduce, "reduce", REDUCES)


def check_target_type(target: Any) -> None:
    """``None``, an int or a tensor of integer class indices."""
    import torch

    integer = isinstance(target, numbers.Integral) and not isinstance(target, bool)
    if target is not None and not (integer or isinstance(target, torch.Tensor)):
        fail("target", "an int, a tensor of class indices (N,) or None", target, TypeError)
    if isinstance(target, torch.Tensor) and (target.is_floating_point() or target.is_complex()
                                             or target.dtype == torch.bool):  # fmt: skip
        fail("target", "integer class indices (an int or an integer tensor)",
             f"<tensor of dtype {target.dtype}>", TypeError)  # fmt: skip


def check_pixels(x: Tensor, name: str, tol: float = 1e-3) -> Tensor:
    """Pixel-space values in ``[0, 1]`` (within ``tol``)."""
    lo, hi = float(x.min()), float(x.max())
    if lo < -tol or hi > 1 + tol:
        fail(name, "pixel-space images in [0, 1]", f"<values in [{lo:.3g}, {hi:.3g}]>")
    return x


CLAMP_SLACK = 0.1  # share of the clamp range inputs may lie outside it (resampling overshoot)


def check_clamp(clamp: Any, inputs: Tensor | None = None) -> tuple[float, float] | None:
    """``None`` or a ``(min, max)`` pair of finite numbers with ``min < max``; with
    ``inputs``, also that they lie in it (within :data:`CLAMP_SLACK` of its width):
    an attack clamps its images there, so inputs in other units (0-255, normalized)
    would be moved far more than ``eps``."""
    if clamp is None:
        return None
    if not isinstance(clamp, tuple | list) or len(clamp) != 2:
        fail("clamp", "a (min, max) pair or None", clamp, TypeError)
    lo, hi = check_float(clamp[0], "clamp min"), check_float(clamp[1], "clamp max")
    if not lo < hi:
        fail("clamp", "a pair with min < max", clamp)
    if inputs is not None and inputs.numel():
        a, b, slack = float(inputs.min()), float(inputs.max()), CLAMP_SLACK * (hi - lo)
        if a < lo - slack or b > hi + slack:
            fail(
                "inputs",
                f"images in the clamp range [{lo:g}, {hi:g}] (inputs in other units: pass "
                "clamp=None, or wrap the model in ModelView(model, mean, std) and pass "
                "pixel images in [0, 1])",
                f"<values in [{a:.3g}, {b:.3g}]>",
            )
    return lo, hi


def check_normalization(
    mean: Any, std: Any, *, auto: bool = False
) -> tuple[list[float] | None, list[float] | None]:
    """``mean`` and ``std`` as lists of finite floats (``std > 0``) of compatible lengths
    (one value fits any number of channels); ``auto``: the caller also takes ``"auto"``."""
    import torch

    out: list[list[float] | None] = []
    none = "None, 'auto'" if auto else "None"
    for name, value in (("mean", mean), ("std", std)):
        allowed = f"{none} or a non-empty list of finite per-channel numbers"
        if value is None:
            out.append(None)
            continue
        if isinstance(value, str | bytes):
            fail(name, allowed, value, TypeError)
        try:
            values = [float(v) for v in torch.as_tensor(value, dtype=torch.float64).flatten()]
        except (TypeError, ValueError, RuntimeError):
            fail(name, allowed, value, TypeError)
        if not values or not all(math.isfinite(v) for v in values):
            fail(name, allowed, value)
        if name == "std" and any(v <= 0 for v in values):
            fail(name, "positive per-channel numbers", value)
        out.append(values)
    m, s = out
    if m is not None and s is not None and len(m) != len(s) and 1 not in (len(m), len(s)):
        raise ValueError(
            f"`mean` has {len(m)} values and `std` has {len(s)}; give one value per input "
            "channel (the same number for both), or a single value for all channels"
        )
    return m, s


def check_normalization_kinds(
    mean: Any, std: Any
) -> tuple[list[float] | None, list[float] | None, bool]:
    """``mean`` and ``std`` of a callback given alike: both values, both ``None`` (the
    data are pixels) or both ``"auto"`` (read from the data); a mix would normalize
    with a made-up half (mean 0, std 1) or ignore the ``Normalize`` found.

    Returns:
        The checked ``mean`` and ``std`` (``None`` for ``"auto"``, see
        :func:`check_normalization`) and whether both are ``"auto"``.
    """

    def kind(v: Any) -> str:
        return "auto" if isinstance(v, str) and v == "auto" else "None" if v is None else "values"

    given = (None if kind(v) == "auto" else v for v in (mean, std))
    checked = check_normalization(*given, auto=True)
    if kind(mean) != kind(std):
        raise ValueError(
            f"`mean` and `std` must be given together: both per-channel values, both None "
            f"(the data are pixels) or both 'auto' (read from the data's Normalize); got "
            f"mean={mean!r}, std={std!r}"
        )
    return (*checked, kind(mean) == "auto")


def check_tag_prefix(prefix: Any) -> str | None:
    """``None`` or a non-empty tag prefix whose ``/``-separated parts are not ``.`` or
    ``..`` (a file backend makes folders of them: they would leave the log dir)."""
    if prefix is not None and (not isinstance(prefix, str) or not prefix.strip("/")):
        fail("tag_prefix", "a non-empty string", prefix)
    if prefix is not None and {".", ".."} & set(prefix.split("/")):
        fail("tag_prefix", "a prefix without '.' or '..' parts (they name folders)", prefix)
    return prefix


def check_images(
    inputs: Any,
    name: str = "inputs",
    *,
    channels: Sequence[int] | None = None,
    allow_uint8: bool = False,
    unit_range: bool = False,
    allow_nan: bool = True,
) -> Tensor:
    """A non-empty floating-point image batch ``(N, C, H, W)``.

    The keywords add the checks of a picture: ``channels``, the allowed ``C`` (and no
    axis of size 0); ``allow_uint8``, a ``uint8`` batch is accepted as it is;
    ``unit_range``, values in ``[0, 1]``; ``allow_nan=False``, no NaN.
    """
    import torch

    if not isinstance(inputs, torch.Tensor):
        fail(name, "a torch.Tensor (N, C, H, W)", f"<{type(inputs).__name__}>", TypeError)
    if inputs.dim() != 4 or inputs.shape[0] == 0:
        fail(name, "a non-empty image batch (N, C, H, W)", f"<shape {tuple(inputs.shape)}>")
    if channels is not None:
        check_tensor(inputs, name, "(N, C, H, W)", dim=4, channels=channels)
    if allow_uint8 and inputs.dtype == torch.uint8:
        return inputs
    if not inputs.is_floating_point():
        what = "a floating-point" + (" or uint8" if allow_uint8 else "") + " tensor"
        fail(name, what, f"<dtype {inputs.dtype}>", TypeError)
    if not allow_nan:
        check_tensor(inputs, name, "(N, C, H, W)", dim=4, allow_nan=False)
    return check_unit_range(inputs, name) if unit_range else inputs


def check_maps(maps: Any, name: str = "maps", *, allow_nan: bool = True) -> Tensor:
    """Floating-point maps ``(N, 1, H, W)``, ``N >= 1`` (no axis of size 0 and no NaN when
    ``allow_nan=False``)."""
    import torch

    if not isinstance(maps, torch.Tensor):
        fail(name, "a torch.Tensor (N, 1, H, W)", f"<{type(maps).__name__}>", TypeError)
    if not maps.is_floating_point():
        fail(name, "a floating-point tensor", f"<dtype {maps.dtype}>", TypeError)
    if maps.dim() != 4 or maps.shape[1] != 1 or maps.shape[0] == 0:
        fail(name, "of shape (N, 1, H, W)", f"<shape {tuple(maps.shape)}>")
    if not allow_nan:
        check_tensor(maps, name, "(N, 1, H, W)", dim=4, allow_nan=False)
    return maps


def check_labels(
    labels: Any, name: str, n: int | None = None, *, allow_negative: bool = False
) -> Tensor:
    """Integer class indices ``(N,)`` (``>= 0`` unless ``allow_negative``), returned as ``long``."""
    import torch

    if not isinstance(labels, torch.Tensor):
        fail(name, "a tensor of class indices (N,)", f"<{type(labels).__name__}>", TypeError)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        fail(name, "an integer tensor of class indices", f"<dtype {labels.dtype}>", TypeError)
    if labels.dim() != 1 or (n is not None and labels.numel() != n):
        fail(name, f"of shape ({'N' if n is None else n},)", f"<shape {tuple(labels.shape)}>")
    if not allow_negative and labels.numel() and int(labels.min()) < 0:
        fail(name, "class indices >= 0", labels.tolist())
    return labels.long()


def check_neuron(neuron: Any, name: str = "neuron") -> tuple[str, int] | None:
    """``None`` or ``(layer_name, channel >= 0)`` (a 2-list from YAML, Hydra's
    ``ListConfig``: any sequence but a string)."""
    if neuron is None:
        return None
    if (
        isinstance(neuron, str | bytes)
        or not isinstance(neuron, Sequence)
        or len(neuron) != 2
        or not isinstance(neuron[0], str)
        or isinstance(neuron[1], bool)
        or not isinstance(neuron[1], numbers.Integral)
    ):
        fail(name, "(layer_name, channel)", neuron, TypeError)
    if neuron[1] < 0:
        fail(name, "(layer_name, channel >= 0)", neuron)
    return (neuron[0], int(neuron[1]))


def check_target(target: Any, name: str = "target") -> str | int:
    """``"predicted"``, ``"true"`` or a class index ``>= 0``."""
    allowed = "'predicted', 'true' or a class index >= 0"
    if isinstance(target, bool) or not isinstance(target, str | numbers.Integral):
        fail(name, allowed, target, TypeError)
    if (isinstance(target, str) and target not in ("predicted", "true")) or (
        not isinstance(target, str) and target < 0
    ):
        fail(name, allowed, target)
    return target if isinstance(target, str) else int(target)


def check_tensor(
    value: Any,
    name: str,
    shape: str,
    *,
    dim: int,
    channels: Sequence[int] | None = None,
    floating: bool = False,
    allow_nan: bool = True,
) -> Tensor:
    """A ``dim``-D tensor without an axis of size 0 (``shape`` names its axes in messages),
    with ``shape[1]`` in ``channels`` when given, floating-point when ``floating``, and
    without NaN unless ``allow_nan``."""
    import torch

    if not isinstance(value, torch.Tensor):
        fail(name, f"a torch.Tensor {shape}", f"<{type(value).__name__}>", TypeError)
    sizes = " with dim 1 of size " + " or ".join(map(str, channels)) if channels else ""
    if value.dim() != dim or value.numel() == 0 or (channels and value.shape[1] not in channels):
        fail(name, f"a non-empty tensor {shape}{sizes}", f"<shape {tuple(value.shape)}>")
    if floating and not value.is_floating_point():
        fail(name, "a floating-point tensor", f"<dtype {value.dtype}>", TypeError)
    if not allow_nan and bool(torch.isnan(value).any()):
        fail(name, "free of NaN", f"<{int(torch.isnan(value).sum())} NaN values>")
    return value


def check_known(known: Any, shape: Sequence[int]) -> Tensor | None:
    """``None``, or a bool tensor of ``shape``: the attacks' decisions already known."""
    import torch

    shape = tuple(shape)
    flags = isinstance(known, torch.Tensor) and known.dtype == torch.bool
    if known is not None and not (flags and tuple(known.shape) == shape):
        fail("known", f"None or a bool tensor of shape {shape}", known, TypeError)
    return known


def check_unit_range(value: Tensor, name: str, tol: float = 1e-4) -> Tensor:
    """Values in ``[0, 1]`` (up to ``tol``); an empty tensor passes."""
    if value.numel():
        lo, hi = float(value.min()), float(value.max())
        if lo < -tol or hi > 1 + tol:
            fail(name, "in [0, 1]", f"<values in [{lo:.4g}, {hi:.4g}]>")
    return value


def check_level(value: Any, name: str = "alpha") -> float:
    """A probability level in the open interval ``(0, 1)`` (``alpha``, a confidence)."""
    value = check_float(value, name, positive=True)
    if value >= 1:
        fail(name, "a number in (0, 1)", value)
    return value
