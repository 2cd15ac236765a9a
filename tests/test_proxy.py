"""
The pull-through cache, between a real upstream txregistry and clients,
on filesystem storage and on S3.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed

from tests.helpers import sha256
from tests.proxy import (
    Answer,
    Delayed,
    Faltering,
    Fixed,
    Proxy,
    TokenGate,
    Upstream,
    blackHole,
    fakeUpstream,
    proxyRegistry,
    storeRoot,
    upstreamRegistry,
)
from tests.s3server import SeaweedFS
from tests.test_hardening import tmpfs
from txregistry.config import ConfigError, parseConfig
from txregistry.manifest import OCI_INDEX, OCI_MANIFEST
from txregistry.proxy import Eviction
from txregistry.reference import Digest
from txregistry.registry.links import exists
from txregistry.storage import layout


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
async def test_tags_are_revalidated_by_head(
    proxyStorage: SeaweedFS | None, tmp_path: object, upstream: Upstream
) -> None:
    first, firstDigest = await upstream.client.pushImage("team/app", "latest", [b"one"])
    root = storeRoot(str(tmp_path), "revalidating", proxyStorage)
    async with proxyRegistry(root, upstream.url, "  revalidate: 0s\n", s3=proxyStorage) as proxy:
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
        assert (seen.count("GET", path), seen.count("HEAD", path)) == (1, 2)
        # The new revision, by the digest the HEAD found.
        assert seen.count("GET", f"/v2/team/app/manifests/{secondDigest}") == 1
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
async def test_cached_content_is_served_while_upstream_is_down(
    proxyStorage: SeaweedFS | None, upstream: Upstream, tmp_path: object
) -> None:
    layer = os.urandom(100_000)
    manifest, digest = await upstream.client.pushImage("team/app", "v1", [layer])
    other = await upstream.client.pushBlob("team/app", b"never pulled")
    async with proxyRegistry(
        storeRoot(str(tmp_path), "p", proxyStorage), upstream.url, "  revalidate: 0s\n", s3=proxyStorage
    ) as proxy:
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
        response = await treq.get(
            f"{proxy.url}/v2/team/big/blobs/{digest}", agent=proxy.client.agent, unbuffered=True
        )
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
async def test_bearer_token_from_realm(
    proxyStorage: SeaweedFS | None, tmp_path: object, upstream: Upstream
) -> None:
    manifest, _ = await upstream.client.pushImage("team/app", "v1", [b"layer"])
    other, _ = await upstream.client.pushImage("team/other", "v1", [b"other layer"])
    gate = TokenGate(upstream.site.resource, "puller", "s3cret")
    async with fakeUpstream(gate) as guarded:
        extra = "  username: puller\n  password: s3cret\n"
        async with proxyRegistry(
            storeRoot(str(tmp_path), "p", proxyStorage), guarded.url, extra, s3=proxyStorage
        ) as proxy:
            response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
            assert (response.code, response.body) == (200, manifest)
            response = await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(b'layer')}")
            assert (response.code, response.body) == (200, b"layer")
            # One token, kept until it expires.
            assert gate.issued == 1
            # Another repository gets a token of its own, without being
            # refused first: the realm is known.
            for _ in range(2):
                for name, body in (("team/other", other), ("team/app", manifest)):
                    response = await proxy.client.request("GET", f"/v2/{name}/manifests/v1")
                    assert (response.code, response.body) == (200, body)
            assert (gate.issued, gate.challenged) == (2, 1)

        extra = "  username: puller\n  password: wrong\n"
        async with proxyRegistry(
            storeRoot(str(tmp_path), "q", proxyStorage), guarded.url, extra, s3=proxyStorage
        ) as proxy:
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
            # The answer starts as soon as the upstream's does, so the lie
            # can only be told by cutting the connection before the last
            # byte: before the headers got out (a small blob), or mid-body.
            url = proxy.client.url(f"/v2/team/app/blobs/{wanted}")
            try:
                response = await treq.get(url, agent=proxy.client.agent, unbuffered=True)
            except ResponseFailed:
                received = b""
            else:
                assert (response.code, response.length) == (200, size)
                body = Collect()
                response.deliverBody(body)
                [reason] = await body.done
                assert reason.check(ResponseFailed), reason
                received = body.data
            assert len(received) < size
            await proxy.cache.settled()
            store = os.path.join(root, "docker/registry/v2")
            assert await proxy.cache.registry.storedSize(Digest.parse(wanted)) is None
            assert not any(files for _, _, files in os.walk(os.path.join(store, "blobs")))
            assert not any(files for _, _, files in os.walk(os.path.join(store, "repositories")))


@pytest_twisted.ensureDeferred
async def test_pushes_only_to_own_repositories(
    tmp_path: object, upstream: Upstream, proxyStorage: SeaweedFS | None
) -> None:
    async with proxyRegistry(
        storeRoot(str(tmp_path), "p", proxyStorage), upstream.url, s3=proxyStorage
    ) as proxy:
        response = await proxy.client.request("POST", "/v2/team/app/blobs/uploads/")
        assert (response.code, response.errorCode()) == (405, "UNSUPPORTED")
        assert "team/app is a cache of upstream" in response.json()["errors"][0]["message"]

    other = os.path.join(str(tmp_path), "other")
    async with upstreamRegistry(other) as second:
        manifest, _ = await second.client.pushImage("team/app", "v2", [b"from the second"])
        config = (
            "proxy:\n  allowpush: true\n  upstreams:\n"
            f"    - name: second.example\n      remoteurl: {second.url}\n"
        )
        root = storeRoot(str(tmp_path), "q", proxyStorage)
        async with proxyRegistry(root, "", config=config, s3=proxyStorage) as proxy:
            # Its own repositories take pushes...
            mine, mineDigest = await proxy.client.pushImage("mine/app", "v1", [b"private"])
            response = await proxy.client.request("GET", "/v2/mine/app/manifests/v1")
            assert (response.code, response.body) == (200, mine)
            # ...the upstream's do not.
            response = await proxy.client.request("POST", "/v2/second.example/team/app/blobs/uploads/")
            assert (response.code, response.errorCode()) == (405, "UNSUPPORTED")
            # The upstream's, by name prefix or by containerd's ns parameter.
            for path in (
                "/v2/second.example/team/app/manifests/v2",
                "/v2/team/app/manifests/v2?ns=second.example",
            ):
                response = await proxy.client.request("GET", path)
                assert (response.code, response.body) == (200, manifest)
            assert second.counting.count("GET", "/v2/team/app/manifests/v2") == 1
            response = await proxy.client.request("GET", "/v2/_catalog")
            assert response.json()["repositories"] == ["mine/app", "second.example/team/app"]


@pytest_twisted.ensureDeferred
async def test_tags_come_from_upstream_or_the_cache(
    proxyStorage: SeaweedFS | None, upstream: Upstream, tmp_path: object
) -> None:
    for tag in ("a", "b", "c"):
        await upstream.client.pushImage("team/app", tag, [tag.encode()])
    async with proxyRegistry(
        storeRoot(str(tmp_path), "p", proxyStorage), upstream.url, "  revalidate: 0s\n", s3=proxyStorage
    ) as proxy:
        response = await proxy.client.request("GET", "/v2/team/app/tags/list?n=2")
        assert response.json() == {"name": "team/app", "tags": ["a", "b"]}
        assert (await proxy.client.request("GET", "/v2/team/app/manifests/c")).code == 200
        await upstream.stop()
        response = await proxy.client.request("GET", "/v2/team/app/tags/list")
        assert response.json() == {"name": "team/app", "tags": ["c"]}
        response = await proxy.client.request("GET", "/v2/team/never/tags/list")
        assert (response.code, response.errorCode()) == (503, "UNAVAILABLE")


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


class Collect(Protocol):
    """
    A response body, and (in C{done}) how it ended.
    """

    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred[list[Failure]] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # In a list: a Deferred given a Failure takes it for its own.
        self.done.callback([reason])


def wallClock() -> Clock:
    """
    A clock for the cache to expire content by, that starts at the time of
    day (pull records are kept as such) and moves only when told to.
    """
    clock = Clock()
    clock.advance(time.time())
    return clock


@pytest_twisted.ensureDeferred
async def test_eviction_after_ttl_keeps_what_cached_manifests_reference(
    upstream: Upstream, proxyStorage: SeaweedFS | None, tmp_path: object
) -> None:
    shared, only = os.urandom(1000), os.urandom(1000)
    _, keptDigest = await upstream.client.pushImage("team/kept", "v1", [shared])
    await upstream.client.pushImage("team/gone", "v1", [only])
    root = storeRoot(str(tmp_path), "p", proxyStorage)
    clock = wallClock()
    async with proxyRegistry(root, upstream.url, "  ttl: 1h\n", s3=proxyStorage, clock=clock) as proxy:
        for name, layer in (("team/kept", shared), ("team/gone", only)):
            assert (await proxy.client.request("GET", f"/v2/{name}/manifests/v1")).code == 200
            assert (await proxy.client.request("GET", f"/v2/{name}/blobs/{sha256(layer)}")).code == 200
        await proxy.cache.settled()
        clock.advance(3601)
        # Pulled again: the manifest stays, and so does the layer it uses.
        assert (await proxy.client.request("GET", f"/v2/team/kept/manifests/{keptDigest}")).code == 200
        await proxy.cache.settled()
        removed = await Eviction(proxy.cache).run()
        assert removed == 2
        await upstream.stop()
        assert (await proxy.client.request("GET", f"/v2/team/kept/manifests/{keptDigest}")).code == 200
        response = await proxy.client.request("GET", f"/v2/team/kept/blobs/{sha256(shared)}")
        assert (response.code, response.body) == (200, shared)
        response = await proxy.client.request("GET", f"/v2/team/gone/blobs/{sha256(only)}")
        assert response.code == 503
        response = await proxy.client.request("GET", "/v2/team/gone/manifests/v1")
        assert response.code == 503


@pytest_twisted.ensureDeferred
async def test_maxsize_evicts_the_least_recently_pulled(
    proxyStorage: SeaweedFS | None, upstream: Upstream, tmp_path: object
) -> None:
    old, new = os.urandom(100_000), os.urandom(100_000)
    for blob in (old, new):
        await upstream.client.pushBlob("team/app", blob)
    root = storeRoot(str(tmp_path), "p", proxyStorage)
    clock = wallClock()
    limited = "  maxsize: 150000\n"
    async with proxyRegistry(root, upstream.url, limited, s3=proxyStorage, clock=clock) as proxy:
        assert (await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(old)}")).code == 200
        await proxy.cache.settled()
        clock.advance(1)
        assert (await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(new)}")).code == 200
        await proxy.cache.settled()
        assert await Eviction(proxy.cache).run() == 1
        upstream.counting.seen.clear()
        assert (await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(new)}")).body == new
        assert (await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(old)}")).body == old
        assert upstream.counting.count("GET", f"/v2/team/app/blobs/{sha256(old)}") == 1
        assert upstream.counting.count("GET", f"/v2/team/app/blobs/{sha256(new)}") == 0


@pytest_twisted.ensureDeferred
async def test_two_proxies_on_one_bucket_share_the_cache(upstream: Upstream, seaweedfs: SeaweedFS) -> None:
    layer = os.urandom(2_000_000)
    digest = await upstream.client.pushBlob("team/app", layer)
    root = storeRoot("", "", seaweedfs)
    async with proxyRegistry(root, upstream.url, s3=seaweedfs) as first:
        async with proxyRegistry(root, upstream.url, s3=seaweedfs) as second:
            assert (await first.client.request("GET", f"/v2/team/app/blobs/{digest}")).body == layer
            # Stored once verified, just after the last byte went out.
            for _ in range(100):
                if await first.cache.record.entries():
                    break
                await sleep(0.05)
            upstream.counting.seen.clear()
            response = await second.client.request("GET", f"/v2/team/app/blobs/{digest}")
            assert (response.code, response.body) == (200, layer)
            assert sum(upstream.counting.seen.values()) == 0
            assert second.cache.metrics.hits["blob"] == 1


@pytest.mark.parametrize("how", ["drop", "stall"])
@pytest_twisted.ensureDeferred
async def test_upstream_failing_mid_blob(tmp_path: object, how: str) -> None:
    """
    A client of a download that breaks off (or stalls past the timeout)
    is cut off too, and nothing is kept: the next request starts again.
    """
    size = 4 * 1024 * 1024
    faltering = Faltering(size, 1024 * 1024, how)
    digest = sha256(b"whatever it was")
    async with fakeUpstream(faltering) as upstream:
        root = os.path.join(str(tmp_path), "p")
        async with proxyRegistry(root, upstream.url, "  timeout: 1s\n") as proxy:
            for attempt in (1, 2):
                response = await treq.get(f"{proxy.url}/v2/team/app/blobs/{digest}", agent=proxy.client.agent)
                assert response.code == 200
                assert response.length == size
                with pytest.raises(ResponseFailed):
                    await treq.content(response)
                assert faltering.requests == attempt
            await sleep(0.2)
            blobs = os.path.join(root, "docker/registry/v2/blobs")
            assert not os.path.exists(blobs)
            uploads = os.path.join(root, "docker/registry/v2/repositories/team/app/_uploads")
            assert not os.path.exists(uploads) or os.listdir(uploads) == []


@pytest_twisted.ensureDeferred
async def test_an_upstream_that_never_answers_is_not_waited_for_twice(tmp_path: object) -> None:
    async with fakeUpstream(Faltering(0, 0, "stall")) as upstream:
        async with proxyRegistry(os.path.join(str(tmp_path), "p"), upstream.url, "  timeout: 1s\n") as proxy:
            started = reactor.seconds()
            response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
            assert (response.code, response.errorCode()) == (503, "UNAVAILABLE")
            assert reactor.seconds() - started >= 1
            started = reactor.seconds()
            response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
            assert (response.code, response.errorCode()) == (503, "UNAVAILABLE")
            assert reactor.seconds() - started < 0.5
            assert "trying again in" in response.json()["errors"][0]["message"]


@pytest_twisted.ensureDeferred
async def test_a_client_that_leaves_does_not_stop_the_caching(upstream: Upstream, proxy: Proxy) -> None:
    blob = os.urandom(8 * 1024 * 1024)
    digest = await upstream.client.pushBlob("team/app", blob)
    upstream.counting.seen.clear()
    response = await treq.get(
        f"{proxy.url}/v2/team/app/blobs/{digest}", agent=proxy.client.agent, unbuffered=True
    )
    assert response.code == 200
    gone: Deferred[None] = Deferred()

    class Leave(Protocol):
        def dataReceived(self, data: bytes) -> None:
            assert self.transport is not None
            self.transport.stopProducing()

        def connectionLost(self, reason: object = None) -> None:
            gone.callback(None)

    response.deliverBody(Leave())
    await gone
    for _ in range(100):
        if await proxy.cache.record.entries():
            break
        await sleep(0.05)
    response = await proxy.client.request("GET", f"/v2/team/app/blobs/{digest}")
    assert (response.code, response.body == blob) == (200, True)
    assert upstream.counting.count("GET", f"/v2/team/app/blobs/{digest}") == 1


@pytest_twisted.ensureDeferred
async def test_an_index_is_cached_as_it_is_and_its_children_when_asked(
    upstream: Upstream, proxy: Proxy
) -> None:
    children = []
    for arch in ("amd64", "arm64"):
        body, digest = await upstream.client.pushImage("multi/app", arch, [arch.encode()])
        children.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    assert (await upstream.client.pushManifest("multi/app", "latest", index, OCI_INDEX)).code == 201
    upstream.counting.seen.clear()

    response = await proxy.client.request("GET", "/v2/multi/app/manifests/latest")
    assert (response.code, response.body, response.header("Content-Type")) == (200, index, OCI_INDEX)
    # Nothing but the index was fetched: a client picks one child and asks.
    assert sum(upstream.counting.seen.values()) == 1
    response = await proxy.client.request("GET", f"/v2/multi/app/manifests/{children[1]['digest']}")
    assert response.code == 200 and json.loads(response.body)["config"]
    assert sum(upstream.counting.seen.values()) == 2


@pytest_twisted.ensureDeferred
async def test_eviction_keeps_content_our_own_repositories_use(
    upstream: Upstream, proxyStorage: SeaweedFS | None, tmp_path: object
) -> None:
    layer = os.urandom(10_000)
    await upstream.client.pushImage("team/app", "v1", [layer])
    config = (
        "proxy:\n  allowpush: true\n  ttl: 1h\n  upstreams:\n"
        f"    - name: up.example\n      remoteurl: {upstream.url}\n"
    )
    root = storeRoot(str(tmp_path), "p", proxyStorage)
    clock = wallClock()
    async with proxyRegistry(root, "", config=config, s3=proxyStorage, clock=clock) as proxy:
        path = f"/v2/up.example/team/app/blobs/{sha256(layer)}"
        assert (await proxy.client.request("GET", path)).body == layer
        mine, _ = await proxy.client.pushImage("mine/app", "v1", [layer])
        await proxy.cache.settled()
        clock.advance(3601)
        assert await Eviction(proxy.cache).run() == 1
        # Unlinked from the cached repository, kept for ours.
        driver, digest = proxy.cache.registry.driver, Digest.parse(sha256(layer))
        assert not await exists(driver, layout.layerLink("up.example/team/app", digest))
        assert await exists(driver, layout.blobData(digest))
        await upstream.stop()
        response = await proxy.client.request("GET", f"/v2/mine/app/blobs/{sha256(layer)}")
        assert (response.code, response.body) == (200, layer)
        assert (await proxy.client.request("GET", "/v2/mine/app/manifests/v1")).body == mine


@pytest_twisted.ensureDeferred
async def test_upstream_json_nested_too_deeply_is_no_answer(tmp_path: object) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    async with fakeUpstream(Answer(200, {"Content-Type": "application/json"}, deep)) as deepest:
        async with proxyRegistry(os.path.join(str(tmp_path), "p"), deepest.url) as proxy:
            response = await proxy.client.request("GET", "/v2/team/app/tags/list")
            assert (response.code, response.errorCode()) == (404, "NAME_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_references_neither_tag_nor_digest_are_unknown(tmp_path: object, upstream: Upstream) -> None:
    async with proxyRegistry(os.path.join(str(tmp_path), "p"), upstream.url) as proxy:
        for method in ("GET", "HEAD"):
            response = await proxy.client.request(method, "/v2/team/app/manifests/.INVALID_MANIFEST_NAME")
            assert response.code == 404
        response = await proxy.client.request("GET", "/v2/team/app/manifests/.INVALID_MANIFEST_NAME")
        assert response.errorCode() == "MANIFEST_UNKNOWN"
    assert upstream.counting.seen == {}


@pytest_twisted.ensureDeferred
async def test_a_cache_whose_storage_is_full(tmp_path: object, upstream: Upstream) -> None:
    small, large = os.urandom(10_000), os.urandom(4 * 1024 * 1024)
    for blob in (small, large):
        await upstream.client.pushBlob("team/app", blob)
    root = os.path.join(str(tmp_path), "small")
    with tmpfs(root, "1m"):
        async with proxyRegistry(root, upstream.url) as proxy:
            # Larger than the disk: the client is cut off before the end,
            # and nothing of it is left behind.
            url = proxy.client.url(f"/v2/team/app/blobs/{sha256(large)}")
            try:
                response = await treq.get(url, agent=proxy.client.agent)
                received = await treq.content(response)
            except ResponseFailed:
                received = b""
            assert len(received) < len(large)
            await proxy.cache.settled()
            store = os.path.join(root, "docker/registry/v2")
            assert not [files for _, _, files in os.walk(os.path.join(store, "blobs")) if files]
            uploads = os.path.join(store, "repositories/team/app/_uploads")
            assert not os.path.exists(uploads) or os.listdir(uploads) == []
            with open(os.path.join(root, "filler"), "wb") as f:
                try:
                    f.write(b"x" * 1024 * 1024)
                except OSError:
                    pass  # Full now.
            # Storage that takes nothing: unavailability, not the upstream's fault.
            response = await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(small)}")
            assert (response.code, response.errorCode()) == (503, "UNAVAILABLE")


#: Past any revalidation period.
STALE = 3600


def defaultConfig(remote: str) -> str:
    # proxyConfig's short timeout left out: what a deployment runs with.
    return f"proxy:\n  remoteurl: {remote}\n"


def test_revalidation_keys() -> None:
    base = "version: 0.1\nstorage: {inmemory: {}}\nproxy:\n  remoteurl: https://a.io\n"
    proxy = parseConfig(base, environ={}).proxy
    assert proxy is not None
    assert (proxy.revalidate, proxy.revalidateTimeout, proxy.timeout) == (timedelta(seconds=10), 3.0, 30.0)
    config = parseConfig(base + "  revalidatetimeout: 500ms\n", environ={})
    assert config.warnings == ()
    assert config.proxy is not None and config.proxy.revalidateTimeout == 0.5
    with pytest.raises(ConfigError, match="proxy.revalidatetimeout: must be more than 0"):
        parseConfig(base + "  revalidatetimeout: 0s\n", environ={})


@pytest_twisted.ensureDeferred
async def test_a_tag_looked_up_by_head_is_cached(
    proxyStorage: SeaweedFS | None, tmp_path: object, upstream: Upstream
) -> None:
    """
    Docker and containerd resolve a tag by HEAD and GET the manifest by
    digest: such a pull is served from the cache once the upstream is down.
    """
    manifest, digest = await upstream.client.pushImage("team/app", "v1", [b"one"])
    other, otherDigest = await upstream.client.pushImage("team/app", "v2", [b"two"])
    clock = wallClock()
    root = storeRoot(str(tmp_path), "p", proxyStorage)
    async with proxyRegistry(
        root, "", s3=proxyStorage, config=defaultConfig(upstream.url), clock=clock
    ) as proxy:
        seen = upstream.counting
        seen.seen.clear()
        # No GET by digest from the client: the manifest is stored anyway.
        response = await proxy.client.request("HEAD", "/v2/team/app/manifests/v1")
        assert (response.code, response.header("Docker-Content-Digest")) == (200, digest)
        # A GET by digest at once shares the fetch the HEAD started.
        response = await proxy.client.request("HEAD", "/v2/team/app/manifests/v2")
        assert response.header("Docker-Content-Digest") == otherDigest
        response = await proxy.client.request("GET", f"/v2/team/app/manifests/{otherDigest}")
        assert (response.code, response.body) == (200, other)
        await proxy.cache.settled()
        for tag, found in (("v1", digest), ("v2", otherDigest)):
            assert seen.count("GET", f"/v2/team/app/manifests/{found}") == 1
            assert seen.count("GET", f"/v2/team/app/manifests/{tag}") == 0
            assert seen.count("HEAD", f"/v2/team/app/manifests/{tag}") == 1

        # Stale, unchanged: one HEAD, which only records when it was asked.
        clock.advance(STALE)
        for _ in range(2):
            response = await proxy.client.request("HEAD", "/v2/team/app/manifests/v1")
            assert response.header("Docker-Content-Digest") == digest
        assert seen.count("HEAD", "/v2/team/app/manifests/v1") == 2
        assert seen.count("GET", f"/v2/team/app/manifests/{digest}") == 1

        await upstream.stop()
        clock.advance(STALE)
        response = await proxy.client.request("HEAD", "/v2/team/app/manifests/v1")
        assert (response.code, response.header("Docker-Content-Digest")) == (200, digest)
        response = await proxy.client.request("GET", f"/v2/team/app/manifests/{digest}")
        assert (response.code, response.body) == (200, manifest)
        response = await proxy.client.request("GET", "/v2/team/app/manifests/v2")
        assert (response.code, response.body) == (200, other)


@pytest_twisted.ensureDeferred
async def test_a_black_holed_upstream_does_not_stall_a_cached_pull(
    tmp_path: object, upstream: Upstream
) -> None:
    manifest, digest = await upstream.client.pushImage("team/app", "v1", [b"one"])
    clock = wallClock()
    root = os.path.join(str(tmp_path), "p")
    async with proxyRegistry(root, "", config=defaultConfig(upstream.url), clock=clock) as proxy:
        assert (await proxy.client.request("GET", "/v2/team/app/manifests/v1")).code == 200
        await proxy.cache.settled()
        port = upstream.port.getHost().port
        await upstream.stop()
        async with blackHole(port) as hole:
            clock.advance(STALE)
            started = reactor.seconds()
            response = await proxy.client.request("HEAD", "/v2/team/app/manifests/v1")
            assert (response.code, response.header("Docker-Content-Digest")) == (200, digest)
            response = await proxy.client.request("GET", f"/v2/team/app/manifests/{digest}")
            assert (response.code, response.body) == (200, manifest)
            assert reactor.seconds() - started < 5
            assert len(hole.connections) == 1
            # The breaker is open: the next pull does not wait at all.
            started = reactor.seconds()
            response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
            assert (response.code, response.body) == (200, manifest)
            assert reactor.seconds() - started < 0.5
            assert len(hole.connections) == 1


@pytest_twisted.ensureDeferred
async def test_concurrent_heads_and_gets_of_a_tag_share_one_upstream_head(
    tmp_path: object, upstream: Upstream
) -> None:
    manifest, digest = await upstream.client.pushImage("team/app", "v1", [b"one"])
    clock = wallClock()
    async with fakeUpstream(Delayed(upstream.site.resource, 0.5)) as slow:
        root = os.path.join(str(tmp_path), "p")
        async with proxyRegistry(root, "", config=defaultConfig(slow.url), clock=clock) as proxy:
            path = "/v2/team/app/manifests/v1"
            assert (await proxy.client.request("GET", path)).code == 200
            clock.advance(STALE)
            upstream.counting.seen.clear()
            methods = ["HEAD", "GET"] * 5
            answers = await gatherResults(
                [Deferred.fromCoroutine(proxy.client.request(method, path)) for method in methods]
            )
            for method, response in zip(methods, answers, strict=True):
                assert (response.code, response.header("Docker-Content-Digest")) == (200, digest)
                assert method == "HEAD" or response.body == manifest
            assert upstream.counting.seen == {("HEAD", path): 1}


@pytest_twisted.ensureDeferred
async def test_a_moved_tag_is_served_within_the_revalidation_period(
    tmp_path: object, upstream: Upstream
) -> None:
    first, firstDigest = await upstream.client.pushImage("team/app", "latest", [b"one"])
    clock = wallClock()
    root = os.path.join(str(tmp_path), "p")
    async with proxyRegistry(root, "", config=defaultConfig(upstream.url), clock=clock) as proxy:
        path = "/v2/team/app/manifests/latest"
        assert (await proxy.client.request("GET", path)).body == first
        second, secondDigest = await upstream.client.pushImage("team/app", "latest", [b"two"])
        clock.advance(9)
        assert (await proxy.client.request("GET", path)).body == first
        clock.advance(1)
        # As Docker pulls: the HEAD finds the new revision, fetched by digest.
        response = await proxy.client.request("HEAD", path)
        assert response.header("Docker-Content-Digest") == secondDigest
        response = await proxy.client.request("GET", f"/v2/team/app/manifests/{secondDigest}")
        assert (response.code, response.body) == (200, second)
        response = await proxy.client.request("GET", path)
        assert (response.body, response.header("Docker-Content-Digest")) == (second, secondDigest)
        response = await proxy.client.request("GET", f"/v2/team/app/manifests/{firstDigest}")
        assert response.body == first
