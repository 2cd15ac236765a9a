"""
Request bodies that stream.

C{twisted.web}'s L{Request} reads the whole body (into memory or a
temporary file) before any resource sees the request. For a registry that
means holding a multi-gigabyte layer twice. L{RegistryRequest} instead
dispatches a request under C{/v2/} as soon as its headers are in, and hands
its body to the resource as an L{IBody}: chunk by chunk, pausing the
connection while the resource's sink is busy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from io import BytesIO
from typing import Any, BinaryIO

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from txregistry.registry import IBody

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


@implementer(IBody)
class StreamedBody:
    """
    The body of a L{RegistryRequest}, as it arrives.
    """

    def __init__(self, request: RegistryRequest) -> None:
        self._request = request
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._sink: Callable[[bytes], Deferred[None]] | None = None
        self._busy = False
        self._paused = False
        self._ended = False
        self._failure: Failure | None = None
        self._flushing = False
        self._drained: Deferred[None] | None = None
        self._done: Deferred[int] | None = None
        self.delivered = 0

    @property
    def ended(self) -> bool:
        return self._ended

    def _transport(self) -> Any:
        channel = getattr(self._request, "channel", None)
        return channel.transport if channel is not None else None

    def _pause(self) -> None:
        transport = self._transport()
        if not self._paused and transport is not None:
            self._paused = True
            transport.pauseProducing()

    def _resume(self) -> None:
        transport = self._transport()
        if self._paused and transport is not None:
            self._paused = False
            transport.resumeProducing()

    def received(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        self._flush()
        if self._buffered > _BUFFER_LIMIT:
            self._pause()

    def end(self) -> None:
        self._ended = True
        self._flush()
        if self._drained is not None and not self._drained.called:
            self._drained.callback(None)

    def fail(self, reason: Failure) -> None:
        if self._failure is None and not self._ended:
            self._failure = reason
            self._finish()
        if self._drained is not None and not self._drained.called:
            self._drained.callback(None)

    def discard(self, limit: int = _DISCARD_LIMIT) -> Deferred[None]:
        """
        Throw away what arrives from now on: the response has been decided.
        Fires once the body has ended, or once C{limit} more bytes have been
        thrown away, whichever is first.
        """
        if self._drained is not None:
            return self._drained
        drained = self._drained = Deferred()
        remaining = limit

        def sink(data: bytes) -> Deferred[None]:
            nonlocal remaining
            remaining -= len(data)
            if remaining < 0 and not drained.called:
                drained.callback(None)
            return succeed(None)

        self._sink = sink
        self._buffer.clear()
        self._buffered = 0
        self._resume()
        if self._ended and not drained.called:
            drained.callback(None)
        return drained

    def _flush(self) -> None:
        # Sinks that finish at once (a file write) call back into here; the
        # guard turns that into another turn of this loop, not recursion.
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._sink is not None and not self._busy and self._buffer:
                data = self._buffer.popleft()
                self._buffered -= len(data)
                self.delivered += len(data)
                self._busy = True
                try:
                    d = self._sink(data)
                except BaseException:
                    d = fail()
                d.addCallbacks(self._written, self._sinkFailed)
        finally:
            self._flushing = False
        if self._sink is not None and not self._busy:
            self._resume()
            if self._ended:
                self._finish()

    def _written(self, _: object) -> None:
        self._busy = False
        self._flush()

    def _sinkFailed(self, failure: Failure) -> None:
        self._busy = False
        if self._failure is None:
            self._failure = failure
        self.discard()
        self._finish()

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        if self._failure is not None:
            done.errback(self._failure)
        else:
            done.callback(self.delivered)

    def deliver(self, sink: Callable[[bytes], Deferred[None]]) -> Deferred[int]:
        if self._done is not None or self._sink is not None:
            raise RuntimeError("a request body can be delivered only once")
        self._done = Deferred()
        done = self._done
        if self._failure is not None:
            self._finish()
            return done
        self._sink = sink
        self._flush()
        return done


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


class RegistryRequest(Request):
    """
    A L{Request} whose body, for paths under C{/v2/}, is streamed to the
    resource as L{body} instead of being read into C{content} first.
    """

    body: StreamedBody | None = None

    def gotLength(self, length: int | None) -> None:
        channel: Any = self.channel
        path: bytes = getattr(channel, "_path", b"")
        if length == 0 or not path.startswith(b"/v2/"):
            super().gotLength(length)
            return
        self.content = BytesIO()  # type: ignore[assignment]
        self.body = StreamedBody(self)
        # Dispatch now, with the request line the channel has parsed, so the
        # resource is rendered while the body is still to come.
        super().requestReceived(channel._command, path, channel._version)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body is None:
            super().handleContentChunk(data)
        else:
            self.body.received(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body is None:
            super().requestReceived(command, path, version)
        else:
            self.body.end()

    def connectionLost(self, reason: Failure) -> None:
        if self.body is not None:
            self.body.fail(Failure(ConnectionLost("the client went away during the body")))
        super().connectionLost(reason)

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

        self.body.discard().addCallback(finish)

    def _finishEarly(self) -> None:
        if not self.finished and not self._disconnected:
            super().finish()
