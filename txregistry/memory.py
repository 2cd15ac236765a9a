"""
Handing back to the system the memory that starting up used and freed.

Importing and configuring leaves freed blocks in the C heap that glibc
keeps for later; in a job with a memory limit of 128 MB, the megabyte or
two they hold is worth returning once the registry is up.
"""

from __future__ import annotations

import ctypes
import gc


def releaseFreed() -> None:
    """
    Collect garbage, then ask glibc's allocator to return what is free at
    the top and inside its heaps (C{malloc_trim}); elsewhere, nothing.
    """
    gc.collect()
    try:
        # The process's own symbols: the C library it runs on.
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        # Not glibc (musl, macOS): nothing to ask.
        return
    trim(0)
