"""
Registries for pull-through tests: a real txregistry as the upstream,
with the requests it gets counted, and txregistry as the cache in front.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

import txregistry
from tests.conftest import configFor
from tests.helpers import Client
from tests.s3server import SeaweedFS
from txregistry.proxy import PullThroughCache
from txregistry.service import cacheOf, registryOf


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
    root: str, remote: str, extra: str = "", s3: SeaweedFS | None = None, config: str | None = None
) -> AsyncIterator[Proxy]:
    """
    A txregistry caching C{remote}, on filesystem storage at C{root} or on
    S3 below C{root}; C{extra} lines for its C{proxy} section.
    """
    parsed = configFor(root, s3, extra=config if config is not None else proxyConfig(remote, extra))
    registry = registryOf(parsed)
    cache = cacheOf(parsed, registry)
    assert cache is not None
    proxy = await listen(txregistry.site(parsed, registry, cache))
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
