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
import shutil
import uuid
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from txregistry.storage.interfaces import (
    FileInfo,
    IFileWriter,
    IReader,
    IStorageDriver,
    PathNotFound,
    StorageUnavailable,
)

T = TypeVar("T")


def _fsyncDirectory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@implementer(IReader)
class _FileReader:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def read(self, size: int) -> Deferred[bytes]:
        return succeed(self._file.read(size))

    def close(self) -> None:
        self._file.close()


@implementer(IFileWriter)
class _FileWriter:
    def __init__(self, path: str, file: BinaryIO, size: int) -> None:
        self._path = path
        self._file = file
        self.size = size

    def write(self, data: bytes) -> Deferred[None]:
        self._file.write(data)
        self.size += len(data)
        return succeed(None)

    def close(self) -> Deferred[None]:
        self._file.close()
        return succeed(None)

    def commit(self) -> Deferred[None]:
        def sync() -> None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()

        return deferToThread(sync)

    def cancel(self) -> Deferred[None]:
        self._file.close()
        try:
            os.remove(self._path)
        except FileNotFoundError:
            pass
        return succeed(None)


@implementer(IStorageDriver)
class FilesystemDriver:
    """
    Files below C{root}, as registry:2's C{filesystem} driver keeps them.
    """

    name = "filesystem"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _full(self, path: str) -> str:
        if not path.startswith("/") or "/../" in f"{path}/" or "\0" in path:
            raise ValueError(f"not a storage path: {path!r}")
        return self.root + path

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
            return fail(StorageUnavailable(f"{path}: {e}"))

    def _inThread(self, path: str, f: Callable[[str], T]) -> Deferred[T]:
        full = self._full(path)

        def translate(failure):  # type: ignore[no-untyped-def]
            if failure.check(FileNotFoundError, NotADirectoryError):
                raise PathNotFound(path)
            if failure.check(OSError) and not failure.check(PathNotFound):
                raise StorageUnavailable(f"{path}: {failure.value}")
            return failure

        return deferToThread(f, full).addErrback(translate)

    def getContent(self, path: str) -> Deferred[bytes]:
        def read(full: str) -> bytes:
            with open(full, "rb") as f:
                return f.read()

        return self._call(path, read)

    def putContent(self, path: str, content: bytes) -> Deferred[None]:
        def put(full: str) -> None:
            directory = os.path.dirname(full)
            os.makedirs(directory, exist_ok=True)
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

    def reader(self, path: str, offset: int = 0) -> Deferred[IReader]:
        def open_(full: str) -> IReader:
            if os.path.isdir(full):
                raise FileNotFoundError(errno.EISDIR, "is a directory", full)
            f = open(full, "rb")
            f.seek(offset)
            return _FileReader(f)

        return self._call(path, open_)

    def writer(self, path: str, append: bool = False) -> Deferred[IFileWriter]:
        def open_(full: str) -> IFileWriter:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            f = open(full, "ab" if append else "wb")
            return _FileWriter(full, f, f.tell())

        return self._call(path, open_)

    def stat(self, path: str) -> Deferred[FileInfo]:
        def stat(full: str) -> FileInfo:
            st = os.stat(full)
            isDirectory = os.path.isdir(full)
            return FileInfo(path, 0 if isDirectory else st.st_size, isDirectory, st.st_mtime)

        return self._call(path, stat)

    def list(self, path: str) -> Deferred[list[str]]:
        prefix = path.rstrip("/")

        def list_(full: str) -> list[str]:
            with os.scandir(full) as entries:
                return [f"{prefix}/{entry.name}" for entry in entries if not entry.name.endswith(".tmp")]

        return self._inThread(path, list_)

    def move(self, source: str, destination: str) -> Deferred[None]:
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
        def delete(full: str) -> None:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.remove(full)

        return self._inThread(path, delete)
