"""
A blob streamed from the instance of the fleet that holds its lease and
fetches it from upstream, rather than fetched again.

The holder's bytes go into a spool file here, which this instance's
clients read at their own pace, as from a L{BlobDownload}'s. They are
hashed as they arrive: the last byte is released only once the holder's
response has ended whole and the digest checked out here too. Nothing a
peer sends is ever stored: the holder stores what it fetched. When the
stream breaks (the holder died, refused, sent something else), each
reader goes on from the offset it reached with what the cache gives it
instead: the blob from the store, or an upstream fetch of this
instance's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import treq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse

from txregistry.logging import logger
from txregistry.proxy.download import DownloadFailed
from txregistry.proxy.spool import Spool, SpoolReader
from txregistry.proxy.upstream import discard
from txregistry.reference import Digest
from txregistry.signing import authorization
from txregistry.storage import IReader

log = logger(__name__)

#: What a reader that the stream failed goes on with: a reader of the blob
#: from an offset.
Resume = Callable[[int], Awaitable[IReader]]


class _Body(Protocol):
    def __init__(self, download: PeerDownload) -> None:
        self.download = download

    def dataReceived(self, data: bytes) -> None:
        self.download._received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.download._bodyEnded(reason)


class PeerDownload:
    """
    Blob C{digest} as it arrives from another instance. L{done} fires (never
    fails) once the stream is over, whole or not.
    """

    #: A peer's copy is never stored here.
    stored = False

    def __init__(
        self, digest: Digest, reactor: Any, timeout: float, resume: Resume, spoolDirectory: str | None = None
    ) -> None:
        self.digest = digest
        self.reactor = reactor
        self.timeout = timeout
        self.resume = resume
        self.size: int | None = None
        self.done: Deferred[None] = Deferred()
        self._hash = hashlib.new(digest.algorithm)
        self._spool = Spool(spoolDirectory)
        self._body: _Body | None = None
        self._idle: IDelayedCall | None = None

    def start(self, response: IResponse) -> None:
        if response.length is not UNKNOWN_LENGTH:
            self.size = response.length
        self._body = _Body(self)
        response.deliverBody(self._body)
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if not self.done.called:
            self._idle = self.reactor.callLater(self.timeout, self._fail, "it sent nothing for a while")

    def _received(self, data: bytes) -> None:
        if self.done.called:
            return
        self._hash.update(data)
        self._spool.write(data)
        self._touch()

    def _bodyEnded(self, reason: Failure) -> None:
        if self.done.called:
            return
        if not reason.check(ResponseDone, PotentialDataLoss):
            self._fail(f"its response broke off: {reason.getErrorMessage()}")
        elif self.size is not None and self._spool.received != self.size:
            self._fail(f"it sent {self._spool.received} of {self.size} bytes")
        elif f"{self.digest.algorithm}:{self._hash.hexdigest()}" != str(self.digest):
            self._fail("it sent content of another digest")
        else:
            self.size = self._spool.received
            self._spool.verify()
            self._end()

    def _fail(self, why: str) -> None:
        if self.done.called:
            return
        log.warn(
            "streaming blob {digest} from its holder failed ({why}): fetching it here",
            digest=self.digest,
            why=why,
        )
        self._spool.failure = Failure(DownloadFailed(why))
        transport: Any = self._body.transport if self._body is not None else None
        if transport is not None:
            transport.stopProducing()
        self._end()

    def _end(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self.done.callback(None)
        self._spool.end()

    # The clients' side.

    def reader(self, offset: int = 0) -> IReader:
        """
        A reader of the blob from C{offset}: from the spool while the stream
        holds, from what L{resume} gives after.
        """
        return _PeerReader(self, offset)


class _PeerReader(SpoolReader):
    def __init__(self, download: PeerDownload, offset: int) -> None:
        super().__init__(download._spool, offset)
        self._download = download
        self._instead: IReader | None = None
        self._closed = False

    def read(self, size: int) -> Deferred[bytes]:
        if self._instead is not None:
            return self._instead.read(size)
        if self._spool.failure is not None or self._spool.closed:
            return Deferred.fromCoroutine(self._resume(size))
        return super().read(size)

    async def _resume(self, size: int) -> bytes:
        # The spool is of no more use to it: its file may be closed.
        super().close()
        try:
            instead = await self._download.resume(self._offset)
        except Exception as e:
            raise DownloadFailed(f"fetching the blob here failed: {e}") from None
        if self._closed:
            instead.close()
            return b""
        self._instead = instead
        return await instead.read(size)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._instead is not None:
            self._instead.close()
        super().close()


class PeerClient:
    """
    Requests to the other instances of the fleet, signed with C{secret}.
    """

    def __init__(self, secret: bytes, timeout: float, reactor: Any) -> None:
        self.secret = secret
        self.timeout = timeout
        self.reactor = reactor
        # A connection per stream, each as long as a blob: none kept.
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = treq.client.HTTPClient(Agent(reactor, pool=pool, connectTimeout=timeout))

    async def stream(
        self, address: str, digest: Digest, resume: Resume, spoolDirectory: str | None = None
    ) -> PeerDownload | None:
        """
        The download of C{digest} in progress at C{address}, as it streams
        here; C{None} if that instance cannot be reached or has none.
        """
        url = f"{address}/_txregistry/fleet/blobs/{digest}"
        signed = authorization(self.secret, str(digest), self.reactor.seconds())
        try:
            response: IResponse = await self.http.get(
                url,
                headers=Headers({"Authorization": [signed]}),
                unbuffered=True,
                timeout=self.timeout,
                reactor=self.reactor,
                allow_redirects=False,
            )
        except Exception as e:
            log.warn(
                "the holder of blob {digest} at {address} cannot be reached: {why}",
                digest=digest,
                address=address,
                why=e,
            )
            return None
        if response.code != 200:
            discard(response)
            if response.code != 404:
                log.warn(
                    "the holder of blob {digest} at {address} answered {code}",
                    digest=digest,
                    address=address,
                    code=response.code,
                )
            return None
        download = PeerDownload(digest, self.reactor, self.timeout, resume, spoolDirectory)
        download.start(response)
        return download
