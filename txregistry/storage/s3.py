"""
A storage driver on an S3 bucket (AWS, MinIO, SeaweedFS, ...), with the
keys registry:2's S3 driver uses: C{<rootdirectory>/docker/registry/v2/...}
without the root's leading slash. A bucket written by registry:2 is served
as it is, and instances sharing a bucket need nothing else to agree.

Files being written are multipart uploads in the bucket, streamed part by
part, and any instance can append to what another left. The part being
filled is held in memory within a budget all writers share, and beyond it
in a file on local disk; bytes that already are in a local file (a proxy
download's spool, as L{FileChunk}s) are read back from there when sent.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import attrs
import treq
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    ensureDeferred,
    fail,
    succeed,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import alsoProvides, implementer

from txregistry.logging import logger
from txregistry.pump import Pump
from txregistry.storage.interfaces import (
    FileChunk,
    FileInfo,
    IFileWriter,
    IReader,
    IRedirectingDriver,
    IStorageDriver,
    PathNotFound,
    StorageUnavailable,
    checkPath,
)
from txregistry.storage.s3client import Payload, S3Client, S3Error, XMLElement, findAll, findText, parseXML

log = logger(__name__)

MiB = 1024 * 1024
#: S3's smallest part, but for the last one.
MIN_PART_SIZE = 5 * MiB
#: The largest object one CopyObject copies.
MAX_COPY_SIZE = 5 * 1024 * MiB
_DELETE_BATCH = 1000
# Bytes a reader holds before it pauses the response it reads from.
_READ_AHEAD = 2 * MiB
#: Bytes of the parts being filled an instance holds in memory, all its
#: writers together; beyond, they fill files on local disk.
PART_MEMORY = 16 * MiB


def _modified(response: IResponse) -> float:
    values = response.headers.getRawHeaders("last-modified")
    if not values:
        return time.time()
    return parsedate_to_datetime(values[0]).timestamp()


def _notFound(error: S3Error) -> bool:
    return error.status == 404


class _BodyProtocol(Protocol):
    """
    A response body, into a pump that pauses the connection while more
    than L{_READ_AHEAD} bytes wait to be read.
    """

    def __init__(self) -> None:
        self.pump = Pump(limit=_READ_AHEAD)

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.pump.producer = transport

    def dataReceived(self, data: bytes) -> None:
        self.pump.received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone):
            self.pump.end()
        else:
            self.pump.fail(Failure(StorageUnavailable(f"S3 read cut short: {reason.value}")))


@implementer(IReader)
class _ObjectReader:
    """
    An object's body, read a chunk at a time: each chunk the pump hands
    over is held until a read takes it, and the pump waits for that.
    """

    def __init__(self, body: _BodyProtocol | None) -> None:
        self._body = body
        self._rest = b""
        self._waiting: Deferred[bytes] | None = None
        self._taken: Deferred[None] | None = None
        self._ended = body is None
        self._delivering = False
        self._failure: Failure | None = None

    def read(self, size: int) -> Deferred[bytes]:
        if self._rest:
            data, self._rest = self._rest[:size], self._rest[size:]
            return succeed(data)
        if self._failure is not None:
            return fail(self._failure)
        if self._ended:
            return succeed(b"")

        def cut(data: bytes) -> bytes:
            self._rest = data[size:]
            return data[:size]

        waiting = self._waiting = Deferred()
        waiting.addCallback(cut)
        if self._taken is not None:
            taken, self._taken = self._taken, None
            taken.callback(None)
        elif not self._delivering:
            assert self._body is not None
            self._delivering = True
            self._body.pump.deliver(self._chunk).addCallbacks(self._end, self._broke)
        return waiting

    def _chunk(self, data: bytes) -> Deferred[None]:
        waiting, self._waiting = self._waiting, None
        taken = self._taken = Deferred()
        assert waiting is not None
        waiting.callback(data)
        return taken

    def _end(self, _: object) -> None:
        self._ended = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(b"")

    def _broke(self, failure: Failure) -> None:
        self._failure = failure
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(failure)

    def close(self) -> None:
        if self._body is not None:
            producer = self._body.pump.producer
            if not self._ended and self._failure is None and producer is not None:
                producer.stopProducing()
            self._body = None


@attrs.frozen
class Part:
    """
    A part of a multipart upload, as the upload's completion names it.
    """

    number: int
    etag: str
    size: int


class MultipartUpload:
    """
    A multipart upload at one key, and the parts it holds: the parts are
    added in any order, and the upload completes them in order of number.
    """

    def __init__(self, client: S3Client, key: str, uploadID: str) -> None:
        self.client = client
        self.key = key
        self.uploadID = uploadID
        self.parts: list[Part] = []

    @classmethod
    async def start(cls, client: S3Client, key: str, headers: dict[str, str]) -> MultipartUpload:
        """
        A new upload at C{key}, whose object will have C{headers}.
        """
        root = await client.requestXML("POST", key, query={"uploads": None}, headers=headers, retry=True)
        return cls(client, key, findText(root, "UploadId"))

    @classmethod
    async def latest(cls, client: S3Client, key: str) -> MultipartUpload | None:
        """
        The upload at C{key} started last and not yet completed or aborted,
        if any, its parts not yet listed.
        """
        root = await client.requestXML("GET", "", query={"uploads": None, "prefix": key})
        found = [
            (findText(upload, "Initiated"), findText(upload, "UploadId"))
            for upload in findAll(root, "Upload")
            if findText(upload, "Key") == key
        ]
        return cls(client, key, max(found)[1]) if found else None

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    def _query(self, number: int | None = None) -> dict[str, str | None]:
        query: dict[str, str | None] = {"uploadId": self.uploadID}
        if number is not None:
            query["partNumber"] = str(number)
        return query

    async def listParts(self) -> list[Part]:
        """
        The parts S3 holds for this upload, in order, which become the
        parts it has.
        """
        parts: list[Part] = []
        marker = "0"
        while True:
            root = await self.client.requestXML(
                "GET", self.key, query={**self._query(), "part-number-marker": marker}
            )
            for part in findAll(root, "Part"):
                parts.append(
                    Part(
                        int(findText(part, "PartNumber")),
                        findText(part, "ETag"),
                        int(findText(part, "Size")),
                    )
                )
            if findText(root, "IsTruncated") != "true":
                self.parts = sorted(parts, key=lambda part: part.number)
                return self.parts
            marker = findText(root, "NextPartNumberMarker")

    async def uploadPart(self, number: int, data: bytes | Payload) -> None:
        response = await self.client.request("PUT", self.key, query=self._query(number), body=data)
        await treq.content(response)
        size = data.length if isinstance(data, Payload) else len(data)
        self.parts.append(Part(number, response.headers.getRawHeaders("etag", [""])[0], size))

    async def copyPart(self, number: int, sourceKey: str, start: int, end: int) -> None:
        """
        Make bytes C{start} to C{end} (inclusive) of the object at
        C{sourceKey} part C{number}, within S3.
        """
        root = await self.client.requestXML(
            "PUT",
            self.key,
            query=self._query(number),
            headers={
                "x-amz-copy-source": f"/{self.client.endpoint.bucket}/{sourceKey}",
                "x-amz-copy-source-range": f"bytes={start}-{end}",
            },
        )
        self.parts.append(Part(number, findText(root, "ETag"), end - start + 1))

    async def complete(self) -> None:
        """
        Make the parts the object at the key.
        """
        body = (
            "<CompleteMultipartUpload>"
            + "".join(
                f"<Part><PartNumber>{part.number}</PartNumber><ETag>{part.etag}</ETag></Part>"
                for part in sorted(self.parts, key=lambda part: part.number)
            )
            + "</CompleteMultipartUpload>"
        )
        response = await self.client.request(
            "POST", self.key, query=self._query(), body=body.encode(), retry=True
        )
        content = await treq.content(response)
        # S3 may answer 200 and still report an error in the body.
        if b"<Error>" in content:
            root = parseXML(content)
            raise StorageUnavailable(f"S3 could not complete {self.key}: {findText(root, 'Message')}")

    async def abort(self) -> None:
        await self.client.request("DELETE", self.key, query=self._query(), ok=(200, 204, 404))


def _split(data: bytes, size: int) -> tuple[bytes, bytes]:
    """
    The first C{size} bytes of C{data} and the rest, still L{FileChunk}s
    where C{data} is one.
    """
    if isinstance(data, FileChunk):
        return (
            FileChunk(data[:size], data.fileno, data.offset),
            FileChunk(data[size:], data.fileno, data.offset + size),
        )
    return data[:size], data[size:]


class PartMemory:
    """
    The bytes that the parts being filled by all of a driver's writers may
    hold in memory together; parts that find none left fill a file on
    local disk, so that what an instance holds does not grow with the
    number of uploads it takes at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


@attrs.define
class _Region:
    """
    Bytes of a part in a local file, open as C{file} (the part's own).
    """

    file: Any
    source: int
    offset: int
    length: int


#: The most bytes of a part written to a connection at a time.
_SEND_SIZE = 64 * 1024


@implementer(IBodyProducer)
class _PartProducer:
    """
    A part's bytes, from memory and from files, written to the request a
    little at a time, as fast as the connection takes them.
    """

    def __init__(self, segments: list[bytearray | _Region], length: int) -> None:
        self.length = length
        self._segments = segments
        self._index = 0
        self._position = 0
        self._consumer: Any = None
        self._done: Deferred[None] | None = None
        self._paused = False
        self._producing = False

    def startProducing(self, consumer: Any) -> Deferred[None]:
        self._consumer = consumer
        done = self._done = Deferred()
        self._produce()
        return done

    def _piece(self) -> bytes:
        segment = self._segments[self._index]
        if isinstance(segment, bytearray):
            # One copy, through a view: a slice of the bytearray would be another.
            piece = bytes(memoryview(segment)[self._position : self._position + _SEND_SIZE])
            size = len(segment)
        else:
            want = min(_SEND_SIZE, segment.length - self._position)
            piece = os.pread(segment.file.fileno(), want, segment.offset + self._position)
            if len(piece) != want:
                raise StorageUnavailable("a part's file on local disk is shorter than what was written to it")
            size = segment.length
        self._position += len(piece)
        if self._position == size:
            self._index += 1
            self._position = 0
        return piece

    def _produce(self) -> None:
        # The connection pauses us from within write() once its buffer is
        # full; resumeProducing comes back here.
        if self._producing:
            return
        self._producing = True
        try:
            while not self._paused and self._done is not None:
                if self._index == len(self._segments):
                    done, self._done = self._done, None
                    self._segments = []
                    done.callback(None)
                    return
                try:
                    piece = self._piece()
                except BaseException:
                    done, self._done = self._done, None
                    done.errback()
                    return
                self._consumer.write(piece)
        finally:
            self._producing = False

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._produce()

    def stopProducing(self) -> None:
        # Never to fire, as IBodyProducer asks.
        self._done = None
        self._segments = []


class _Part:
    """
    A part being filled: bytes in memory as far as the driver's
    L{PartMemory} allows, then in a file of its own on local disk, and
    L{FileChunk}s as the place in their file where they already are.
    """

    def __init__(self, memory: PartMemory) -> None:
        self.size = 0
        self._memory = memory
        self._held = 0
        self._segments: list[bytearray | _Region] = []
        self._spill: _Region | None = None
        self._hash = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        last = self._segments[-1] if self._segments else None
        if isinstance(data, FileChunk):
            if (
                isinstance(last, _Region)
                and last.source == data.fileno
                and last.offset + last.length == data.offset
            ):
                last.length += len(data)
            else:
                # A file of our own, open for as long as the part needs it.
                file = os.fdopen(os.dup(data.fileno), "rb", buffering=0)
                self._segments.append(_Region(file, data.fileno, data.offset, len(data)))
        elif self._memory.take(len(data)):
            self._held += len(data)
            if isinstance(last, bytearray):
                last += data
            else:
                self._segments.append(bytearray(data))
        else:
            spill = self._spill
            if spill is None or last is not spill:
                file = tempfile.TemporaryFile(buffering=0)
                spill = self._spill = _Region(file, -1, 0, 0)
                self._segments.append(spill)
            os.pwrite(spill.file.fileno(), data, spill.offset + spill.length)
            spill.length += len(data)

    def payload(self) -> Payload:
        return Payload(self.size, self._hash.hexdigest(), lambda: _PartProducer(self._segments, self.size))

    def release(self) -> None:
        """
        Let go of what the part holds, once sent or given up.
        """
        self._memory.give(self._held)
        self._held = 0
        # Whatever still refers to them (a persistent connection keeps its
        # last request, and so its producer) holds nothing.
        for segment in self._segments:
            if isinstance(segment, _Region):
                segment.file.close()
            else:
                segment.clear()
        self._segments = []
        self._spill = None


@implementer(IFileWriter)
class _MultipartWriter:
    """
    A file being written as a multipart upload at its key. Full parts of
    C{chunkSize} go to S3 as they fill; L{close} sends what is left as a
    last, possibly small part; the next writer to append finds the upload
    with its parts, as registry:2's S3 driver does. The part being filled
    is a L{_Part}: bounded memory for all writers together.
    """

    def __init__(self, driver: S3Driver, path: str) -> None:
        self.path = path
        self.size = 0
        self._driver = driver
        self._client = driver.client
        self._key = driver.key(path)
        self._upload: MultipartUpload | None = None
        self._part = _Part(driver.partMemory)
        # What open() found that must be dealt with before more is sent: a
        # small last part to finish, or a finished object of this many bytes
        # to continue from.
        self._restart = False
        self._existing = 0

    async def open(self, append: bool) -> None:
        """
        Find what the file holds, changing nothing: an unfinished upload's
        parts, or a finished object to continue from.
        """
        if not append:
            await self._abortAll()
            return
        upload = await MultipartUpload.latest(self._client, self._key)
        if upload is not None:
            self._upload = upload
            parts = await upload.listParts()
            self.size = upload.size
            # A small last part cannot be followed by another.
            self._restart = bool(parts) and parts[-1].size < MIN_PART_SIZE
            return
        info = await self._driver._head(self.path)
        if info is not None:
            self._existing = self.size = info.size

    async def _prepare(self) -> None:
        """
        Before more data is taken: make what the file already holds the
        start of the upload that takes it.
        """
        if self._restart and self._upload is not None:
            # Finish the upload and continue from the object it makes.
            self._restart = False
            stored = self._upload.size
            await self._complete()
            self._existing = stored
        if self._existing:
            existing, self._existing = self._existing, 0
            if existing < MIN_PART_SIZE:
                # The start of the part to come (a small object: memory).
                self._part.add(await self._driver.getContent(self.path))
                return
            upload = self._upload = await self._start()
            # The object so far becomes the first parts, copied within S3.
            for start in range(0, existing, MAX_COPY_SIZE):
                end = min(start + MAX_COPY_SIZE, existing) - 1
                await upload.copyPart(len(upload.parts) + 1, self._key, start, end)

    async def _start(self) -> MultipartUpload:
        return await MultipartUpload.start(self._client, self._key, self._driver.objectHeaders())

    async def _send(self) -> None:
        """
        The part filled so far to S3, and a new one begun.
        """
        part, self._part = self._part, _Part(self._driver.partMemory)
        try:
            if self._upload is None:
                self._upload = await self._start()
            await self._upload.uploadPart(len(self._upload.parts) + 1, part.payload())
        finally:
            part.release()

    async def _write(self, data: bytes) -> None:
        if self._restart or self._existing:
            await self._prepare()
        while data:
            piece, data = _split(data, self._driver.chunkSize - self._part.size)
            self._part.add(piece)
            if self._part.size == self._driver.chunkSize:
                await self._send()

    def write(self, data: bytes) -> Deferred[None]:
        self.size += len(data)
        if not (self._restart or self._existing) and self._part.size + len(data) < self._driver.chunkSize:
            self._part.add(data)
            return succeed(None)
        return ensureDeferred(self._write(data))

    async def _close(self) -> None:
        if self._part.size:
            await self._send()

    def close(self) -> Deferred[None]:
        return ensureDeferred(self._close())

    async def _complete(self) -> None:
        if self._upload is not None:
            await self._upload.complete()
            self._upload = None

    async def _commit(self) -> None:
        if self._upload is None and not self._existing:
            # All there is fits in one request: no multipart upload.
            part, self._part = self._part, _Part(self._driver.partMemory)
            try:
                await self._driver._put(self.path, part.payload() if part.size else b"")
            finally:
                part.release()
            return
        if not self._part.size and self._upload is None:
            # A finished object, and nothing new for it.
            return
        await self._close()
        await self._complete()

    def commit(self) -> Deferred[None]:
        return ensureDeferred(self._commit())

    async def _abortAll(self) -> None:
        while (upload := await MultipartUpload.latest(self._client, self._key)) is not None:
            await upload.abort()
        self._upload = None

    async def _cancel(self) -> None:
        self._part.release()
        self._part = _Part(self._driver.partMemory)
        await self._abortAll()
        await self._client.request("DELETE", self._key, ok=(200, 204, 404))

    def cancel(self) -> Deferred[None]:
        return ensureDeferred(self._cancel())


@attrs.frozen
class _Page:
    """
    A page of a listing: its keys, and its common prefixes (with their
    slash) when the listing is by directory.
    """

    keys: list[str]
    prefixes: list[str]


#: How long a redirect to a blob is good for: registry:2's 20 minutes.
REDIRECT_EXPIRY = 20 * 60


@implementer(IStorageDriver)
class S3Driver:
    """
    Files as objects in one bucket, below C{rootDirectory}.
    """

    name = "s3"

    def __init__(
        self,
        client: S3Client,
        rootDirectory: str = "",
        chunkSize: int = 10 * MiB,
        multipartCopyThreshold: int = 32 * MiB,
        multipartCopyChunkSize: int = 32 * MiB,
        multipartCopyConcurrency: int = 100,
        storageClass: str | None = None,
        encrypt: bool = False,
        redirect: S3Client | None = None,
        listPageSize: int = 1000,
        partMemory: int = PART_MEMORY,
    ) -> None:
        self.client = client
        #: What the parts being written may hold in memory, all together.
        self.partMemory = PartMemory(partMemory)
        #: Keys a listing asks S3 for at a time (S3 gives at most 1000).
        self.listPageSize = listPageSize
        if redirect is not None:
            alsoProvides(self, IRedirectingDriver)
        self._redirect = redirect
        self.root = rootDirectory.strip("/")
        self.chunkSize = chunkSize
        self.multipartCopyThreshold = multipartCopyThreshold
        self.multipartCopyChunkSize = multipartCopyChunkSize
        self.multipartCopyConcurrency = multipartCopyConcurrency
        self.storageClass = storageClass
        self.encrypt = encrypt

    def key(self, path: str) -> str:
        return f"{self.root}{checkPath(path)}".lstrip("/")

    def _path(self, key: str) -> str:
        return "/" + key[len(self.root) :].lstrip("/") if self.root else "/" + key

    def objectHeaders(self) -> dict[str, str]:
        headers = {}
        if self.storageClass and self.storageClass != "NONE":
            headers["x-amz-storage-class"] = self.storageClass
        if self.encrypt:
            headers["x-amz-server-side-encryption"] = "AES256"
        return headers

    async def _get(self, path: str, headers: dict[str, str] | None = None) -> IResponse:
        try:
            return await self.client.request("GET", self.key(path), headers=headers, ok=(200, 206))
        except S3Error as e:
            if _notFound(e):
                raise PathNotFound(path) from None
            raise StorageUnavailable(f"S3 GET {path}: {e.code}: {e.message}") from None

    def getContent(self, path: str) -> Deferred[bytes]:
        log.debug("s3 getContent {path}", path=path)

        async def get() -> bytes:
            return bytes(await treq.content(await self._get(path)))

        return ensureDeferred(get())

    async def _put(self, path: str, content: bytes | Payload) -> None:
        response = await self.client.request(
            "PUT", self.key(path), headers=self.objectHeaders(), body=content
        )
        await treq.content(response)

    def putContent(self, path: str, content: bytes) -> Deferred[None]:
        log.debug("s3 putContent {path}", path=path)
        return ensureDeferred(self._put(path, content))

    def createExclusive(self, path: str, content: bytes) -> Deferred[bool]:
        log.debug("s3 createExclusive {path}", path=path)

        async def create() -> bool:
            # A conditional write (AWS, MinIO and SeaweedFS honour it): 412
            # if the key exists, 409 if another such write to it is under way.
            headers = {"If-None-Match": "*", **self.objectHeaders()}
            response = await self.client.request(
                "PUT", self.key(path), headers=headers, body=content, ok=(200, 409, 412)
            )
            await treq.content(response)
            return response.code == 200

        return ensureDeferred(create())

    def reader(self, path: str, offset: int = 0) -> Deferred[IReader]:
        log.debug("s3 reader {path} from {offset}", path=path, offset=offset)

        async def open_() -> IReader:
            try:
                response = await self._get(path, {"Range": f"bytes={offset}-"} if offset else None)
            except StorageUnavailable as e:
                # A range that starts at the end of the object: nothing to read.
                if "InvalidRange" in str(e):
                    await self.stat(path)
                    return _ObjectReader(None)
                raise
            body = _BodyProtocol()
            response.deliverBody(body)
            return _ObjectReader(body)

        return ensureDeferred(open_())

    def writer(self, path: str, append: bool = False) -> Deferred[IFileWriter]:
        log.debug("s3 writer {path}, append {append}", path=path, append=append)

        async def open_() -> IFileWriter:
            writer = _MultipartWriter(self, path)
            await writer.open(append)
            return writer

        return ensureDeferred(open_())

    async def _head(self, path: str) -> FileInfo | None:
        try:
            response = await self.client.request("HEAD", self.key(path))
        except S3Error as e:
            if _notFound(e):
                return None
            raise StorageUnavailable(f"S3 HEAD {path}: {e.code}") from None
        length = response.headers.getRawHeaders("content-length", ["0"])[0]
        return FileInfo(path, int(length), False, _modified(response))

    async def _listPage(
        self, prefix: str, token: str | None, delimiter: bool, limit: int | None = None
    ) -> XMLElement:
        size = str(limit or self.listPageSize)
        query: dict[str, str | None] = {"list-type": "2", "prefix": prefix, "max-keys": size}
        if delimiter:
            query["delimiter"] = "/"
        if token:
            query["continuation-token"] = token
        return await self.client.requestXML("GET", "", query=query)

    async def _listing(self, prefix: str, delimiter: bool) -> AsyncIterator[_Page]:
        """
        The pages of the listing of the keys below C{prefix}, all of them.
        """
        token = None
        while True:
            root = await self._listPage(prefix, token, delimiter)
            yield _Page(
                [findText(content, "Key") for content in findAll(root, "Contents")],
                [findText(common, "Prefix") for common in findAll(root, "CommonPrefixes")],
            )
            if findText(root, "IsTruncated") != "true":
                return
            token = findText(root, "NextContinuationToken")

    def stat(self, path: str) -> Deferred[FileInfo]:
        log.debug("s3 stat {path}", path=path)

        async def stat() -> FileInfo:
            info = await self._head(path)
            if info is not None:
                return info
            root = await self._listPage(self.key(path).rstrip("/") + "/", None, False, 1)
            contents = findAll(root, "Contents")
            if not contents:
                raise PathNotFound(path)
            modified = _isoTime(findText(contents[0], "LastModified"))
            return FileInfo(path, 0, True, modified)

        return ensureDeferred(stat())

    def list(self, path: str) -> Deferred[list[str]]:
        log.debug("s3 list {path}", path=path)

        async def list_() -> list[str]:
            prefix = self.key(path).rstrip("/") + "/"
            if prefix == "/":
                prefix = ""
            found: list[str] = []
            async for page in self._listing(prefix, delimiter=True):
                found += [self._path(common.rstrip("/")) for common in page.prefixes]
                # Folder markers (the S3 console's, a filer's emptied
                # directories) are not files.
                found += [self._path(key) for key in page.keys if not key.endswith("/")]
            if not found:
                raise PathNotFound(path)
            return found

        return ensureDeferred(list_())

    async def _copy(self, source: str, destination: str, size: int) -> None:
        sourceKey = f"/{self.client.endpoint.bucket}/{self.key(source)}"
        if size <= self.multipartCopyThreshold:
            headers = {"x-amz-copy-source": sourceKey, **self.objectHeaders()}
            root = await self.client.requestXML("PUT", self.key(destination), headers=headers)
            if root.tag.endswith("Error"):
                raise StorageUnavailable(f"S3 could not copy {source}: {findText(root, 'Message')}")
            return
        upload = await MultipartUpload.start(self.client, self.key(destination), self.objectHeaders())
        limit = DeferredSemaphore(self.multipartCopyConcurrency)
        chunk = self.multipartCopyChunkSize
        failures: list[Failure] = []

        async def copyPart(number: int, start: int) -> None:
            if failures:
                return  # One part failed: the copy is over.
            try:
                await upload.copyPart(number, self.key(source), start, min(start + chunk, size) - 1)
            except Exception:
                failures.append(Failure())

        # Every part in flight is waited for before the upload is aborted:
        # S3 may keep a part that lands after the abort.
        await DeferredList(
            [limit.run(copyPart, number, start) for number, start in enumerate(range(0, size, chunk), 1)]
        )
        if failures:
            await upload.abort()
            failures[0].raiseException()
        await upload.complete()

    def move(self, source: str, destination: str) -> Deferred[None]:
        log.debug("s3 move {source} to {destination}", source=source, destination=destination)

        async def move() -> None:
            info = await self._head(source)
            if info is None:
                raise PathNotFound(source)
            await self._copy(source, destination, info.size)
            await self.client.request("DELETE", self.key(source), ok=(200, 204))

        return ensureDeferred(move())

    def delete(self, path: str) -> Deferred[None]:
        log.debug("s3 delete {path}", path=path)

        async def delete() -> None:
            key = self.key(path)
            prefix = key.rstrip("/") + "/"
            keys = []
            if await self._head(path) is not None:
                keys.append(key)
            async for page in self._listing(prefix, delimiter=False):
                keys += page.keys
            if not keys:
                raise PathNotFound(path)
            for start in range(0, len(keys), _DELETE_BATCH):
                await self._deleteBatch(keys[start : start + _DELETE_BATCH])
            await self._deleteDirectories(prefix, keys)

        return ensureDeferred(delete())

    async def _deleteDirectories(self, prefix: str, keys: Sequence[str]) -> None:
        """
        Remove the directories that deleting C{keys} below C{prefix} left
        empty, deepest first. S3 has none, and this costs it a few requests
        that change nothing; filer-backed servers (SeaweedFS) keep them and
        would go on listing a deleted tag as a common prefix.
        """
        directories = {prefix}
        for key in keys:
            if key.startswith(prefix):
                parts = key[len(prefix) :].split("/")[:-1]
                directories.update(prefix + "/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
        for directory in sorted(directories, key=lambda d: d.count("/"), reverse=True):
            await self.client.request("DELETE", directory, ok=(200, 204, 404))

    def checkHealth(self) -> Deferred[None]:
        async def check() -> None:
            try:
                await self._listPage(self.key("/").rstrip("/"), None, True, 1)
            except S3Error as e:
                raise StorageUnavailable(
                    f"S3 bucket {self.client.endpoint.bucket}: {e.code}: {e.message}"
                ) from None

        return ensureDeferred(check())

    def redirectURL(self, path: str) -> str:
        assert self._redirect is not None
        return self._redirect.presign(self.key(path), REDIRECT_EXPIRY)

    def close(self) -> Deferred[None]:
        return self.client.close()

    async def _deleteBatch(self, keys: Sequence[str]) -> None:
        body = (
            "<Delete><Quiet>true</Quiet>"
            + "".join(f"<Object><Key>{_escape(k)}</Key></Object>" for k in keys)
            + "</Delete>"
        )
        payload = body.encode()
        md5 = base64.b64encode(hashlib.md5(payload).digest()).decode()
        root = await self.client.requestXML(
            "POST", "", query={"delete": None}, body=payload, headers={"Content-MD5": md5}, retry=True
        )
        errors = findAll(root, "Error")
        if errors:
            raise StorageUnavailable(f"S3 could not delete {findText(errors[0], 'Key')}")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _isoTime(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()
