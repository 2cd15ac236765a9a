"""
Registries for pull-through tests: a real txregistry as the upstream,
with the requests it gets counted, and txregistry as the cache in front.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request, Site

import txregistry
from tests.conftest import configFor
from tests.helpers import Client
from tests.s3server import SeaweedFS
from txregistry.proxy import PullThroughCache
from txregistry.service import registryOf


class Counting(Resource):
    """
    A site's root that counts the requests it gets, by method and path.
    """

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.seen: Counter[tuple[str, str]] = Counter()

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        self.seen[request.method.decode(), request.path.decode()] += 1
        return self.inner.getChildWithDefault(path, request)

    def render(self, request: Request) -> Any:
        self.seen[request.method.decode(), request.path.decode()] += 1
        return self.inner.render(request)

    def count(self, method: str, path: str) -> int:
        return self.seen[method, path]


class Listening:
    """
    A site listening on a free loopback port until L{stop}.
    """

    def __init__(self, site: Site, client: Client, port: Any) -> None:
        self.site = site
        self.client = client
        self.port = port
        self.url = client.base

    async def stop(self) -> None:
        await self.client.close()
        if self.port is not None:
            await self.port.stopListening()
            self.port = None
            # Connections already open would go on being served.
            for channel in list(getattr(self.site, "channels", [])):
                channel.transport.abortConnection()


async def listen(site: Site, port: int = 0) -> Listening:
    channels: list[Any] = []
    build = site.buildProtocol

    def buildProtocol(addr: Any) -> Any:
        protocol = build(addr)
        channels.append(protocol)
        return protocol

    site.buildProtocol = buildProtocol  # type: ignore[method-assign]
    site.channels = channels  # type: ignore[attr-defined]
    listening = await TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
    return Listening(site, Client(f"http://127.0.0.1:{listening.getHost().port}"), listening)


class Upstream(Listening):
    counting: Counting


@asynccontextmanager
async def upstreamRegistry(root: str) -> AsyncIterator[Upstream]:
    """
    A txregistry on filesystem storage at C{root}, counting its requests.
    """
    site = txregistry.site(configFor(root))
    counting = Counting(site.resource)
    site.resource = counting
    upstream = await listen(site)
    upstream.counting = counting  # type: ignore[attr-defined]
    try:
        yield upstream  # type: ignore[misc]
    finally:
        await upstream.stop()


def proxyConfig(remote: str, extra: str = "") -> str:
    return f"proxy:\n  remoteurl: {remote}\n  evictioninterval: 1h\n  timeout: 3s\n{extra}"


class Proxy(Listening):
    cache: PullThroughCache


@asynccontextmanager
async def proxyRegistry(
    root: str,
    remote: str,
    extra: str = "",
    s3: SeaweedFS | None = None,
    config: str | None = None,
    clock: IReactorTime | None = None,
) -> AsyncIterator[Proxy]:
    """
    A txregistry caching C{remote}, on filesystem storage at C{root} or on
    S3 below C{root}; C{extra} lines for its C{proxy} section; its time
    from C{clock} where one is given.
    """
    parsed = configFor(root, s3, extra=config if config is not None else proxyConfig(remote, extra))
    assert parsed.proxy is not None
    registry = registryOf(parsed)
    cache = PullThroughCache(registry, parsed.proxy, clock=clock)
    proxy = await listen(txregistry.site(parsed, cache))
    proxy.cache = cache  # type: ignore[attr-defined]
    try:
        yield proxy  # type: ignore[misc]
    finally:
        await proxy.stop()
        await cache.close()
        await registry.driver.close()


def storeRoot(tmp: str, name: str, s3: SeaweedFS | None) -> str:
    import uuid

    return f"/tests/{uuid.uuid4()}" if s3 is not None else os.path.join(tmp, name)


class Answer(Resource):
    isLeaf = True

    def __init__(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        super().__init__()
        self.status = status
        self.headers = headers
        self.body = body

    def render(self, request: Request) -> bytes:
        request.setResponseCode(self.status)
        for key, value in self.headers.items():
            request.setHeader(key, value)
        return self.body


class TokenGate(Resource):
    """
    What the real upstream cannot do itself: demand a Bearer token for the
    repository asked about, issued at C{/token} to C{user} with
    C{password}, as Docker Hub does.
    """

    def __init__(self, inner: Any, user: str, password: str) -> None:
        super().__init__()
        self.inner = inner
        self.credentials = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.tokens: dict[str, str] = {}
        self.issued = 0
        self.challenged = 0

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        if path == b"token":
            if request.getHeader("authorization") != self.credentials:
                return Answer(401, {}, b'{"details": "incorrect username or password"}')
            scope = request.args[b"scope"][0].decode()
            self.issued += 1
            self.tokens[scope] = "token-" + os.urandom(8).hex()
            token = json.dumps({"token": self.tokens[scope], "expires_in": 300}).encode()
            return Answer(200, {"Content-Type": "application/json"}, token)
        name = re.split(r"/(?:manifests|blobs|tags)/", request.path.decode()[len("/v2/") :])[0]
        scope = f"repository:{name}:pull"
        if request.getHeader("authorization") != f"Bearer {self.tokens.get(scope)}":
            self.challenged += 1
            realm = f"http://127.0.0.1:{request.getHost().port}/token"
            challenge = f'Bearer realm="{realm}",service="test-registry",scope="{scope}"'
            return Answer(401, {"WWW-Authenticate": challenge}, b'{"errors": [{"code": "UNAUTHORIZED"}]}')
        return self.inner.getChildWithDefault(path, request)


class Fixed(Resource):
    """
    An upstream that gives every request one answer (a 429, say), or for
    blob GETs, C{blob} as the content of whatever digest was asked for.
    """

    def __init__(self, status: int, headers: dict[str, str] | None = None, blob: bytes | None = None) -> None:
        super().__init__()
        self.answer = Answer(status, headers or {})
        self.blob = blob

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        if self.blob is not None and b"/blobs/" in request.path:
            return Answer(200, {"Content-Type": "application/octet-stream"}, self.blob)
        return self.answer


@asynccontextmanager
async def fakeUpstream(root: Resource) -> AsyncIterator[Listening]:
    site = Site(root)
    site.protocol = HTTPChannel  # type: ignore[assignment]
    listening = await listen(site)
    try:
        yield listening
    finally:
        await listening.stop()


class Faltering(Resource):
    """
    An upstream that fails mid-way: for blob GETs it promises C{size}
    bytes, sends C{sent} of them, then (C{how}) drops the connection or
    falls silent; everything else it never answers at all.
    """

    isLeaf = True

    def __init__(self, size: int, sent: int, how: str) -> None:
        super().__init__()
        self.size = size
        self.sent = sent
        self.how = how
        self.requests = 0

    def render(self, request: Request) -> Any:
        self.requests += 1
        if b"/blobs/" not in request.path:
            return NOT_DONE_YET
        request.setHeader("Content-Length", str(self.size))
        request.write(os.urandom(self.sent))
        if self.how == "drop":
            reactor.callLater(0.1, request.channel.transport.abortConnection)
        return NOT_DONE_YET


class Delayed(Resource):
    """
    An upstream slow to answer C{HEAD}s: C{inner} answers each only
    C{seconds} after it came.
    """

    def __init__(self, inner: Any, seconds: float) -> None:
        super().__init__()
        self.inner = inner
        self.seconds = seconds

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        child = self.inner.getChildWithDefault(path, request)
        if request.method != b"HEAD":
            return child
        return _Later(getChildForRequest(child, request), self.seconds)


class _Later(Resource):
    isLeaf = True

    def __init__(self, resource: Resource, seconds: float) -> None:
        super().__init__()
        self.resource = resource
        self.seconds = seconds

    def render(self, request: Request) -> Any:
        reactor.callLater(self.seconds, request.render, self.resource)
        return NOT_DONE_YET


class _Silent(Protocol):
    def connectionMade(self) -> None:
        self.factory.connections.append(self)  # type: ignore[attr-defined]


class BlackHole(Factory):
    """
    A black-holed upstream: connections are accepted and never answered.
    """

    protocol = _Silent

    def __init__(self) -> None:
        self.connections: list[_Silent] = []


@asynccontextmanager
async def blackHole(port: int) -> AsyncIterator[BlackHole]:
    """
    A L{BlackHole} on loopback port C{port}, until the block ends.
    """
    factory = BlackHole()
    listening = await TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(factory)
    try:
        yield factory
    finally:
        await listening.stopListening()
        for connection in factory.connections:
            assert connection.transport is not None
            connection.transport.abortConnection()
