"""
Moving bytes out of an L{IReader} without holding more than a chunk of them:
into an L{IConsumer} (a response, a transport) at the consumer's pace, or
through a function (a hash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.task import cooperate
from twisted.python.failure import Failure
from zope.interface import implementer

from txregistry.storage.interfaces import IReader

CHUNK_SIZE = 256 * 1024
_CHUNKS_PER_TURN = 4


class ShortRead(Exception):
    """
    The file ended before the expected number of bytes was read.
    """


class ConsumerGone(Exception):
    """
    The consumer asked the producer to stop before all bytes were sent.
    """


def _chunks(reader: IReader, sink: Callable[[bytes], object]) -> Generator[Deferred[Any], None, None]:
    done = False

    def got(data: bytes) -> None:
        nonlocal done
        if data:
            sink(data)
        else:
            done = True

    while not done:
        yield reader.read(CHUNK_SIZE).addCallback(got)


@implementer(IPushProducer)
class _ReaderProducer:
    """
    Writes a reader's chunks into a consumer as fast as the consumer takes
    them: the next chunk is read as soon as the consumer resumes us, in the
    same turn of the reactor.
    """

    def __init__(self, reader: IReader, consumer: IConsumer, length: int | None) -> None:
        self._reader = reader
        self._consumer = consumer
        self._remaining = length
        self._paused = False
        self._reading = False
        self._pumping = False
        self._finished = False
        self._done: Deferred[None] = Deferred()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        self._finish(Failure(ConsumerGone()))

    def run(self) -> Deferred[None]:
        self._consumer.registerProducer(self, True)
        self._pump()
        return self._done

    def _pump(self) -> None:
        # Reads that complete at once (a local file) call back into here;
        # the guard turns that into another turn of this loop. A consumer
        # that never pauses gets a few chunks per reactor turn, not all.
        if self._pumping:
            return
        self._pumping = True
        try:
            for _ in range(_CHUNKS_PER_TURN):
                if self._paused or self._reading or self._finished:
                    return
                if self._remaining == 0:
                    self._finish(None)
                    return
                size = CHUNK_SIZE if self._remaining is None else min(CHUNK_SIZE, self._remaining)
                self._reading = True
                self._reader.read(size).addCallbacks(self._got, self._finish)
            reactor.callLater(0, self._pump)
        finally:
            self._pumping = False

    def _got(self, data: bytes) -> None:
        self._reading = False
        if self._finished:
            return
        if not data:
            if self._remaining:
                self._finish(Failure(ShortRead(f"{self._remaining} bytes missing at the end of the file")))
            else:
                self._finish(None)
            return
        if self._remaining is not None:
            self._remaining -= len(data)
        self._consumer.write(data)
        self._pump()

    def _finish(self, result: Failure | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._consumer.unregisterProducer()
        if result is None:
            self._done.callback(None)
        else:
            self._done.errback(result)


def streamTo(reader: IReader, consumer: IConsumer, length: int | None = None) -> Deferred[None]:
    """
    Write what C{reader} holds (only C{length} bytes of it, if given) to
    C{consumer}, pausing while the consumer asks to pause. Fires when all
    is written; fails with L{ConsumerGone} if the consumer stopped it
    first. The reader is closed either way.
    """
    d = _ReaderProducer(reader, consumer, length).run()

    def close(result: object) -> object:
        reader.close()
        return result

    return d.addBoth(close)


def consume(reader: IReader, sink: Callable[[bytes], object]) -> Deferred[None]:
    """
    Call C{sink} with each chunk of what C{reader} holds, yielding to the
    reactor between chunks so that reading a large file does not stall
    other requests. The reader is closed at the end.
    """
    d: Deferred[Any] = cooperate(_chunks(reader, sink)).whenDone()

    def close(result: object) -> object:
        reader.close()
        return result

    return d.addBoth(close).addCallback(lambda _: None)


async def hashReader(reader: IReader, algorithm: str = "sha256") -> Any:
    """
    A hash object that has been fed everything C{reader} holds.
    """
    hasher = hashlib.new(algorithm)
    await consume(reader, hasher.update)
    return hasher
