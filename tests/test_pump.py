"""
The body pump: what a producer pushes reaches one sink in order, at the
sink's pace, with the producer paused while too much waits.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from txregistry.pump import Overflow, Pump


@implementer(IPushProducer)
@attrs.define
class Producer:
    """
    A producer that only remembers what it was told.
    """

    paused: bool = False
    stopped: bool = False
    pauses: int = 0

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


class SlowSink:
    """
    A sink that takes each chunk only when told to.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.pending: Deferred[None] | None = None

    def __call__(self, data: bytes) -> Deferred[None]:
        assert self.pending is None, "given a chunk before it took the last"
        self.chunks.append(data)
        self.pending = Deferred()
        return self.pending

    def take(self) -> None:
        pending, self.pending = self.pending, None
        assert pending is not None
        pending.callback(None)


def results(d: Deferred[int]) -> list[object]:
    found: list[object] = []
    d.addBoth(found.append)
    return found


def test_chunks_arrive_in_order_and_the_count_at_the_end() -> None:
    pump = Pump(Producer(), limit=10)
    taken: list[bytes] = []
    done = results(pump.deliver(lambda data: succeed(taken.append(data))))
    for chunk in (b"ab", b"cd", b"ef"):
        pump.received(chunk)
    assert done == []
    pump.end()
    assert taken == [b"ab", b"cd", b"ef"]
    assert done == [6]


def test_what_arrives_before_the_sink_is_kept_for_it() -> None:
    pump = Pump(Producer(), limit=100)
    pump.received(b"early")
    pump.end()
    taken: list[bytes] = []
    assert results(pump.deliver(lambda data: succeed(taken.append(data)))) == [5]
    assert taken == [b"early"]


def test_the_producer_is_paused_while_more_than_the_limit_waits() -> None:
    producer = Producer()
    pump = Pump(producer, limit=4)
    sink = SlowSink()
    done = results(pump.deliver(sink))
    pump.received(b"123")  # Straight to the sink, which is now busy.
    pump.received(b"456")
    assert not producer.paused
    pump.received(b"789")  # Six bytes wait: over the limit.
    assert producer.paused
    sink.take()
    sink.take()
    assert not producer.paused
    pump.end()
    sink.take()
    assert sink.chunks == [b"123", b"456", b"789"]
    assert done == [9]


def test_a_broken_stream_fails_the_delivery() -> None:
    pump = Pump(Producer())
    sink = SlowSink()
    done = results(pump.deliver(sink))
    pump.received(b"x")
    pump.fail(Failure(ConnectionError("gone")))
    # Told only once the sink is done with what it has: it may then close
    # what it writes to without a write still under way.
    assert done == []
    sink.take()
    [failure] = done
    assert isinstance(failure, Failure) and failure.check(ConnectionError)
    # Nothing more is taken in once it broke.
    pump.received(b"late")
    assert sink.chunks == [b"x"]


def test_a_failing_sink_fails_the_delivery_and_the_rest_is_thrown_away() -> None:
    producer = Producer()
    pump = Pump(producer, limit=4)
    sink = SlowSink()
    done = results(pump.deliver(sink))
    pump.received(b"1234")
    pump.received(b"56789")
    assert producer.paused
    assert sink.pending is not None
    sink.pending.errback(Failure(ValueError("too large")))
    [failure] = done
    assert isinstance(failure, Failure) and failure.check(ValueError)
    # The producer goes on, so that the connection is not left stalled.
    assert not producer.paused
    pump.received(b"more")
    pump.end()
    assert sink.chunks == [b"1234"]


def test_discarding_ends_at_the_limit_or_at_the_end() -> None:
    producer = Producer()
    pump = Pump(producer, limit=4)
    pump.received(b"12345")
    assert producer.paused
    drained = results(pump.discard(10))  # type: ignore[arg-type]
    assert not producer.paused
    pump.received(b"x" * 10)
    assert drained == []
    pump.received(b"y")
    assert drained == [None]

    ended = Pump(Producer())
    finished = results(ended.discard(10))  # type: ignore[arg-type]
    ended.received(b"abc")
    ended.end()
    assert finished == [None]


def test_a_stream_is_delivered_once() -> None:
    pump = Pump()
    pump.deliver(lambda data: succeed(None))
    try:
        pump.deliver(lambda data: succeed(None))
    except RuntimeError:
        pass
    else:
        raise AssertionError("delivered twice")


def test_whoever_hears_of_a_failing_sink_may_discard_the_rest() -> None:
    pump = Pump(Producer())
    sink = SlowSink()
    drained: list[object] = []

    def failed(failure: Failure) -> None:
        # As a request does: answer the error, then throw a bounded amount
        # of the rest away before closing.
        pump.discard(3).addBoth(drained.append)

    pump.deliver(sink).addErrback(failed)
    pump.received(b"12")
    assert sink.pending is not None
    sink.pending.errback(Failure(ValueError("too large")))
    pump.received(b"abc")
    assert drained == []
    pump.received(b"d")
    assert drained == [None]


def test_a_producer_that_is_resumed_behind_the_pumps_back_is_paused_again_and_stopped() -> None:
    producer = Producer()
    pump = Pump(producer, limit=4)
    pump.received(b"12345")
    assert producer.paused
    producer.resumeProducing()  # As HTTPChannel does once a response is sent.
    pump.received(b"678")
    assert producer.paused
    sink = SlowSink()
    done = results(pump.deliver(sink))
    # Four times the limit waiting: 3 bytes, then 4 at a time.
    for _ in range(4):
        producer.resumeProducing()
        pump.received(b"abcd")
    assert producer.stopped
    sink.take()
    [failure] = done
    assert isinstance(failure, Failure) and failure.check(Overflow)
