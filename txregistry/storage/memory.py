"""
A storage driver that keeps everything in the process's memory: for tests
and throw-away registries (registry:2's C{inmemory} driver). Its content is
lost when the process ends.
"""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from txregistry.logging import logger
from txregistry.storage.interfaces import (
    FileInfo,
    IFileWriter,
    IReader,
    IStorageDriver,
    PathNotFound,
)

log = logger(__name__)


@implementer(IReader)
class _MemoryReader:
    def __init__(self, content: bytes, offset: int) -> None:
        self._view = memoryview(content)
        self._offset = offset

    def read(self, size: int) -> Deferred[bytes]:
        data = bytes(self._view[self._offset : self._offset + size])
        self._offset += len(data)
        return succeed(data)

    def close(self) -> None:
        self._view.release()


@implementer(IFileWriter)
class _MemoryWriter:
    def __init__(self, driver: MemoryDriver, path: str, content: bytes | None) -> None:
        self._driver = driver
        self.path = path
        # None until there is a file: appending to nothing creates nothing
        # until a write or a commit.
        self._buffer = None if content is None else bytearray(content)

    @property
    def size(self) -> int:
        return 0 if self._buffer is None else len(self._buffer)

    def write(self, data: bytes) -> Deferred[None]:
        if self._buffer is None:
            self._buffer = bytearray()
        self._buffer += data
        return succeed(None)

    def close(self) -> Deferred[None]:
        if self._buffer is not None:
            self._driver._store(self.path, bytes(self._buffer))
        return succeed(None)

    def commit(self) -> Deferred[None]:
        if self._buffer is None:
            self._buffer = bytearray()
        return self.close()

    def cancel(self) -> Deferred[None]:
        self._driver._files.pop(self.path, None)
        return succeed(None)


@implementer(IStorageDriver)
class MemoryDriver:
    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, float]] = {}

    def _store(self, path: str, content: bytes) -> None:
        self._files[path] = (content, time.time())

    def _children(self, path: str) -> set[str]:
        prefix = path.rstrip("/") + "/"
        return {prefix + key[len(prefix) :].split("/", 1)[0] for key in self._files if key.startswith(prefix)}

    def getContent(self, path: str) -> Deferred[bytes]:
        log.debug("inmemory getContent {path}", path=path)
        if path not in self._files:
            return fail(PathNotFound(path))
        return succeed(self._files[path][0])

    def putContent(self, path: str, content: bytes) -> Deferred[None]:
        log.debug("inmemory putContent {path}", path=path)
        self._store(path, bytes(content))
        return succeed(None)

    def createExclusive(self, path: str, content: bytes) -> Deferred[bool]:
        log.debug("inmemory createExclusive {path}", path=path)
        if path in self._files:
            return succeed(False)
        self._store(path, bytes(content))
        return succeed(True)

    def reader(self, path: str, offset: int = 0) -> Deferred[IReader]:
        log.debug("inmemory reader {path} from {offset}", path=path, offset=offset)
        if path not in self._files:
            return fail(PathNotFound(path))
        return succeed(_MemoryReader(self._files[path][0], offset))

    def writer(self, path: str, append: bool = False) -> Deferred[IFileWriter]:
        log.debug("inmemory writer {path}, append {append}", path=path, append=append)
        if not append:
            self._store(path, b"")
        existing = self._files.get(path)
        return succeed(_MemoryWriter(self, path, None if existing is None else existing[0]))

    def stat(self, path: str) -> Deferred[FileInfo]:
        log.debug("inmemory stat {path}", path=path)
        if path in self._files:
            content, modified = self._files[path]
            return succeed(FileInfo(path, len(content), False, modified))
        prefix = path.rstrip("/") + "/"
        times = [m for key, (_, m) in self._files.items() if key.startswith(prefix)]
        if not times:
            return fail(PathNotFound(path))
        return succeed(FileInfo(path, 0, True, max(times)))

    def list(self, path: str) -> Deferred[list[str]]:
        log.debug("inmemory list {path}", path=path)
        children = self._children(path)
        if not children:
            return fail(PathNotFound(path))
        return succeed(sorted(children))

    def move(self, source: str, destination: str) -> Deferred[None]:
        log.debug("inmemory move {source} to {destination}", source=source, destination=destination)
        if source not in self._files:
            return fail(PathNotFound(source))
        self._files[destination] = self._files.pop(source)
        return succeed(None)

    def delete(self, path: str) -> Deferred[None]:
        log.debug("inmemory delete {path}", path=path)
        prefix = path.rstrip("/") + "/"
        doomed = [key for key in self._files if key == path or key.startswith(prefix)]
        if not doomed:
            return fail(PathNotFound(path))
        for key in doomed:
            del self._files[key]
        return succeed(None)

    def checkHealth(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)
