"""
The configuration's sink: every event of a successful request, stamped
with its id, its time and this instance, once for all endpoints, to each
endpoint that does not ignore it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from twisted.application.service import Service
from twisted.internet import reactor as defaultReactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from txregistry.config.schema import NotificationEndpoint
from txregistry.notifications.events import Event, RequestRecord, Source, Target, envelope
from txregistry.notifications.interfaces import INotifier
from txregistry.notifications.webhook import Webhook


@implementer(INotifier)
class Notifier(Service):
    """
    The webhooks of the configuration's enabled endpoints, as a service:
    stopping it ends their deliveries.
    """

    def __init__(self, webhooks: Sequence[Webhook], source: Source, clock: IReactorTime) -> None:
        self.webhooks = tuple(webhooks)
        self.source = source
        self.clock = clock

    def notify(self, action: str, target: Target, request: RequestRecord, actor: str | None) -> None:
        wanting = [webhook for webhook in self.webhooks if webhook.wants(action, target.mediaType)]
        if not wanting:
            return
        event = Event(str(uuid4()), self.clock.seconds(), action, target, request, actor, self.source)
        # One event an envelope, as registry:2 sends them.
        body = envelope([event])
        for webhook in wanting:
            webhook.send(body)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        stopped: Deferred[Any] = gatherResults([webhook.stop() for webhook in self.webhooks])
        return stopped.addCallback(lambda _: None)


def notifierOf(
    endpoints: Sequence[NotificationEndpoint],
    listen: Sequence[str],
    reactor: Any = None,
    clock: IReactorTime | None = None,
) -> Notifier | None:
    """
    The notifier of the endpoints not disabled, if any; its source is this
    host and the port of the first of C{listen} (Twisted endpoint strings).
    """
    reactor = reactor if reactor is not None else defaultReactor
    clock = clock if clock is not None else reactor
    webhooks = [Webhook(endpoint, reactor, clock) for endpoint in endpoints if not endpoint.disabled]
    if not webhooks:
        return None
    return Notifier(webhooks, Source(sourceAddress(listen), str(uuid4())), clock)


def sourceAddress(listen: Sequence[str]) -> str:
    """
    As registry:2 names itself: the host's name, with the port it listens
    on when it listens on one.
    """
    host = socket.gethostname()
    for part in listen[0].split(":")[1:] if listen else []:
        port = part.removeprefix("port=")
        if port.isdigit():
            return f"{host}:{port}"
    return host
