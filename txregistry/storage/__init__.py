"""
Where the registry keeps its bytes: the driver interface, its providers and
registry:2's layout.
"""

from txregistry.storage.filesystem import FilesystemDriver
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
from txregistry.storage.memory import MemoryDriver

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
