"""Keep freed heap memory for the next request instead of handing it back to the kernel at once (glibc only).

A large answer (a 1 MB tool result) passes through a few buffers the size of the answer: aiohttp's read of the
upstream's body, the answer the gateway encodes. glibc serves such sizes from ``mmap`` or from the top of the heap, and
by default returns freed memory above a small, self-adjusting threshold (``M_TRIM_THRESHOLD``) to the kernel right
away; the next request then takes a fresh page fault for every 4 KiB it touches again. Measured on the 1 MB
benchmark: ~200 to ~600 page faults per call, and about a third of the gateway's CPU per call in the kernel; with the
thresholds below, none. The price is that up to ``_TRIM_THRESHOLD`` of freed memory may stay in the process (it is
reused by the next large answer, and still returned once more than that is free).

Called once per serving process, before its event loop starts. Elsewhere (musl, macOS) nothing is changed, and
neither is a process whose operator tuned malloc already (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
or ``malloc.`` tunables in ``GLIBC_TUNABLES``): their choice wins.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 64 * 1024 * 1024
_MMAP_THRESHOLD = 16 * 1024 * 1024
"""Allocations below this come from the heap (reused) rather than a fresh ``mmap`` each time."""


def reuse_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds; whether it applied (False when the C library is not glibc)."""
    if platform.libc_ver()[0] != "glibc" or _tuned_by_operator():
        return False
    try:
        libc = ctypes.CDLL(None)
        applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
        applied = bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)) and applied
    except (OSError, AttributeError):
        return False
    if not applied:
        logger.debug("glibc refused the malloc thresholds; large answers will fault their memory in again")
    return applied


def _tuned_by_operator() -> bool:
    environ = os.environ
    tunables = environ.get("GLIBC_TUNABLES", "")
    return "MALLOC_TRIM_THRESHOLD_" in environ or "MALLOC_MMAP_THRESHOLD_" in environ or "malloc." in tunables
