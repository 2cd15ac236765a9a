"""
What a notification says: registry:2's events, field for field, and the
envelope they are sent in.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.iweb import IRequest

#: The envelope's media type, registry:2's (CNCF distribution 2.8).
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


@attrs.frozen
class Target:
    """
    What an event is about. A deleted manifest or blob has only its digest,
    a deleted tag only its name; content pulled, pushed or mounted has its
    descriptor and URL, and a manifest its tag when named by one.
    """

    repository: str
    mediaType: str | None = None
    size: int | None = None
    digest: str | None = None
    fromRepository: str | None = None
    url: str | None = None
    tag: str | None = None

    def asJSON(self) -> dict[str, Any]:
        # registry:2's order, and its omitempty: a size of 0 is left out too.
        fields = (
            ("mediaType", self.mediaType),
            ("size", self.size),
            ("digest", self.digest),
            ("length", self.size),
            ("repository", self.repository),
            ("fromRepository", self.fromRepository),
            ("url", self.url),
            ("tag", self.tag),
        )
        return {key: value for key, value in fields if value}


@attrs.frozen
class RequestRecord:
    """
    The request that caused an event: its id, the client's address, the
    C{Host} it asked, its method and its C{User-Agent}.
    """

    id: str
    addr: str
    host: str
    method: str
    userAgent: str

    @classmethod
    def of(cls, request: IRequest) -> RequestRecord:
        """
        What an event says of C{request}, as registry:2 says it: the
        client's address is the first of C{X-Forwarded-For}, or
        C{X-Real-Ip}, when that is an IP address, else the connection's
        peer.
        """
        return cls(
            id=getattr(request, "requestId", None) or str(uuid4()),
            addr=_clientAddress(request),
            host=request.getHeader("host") or "",
            method=request.method.decode("ascii", "replace"),
            userAgent=request.getHeader("user-agent") or "",
        )

    def asJSON(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.id}
        if self.addr:
            record["addr"] = self.addr
        if self.host:
            record["host"] = self.host
        record.update(method=self.method, useragent=self.userAgent)
        return record


@attrs.frozen
class Source:
    """
    The instance that raised an event: its host name and port, and an id
    of this run of it.
    """

    addr: str
    instanceID: str

    def asJSON(self) -> dict[str, Any]:
        return {key: value for key, value in (("addr", self.addr), ("instanceID", self.instanceID)) if value}


@attrs.frozen
class Event:
    id: str
    #: Seconds since the epoch.
    timestamp: float
    action: str
    target: Target
    request: RequestRecord
    #: Who the request was let through as; C{None} for an anonymous client.
    actor: str | None
    source: Source

    def asJSON(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "timestamp": timestamp(self.timestamp),
            "action": self.action,
            "target": self.target.asJSON(),
            "request": self.request.asJSON(),
            "actor": {"name": self.actor} if self.actor else {},
            "source": self.source.asJSON(),
        }


def _clientAddress(request: IRequest) -> str:
    forwarded = request.getHeader("x-forwarded-for")
    for claimed in (forwarded.split(",")[0] if forwarded else None, request.getHeader("x-real-ip")):
        if claimed is not None:
            try:
                return str(ipaddress.ip_address(claimed.strip()))
            except ValueError:
                pass
    peer = request.getClientAddress()
    if isinstance(peer, IPv6Address):
        return f"[{peer.host}]:{peer.port}"
    if isinstance(peer, IPv4Address):
        return f"{peer.host}:{peer.port}"
    return ""


def timestamp(seconds: float) -> str:
    """
    RFC 3339 in UTC, fractions without trailing zeros, as Go writes it.
    """
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def envelope(events: list[Event]) -> bytes:
    """
    The body of one delivery: registry:2's envelope, indented as it does.
    """
    return json.dumps({"events": [event.asJSON() for event in events]}, indent=3).encode()
