"""
One upstream fetch of a blob, shared by every client that asks for it
while it runs.

The body streams into a spool file on local disk at once, and into the
registry as an upload of its own (so that a crash leaves nothing but what
upload purging removes, and the blob becomes visible only once the
registry has verified its digest) as chunks that say where in the spool
they are, so that storage never holds them to make up its parts. Clients read the spool from their own
offset as it grows, so a slow client holds neither memory nor the
upstream connection; slow storage pauses the upstream transport. The
last byte is handed to clients only once the registry has verified the
blob's digest, so no client can take a corrupt blob for a whole one.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from zope.interface import implementer

from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.proxy.metrics import ProxyMetrics
from txregistry.proxy.spool import Spool, SpoolReader
from txregistry.pump import Pump
from txregistry.reference import Digest
from txregistry.registry import IBody, Registry
from txregistry.storage import FileChunk, IReader

log = logger(__name__)


class DownloadFailed(Exception):
    """
    The upstream's bytes did not make a whole, verified blob.
    """


@implementer(IBody)
class _UpstreamBody(Pump):
    pass


@implementer(IPushProducer)
class _Body(Protocol):
    """
    The upstream's response body, fed to the download. As the producer its
    pump pauses, it keeps the download's idle timer out of the pauses.
    """

    def __init__(self, download: BlobDownload) -> None:
        self.download = download

    def dataReceived(self, data: bytes) -> None:
        self.download._received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.download._bodyEnded(reason)

    def pauseProducing(self) -> None:
        self.download._paused(True)
        transport: Any = self.transport
        transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.download._paused(False)
        transport: Any = self.transport
        transport.resumeProducing()

    def stopProducing(self) -> None:
        transport: Any = self.transport
        transport.stopProducing()


class BlobDownload:
    """
    The fetch of blob C{digest} for repository C{name}. L{start} is given
    the upstream's response; L{done} fires once the blob is in storage (or
    fails with why it is not).
    """

    def __init__(
        self,
        registry: Registry,
        name: str,
        digest: Digest,
        reactor: Any,
        timeout: float,
        spoolDirectory: str | None = None,
        metrics: ProxyMetrics | None = None,
        upstream: str = "",
    ) -> None:
        self.registry = registry
        self.metrics = metrics if metrics is not None else ProxyMetrics()
        self.upstream = upstream
        self.digest = digest
        self.names = {name}
        self.reactor = reactor
        self.timeout = timeout
        self.size: int | None = None
        self.done: Deferred[None] = Deferred()
        self._name = name
        self._spool = Spool(spoolDirectory)
        self._body: _Body | None = None
        self._pump = _UpstreamBody()
        self._isPaused = False
        self._bodyDone = False
        self._idle: IDelayedCall | None = None

    async def start(self, response: IResponse) -> None:
        """
        Start taking the response's body into the spool and the registry;
        returns once it is flowing, or fails if storage cannot take it.
        """
        if response.length is not UNKNOWN_LENGTH:
            self.size = response.length
        # Taken in from now on: what comes before the upload exists waits
        # in the pump, and the connection is cut if it never will.
        body = self._body = _Body(self)
        self._pump.producer = body
        response.deliverBody(body)
        try:
            upload = await self.registry.uploads.start(self._name)
        except BaseException:
            self._fail(Failure())
            raise
        stored = Deferred.fromCoroutine(self._store(upload.uuid))
        stored.addCallbacks(self._stored, self._storeFailed)
        self._touch()

    async def _store(self, uuid: str) -> None:
        await self.registry.uploads.receive(self._name, uuid, self.digest, self._pump, self._verified)
        # Clients of other repositories that asked meanwhile share it.
        for name in sorted(self.names - {self._name}):
            await self.registry.blobs(name).link(self.digest)

    # The upstream side.

    def _touch(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if not self._bodyDone and not self._isPaused and self._spool.failure is None:
            self._idle = self.reactor.callLater(self.timeout, self._timedOut)

    def _paused(self, paused: bool) -> None:
        # Waiting on storage is not the upstream being idle.
        self._isPaused = paused
        self._touch()

    def _timedOut(self) -> None:
        self._fail(Failure(DownloadFailed(f"upstream sent nothing for {self.timeout:.0f} s")))

    def _received(self, data: bytes) -> None:
        if self._spool.failure is not None:
            return
        offset = self._spool.write(data)
        self.metrics.pulled[self.upstream, "blob"] += len(data)
        # Storage that keeps what it is given until there is enough of it
        # (S3's parts) reads it back from the spool instead.
        self._pump.received(FileChunk(data, self._spool.fileno(), offset))
        self._touch()

    def _bodyEnded(self, reason: Failure) -> None:
        self._bodyDone = True
        self._touch()
        if self._spool.failure is not None:
            return
        if not reason.check(ResponseDone, PotentialDataLoss):
            self._fail(
                Failure(DownloadFailed(f"the upstream's response broke off: {reason.getErrorMessage()}"))
            )
        elif self.size is not None and self._spool.received != self.size:
            self._fail(Failure(DownloadFailed(f"upstream sent {self._spool.received} of {self.size} bytes")))
        else:
            self._pump.end()

    def _verified(self) -> None:
        # Whole and right: clients may have the last byte while it is being
        # made durable.
        self.size = self._spool.received
        self._spool.verify()

    def _stored(self, _: object) -> None:
        if self._spool.failure is not None:
            return
        self._spool.end()
        self.done.callback(None)

    def _storeFailed(self, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, RegistryError) and error.code == "DIGEST_INVALID":
            # The registry's check of what the upstream sent.
            failure = Failure(DownloadFailed(f"upstream sent content of digest {error.detail['actual']}"))
        # Anything else (storage unavailable, above all) is told as it is.
        self._fail(failure)

    def _fail(self, failure: Failure) -> None:
        if self._spool.failure is not None or self._spool.ended:
            return
        self._spool.failure = failure
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if not self._bodyDone and self._body is not None:
            self._body.stopProducing()
        # The registry's upload sees the stream break, and throws it away.
        self._pump.fail(failure)
        self._spool.end()
        self.done.errback(failure)
        self.done.addErrback(lambda _: None)

    # The clients' side.

    @property
    def stored(self) -> bool:
        """
        Whether the blob is in storage, to be read from there.
        """
        return self._spool.ended and self._spool.failure is None

    @property
    def clients(self) -> int:
        """
        How many read the blob from this download as it arrives.
        """
        return self._spool.readers

    def reader(self, offset: int = 0) -> IReader:
        """
        A reader of the blob from C{offset}, that waits for bytes still to
        come. Not once the download is L{stored}: its spool is gone.
        """
        if self._spool.failure is not None:
            self._spool.failure.raiseException()
        assert not self.stored
        return SpoolReader(self._spool, offset)
