"""
Moving bytes out of an L{IReader} without holding more than a chunk of them:
into an L{IConsumer} (a response, a transport) at the consumer's pace, or
through a function (a hash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.task import cooperate
from zope.interface import implementer

from txregistry.storage.interfaces import IReader

CHUNK_SIZE = 256 * 1024


class ShortRead(Exception):
    """
    The file ended before the expected number of bytes was read.
    """


class ConsumerGone(Exception):
    """
    The consumer asked the producer to stop before all bytes were sent.
    """


def _chunks(
    reader: IReader, length: int | None, sink: Callable[[bytes], object]
) -> Generator[Deferred[Any], None, None]:
    remaining = length

    def got(data: bytes) -> None:
        nonlocal remaining
        if not data:
            if remaining:
                raise ShortRead(f"{remaining} bytes missing at the end of the file")
            remaining = 0
            return
        if remaining is not None:
            remaining -= len(data)
        sink(data)

    while remaining is None or remaining > 0:
        size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
        yield reader.read(size).addCallback(got)


@implementer(IPushProducer)
class _ReaderProducer:
    def __init__(self, reader: IReader, consumer: IConsumer, length: int | None) -> None:
        self._consumer = consumer
        self._task = cooperate(_chunks(reader, length, consumer.write))
        self._stopped = False

    def pauseProducing(self) -> None:
        self._task.pause()

    def resumeProducing(self) -> None:
        self._task.resume()

    def stopProducing(self) -> None:
        self._stopped = True
        self._task.stop()

    def run(self) -> Deferred[None]:
        self._consumer.registerProducer(self, True)
        done: Deferred[Any] = self._task.whenDone()

        def finished(result: object) -> object:
            self._consumer.unregisterProducer()
            return result

        def stopped(failure: Any) -> Any:
            if self._stopped:
                raise ConsumerGone()
            return failure

        return done.addBoth(finished).addCallbacks(lambda _: None, stopped)


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
    d: Deferred[Any] = cooperate(_chunks(reader, None, sink)).whenDone()

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
