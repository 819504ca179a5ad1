"""Per-sample rows of a tensor: those to leave out, and those that are not finite."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["blank_nonfinite", "fill_rows"]


def fill_rows(values: Tensor, rows: Tensor, fill: float) -> Tensor:
    """``values`` ``(N, ...)`` with the rows where bool ``rows`` ``(N,)`` is true set to
    ``fill`` (NaN: not counted; a grey or zero: drawn blank)."""
    return values.masked_fill(rows.to(values.device).view(-1, *[1] * (values.dim() - 1)), fill)


def blank_nonfinite(
    callback: Any, key: str, values: Tensor, fill: float, says: str
) -> tuple[Tensor, Tensor]:
    """``values`` ``(N, ...)`` with the rows holding NaN or inf (NaN outputs on those
    probe images, an overflow) set to ``fill``, instead of failing a render and turning
    the callback off; said once per fit under ``key`` as ``"<k> of <N> " + says``.

    Returns:
        The filled values (``values`` itself when every row is finite) and the bool
        ``(N,)`` rows that were filled.
    """
    if values.numel() == 0:  # no rows, or rows of nothing: none is bad
        return values, torch.zeros(len(values), dtype=torch.bool, device=values.device)
    bad = ~torch.isfinite(values).reshape(len(values), -1).all(dim=1)
    if not bool(bad.any()):
        return values, bad  # no copy (a layer's activations can be large)
    callback.warn_once(key, f"{int(bad.sum())} of {len(bad)} {says}")
    return fill_rows(values, bad, fill), bad
