"""The cue-conflict image cache: made once per run, reloaded on resume.

Files ``<log_dir>/lightning_viz/cue_conflict_<key>.pt`` hold plain tensors
(``torch.save``), loaded with ``weights_only=True``; the key hashes the source
images, their labels and masks and every generation setting.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import torch
from torch import Tensor

from lightning_viz._io import atomic_write, fingerprint
from lightning_viz._runtime.compat import rank_zero_warn

__all__ = ["cache_file", "cache_key", "read_cache", "write_cache"]

_VERSION = 2
_KEYS = ("images", "shape_labels", "texture_labels")


def cache_key(
    pixels: Tensor, labels: Tensor, masks: Tensor | None, settings: dict[str, Any]
) -> str:
    """A 16-hex-digit hash of the source images, labels, masks and ``settings``."""
    meta = {
        **settings,
        "version": _VERSION,
        "masks": masks is not None,
        "shape": list(pixels.shape),
    }
    meta_text = json.dumps(meta, sort_keys=True)
    return fingerprint(
        meta_text, pixels.float(), labels.long(), None if masks is None else masks.bool()
    )


def cache_file(log_dir: str | None, key: str) -> str | None:
    """The cache path inside ``log_dir`` (``None`` without a log dir)."""
    if log_dir is None:
        return None
    return os.path.join(str(log_dir), "lightning_viz", f"cue_conflict_{key}.pt")


def read_cache(path: str, n: int, image_shape: tuple[int, ...]) -> tuple[Tensor, ...] | None:
    """``(images, shape_labels, texture_labels)`` from ``path``, or ``None`` when unusable."""
    if not os.path.exists(path):
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as err:
        rank_zero_warn(f"TextureShapeBias: ignoring unreadable cache {path}: {err}")
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), Tensor) for k in _KEYS):
        return None
    images, s, t = (data[k] for k in _KEYS)
    if tuple(images.shape) != (n, *image_shape) or s.shape != (n,) or t.shape != (n,):
        return None
    return images.float(), s.long(), t.long()


def write_cache(path: str, images: Tensor, s: Tensor, t: Tensor) -> None:
    """Writes the cache atomically (a temporary file, then a rename)."""
    buffer = io.BytesIO()
    torch.save(dict(zip(_KEYS, (images.cpu().contiguous(), s.cpu(), t.cpu()), strict=True)), buffer)
    atomic_write(path, buffer.getvalue())
