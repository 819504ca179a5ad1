"""Bytes in and out: the one atomic file write, the one content fingerprint, and
values made strict JSON (:func:`json_safe`)."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by fingerprint: the run records are read without torch
    from torch import Tensor

__all__ = ["atomic_write", "fingerprint", "json_safe"]


def atomic_write(path: str, data: bytes | str) -> None:
    """Writes ``data`` to ``path`` so that a reader never sees half a file.

    The content goes to a temporary file in the same folder (created when missing),
    which then replaces ``path`` (``os.replace``); when anything fails (also an
    interrupt) the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The file to write.
        data: Its content; a ``str`` is written as UTF-8.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def fingerprint(*parts: Tensor | str | None, shapes: bool = False, digits: int = 16) -> str:
    """Hex digits of the SHA-256 of ``parts``, in order: equal only for equal content.

    Args:
        parts: Strings (UTF-8) and tensors (their bytes, on the CPU); ``None`` is skipped.
        shapes: Also hash each tensor's shape and dtype (before its bytes).
        digits: How many hex digits to return.
    """
    import torch

    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            h.update(part.encode())
        elif part is not None:
            if shapes:
                h.update(str((tuple(part.shape), part.dtype)).encode())
            flat = part.detach().cpu().contiguous().reshape(-1)  # its bytes, any dtype (bf16)
            h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()[:digits]


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, tuples -> lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
