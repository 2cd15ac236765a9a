"""
The contract between the registry and where it keeps its bytes.

Paths are absolute, slash-separated strings below the driver's own root
(C{/docker/registry/v2/...}); a driver maps them onto its medium. Drivers
know nothing of registries: they store files, and every driver passes the
same driver test suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from datetime import datetime

    from twisted.internet.defer import Deferred


def checkPath(path: str) -> str:
    """
    C{path} if it is a storage path: absolute, with no way up out of the
    driver's root.
    """
    if not path.startswith("/") or "/../" in f"{path}/" or "\0" in path:
        raise ValueError(f"not a storage path: {path!r}")
    return path


class PathNotFound(Exception):
    """
    Nothing is stored at the path.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class StorageUnavailable(Exception):
    """
    The storage medium cannot be reached or refused the request; nothing was
    changed by the failed call.
    """


@attrs.frozen
class FileInfo:
    path: str
    size: int
    isDirectory: bool
    #: Seconds since the epoch of the last change.
    modified: float


class IReader(Interface):
    """
    A file opened for reading from some offset onwards.
    """

    def read(size: int) -> Deferred[bytes]:
        """
        Up to C{size} more bytes; C{b""} only at the end of the file. Do not
        call again before the previous result has arrived.
        """

    def close() -> None:
        """
        Release the file; further reads are not allowed.
        """


class IFileWriter(Interface):
    """
    A file being written, by appending.

    What a writer wrote and closed is kept: a later writer, in this process
    or another sharing the storage, opens it to append and its C{size}
    says how much it holds. Only once committed is it sure to be durable,
    and to be seen by L{IStorageDriver.stat}, L{IStorageDriver.reader} and
    L{IStorageDriver.getContent} (an unfinished S3 multipart upload cannot
    be read). Nothing exists at the path until something is written or the
    writer is committed.
    """

    path = Attribute("The path being written.")
    size = Attribute("Bytes in the file so far, including any it had when opened to append.")

    def write(data: bytes) -> Deferred[None]:
        """
        Append C{data}. Do not call again before the result fires: that is how
        a driver slows its callers down (a request body, an upstream fetch)
        to the pace of its medium.
        """

    def close() -> Deferred[None]:
        """
        Flush and release, keeping what was written so that a later writer
        can append to it.
        """

    def commit() -> Deferred[None]:
        """
        Flush, make durable and release; the file then has exactly C{size}
        bytes, an empty file if nothing was ever written.
        """

    def cancel() -> Deferred[None]:
        """
        Release and remove the file.
        """


class IRedirectingDriver(Interface):
    """
    A driver whose files clients can fetch from it directly.
    """

    def redirectURL(path: str) -> str:
        """
        A URL from which a client can GET the file at C{path}, for a while,
        without credentials of its own.
        """


class IPurgeable(Interface):
    """
    A driver whose writes leave files of their own behind when the process
    writing is killed, and that can find and remove them.
    """

    def purgeTemporaries(before: datetime, dryRun: bool = False) -> Deferred[list[str]]:
        """
        Remove the driver's own temporary files last changed before
        C{before}: only those, never a file the driver did not make. The
        paths of those removed (or, with C{dryRun}, of those that would
        have been).
        """


class IStorageDriver(Interface):
    """
    A place to keep files. Every method returns a L{Deferred}; those that
    look a path up fail with L{PathNotFound} when nothing is there, and
    every one fails with L{StorageUnavailable} when the medium cannot be
    reached.
    """

    name = Attribute("A short name for logs and metrics: 'filesystem', 'inmemory', ...")

    def getContent(path: str) -> Deferred[bytes]:
        """
        The whole content of a small file (link files, manifests): never
        for blobs, which are read with L{reader}.
        """

    def putContent(path: str, content: bytes) -> Deferred[None]:
        """
        Replace the file at C{path} with C{content}, atomically: a reader sees
        the old content or the new, never a mix or a truncated file.
        Missing parent directories are made.
        """

    def createExclusive(path: str, content: bytes) -> Deferred[bool]:
        """
        Create the file at C{path} with C{content} only if nothing is there:
        C{True} if this call made it, C{False} if a file was already there.
        Of callers racing for the same path (in any process sharing the
        storage), exactly one is told C{True}. Missing parent directories
        are made.
        """

    def reader(path: str, offset: int = 0) -> Deferred[IReader]:
        """
        Open a file to read from C{offset}.
        """

    def writer(path: str, append: bool = False) -> Deferred[IFileWriter]:
        """
        Open a file to write: to append to what it holds, or, with
        C{append=False}, starting empty. Missing parent directories are made.
        """

    def stat(path: str) -> Deferred[FileInfo]:
        """
        What is at C{path}: a file or a directory.
        """

    def list(path: str) -> Deferred[list[str]]:
        """
        The full paths of the direct children of the directory C{path}, in
        no particular order.
        """

    def move(source: str, destination: str) -> Deferred[None]:
        """
        Move a file, replacing whatever C{destination} held, atomically as
        far as readers of C{destination} can tell.
        """

    def delete(path: str) -> Deferred[None]:
        """
        Remove a file, or a directory with everything below it.
        """

    def checkHealth() -> Deferred[None]:
        """
        Reach the medium cheaply: fails with L{StorageUnavailable} when it
        cannot be reached, for health checks.
        """

    def close() -> Deferred[None]:
        """
        Release what the driver holds (connections), when the registry
        stops.
        """


class FileChunk(bytes):
    """
    Bytes that are also at C{offset} in a local file, open as C{fileno}
    while they are written: a writer that would keep them may read them
    back from the file instead (a proxy download's spool).
    """

    fileno: int
    offset: int

    def __new__(cls, data: bytes, fileno: int, offset: int) -> FileChunk:
        chunk = super().__new__(cls, data)
        chunk.fileno = fileno
        chunk.offset = offset
        return chunk
