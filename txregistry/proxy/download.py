"""
One upstream fetch of a blob, shared by every client that asks for it
while it runs.

The body streams into storage (as an upload, so that a crash leaves
nothing but what upload purging removes) and into a spool file on local
disk at once, hashed on the way. Clients read the spool from their own
offset as it grows, so a slow client holds neither memory nor the
upstream connection; slow storage pauses the upstream transport. The
last byte is handed to clients only once the digest is verified, so no
client can take a corrupt blob for a whole one, and the blob becomes
visible in storage only after that check.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from zope.interface import implementer

from txregistry.logging import logger
from txregistry.proxy.metrics import ProxyMetrics
from txregistry.reference import Digest
from txregistry.registry import createUpload, publishUpload
from txregistry.registry.blobs import Blobs
from txregistry.registry.links import deleteIfPresent
from txregistry.storage import IFileWriter, IReader, IStorageDriver, layout

log = logger(__name__)


class DownloadFailed(Exception):
    """
    The upstream's bytes did not make a whole, verified blob.
    """


class _Body(Protocol):
    def __init__(self, download: BlobDownload) -> None:
        self.download = download

    def dataReceived(self, data: bytes) -> None:
        self.download._received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.download._bodyEnded(reason)


class BlobDownload:
    """
    The fetch of blob C{digest} for repository C{name}. L{start} is given
    the upstream's response; L{done} fires once the blob is in storage (or
    fails with why it is not).
    """

    def __init__(
        self,
        driver: IStorageDriver,
        name: str,
        digest: Digest,
        reactor: Any,
        timeout: float,
        spoolDirectory: str | None = None,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.driver = driver
        self.metrics = metrics if metrics is not None else ProxyMetrics()
        self.digest = digest
        self.names = {name}
        self.reactor = reactor
        self.timeout = timeout
        self.size: int | None = None
        self.received = 0
        self.verified = False
        self.done: Deferred[None] = Deferred()
        self._name = name
        self._uuid: str | None = None
        # Unbuffered: what is written is at once there for readers' preads.
        self._spool = tempfile.TemporaryFile(buffering=0, dir=spoolDirectory)
        self._hasher = hashlib.new(digest.algorithm)
        self._writer: IFileWriter | None = None
        self._queue: deque[bytes] = deque()
        self._writing = False
        self._paused = False
        self._transport: Any = None
        self._bodyDone = False
        self._failure: Failure | None = None
        self._waiters: list[Deferred[None]] = []
        self._readers = 0
        self._ended = False
        self._idle: IDelayedCall | None = None

    async def start(self, response: IResponse) -> None:
        """
        Start writing the response's body; returns once it is flowing.
        """
        if response.length is not UNKNOWN_LENGTH:
            self.size = response.length
        try:
            self._uuid = await createUpload(self.driver, self._name)
            self._writer = await self.driver.writer(layout.uploadData(self._name, self._uuid))
        except BaseException:
            response.deliverBody(Protocol())
            self._fail(Failure())
            raise
        body = _Body(self)
        response.deliverBody(body)
        self._transport = body.transport
        self._touch()

    # The upstream side.

    def _touch(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if not self._bodyDone and not self._paused:
            self._idle = self.reactor.callLater(self.timeout, self._timedOut)

    def _timedOut(self) -> None:
        self._fail(Failure(DownloadFailed(f"upstream sent nothing for {self.timeout:.0f} s")))

    def _received(self, data: bytes) -> None:
        if self._failure is not None:
            return
        self._spool.write(data)
        self._hasher.update(data)
        self.received += len(data)
        self.metrics.upstreamBytes += len(data)
        self._queue.append(data)
        self._wake()
        self._drain()
        if self._writing and not self._paused:
            # Storage is slower than the upstream: wait for it.
            self._paused = True
            self._transport.pauseProducing()
        self._touch()

    def _drain(self) -> None:
        while self._queue and not self._writing and self._failure is None:
            assert self._writer is not None
            self._writing = True
            d = self._writer.write(self._queue.popleft())
            d.addCallbacks(self._wrote, self._fail)
        if not self._queue and not self._writing:
            if self._paused:
                self._paused = False
                self._transport.resumeProducing()
                self._touch()
            if self._bodyDone and self._failure is None and not self.verified:
                self._finish()

    def _wrote(self, _: object) -> None:
        self._writing = False
        self._drain()

    def _bodyEnded(self, reason: Failure) -> None:
        self._bodyDone = True
        self._touch()
        if self._failure is not None:
            return
        if not reason.check(ResponseDone, PotentialDataLoss):
            self._fail(
                Failure(DownloadFailed(f"the upstream's response broke off: {reason.getErrorMessage()}"))
            )
            return
        self._drain()

    def _finish(self) -> None:
        actual = self._hasher.hexdigest()
        if self.size is not None and self.received != self.size:
            self._fail(Failure(DownloadFailed(f"upstream sent {self.received} of {self.size} bytes")))
        elif actual != self.digest.hex:
            self._fail(
                Failure(DownloadFailed(f"upstream sent content of digest {self.digest.algorithm}:{actual}"))
            )
        else:
            self.verified = True
            self.size = self.received
            self._wake()
            Deferred.fromCoroutine(self._store()).addCallbacks(self._stored, self._fail)

    async def _store(self) -> None:
        assert self._writer is not None and self._uuid is not None
        await self._writer.commit()
        await publishUpload(self.driver, self._name, self._uuid, self.digest)
        for name in sorted(self.names):
            await Blobs(self.driver, name).link(self.digest)

    def _stored(self, _: object) -> None:
        self._ended = True
        self.done.callback(None)
        self._release()

    def _fail(self, failure: Failure) -> None:
        if self._failure is not None or self._ended:
            return
        self._failure = failure
        self._ended = True
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if not self._bodyDone and self._transport is not None:
            self._transport.stopProducing()
        if self._writer is not None:
            self._writer.cancel().addErrback(lambda _: None)
        if self._uuid is not None:
            deleteUpload = Deferred.fromCoroutine(
                deleteIfPresent(self.driver, layout.upload(self._name, self._uuid))
            )
            deleteUpload.addErrback(lambda f: log.failure("removing a failed download", f))
        self._wake()
        self.done.errback(failure)
        self.done.addErrback(lambda _: None)
        self._release()

    # The clients' side.

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def available(self) -> int:
        """
        Bytes clients may have: all once verified, all but the last before.
        """
        return self.received if self.verified else max(self.received - 1, 0)

    @property
    def stored(self) -> bool:
        """
        Whether the blob is in storage, to be read from there.
        """
        return self._ended and self._failure is None

    def reader(self, offset: int = 0) -> IReader:
        """
        A reader of the blob from C{offset}, that waits for bytes still to
        come. Not once the download is L{stored}: its spool is gone.
        """
        if self._failure is not None:
            self._failure.raiseException()
        assert not self.stored
        self._readers += 1
        return _SpoolReader(self, offset)

    def _more(self) -> Deferred[None]:
        if self._failure is not None:
            return fail(self._failure)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def _release(self, reader: bool = False) -> None:
        if reader:
            self._readers -= 1
        if self._ended and self._readers == 0 and not self._spool.closed:
            self._spool.close()

    def _pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._spool.fileno(), size, offset)


@implementer(IReader)
class _SpoolReader:
    def __init__(self, download: BlobDownload, offset: int) -> None:
        self._download = download
        self._offset = offset
        self._closed = False

    def read(self, size: int) -> Deferred[bytes]:
        download = self._download
        if download._failure is not None:
            return fail(download._failure)
        available = download.available()
        if self._offset < available:
            data = download._pread(min(size, available - self._offset), self._offset)
            self._offset += len(data)
            return succeed(data)
        if download.verified:
            return succeed(b"")
        return download._more().addCallback(lambda _: self.read(size))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._download._release(reader=True)
