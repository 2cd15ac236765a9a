"""
Request bodies that stream.

C{twisted.web}'s L{Request} reads the whole body (into memory or a
temporary file) before any resource sees the request. For a registry that
means holding a multi-gigabyte layer twice, and lets any client fill the
disk with a body nobody asked for. L{RegistryRequest} instead dispatches a
request under C{/v2/} as soon as its headers are in, and hands its body to
the resource as an L{IBody}: chunk by chunk, pausing the connection while
the resource's sink is busy. L{SiteRequest} does so for every path.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from time import monotonic
from typing import Any, BinaryIO
from uuid import uuid4

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from txregistry.logging import forRequest
from txregistry.pump import Pump
from txregistry.registry import IBody
from txregistry.web.channel import isHost

# Chunks held while the resource is not yet taking them (it is still looking
# the upload up) before the connection is paused.
_BUFFER_LIMIT = 512 * 1024
_READ_SIZE = 256 * 1024
# How much of an unwanted body is read and thrown away after an early answer,
# so that closing the connection does not reset it under the answer (a
# socket closed with unread data sends RST, and the client loses what it
# had not read yet).
_DISCARD_LIMIT = 1024 * 1024


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


@implementer(IPushProducer)
class _Connection:
    """
    A request's connection as its body's producer. Stopping it cuts the
    connection at once: a client that goes on sending what is not taken
    gets no more of its answer either (C{loseConnection} would wait for
    the answer to be sent).
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.abortConnection()


@implementer(IBody)
class StreamedBody(Pump):
    """
    The body of a L{RegistryRequest}, as it arrives: the connection is
    paused while the resource is not taking it.
    """

    def __init__(self, request: RegistryRequest) -> None:
        super().__init__(_Connection(request.channel.transport), _BUFFER_LIMIT)


@implementer(IBody)
class BufferedBody:
    """
    The body of a request that C{twisted.web} has already read into
    C{request.content} (a resource mounted in a L{Site} that does not use
    L{RegistryRequest}): delivered from there a chunk at a time.
    """

    def __init__(self, content: BinaryIO) -> None:
        self._content = content

    def deliver(self, sink: Callable[[bytes], Deferred[None]]) -> Deferred[int]:
        self._content.seek(0)

        async def pump() -> int:
            total = 0
            while data := self._content.read(_READ_SIZE):
                total += len(data)
                await sink(data)
            return total

        return Deferred.fromCoroutine(pump())


def bodyOf(request: Request) -> IBody:
    """
    The body of a request as it arrives (L{RegistryRequest}), or as
    C{twisted.web} has already read it (any other request).
    """
    body: StreamedBody | None = getattr(request, "body", None)
    if body is not None:
        return body
    assert request.content is not None
    return BufferedBody(request.content)


async def readBody(body: IBody, limit: int) -> bytes:
    """
    All of a small body, failing with L{BodyTooLarge} as soon as it is more
    than C{limit} bytes, without holding more than that.
    """
    parts = bytearray()

    def sink(data: bytes) -> Deferred[None]:
        if len(parts) + len(data) > limit:
            raise BodyTooLarge(limit)
        parts.extend(data)
        return succeed(None)

    await body.deliver(sink)
    return bytes(parts)


def originForm(target: bytes) -> tuple[bytes, bytes | None]:
    """
    The path of a request target and, for an absolute-form target
    (C{PUT http://host:port/v2/...}, RFC 9112 section 3.2.2), its authority.
    """
    scheme, separator, rest = target.partition(b"://")
    if not separator or scheme.lower() not in (b"http", b"https"):
        return target, None
    authority, slash, path = rest.partition(b"/")
    query = b""
    if b"?" in authority:
        authority, _, query = authority.partition(b"?")
        query = b"?" + query
    return (slash + path or b"/") + query, authority


class RegistryRequest(Request):
    """
    A L{Request} whose body, for paths under C{/v2/}, is streamed to the
    resource as L{body} instead of being read into C{content} first.
    """

    body: StreamedBody | None = None
    _gone = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: What names this request in the access log, in debug lines, in
        #: error responses and in notifications, as registry:2's
        #: C{http.request.id}.
        self.requestId = str(uuid4())
        self._started = monotonic()

    def elapsed(self) -> float:
        """
        The seconds since the request began.
        """
        return monotonic() - self._started

    def streams(self, path: bytes) -> bool:
        """
        Whether the body of a request for C{path} is streamed to the
        resource: the registry's own paths. Elsewhere the site may serve
        resources that read C{content}.
        """
        return path.startswith(b"/v2/")

    def gotLength(self, length: int | None) -> None:
        channel: Any = self.channel
        # The request line as the channel parsed it: HTTPChannel hands it to
        # the request only once the whole body is in, and says it nowhere
        # public before.
        command, target, version = channel._command, channel._path, channel._version
        if length == 0 or not self.streams(originForm(target)[0]):
            super().gotLength(length)
            return
        self.content = BytesIO()  # type: ignore[assignment]
        self.body = StreamedBody(self)
        # Dispatch now, so the resource is rendered while the body is still
        # to come.
        self._dispatch(command, target, version)

    def _dispatch(self, command: bytes, target: bytes, version: bytes) -> None:
        if target[:1] == b"/":
            # Origin form, nearly always: nothing to look at.
            super().requestReceived(command, target, version)
            return
        path, authority = originForm(target)
        if authority is not None and isHost(authority):
            # The target's authority is where the client meant to go.
            self.requestHeaders.setRawHeaders(b"host", [authority])
        super().requestReceived(command, path, version)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body is None:
            super().handleContentChunk(data)
        else:
            # The sink the chunk goes to writes to storage: for this request.
            forRequest(self.requestId, self.body.received, data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body is None:
            self._dispatch(command, path, version)
        else:
            forRequest(self.requestId, self.body.end)

    def process(self) -> None:
        # Routing and rendering, and the coroutines they start, log for this
        # request.
        forRequest(self.requestId, super().process)

    def render(self, resrc: Any) -> None:
        # No Server header: which software and version we are is nobody's
        # business but ours.
        self.responseHeaders.removeHeader(b"server")
        super().render(resrc)

    def connectionLost(self, reason: Failure) -> None:
        self._gone = True
        # The request first lets go of its channel, so that the handler the
        # broken body fails sees that nobody is left to answer.
        super().connectionLost(reason)
        if self.body is not None:
            failure = Failure(ConnectionLost("the client went away during the body"))
            forRequest(self.requestId, self.body.fail, failure)

    def bodyNotComing(self) -> None:
        """
        The client was told not to send the rest of its body (it asked
        whether to, with C{Expect: 100-continue}, and got its answer): what
        waits for it waits no more.
        """
        if self.body is not None:
            self.body.end()

    def write(self, data: bytes) -> None:
        if not self.startedWriting and self.body is not None and not self.body.ended:
            # Answered before the body is all in (an early error): the rest
            # of the body is not wanted, so this connection ends with it.
            self.setHeader(b"Connection", b"close")
            self.channel.persistent = False
        super().write(data)

    def finish(self) -> None:
        if self.body is None or self.body.ended:
            super().finish()
            return
        self.channel.persistent = False

        def finish(_: object) -> None:
            # Not from inside the channel's call that fed us the last chunk:
            # it goes on parsing after we return.
            reactor.callLater(0, self._finishEarly)

        self.body.discard(_DISCARD_LIMIT).addCallback(finish)

    def _finishEarly(self) -> None:
        if not self.finished and not self._gone:
            super().finish()


class SiteRequest(RegistryRequest):
    """
    The request of a site that is the registry alone: every body streams,
    so that one sent to a path that takes none is never spooled to disk.
    """

    def streams(self, path: bytes) -> bool:
        return True
