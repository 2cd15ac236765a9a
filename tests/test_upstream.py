"""
The upstream client on its own, against real servers on loopback: a real
txregistry as the upstream, and beside it what the upstream redirects
blob reads to.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.interfaces import (
    IReactorTime,
)
from twisted.internet.task import Clock
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import Request

from tests.helpers import ReactorWithoutDNS, freePort, sha256
from tests.proxy import TokenGate, Upstream, fakeUpstream, upstreamRegistry
from txregistry.config import Upstream as UpstreamConfig
from txregistry.proxy.metrics import ProxyMetrics
from txregistry.proxy.upstream import (
    MANIFEST_ACCEPT,
    UpstreamClient,
    UpstreamUnavailable,
    discard,
    readBody,
)


@pytest_twisted.async_yield_fixture
async def upstream(tmp_path: object) -> AsyncIterator[Upstream]:
    async with upstreamRegistry(os.path.join(str(tmp_path), "upstream")) as registry:
        yield registry


def clientOf(
    url: str, clock: IReactorTime | None = None, theReactor: Any = reactor, password: str | None = None
) -> UpstreamClient:
    """
    A client of C{url}, as user C{user} if given a C{password}.
    """
    login = UpstreamConfig(remoteURL=url, username="user" if password else None, password=password)
    return UpstreamClient(login, 3.0, ProxyMetrics(), theReactor, clock=clock)


async def manifest(client: UpstreamClient) -> IResponse:
    return await client.request("manifest", "GET", "team/app", "manifests/v1", {"Accept": MANIFEST_ACCEPT})


class Storage(Resource):
    """
    Where blob reads are redirected to: answers C{status} (and C{body}),
    and keeps the headers of each request it gets.
    """

    isLeaf = True

    def __init__(self, status: int, body: bytes = b"") -> None:
        super().__init__()
        self.status = status
        self.body = body
        self.seen: list[dict[bytes, Sequence[bytes]]] = []

    def render(self, request: Request) -> bytes:
        self.seen.append({k.lower(): v for k, v in request.requestHeaders.getAllRawHeaders()})
        request.setResponseCode(self.status)
        return self.body


class Redirecting(Resource):
    """
    A registry's root that sends blob reads to C{storage}, as registries on
    object storage do.
    """

    def __init__(self, inner: Any, storage: str) -> None:
        super().__init__()
        self.inner = inner
        self.storage = storage

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        if b"/blobs/" in request.path:
            return _Redirect(self.storage + request.path.decode())
        return self.inner.getChildWithDefault(path, request)


class _Redirect(Resource):
    isLeaf = True

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location

    def render(self, request: Request) -> bytes:
        request.setResponseCode(307)
        request.setHeader("Location", self.location)
        return b""


class Failing(Resource):
    """
    A registry's root that answers 503 while C{failing} is set.
    """

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.failing = True

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        if self.failing:
            return Storage(503)
        return self.inner.getChildWithDefault(path, request)


@pytest_twisted.ensureDeferred
async def test_credentials_do_not_follow_a_redirect_to_another_host(upstream: Upstream) -> None:
    blob = os.urandom(1000)
    digest = await upstream.client.pushBlob("team/app", blob)
    storage = Storage(200, blob)
    async with fakeUpstream(storage) as store:
        gate = TokenGate(Redirecting(upstream.counting, store.url), "user", "secret")
        upstream.site.resource = gate
        client = clientOf(upstream.url, password="secret")
        try:
            response = await client.request("blob", "GET", "team/app", f"blobs/{digest}", follow=True)
            assert response.code == 200
            assert await readBody(response) == blob
        finally:
            await client.close()
    assert gate.issued == 1
    assert len(storage.seen) == 1
    assert b"authorization" not in storage.seen[0]


@pytest.mark.parametrize("how", ["500", "refused"])
@pytest_twisted.ensureDeferred
async def test_storage_failing_behind_a_redirect_does_not_open_the_breaker(
    upstream: Upstream, how: str
) -> None:
    await upstream.client.pushImage("team/app", "v1", [b"layer"])
    digest = sha256(b"layer")
    storage = Storage(500)
    async with fakeUpstream(storage) as store:
        target = store.url if how == "500" else f"http://127.0.0.1:{freePort()}"
        upstream.site.resource = Redirecting(upstream.counting, target)
        client = clientOf(upstream.url)
        try:
            for _ in range(3):
                try:
                    response = await client.request("blob", "GET", "team/app", f"blobs/{digest}", follow=True)
                except UpstreamUnavailable as e:
                    assert how == "refused" and "trying again" not in str(e)
                else:
                    assert response.code == 500
                    discard(response)
            assert not client.breaker.isOpen
            upstream.counting.seen.clear()
            response = await manifest(client)
            assert response.code == 200
            await readBody(response)
            assert upstream.counting.count("GET", "/v2/team/app/manifests/v1") == 1
        finally:
            await client.close()
    assert len(storage.seen) == (3 if how == "500" else 0)
    assert client.metrics.upstreamRequests["blob", "307"] == 3


@pytest_twisted.ensureDeferred
async def test_a_redirect_not_followed_is_the_answer(upstream: Upstream) -> None:
    digest = await upstream.client.pushBlob("team/app", b"blob")
    storage = Storage(200, b"blob")
    async with fakeUpstream(storage) as store:
        upstream.site.resource = Redirecting(upstream.counting, store.url)
        client = clientOf(upstream.url)
        try:
            response = await client.request("blob", "GET", "team/app", f"blobs/{digest}")
            assert response.code == 307
            assert response.headers.getRawHeaders("location") == [f"{store.url}/v2/team/app/blobs/{digest}"]
            discard(response)
        finally:
            await client.close()
    assert storage.seen == []


@pytest_twisted.ensureDeferred
async def test_an_upstream_whose_name_does_not_resolve() -> None:
    client = clientOf("http://nosuch.invalid:5000", theReactor=ReactorWithoutDNS())
    try:
        with pytest.raises(UpstreamUnavailable) as raised:
            await manifest(client)
        assert str(raised.value) == (
            "upstream http://nosuch.invalid:5000 cannot be reached: cannot resolve host nosuch.invalid"
        )
        assert client.metrics.upstreamRequests["manifest", "error"] == 1
        # Counted like a refused connection: the next request is not tried.
        with pytest.raises(UpstreamUnavailable) as raised:
            await manifest(client)
        message = str(raised.value)
        assert "failed recently (cannot resolve host nosuch.invalid); trying again in 1 s" in message
        assert client.metrics.upstreamRequests["manifest", "error"] == 1
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_tokens_expire_on_the_clock(upstream: Upstream) -> None:
    await upstream.client.pushImage("team/app", "v1", [b"layer"])
    gate = TokenGate(upstream.counting, "user", "secret")
    upstream.site.resource = gate
    clock = Clock()
    client = clientOf(upstream.url, clock, password="secret")
    try:
        for advance, issued in ((0, 1), (294, 1), (2, 2)):
            clock.advance(advance)
            response = await manifest(client)
            assert response.code == 200
            await readBody(response)
            assert gate.issued == issued
        # The new token was asked for before it was needed, not after a 401.
        assert gate.challenged == 1
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_the_breaker_backs_off_on_the_clock(upstream: Upstream) -> None:
    await upstream.client.pushImage("team/app", "v1", [b"layer"])
    failing = Failing(upstream.counting)
    upstream.site.resource = failing
    clock = Clock()
    client = clientOf(upstream.url, clock)

    async def tried() -> bool:
        """
        Whether a request reached the upstream; fails unless it succeeded
        or the upstream failed it.
        """
        try:
            response = await manifest(client)
        except UpstreamUnavailable as e:
            assert "trying again in" in str(e)
            return False
        assert response.code == (503 if failing.failing else 200)
        await readBody(response)
        return True

    try:
        assert await tried()
        assert not await tried()
        clock.advance(1)
        assert await tried()
        # Failed again: twice as long.
        clock.advance(1)
        assert not await tried()
        clock.advance(1)
        failing.failing = False
        assert await tried()
        assert await tried()
        assert not client.breaker.isOpen
    finally:
        await client.close()
