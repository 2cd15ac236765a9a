"""
Bytes pushed in by a producer (a request body, an upstream's response, an
S3 object), handed on to a slower consumer without holding more than a
bounded amount of them.

A L{Pump} is fed with L{Pump.received}, L{Pump.end} and L{Pump.fail}, and
delivers what it was fed, in order, to one sink: a function that takes a
chunk and returns a L{Deferred} that fires once the sink can take another.
While more than C{limit} bytes wait for the sink, the producer is paused;
once no more than half of that waits, it is resumed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure

Sink = Callable[[bytes], "Deferred[None]"]

#: Bytes held for a sink that is not taking them before the producer is paused.
DEFAULT_LIMIT = 512 * 1024
#: How many times the limit may be held at most: a producer that someone else
#: goes on resuming (HTTPChannel resumes its transport whenever a response
#: has been sent) is stopped there.
HARD_LIMIT = 4


class Overflow(Exception):
    """
    More arrived than the pump may hold: the producer did not stay paused.
    """


class Pump:
    """
    A stream of chunks from C{producer} to one sink, at the sink's pace.
    C{producer} may be set later (a protocol learns its transport only once
    connected); until then nothing is paused.
    """

    def __init__(self, producer: IPushProducer | None = None, limit: int = DEFAULT_LIMIT) -> None:
        self.producer = producer
        self.limit = limit
        #: Bytes handed to the sink so far.
        self.delivered = 0
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._sink: Sink | None = None
        self._busy = False
        self._paused = False
        self._ended = False
        # Why the producer's stream broke off, and what deliver() fails
        # with: that, or the sink's own failure.
        self._broken: Failure | None = None
        self._error: Failure | None = None
        self._flushing = False
        self._done: Deferred[int] | None = None
        self._drained: Deferred[None] | None = None

    @property
    def ended(self) -> bool:
        """
        Whether the producer has said it sent everything.
        """
        return self._ended

    @property
    def paused(self) -> bool:
        return self._paused

    # The producer's side.

    def received(self, data: bytes) -> None:
        if self._broken is not None or self._ended:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        self._flush()
        if self._buffered > self.limit:
            # Again each time: whatever resumed the producer meanwhile, it
            # is the pump's to hold while so much waits.
            self._pause()
            if self._buffered > HARD_LIMIT * self.limit:
                if self.producer is not None:
                    self.producer.stopProducing()
                self.fail(Failure(Overflow(f"more than {self._buffered} bytes waiting")))

    def end(self) -> None:
        """
        Everything has been received: the sink's L{deliver} fires once it
        has taken it all.
        """
        if self._broken is not None or self._ended:
            return
        self._ended = True
        self._flush()
        self._fireDrained()

    def fail(self, reason: Failure) -> None:
        """
        The stream broke off: L{deliver} fails with C{reason}.
        """
        if self._broken is None and not self._ended:
            self._broken = reason
            self._buffer.clear()
            self._buffered = 0
            if self._error is None:
                self._error = reason
            # A sink still writing is told once its write is done: whoever
            # hears of the failure may then close what it wrote to.
            if not self._busy:
                self._finish()
        self._fireDrained()

    # The sink's side.

    def deliver(self, sink: Sink) -> Deferred[int]:
        """
        Call C{sink} with each chunk, waiting for its Deferred before the
        next. Fires with the number of bytes delivered once the stream has
        ended; fails if it broke off, or with the sink's own failure (what
        arrives after that is thrown away).
        """
        if self._done is not None or self._sink is not None:
            raise RuntimeError("a stream can be delivered only once")
        done = self._done = Deferred()
        if self._error is not None:
            self._finish()
            return done
        self._sink = sink
        self._flush()
        return done

    def discard(self, limit: int) -> Deferred[None]:
        """
        Throw away what arrives from now on. Fires once the stream has
        ended, or once C{limit} more bytes have been thrown away, whichever
        is first.
        """
        if self._drained is not None:
            return self._drained
        drained = self._drained = Deferred()
        remaining = limit

        def sink(data: bytes) -> Deferred[None]:
            nonlocal remaining
            remaining -= len(data)
            if remaining < 0:
                self._fireDrained()
            return succeed(None)

        self._sink = sink
        self._buffer.clear()
        self._buffered = 0
        self._resume()
        if self._ended or self._broken is not None:
            self._fireDrained()
        return drained

    def _fireDrained(self) -> None:
        if self._drained is not None and not self._drained.called:
            self._drained.callback(None)

    def _pause(self) -> None:
        if self.producer is not None:
            self._paused = True
            self.producer.pauseProducing()

    def _resume(self) -> None:
        if self._paused and self.producer is not None:
            self._paused = False
            self.producer.resumeProducing()

    def _flush(self) -> None:
        # Sinks that are done at once (a file write) call back into here;
        # the guard turns that into another turn of this loop, not recursion.
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
        if self._sink is not None:
            # Half the limit, so that the producer refills while the sink
            # works on what it has, rather than pausing on every chunk.
            if self._buffered <= self.limit // 2:
                self._resume()
        if not self._busy and (self._ended or self._broken is not None):
            self._finish()

    def _written(self, _: object) -> None:
        self._busy = False
        self._flush()

    def _sinkFailed(self, failure: Failure) -> None:
        self._busy = False
        if self._error is None:
            self._error = failure
        # The rest is not wanted, but the producer must not stall on it.
        # Before the delivery fails: whoever it tells may discard the rest
        # with a sink of their own.
        self._sink = lambda data: succeed(None)
        self._buffer.clear()
        self._buffered = 0
        self._resume()
        self._finish()

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        if self._error is not None:
            done.errback(self._error)
        else:
            done.callback(self.delivered)
