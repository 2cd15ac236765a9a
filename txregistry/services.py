"""
The two kinds of service a registry is made of: a listener on an endpoint,
and work repeated at an interval.

Twisted has both in C{twisted.application.internet}, which also brings
C{ClientService} and with it automat's state machines: some 600 KiB that
an instance in a 128 MB job would carry without using. These are what a
registry needs of them, on C{twisted.application.service} alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorTime, IStreamServerEndpoint
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from txregistry.logging import logger

log = logger(__name__)


class Listening(Service):
    """
    Listening on C{endpoint} with C{factory} while the service runs.

    The port is bound in C{privilegedStartService} (before twistd gives up
    its privileges) or else in C{startService}; one that cannot be bound
    raises there, so that start-up ends rather than only logging it. An
    endpoint that answers later has its failure logged.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self._port: Deferred[IListeningPort | None] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._listen()

    def _listen(self) -> None:
        if self._port is not None:
            return
        starting = True
        refused: list[Failure] = []

        def failed(failure: Failure) -> None:
            if starting:
                refused.append(failure)
            elif not failure.check(CancelledError):
                log.failure("listening on {endpoint} failed", failure, endpoint=self.endpoint)

        port = self.endpoint.listen(self.factory).addErrback(failed)
        starting = False
        if refused:
            refused[0].raiseException()
        self._port = port

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        # Not listening yet: it never will be.
        port.cancel()
        return port.addCallback(_stopListening)


def _stopListening(listening: IListeningPort | None) -> Deferred[None] | None:
    # None: the endpoint failed, and that was logged.
    return None if listening is None else listening.stopListening()


class Repeating(Service):
    """
    C{work} done when the service starts and every C{interval} seconds of
    C{clock} after, never two at once: a run that returns a L{Deferred} is
    waited for, and the next starts at the first interval after it ends.
    C{work} handles its own failures; one it lets through is logged, and
    the runs go on. Stopping waits for a run in progress.
    """

    def __init__(self, interval: float, work: Callable[[], Any], clock: IReactorTime | None = None) -> None:
        self.interval = interval
        self._work = work
        self._clock = clock
        self._loop: LoopingCall | None = None
        self._running: Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._run)
        if self._clock is not None:
            self._loop.clock = self._clock
        self._running = self._loop.start(self.interval, now=True)

    def _run(self) -> Deferred[None] | None:
        try:
            result = self._work()
        except Exception:
            log.failure("{work} failed", work=self._work)
            return None
        if isinstance(result, Deferred):
            return result.addErrback(lambda f: log.failure("{work} failed", f, work=self._work))
        return None

    def stopService(self) -> Deferred[None]:
        super().stopService()
        loop, running = self._loop, self._running
        self._loop = self._running = None
        if loop is None or running is None:
            return succeed(None)
        if loop.running:
            loop.stop()
        return running.addCallback(lambda _: None)
