"""
registry:2's health checks (its C{health} section): the storage driver,
files that must not exist, HTTP services and TCP servers, each run every
interval as a service on an injected clock, named and failing as
registry:2's are. While any fails, the API answers 503 to every request
(C{web/router.py}) and C{/debug/health} says which and why
(C{web/debug.py}).

Nothing here blocks the reactor: the storage driver does its own slow
calls in threads or over the network, HTTP checks go through treq (imported
only when one is configured), TCP checks through a Twisted endpoint, and a
file check is one C{stat}.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from txregistry.config.schema import Config, ConfigError, FileCheck, HTTPCheck, TCPCheck
from txregistry.logging import logger
from txregistry.services import Repeating
from txregistry.storage import IStorageDriver

if TYPE_CHECKING:
    from txregistry.proxy import PullThroughCache

log = logger(__name__)


class Check:
    """
    One check, under the name registry:2 gives it: C{probe} asked every
    C{interval} seconds, failing once it has failed C{threshold} times in a
    row (0 and 1 alike: at the first failure), with the last error, and
    passing again at the first success.

    A probe not answered by the next run counts as a failure there and is
    cancelled (an S3 request is aborted; a thread stuck on a hung mount
    cannot be, and is left to finish), and the run after starts a new one:
    a store that comes back is seen as soon as it answers.
    """

    def __init__(
        self,
        name: str,
        probe: Callable[[], Deferred[None]],
        interval: float,
        threshold: int,
        clock: IReactorTime,
    ) -> None:
        self.name = name
        self.interval = interval
        self._probe = probe
        self._threshold = max(threshold, 1)
        self._clock = clock
        self._failures = 0
        self._error = ""
        self._pending: Deferred[None] | None = None
        self._started = 0.0

    @property
    def failing(self) -> str | None:
        """
        The error while the check fails; C{None} while it passes.
        """
        return self._error if self._failures >= self._threshold else None

    def run(self) -> None:
        if self._pending is not None:
            self._record(f"no answer for {self._clock.seconds() - self._started:.0f} s")
            pending, self._pending = self._pending, None
            pending.cancel()
            return
        self._started = self._clock.seconds()
        try:
            probing = self._probe()
        except Exception:
            probing = fail()
        self._pending = probing
        probing.addCallbacks(self._answered, self._refused, (probing,), errbackArgs=(probing,))

    def stop(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    def _answered(self, _: None, probing: Deferred[None]) -> None:
        if probing is self._pending:
            self._pending = None
            self._record(None)

    def _refused(self, failure: Failure, probing: Deferred[None]) -> None:
        if probing is self._pending:
            self._pending = None
            self._record(failure.getErrorMessage() or failure.type.__name__)

    def _record(self, error: str | None) -> None:
        was = self.failing
        if error is None:
            self._failures = 0
        else:
            self._failures = min(self._failures + 1, self._threshold)
            self._error = error
        now = self.failing
        if now is not None and was is None:
            log.error("health check {name} fails: {error}", name=self.name, error=now)
        elif now is None and was is not None:
            log.info("health check {name} passes again", name=self.name)


class HealthChecks(MultiService):
    """
    The checks of a registry, each run by a L{Repeating} of its own while
    this service runs.
    """

    def __init__(self, checks: Sequence[Check], clock: IReactorTime) -> None:
        super().__init__()
        self.checks = tuple(checks)
        for check in self.checks:
            Repeating(check.interval, check.run, clock).setServiceParent(self)

    def failing(self) -> dict[str, str]:
        """
        Each failing check's name with its error: registry:2's
        C{/debug/health} document.
        """
        return {check.name: error for check in self.checks if (error := check.failing) is not None}

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[None] = super().stopService()
        for check in self.checks:
            check.stop()
        return stopped


def healthChecks(config: Config, driver: IStorageDriver, reactor: Any) -> HealthChecks:
    """
    The checks of C{config}'s C{health} section, on C{driver}.

    @param reactor: what TCP and HTTP checks connect with and every check is
        timed by: an L{IReactorTCP} and L{IReactorTime}.
    """
    health = config.health
    checks = []
    storage = health.storageDriver
    if storage.enabled:
        checks.append(
            Check(
                f"storagedriver_{driver.name}",
                driver.checkHealth,
                storage.interval.total_seconds(),
                storage.threshold,
                reactor,
            )
        )
    for file in health.files:
        checks.append(_fileCheck(file, reactor))
    for http in health.http:
        checks.append(_httpCheck(http, reactor))
    for tcp in health.tcp:
        checks.append(_tcpCheck(tcp, reactor))
    return HealthChecks(checks, reactor)


def _fileCheck(check: FileCheck, reactor: Any) -> Check:
    def stat() -> None:
        try:
            os.stat(check.file)
        except FileNotFoundError:
            return
        except OSError as e:
            raise OSError(f"{check.file}: {e.strerror}") from None
        # registry:2's way to take an instance out of rotation: make the file.
        raise OSError("file exists")

    def probe() -> Deferred[None]:
        # In a thread: a file on a mount that hangs must not hang the
        # registry with it, only fail its check.
        return deferToThreadPool(reactor, reactor.getThreadPool(), stat)

    return Check(check.file, probe, check.interval.total_seconds(), check.threshold, reactor)


def _httpCheck(check: HTTPCheck, reactor: Any) -> Check:
    try:
        # treq is the proxy and s3 extras', needed only for an HTTP check.
        from treq.client import HTTPClient
    except ImportError as e:
        raise ConfigError(
            f"health.http: HTTP checks need treq (pip install 'txregistry[proxy]'): {e}"
        ) from None
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.http_headers import Headers

    timeout = (check.timeout or check.interval).total_seconds()
    # A connection of its own each time: what is checked is that one can be made.
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = HTTPClient(Agent(reactor, connectTimeout=timeout, pool=pool))
    headers = Headers({name: list(values) for name, values in check.headers.items()})

    async def ask() -> None:
        try:
            response = await client.head(check.uri, headers=headers, timeout=timeout, reactor=reactor)
        except Exception as e:
            raise OSError(f"{check.uri}: error while checking: {e.__class__.__name__}: {e}") from None
        if response.code != check.statusCode:
            raise OSError(f"{check.uri}: downstream service returned unexpected status: {response.code}")

    def probe() -> Deferred[None]:
        return Deferred.fromCoroutine(ask())

    return Check(check.uri, probe, check.interval.total_seconds(), check.threshold, reactor)


def _tcpCheck(check: TCPCheck, reactor: Any) -> Check:
    timeout = (check.timeout or check.interval).total_seconds()
    endpoint = HostnameEndpoint(reactor, check.host, check.port, timeout=timeout)
    factory = Factory.forProtocol(Protocol)
    # Not a line in the log for each connection, every interval.
    factory.noisy = False

    def connected(protocol: Protocol) -> None:
        assert protocol.transport is not None
        protocol.transport.loseConnection()

    def failed(failure: Failure) -> None:
        raise OSError(f"{check.addr}: connection failed: {failure.getErrorMessage()}")

    def probe() -> Deferred[None]:
        # The timeout above is each attempt's; this one also bounds the name's resolution.
        connecting = endpoint.connect(factory).addTimeout(timeout, reactor)
        return connecting.addCallbacks(connected, failed)

    return Check(check.addr, probe, check.interval.total_seconds(), check.threshold, reactor)


def upstreamStatus(cache: PullThroughCache) -> Callable[[], dict[str, Any]]:
    """
    What C{/debug/upstreams} says of C{cache}'s upstreams: each one's URL,
    whether its circuit breaker is open (requests to it fail at once, and
    what is cached is served), and why it last failed. Never a check: a
    cache with an upstream down still serves.
    """

    def status() -> dict[str, Any]:
        return {
            "upstreams": [
                {
                    "name": client.upstream.name,
                    "remoteurl": client.upstream.remoteURL,
                    "breaker": "open" if client.breaker.isOpen else "closed",
                    "lasterror": client.breaker.lastFailure,
                }
                for client in cache.clients.values()
            ]
        }

    return status
