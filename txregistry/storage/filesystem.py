"""
A storage driver on a local (or shared) file system, laid out exactly as
registry:2's filesystem driver lays out its root directory.

Reads of small files, appends and renames run on the reactor thread: they
touch the page cache and return at once. What can wait on the disk for
long (fsync, listing and removing directory trees) runs in a thread.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import IO, BinaryIO, Literal, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from txregistry.logging import logger
from txregistry.storage.interfaces import (
    FileInfo,
    IFileWriter,
    IPurgeable,
    IReader,
    IStorageDriver,
    PathNotFound,
    StorageUnavailable,
    checkPath,
)

T = TypeVar("T")

log = logger(__name__)

# The temporary beside a file that putContent writes before renaming it into
# place: <name>.<32 hex digits>.tmp.
_TEMPORARY = re.compile(r".+\.[0-9a-f]{32}\.tmp")


def _unavailable(path: str, error: OSError) -> StorageUnavailable:
    # Only the storage path and the reason: str(error) names the file by
    # its full path on this server, which is none of a client's business.
    return StorageUnavailable(f"{path}: {error.strerror or type(error).__name__}")


def _fsyncDirectory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@implementer(IReader)
class _FileReader:
    def __init__(self, path: str, file: BinaryIO) -> None:
        self._path = path
        self._file = file

    def read(self, size: int) -> Deferred[bytes]:
        try:
            return succeed(self._file.read(size))
        except OSError as e:
            return fail(_unavailable(self._path, e))

    def close(self) -> None:
        self._file.close()


@implementer(IFileWriter)
class _FileWriter:
    def __init__(self, path: str, full: str, append: bool) -> None:
        self.path = path
        self._full = full
        self._file: IO[bytes] | None = None
        if append:
            try:
                self.size = os.path.getsize(full)
            except FileNotFoundError:
                # Made on the first write or commit, so that opening to look
                # at an upload's size creates nothing.
                self.size = 0
        else:
            self._open("wb")
            self.size = 0

    def _open(self, mode: Literal["ab", "wb"] = "ab") -> IO[bytes]:
        if self._file is None:
            os.makedirs(os.path.dirname(self._full), exist_ok=True)
            self._file = open(self._full, mode)
        return self._file

    def write(self, data: bytes) -> Deferred[None]:
        try:
            self._open().write(data)
        except OSError as e:
            return fail(_unavailable(self.path, e))
        self.size += len(data)
        return succeed(None)

    def close(self) -> Deferred[None]:
        if self._file is not None:
            try:
                # Closes the file even when flushing what is buffered fails.
                self._file.close()
            except OSError as e:
                return fail(_unavailable(self.path, e))
        return succeed(None)

    def commit(self) -> Deferred[None]:
        try:
            file = self._open()
        except OSError as e:
            return fail(_unavailable(self.path, e))

        def sync() -> None:
            try:
                try:
                    file.flush()
                    os.fsync(file.fileno())
                finally:
                    file.close()
            except OSError as e:
                raise _unavailable(self.path, e) from None

        return deferToThread(sync)

    def cancel(self) -> Deferred[None]:
        try:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    # What could not be flushed is removed anyway.
                    pass
            os.remove(self._full)
        except FileNotFoundError:
            pass
        except OSError as e:
            return fail(_unavailable(self.path, e))
        return succeed(None)


@implementer(IStorageDriver, IPurgeable)
class FilesystemDriver:
    """
    Files below C{root}, as registry:2's C{filesystem} driver keeps them.
    """

    name = "filesystem"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _full(self, path: str) -> str:
        return self.root + checkPath(path)

    def _call(self, path: str, f: Callable[[str], T]) -> Deferred[T]:
        """
        Run a quick file system call on the reactor thread, translating its
        errors into the driver's.
        """
        try:
            return succeed(f(self._full(path)))
        except FileNotFoundError:
            return fail(PathNotFound(path))
        except NotADirectoryError:
            return fail(PathNotFound(path))
        except OSError as e:
            return fail(_unavailable(path, e))

    def _inThread(self, path: str, f: Callable[[str], T]) -> Deferred[T]:
        full = self._full(path)

        def translate(failure):  # type: ignore[no-untyped-def]
            if failure.check(FileNotFoundError, NotADirectoryError):
                raise PathNotFound(path)
            if failure.check(OSError):
                raise _unavailable(path, failure.value)
            return failure

        return deferToThread(f, full).addErrback(translate)

    def getContent(self, path: str) -> Deferred[bytes]:
        log.debug("filesystem getContent {path}", path=path)

        def read(full: str) -> bytes:
            with open(full, "rb") as f:
                return f.read()

        return self._call(path, read)

    def putContent(self, path: str, content: bytes) -> Deferred[None]:
        log.debug("filesystem putContent {path}", path=path)

        def put(full: str) -> None:
            directory = os.path.dirname(full)
            os.makedirs(directory, exist_ok=True)
            # Named so that purgeTemporaries knows it for one of ours.
            temporary = f"{full}.{uuid.uuid4().hex}.tmp"
            try:
                with open(temporary, "wb") as f:
                    f.write(content)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, full)
            except BaseException:
                try:
                    os.remove(temporary)
                except OSError:
                    pass
                raise

        return self._inThread(path, put)

    def createExclusive(self, path: str, content: bytes) -> Deferred[bool]:
        log.debug("filesystem createExclusive {path}", path=path)

        def create(full: str) -> bool:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            # Written whole beside it, then linked into place: a link fails
            # if the path exists, on every host sharing the directory (NFS
            # included), and a reader never sees a partial file.
            temporary = f"{full}.{uuid.uuid4().hex}.tmp"
            try:
                with open(temporary, "wb") as f:
                    f.write(content)
                try:
                    os.link(temporary, full)
                except FileExistsError:
                    return False
                return True
            finally:
                try:
                    os.remove(temporary)
                except OSError:
                    pass

        return self._inThread(path, create)

    def purgeTemporaries(self, before: datetime, dryRun: bool = False) -> Deferred[list[str]]:
        """
        Remove what L{putContent} left behind when its process was killed
        between writing a temporary and renaming it into place.
        """
        cutoff = before.timestamp()

        def purge() -> list[str]:
            purged = []
            # Errors listing a directory are skipped, as os.walk does: the
            # next pass looks again.
            for directory, _, names in os.walk(self.root):
                for name in names:
                    if _TEMPORARY.fullmatch(name) is None:
                        continue
                    full = os.path.join(directory, name)
                    path = "/" + os.path.relpath(full, self.root)
                    try:
                        if os.lstat(full).st_mtime >= cutoff:
                            continue
                        if not dryRun:
                            os.remove(full)
                    except FileNotFoundError:
                        # Renamed into place or removed meanwhile, by a
                        # writer or another instance's purge.
                        continue
                    except OSError as e:
                        raise _unavailable(path, e) from None
                    purged.append(path)
            return purged

        return deferToThread(purge)

    def reader(self, path: str, offset: int = 0) -> Deferred[IReader]:
        log.debug("filesystem reader {path} from {offset}", path=path, offset=offset)

        def open_(full: str) -> IReader:
            if os.path.isdir(full):
                raise FileNotFoundError(errno.EISDIR, "is a directory", full)
            f = open(full, "rb")
            f.seek(offset)
            return _FileReader(path, f)

        return self._call(path, open_)

    def writer(self, path: str, append: bool = False) -> Deferred[IFileWriter]:
        log.debug("filesystem writer {path}, append {append}", path=path, append=append)
        return self._call(path, lambda full: _FileWriter(path, full, append))

    def stat(self, path: str) -> Deferred[FileInfo]:
        log.debug("filesystem stat {path}", path=path)

        def stat(full: str) -> FileInfo:
            st = os.stat(full)
            isDirectory = os.path.isdir(full)
            return FileInfo(path, 0 if isDirectory else st.st_size, isDirectory, st.st_mtime)

        return self._call(path, stat)

    def list(self, path: str) -> Deferred[list[str]]:
        log.debug("filesystem list {path}", path=path)
        prefix = path.rstrip("/")

        def list_(full: str) -> list[str]:
            with os.scandir(full) as entries:
                return [f"{prefix}/{entry.name}" for entry in entries if not entry.name.endswith(".tmp")]

        return self._inThread(path, list_)

    def move(self, source: str, destination: str) -> Deferred[None]:
        log.debug("filesystem move {source} to {destination}", source=source, destination=destination)
        try:
            fullDestination = self._full(destination)
        except ValueError as e:
            return fail(e)

        def move(full: str) -> None:
            parent = os.path.dirname(fullDestination)
            os.makedirs(parent, exist_ok=True)
            os.replace(full, fullDestination)
            # The rename itself must survive a crash, not only the data.
            _fsyncDirectory(parent)

        return self._inThread(source, move)

    def delete(self, path: str) -> Deferred[None]:
        log.debug("filesystem delete {path}", path=path)

        def delete(full: str) -> None:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.remove(full)

        return self._inThread(path, delete)

    def checkHealth(self) -> Deferred[None]:
        def check() -> None:
            try:
                isDirectory = stat.S_ISDIR(os.stat(self.root).st_mode)
            except OSError as e:
                raise _unavailable("/", e) from None
            if not isDirectory:
                raise StorageUnavailable("/: the storage root is not a directory")

        # A hung network file system must not hang the reactor with it.
        return deferToThread(check)

    def close(self) -> Deferred[None]:
        return succeed(None)
