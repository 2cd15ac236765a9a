"""
The pull-through cache, between a real upstream txregistry and clients,
on filesystem storage and on S3.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.web.client import ResponseFailed

from tests.helpers import sha256
from tests.proxy import Fixed, Proxy, TokenGate, Upstream, fakeUpstream, proxyRegistry, storeRoot, upstreamRegistry
from tests.s3server import SeaweedFS


@pytest.fixture(params=["filesystem", "s3"])
def proxyStorage(request: pytest.FixtureRequest) -> SeaweedFS | None:
    if request.param == "s3":
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        return server
    return None


@pytest_twisted.async_yield_fixture
async def upstream(tmp_path: object) -> AsyncIterator[Upstream]:
    async with upstreamRegistry(os.path.join(str(tmp_path), "upstream")) as registry:
        yield registry


@pytest_twisted.async_yield_fixture
async def proxy(tmp_path: object, upstream: Upstream, proxyStorage: SeaweedFS | None) -> AsyncIterator[Proxy]:
    root = storeRoot(str(tmp_path), "proxy", proxyStorage)
    async with proxyRegistry(root, upstream.url, s3=proxyStorage) as registry:
        yield registry


@pytest_twisted.ensureDeferred
async def test_pull_through_then_from_cache(upstream: Upstream, proxy: Proxy) -> None:
    layer = os.urandom(300_000)
    manifest, digest = await upstream.client.pushImage("team/app", "v1", [layer])
    layerDigest = sha256(layer)
    upstream.counting.seen.clear()

    response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
    assert response.code == 200, response
    assert response.body == manifest
    assert response.header("Docker-Content-Digest") == digest
    response = await proxy.client.request("GET", f"/v2/team/app/blobs/{layerDigest}")
    assert response.code == 200, response
    assert response.body == layer

    seen = upstream.counting
    assert seen.count("GET", "/v2/team/app/manifests/v1") == 1
    assert seen.count("GET", f"/v2/team/app/blobs/{layerDigest}") == 1

    # Cached: by digest and by a fresh tag, nothing is asked of upstream.
    for path in ("/v2/team/app/manifests/v1", f"/v2/team/app/manifests/{digest}"):
        response = await proxy.client.request("GET", path)
        assert (response.code, response.body) == (200, manifest)
    response = await proxy.client.request("GET", f"/v2/team/app/blobs/{layerDigest}")
    assert (response.code, response.body) == (200, layer)
    assert seen.count("GET", f"/v2/team/app/blobs/{layerDigest}") == 1
    assert sum(seen.seen.values()) == 2
    assert proxy.cache.metrics.misses["blob"] == 1
    assert proxy.cache.metrics.upstreamBytes >= len(layer)

    response = await proxy.client.request("GET", "/v2/_catalog")
    assert response.json()["repositories"] == ["team/app"]


@pytest_twisted.ensureDeferred
async def test_unknown_upstream_content(upstream: Upstream, proxy: Proxy) -> None:
    response = await proxy.client.request("GET", "/v2/team/none/manifests/v1")
    assert (response.code, response.errorCode()) == (404, "MANIFEST_UNKNOWN")
    response = await proxy.client.request("GET", f"/v2/team/none/blobs/{sha256(b'x')}")
    assert (response.code, response.errorCode()) == (404, "BLOB_UNKNOWN")
    await deferLater(reactor, 0)


@pytest_twisted.ensureDeferred
async def test_tags_are_revalidated_by_head(tmp_path: object, upstream: Upstream) -> None:
    first, firstDigest = await upstream.client.pushImage("team/app", "latest", [b"one"])
    root = os.path.join(str(tmp_path), "revalidating")
    async with proxyRegistry(root, upstream.url, "  revalidate: 0s\n") as proxy:
        seen = upstream.counting
        seen.seen.clear()
        path = "/v2/team/app/manifests/latest"
        assert (await proxy.client.request("GET", path)).body == first
        assert (await proxy.client.request("GET", path)).body == first
        # Docker Hub counts GETs as pulls: the second pull only asked by HEAD.
        assert (seen.count("GET", path), seen.count("HEAD", path)) == (1, 1)

        second, secondDigest = await upstream.client.pushImage("team/app", "latest", [b"two"])
        response = await proxy.client.request("GET", path)
        assert (response.body, response.header("Docker-Content-Digest")) == (second, secondDigest)
        assert (seen.count("GET", path), seen.count("HEAD", path)) == (2, 2)
        # The old revision stays cached by digest.
        response = await proxy.client.request("GET", f"/v2/team/app/manifests/{firstDigest}")
        assert response.body == first

        # A HEAD of an uncached tag is answered from upstream's HEAD alone.
        await upstream.client.pushImage("team/app", "other", [b"three"])
        response = await proxy.client.request("HEAD", "/v2/team/app/manifests/other")
        assert response.code == 200
        assert response.header("Docker-Content-Digest") is not None
        assert seen.count("GET", "/v2/team/app/manifests/other") == 0


@pytest_twisted.ensureDeferred
async def test_head_of_uncached_blob_fetches_no_body(upstream: Upstream, proxy: Proxy) -> None:
    layer = os.urandom(50_000)
    digest = await upstream.client.pushBlob("team/app", layer)
    upstream.counting.seen.clear()
    response = await proxy.client.request("HEAD", f"/v2/team/app/blobs/{digest}")
    assert response.code == 200
    assert response.header("Content-Length") == str(len(layer))
    assert upstream.counting.count("GET", f"/v2/team/app/blobs/{digest}") == 0
    assert upstream.counting.count("HEAD", f"/v2/team/app/blobs/{digest}") == 1


@pytest_twisted.ensureDeferred
async def test_cached_content_is_served_while_upstream_is_down(upstream: Upstream, tmp_path: object) -> None:
    layer = os.urandom(100_000)
    manifest, digest = await upstream.client.pushImage("team/app", "v1", [layer])
    other = await upstream.client.pushBlob("team/app", b"never pulled")
    async with proxyRegistry(os.path.join(str(tmp_path), "p"), upstream.url, "  revalidate: 0s\n") as proxy:
        assert (await proxy.client.request("GET", "/v2/team/app/manifests/v1")).code == 200
        assert (await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(layer)}")).body == layer
        await upstream.stop()

        for attempt in range(2):
            started = reactor.seconds()
            response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
            assert (response.code, response.body) == (200, manifest)
            response = await proxy.client.request("GET", f"/v2/team/app/manifests/{digest}")
            assert (response.code, response.body) == (200, manifest)
            response = await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(layer)}")
            assert (response.code, response.body) == (200, layer)
            if attempt == 1:
                # The breaker is open: no waiting for upstream at all.
                assert reactor.seconds() - started < 0.5
        response = await proxy.client.request("GET", f"/v2/team/app/blobs/{other}")
        assert (response.code, response.errorCode()) == (503, "UNAVAILABLE")
        assert "upstream" in response.json()["errors"][0]["message"]


@pytest_twisted.ensureDeferred
async def test_concurrent_pulls_share_one_upstream_fetch(upstream: Upstream, proxy: Proxy) -> None:
    size = 64 * 1024 * 1024
    blob = os.urandom(size)
    digest = await upstream.client.pushBlob("team/big", blob)
    del blob
    upstream.counting.seen.clear()
    firstBytes: list[int] = []

    async def pull() -> str:
        response = await treq.get(f"{proxy.url}/v2/team/big/blobs/{digest}", agent=proxy.client.agent, unbuffered=True)
        assert response.code == 200
        hasher = hashlib.sha256()

        started = False

        def got(data: bytes) -> None:
            nonlocal started
            if not started:
                started = True
                firstBytes.append(proxy.cache.metrics.upstreamBytes)
            hasher.update(data)

        await treq.collect(response, got)
        return "sha256:" + hasher.hexdigest()

    results = await gatherResults([Deferred.fromCoroutine(pull()) for _ in range(20)])
    assert results == [digest] * 20
    assert upstream.counting.count("GET", f"/v2/team/big/blobs/{digest}") == 1
    # Clients had bytes while the upstream was still sending.
    assert min(firstBytes) < size


@pytest_twisted.ensureDeferred
async def test_bearer_token_from_realm(tmp_path: object, upstream: Upstream) -> None:
    manifest, _ = await upstream.client.pushImage("team/app", "v1", [b"layer"])
    gate = TokenGate(upstream.site.resource, "puller", "s3cret")
    async with fakeUpstream(gate) as guarded:
        extra = "  username: puller\n  password: s3cret\n"
        async with proxyRegistry(os.path.join(str(tmp_path), "p"), guarded.url, extra) as proxy:
            response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
            assert (response.code, response.body) == (200, manifest)
            response = await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(b'layer')}")
            assert (response.code, response.body) == (200, b"layer")
            # One token, kept until it expires.
            assert gate.issued == 1

        extra = "  username: puller\n  password: wrong\n"
        async with proxyRegistry(os.path.join(str(tmp_path), "q"), guarded.url, extra) as proxy:
            response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
            assert (response.code, response.errorCode()) == (502, "UNAUTHORIZED")
            message = response.json()["errors"][0]["message"]
            assert "refused the configured credentials" in message and "puller" in message


@pytest_twisted.ensureDeferred
async def test_rate_limit_is_passed_on_for_uncached_content(tmp_path: object) -> None:
    async with fakeUpstream(Fixed(429, {"Retry-After": "17"})) as limited:
        async with proxyRegistry(os.path.join(str(tmp_path), "p"), limited.url) as proxy:
            response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
            assert (response.code, response.errorCode()) == (429, "TOOMANYREQUESTS")
            assert response.header("Retry-After") == "17"


@pytest.mark.parametrize("size", [100, 8 * 1024 * 1024])
@pytest_twisted.ensureDeferred
async def test_content_that_does_not_match_its_digest_is_not_kept(tmp_path: object, size: int) -> None:
    wanted = sha256(b"the real content")
    async with fakeUpstream(Fixed(404, blob=os.urandom(size))) as lying:
        root = os.path.join(str(tmp_path), "p")
        async with proxyRegistry(root, lying.url) as proxy:
            try:
                response = await proxy.client.request("GET", f"/v2/team/app/blobs/{wanted}")
            except ResponseFailed:
                pass  # Cut off before its last byte, when the body was under way.
            else:
                assert (response.code, response.errorCode()) == (502, "DIGEST_INVALID")
            await deferLater(reactor, 0.2)
            blobs = os.path.join(root, "docker/registry/v2/blobs")
            assert not os.path.exists(blobs) or not any(files for _, _, files in os.walk(blobs))
            response = await proxy.client.request("HEAD", f"/v2/team/app/blobs/{wanted}")
            assert response.code != 200 or response.header("Content-Length") != str(len(b"the real content"))
