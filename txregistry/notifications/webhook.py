"""
One endpoint's queue and its delivery: events are posted one at a time,
in order; a failed one is tried again, as registry:2's retrying sink does,
at once until C{threshold} failures in a row, then once per C{backoff},
until it is delivered. The queue is bounded (registry:2's is not): what
arrives while it is full is dropped, and counted.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import treq
from twisted.internet import reactor as defaultReactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from txregistry.config.schema import NotificationEndpoint
from txregistry.logging import logger
from txregistry.notifications.events import EVENTS_MEDIA_TYPE

log = logger(__name__)


class Refused(Exception):
    """
    The endpoint answered, but not with a 2xx or 3xx.
    """


class Webhook:
    """
    Deliveries to one endpoint. The counters are for metrics: C{delivered}
    events, C{failed} attempts (each try again counts), C{dropped} events
    (the queue was full); L{pending} is the queue's depth.

    @param reactor: what connects and times deliveries out.
    @param clock: what back-off is measured by; the reactor unless given.
    """

    def __init__(
        self, endpoint: NotificationEndpoint, reactor: Any = None, clock: IReactorTime | None = None
    ) -> None:
        self.endpoint = endpoint
        self.reactor: Any = reactor if reactor is not None else defaultReactor
        self.clock: IReactorTime = clock if clock is not None else self.reactor
        # One delivery at a time: one connection to keep.
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.pool.maxPersistentPerHost = 1
        self.http = treq.client.HTTPClient(
            Agent(self.reactor, connectTimeout=endpoint.timeout, pool=self.pool)
        )
        self.headers = Headers({"Content-Type": [EVENTS_MEDIA_TYPE]})
        for name, values in endpoint.headers.items():
            for value in values:
                self.headers.addRawHeader(name, value)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._queue: deque[bytes] = deque()
        self._sending: Deferred[None] | None = None
        self._waiting: IDelayedCall | None = None
        self._failures = 0
        self._full = False
        self._stopped = False

    @property
    def pending(self) -> int:
        """
        Events not delivered yet, the one being delivered among them.
        """
        return len(self._queue)

    def wants(self, action: str, mediaType: str | None) -> bool:
        return action not in self.endpoint.ignoredActions and mediaType not in self.endpoint.ignoredMediaTypes

    def send(self, body: bytes) -> None:
        """
        Queue an envelope for delivery; returns at once.
        """
        if self._stopped:
            return
        if len(self._queue) >= self.endpoint.queueSize:
            if not self._full:
                self._full = True
                log.warn(
                    "notifications: endpoint {name}: {size} events are waiting; dropping new ones",
                    name=self.endpoint.name,
                    size=len(self._queue),
                )
            self.dropped += 1
            return
        self._queue.append(body)
        self._next()

    def stop(self) -> Deferred[None]:
        """
        Deliver no more: what is still queued is given up. Fires once the
        connection kept is closed.
        """
        self._stopped = True
        if self._waiting is not None and self._waiting.active():
            self._waiting.cancel()
        if self._sending is not None:
            self._sending.cancel()
        if self._queue:
            log.info(
                "notifications: endpoint {name}: {n} events not delivered at shutdown",
                name=self.endpoint.name,
                n=len(self._queue),
            )
        return self.pool.closeCachedConnections()

    def _next(self) -> None:
        if self._stopped or self._sending is not None or self._waiting is not None or not self._queue:
            return
        sending = self._sending = Deferred.fromCoroutine(self._post(self._queue[0]))
        timer = self.reactor.callLater(self.endpoint.timeout, sending.cancel)
        sending.addBoth(self._sent, timer)

    async def _post(self, body: bytes) -> None:
        response = await self.http.post(self.endpoint.url, data=body, headers=self.headers)
        # Read to the end (and thrown away): the deadline covers all of it.
        await treq.collect(response, lambda data: None)
        if not 200 <= response.code < 400:
            raise Refused(f"answered {response.code}")

    def _sent(self, result: Failure | None, timer: IDelayedCall) -> None:
        if timer.active():
            timer.cancel()
        self._sending = None
        if self._stopped:
            return
        if isinstance(result, Failure):
            self.failed += 1
            self._failures += 1
            if self._failures == 1:
                why = (
                    f"no answer within {self.endpoint.timeout:g} s"
                    if result.check(CancelledError)
                    else result.getErrorMessage() or result.type.__name__
                )
                log.warn(
                    "notifications: endpoint {name}: delivery failed ({why}); trying again",
                    name=self.endpoint.name,
                    why=why,
                )
            if self._failures >= self.endpoint.threshold:
                self._waiting = self.clock.callLater(self.endpoint.backoff, self._retry)
                return
        else:
            self._queue.popleft()
            self.delivered += 1
            self._full = False
            if self._failures:
                log.info(
                    "notifications: endpoint {name}: delivering again after {n} failures",
                    name=self.endpoint.name,
                    n=self._failures,
                )
            self._failures = 0
        self._next()

    def _retry(self) -> None:
        self._waiting = None
        self._next()
