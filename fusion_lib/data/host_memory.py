"""Keep freed host memory in the process, so that a CPU forward pass does not page-fault on every batch.

glibc returns large freed blocks to the operating system (``munmap``, or trimming the top of the heap)
and the next batch's activations fault the same pages back in, zero-filled: measured on the 2-core CPU,
a batch of 64 through SqueezeNet at 96 px took 368 page faults per image and ran 1.7x slower than with
the memory kept (see the book's reproducibility chapter). This is the problem jemalloc and tcmalloc are
preloaded for in Intel's PyTorch tuning guides; glibc's own ``mallopt`` fixes it without a preload."""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's ceiling for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2); blocks above it are always mapped
MMAP_THRESHOLD_MAX = 32 * 2**20
# freed memory at the top of the heap is returned to the system only above this (the process keeps at
# most its own peak anyway)
TRIM_THRESHOLD = 2**30

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks up to 32 MiB from the heap and to keep up to 1 GiB of freed memory for
    reuse. Returns whether that applies (False where the C library is not glibc, e.g. macOS or musl).
    Idempotent; affects the whole process."""
    global _applied
    if _applied is None:
        try:  # the C library's symbols are visible through the running process itself
            mallopt = ctypes.CDLL(None).mallopt
        except AttributeError:  # a C library without mallopt (macOS, musl)
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _applied = (
            mallopt is not None
            and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        )
        log.debug("keep_freed_memory: %s", "applied" if _applied else "not glibc, left as is")
    return _applied
