"""
The services a registry is made of: listening on an endpoint while running,
and work repeated at an interval, one run at a time.
"""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock

from txregistry.services import Listening, Repeating


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _listening() -> Listening:
    return Listening(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), Factory.forProtocol(Protocol))


@pytest_twisted.ensureDeferred
async def test_listens_while_running() -> None:
    """
    A started listener accepts connections; once stopped, none.
    """
    service = _listening()
    service.startService()
    port = (await service._port).getHost().port  # type: ignore[union-attr]
    assert _connects(port)
    await service.stopService()
    assert not _connects(port)


def test_bound_once_privileged() -> None:
    """
    The port bound before privileges are given up is the one kept when the
    service starts.
    """
    service = _listening()
    service.privilegedStartService()
    first = service._port
    service.startService()
    assert service._port is first
    service.stopService()


def test_port_in_use_raises_at_start() -> None:
    """
    A port that cannot be bound raises from C{startService}, so start-up
    ends with it, and leaves the service stoppable.
    """
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        service = Listening(TCP4ServerEndpoint(reactor, port, interface="127.0.0.1"), Factory())
        with pytest.raises(CannotListenError):
            service.startService()
        assert service.stopService().called
    finally:
        taken.close()


def test_repeats_at_its_interval() -> None:
    """
    Work runs at start, then every interval.
    """
    clock = Clock()
    runs: list[float] = []
    service = Repeating(10, lambda: runs.append(clock.seconds()), clock)
    service.startService()
    clock.advance(10)
    clock.advance(10)
    assert runs == [0, 10, 20]
    assert service.stopService().called
    clock.advance(10)
    assert runs == [0, 10, 20]


def test_one_run_at_a_time() -> None:
    """
    A run still going when the interval passes is waited for; stopping
    waits for it too.
    """
    clock = Clock()
    pending: list[Deferred[None]] = []

    def work() -> Deferred[None]:
        pending.append(Deferred())
        return pending[-1]

    service = Repeating(10, work, clock)
    service.startService()
    clock.advance(30)
    assert len(pending) == 1
    pending[0].callback(None)
    clock.advance(10)
    assert len(pending) == 2
    stopped = service.stopService()
    assert not stopped.called
    pending[1].callback(None)
    assert stopped.called


def test_failures_do_not_stop_it() -> None:
    """
    A run that raises, or whose Deferred fails, is logged, and the next
    runs as planned.
    """
    clock = Clock()
    runs: list[int] = []

    def work() -> Deferred[None]:
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("the first run breaks")
        failed: Deferred[None] = Deferred()
        failed.errback(ValueError("so does the second"))
        return failed

    service = Repeating(5, work, clock)
    service.startService()
    clock.advance(5)
    clock.advance(5)
    assert len(runs) == 3
    service.stopService()
