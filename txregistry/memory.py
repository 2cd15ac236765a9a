"""
Handing back the memory that starting up needs only once.

Importing and configuring leaves freed blocks in the C heap that glibc
keeps for later; in a job with a memory limit of 128 MB, the megabyte or
two they hold is worth returning once the registry is up. A package used
for one step of starting up (PyYAML, to read C{config.yml}) can be let go
after it, so that what is imported next reuses its memory.
"""

from __future__ import annotations

import ctypes
import gc
import linecache
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def usedOnce(package: str, extensions: Sequence[str] = ()) -> Iterator[None]:
    """
    Run a block that imports C{package} for its own use, and let go of the
    package's modules after it: whatever imports it later gets it afresh.

    Code in the block must import the package where it uses it, not keep it
    in a module's globals, or the package stays alive.

    @param extensions: C modules of the package that it imports only if it
        finds them (PyYAML's C{yaml._yaml}): they are kept from loading in
        the block, since an extension module is never unloaded and holds
        the package's modules alive.
    """
    if package in sys.modules:
        # Someone else holds it: there is nothing to let go.
        yield
        return
    # None in sys.modules makes an import of the name fail with ImportError.
    for name in extensions:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    try:
        yield
    finally:
        for name in [name for name in sys.modules if name == package or name.startswith(package + ".")]:
            del sys.modules[name]
        gc.collect()


def releaseFreed() -> None:
    """
    Drop the source lines cached so far, collect garbage, then ask glibc's
    allocator to return what is free at the top and inside its heaps
    (C{malloc_trim}); elsewhere, nothing.
    """
    # attrs caches the source of every method it writes, some 3 KiB a
    # class, for tracebacks: they show the line's place without it.
    linecache.clearcache()
    gc.collect()
    try:
        # The process's own symbols: the C library it runs on.
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        # Not glibc (musl, macOS): nothing to ask.
        return
    trim(0)
