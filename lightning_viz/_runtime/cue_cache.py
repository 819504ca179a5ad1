"""The cue-conflict image cache: made once per run, reloaded on resume.

Files ``<log_dir>/lightning_viz/cue_conflict_<key>.pt`` hold plain tensors
(``torch.save``), loaded with ``weights_only=True``; the key hashes the source
images, their labels and masks and every generation setting. While the set is
being made, each finished chunk is a file ``<that path>.partial/<chunk>.pt``, so a
run stopped half-way continues where it stopped; the folder goes once the whole
set is written.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from lightning_viz._io import atomic_write, fingerprint
from lightning_viz._runtime.compat import rank_zero_warn

__all__ = [
    "cache_file",
    "cache_key",
    "read_cache",
    "read_chunks",
    "remove_chunks",
    "write_cache",
    "write_chunk",
]

_VERSION = 3  # 3: coarse-to-fine generation
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
    found = _read(path)
    if found is None:
        return None
    images, s, t = found
    if tuple(images.shape) != (n, *image_shape) or s.shape != (n,) or t.shape != (n,):
        return None
    return images.float(), s.long(), t.long()


def _read(path: str) -> tuple[Tensor, Tensor, Tensor] | None:
    if not os.path.exists(path):
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as err:
        rank_zero_warn(f"TextureShapeBias: ignoring unreadable cache {path}: {err}")
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), Tensor) for k in _KEYS):
        return None
    return data["images"], data["shape_labels"], data["texture_labels"]


def _chunk_path(path: str, chunk: int) -> str:
    return os.path.join(f"{path}.partial", f"{chunk:05d}.pt")


def read_chunks(
    path: str, sizes: list[int], image_shape: tuple[int, ...]
) -> dict[int, tuple[Tensor, Tensor, Tensor]]:
    """The chunks of a partly made set found next to ``path``: ``{chunk: (images,
    shape_labels, texture_labels)}`` for every chunk ``i`` whose file holds
    ``sizes[i]`` images of ``image_shape``."""
    found = {}
    for i, n in enumerate(sizes):
        part = _read(_chunk_path(path, i))
        if part is not None and tuple(part[0].shape) == (n, *image_shape):
            if part[1].shape == (n,) and part[2].shape == (n,):
                found[i] = (part[0].float(), part[1].long(), part[2].long())
    return found


def write_chunk(path: str, chunk: int, images: Tensor, s: Tensor, t: Tensor) -> None:
    """Writes one finished chunk of a set being made (atomically)."""
    write_cache(_chunk_path(path, chunk), images, s, t)


def chunks_written(path: str, chunks: Iterable[int]) -> int:
    """How many of ``chunks`` have a file next to ``path``."""
    return sum(os.path.isfile(_chunk_path(path, i)) for i in chunks)


def remove_chunks(path: str) -> None:
    """Removes the chunk files of ``path`` (the whole set is written)."""
    shutil.rmtree(f"{path}.partial", ignore_errors=True)


def write_cache(path: str, images: Tensor, s: Tensor, t: Tensor) -> None:
    """Writes the cache atomically (a temporary file, then a rename)."""
    buffer = io.BytesIO()
    torch.save(dict(zip(_KEYS, (images.cpu().contiguous(), s.cpu(), t.cpu()), strict=True)), buffer)
    atomic_write(path, buffer.getvalue())
