"""Giving freed host memory back to the operating system.

glibc's allocator keeps the heap memory that a run frees (a scan's decoded images,
an attack's activations) mapped, in pieces the next allocations of another size do
not fit, so the process's resident memory grows by about what one run freed. At
ImageNet size that is hundreds of megabytes added to the training step's peak.
``malloc_trim(0)`` returns the free pages of every arena; it takes milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

__all__ = ["release_heap"]

_TRIM: Any = None  # the libc malloc_trim, False where there is none


def release_heap() -> bool:
    """Returns the freed heap memory to the operating system (glibc only).

    Returns:
        Whether memory could be released (``False`` off Linux or without glibc).
    """
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        if sys.platform.startswith("linux"):
            try:
                _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):  # musl and others have no malloc_trim
                _TRIM = False
    if _TRIM is False:
        return False
    _TRIM(0)
    return True
