"""The callbacks' configuration as text: the TensorBoard tag ``lightning_viz/config``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from lightning_viz.monitoring.tables import markdown_table

__all__ = ["config_markdown", "describe_options"]


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor {tuple(value.shape)}"
    if isinstance(value, float):
        return f"{value:g}"
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", type(value).__name__)
    if isinstance(value, list | tuple) and value and isinstance(value[0], float):
        return "(" + ", ".join(f"{v:g}" for v in value) + ")"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_options(obj: Any, owners: Sequence[Callable[..., Any]]) -> dict[str, str]:
    """``{option: text}`` of the ``__init__`` arguments of ``owners`` that ``obj`` holds
    as attributes of the same name (in signature order, ``**kwargs`` skipped)."""
    out: dict[str, str] = {}
    for init in owners:
        for name, param in inspect.signature(init).parameters.items():
            if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            if name not in out and hasattr(obj, name):
                out[name] = _describe(getattr(obj, name))
    return out


def _code(value: str) -> str:
    r"""``value`` as inline code, or as plain text when it holds a backtick or a ``|``:
    TensorBoard shows the table's ``\|`` escape literally inside code, and a backtick
    would end the code span early."""
    return value if "`" in value or "|" in value else f"`{value}`"


def config_markdown(callbacks: Sequence[Any]) -> str:
    """One Markdown table per callback: its options as built (the run's configuration)."""
    parts = []
    for cb in callbacks:
        options = cb.config()
        parts += [f"**{type(cb).__name__}** (tags `{cb.tag_prefix}/...`)", ""]
        parts += markdown_table(["option", "value"], [[k, _code(v)] for k, v in options.items()])
        parts.append("")
    return "\n".join(parts).rstrip()
