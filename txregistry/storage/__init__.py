"""
Where the registry keeps its bytes: the driver interface, its providers and
registry:2's layout.
"""

from typing import TYPE_CHECKING, Any

from txregistry.lazy import lazyNames
from txregistry.storage.interfaces import (
    FileChunk,
    FileInfo,
    IFileWriter,
    IPurgeable,
    IReader,
    IRedirectingDriver,
    IStorageDriver,
    PathNotFound,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from txregistry.storage.filesystem import FilesystemDriver
    from txregistry.storage.memory import MemoryDriver

# Each configuration uses one driver: the others are loaded when named.
_names = lazyNames(__name__, {"filesystem": ("FilesystemDriver",), "memory": ("MemoryDriver",)})


def __getattr__(name: str) -> Any:
    return _names(name)


__all__ = [
    "FileChunk",
    "FileInfo",
    "FilesystemDriver",
    "IFileWriter",
    "IPurgeable",
    "IReader",
    "IRedirectingDriver",
    "IStorageDriver",
    "MemoryDriver",
    "PathNotFound",
    "StorageUnavailable",
]
