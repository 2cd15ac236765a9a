"""
Pushes on a cache of a default upstream (C{allowpush} with C{remoteurl}):
a push to a repository that holds nothing cached makes it the registry's
own, served from the store and never evicted; a push to one the cache
holds is refused.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_twisted

from tests.helpers import sha256
from tests.proxy import Proxy, Upstream, proxyConfig, proxyRegistry, storeRoot, upstreamRegistry
from tests.s3server import SeaweedFS
from tests.test_proxy import wallClock
from txregistry.proxy import Eviction
from txregistry.reference import Digest
from txregistry.registry.links import exists
from txregistry.storage import IStorageDriver, PathNotFound, layout

ALLOWPUSH = "  allowpush: true\n  ttl: 1s\n"


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


async def files(driver: IStorageDriver, path: str = layout.ROOT) -> dict[str, bytes]:
    """
    Every file below C{path}, with its content: the state of a store.
    """
    found: dict[str, bytes] = {}
    for child in await driver.list(path):
        try:
            info = await driver.stat(child)
        except PathNotFound:
            continue  # An emptied directory, in S3's listing.
        if info.isDirectory:
            found.update(await files(driver, child))
        else:
            found[child] = await driver.getContent(child)
    return found


def upstreamRequests(upstream: Upstream) -> int:
    return sum(upstream.counting.seen.values())


@pytest_twisted.ensureDeferred
async def test_a_push_makes_a_repository_ours(
    upstream: Upstream, proxyStorage: SeaweedFS | None, tmp_path: object
) -> None:
    cachedLayer, mineLayer, shared = os.urandom(5000), os.urandom(7000), os.urandom(3000)
    await upstream.client.pushImage("team/app", "v1", [cachedLayer, shared])
    # The upstream has a repository of the same name: ours hides it.
    await upstream.client.pushImage("mine/app", "v1", [b"the upstream's"])
    clock = wallClock()
    root = storeRoot(str(tmp_path), "p", proxyStorage)
    async with proxyRegistry(root, upstream.url, ALLOWPUSH, s3=proxyStorage, clock=clock) as proxy:
        cached = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
        assert cached.code == 200
        for layer in (cachedLayer, shared):
            assert (await proxy.client.request("GET", f"/v2/team/app/blobs/{sha256(layer)}")).code == 200
        await proxy.cache.settled()
        upstream.counting.seen.clear()

        mine, digest = await proxy.client.pushImage("mine/app", "v1", [mineLayer, shared])
        driver = proxy.cache.registry.driver
        assert await exists(driver, layout.proxyOwn("mine/app"))
        for path in ("/v2/mine/app/manifests/v1", f"/v2/mine/app/manifests/{digest}"):
            response = await proxy.client.request("GET", path)
            assert (response.code, response.body) == (200, mine)
        response = await proxy.client.request("GET", f"/v2/mine/app/blobs/{sha256(mineLayer)}")
        assert (response.code, response.body) == (200, mineLayer)
        assert (await proxy.client.request("HEAD", "/v2/mine/app/manifests/v1")).code == 200
        assert (await proxy.client.request("GET", "/v2/mine/app/tags/list")).json()["tags"] == ["v1"]
        # Unknown in ours is unknown: not asked of the upstream.
        response = await proxy.client.request("GET", "/v2/mine/app/manifests/v2")
        assert (response.code, response.errorCode()) == (404, "MANIFEST_UNKNOWN")
        assert upstreamRequests(upstream) == 0

        # Both, in the catalog.
        response = await proxy.client.request("GET", "/v2/_catalog")
        assert response.json()["repositories"] == ["mine/app", "team/app"]

        # Long past the ttl, the cached image (its manifest and the layers
        # pulled) goes and ours stays, with the layer it shares.
        clock.advance(3600)
        assert await Eviction(proxy.cache).run() == 3
        assert not await exists(driver, layout.blobData(Digest.parse(sha256(cachedLayer))))
        await upstream.stop()
        for path, body in (
            ("/v2/mine/app/manifests/v1", mine),
            (f"/v2/mine/app/blobs/{sha256(mineLayer)}", mineLayer),
            (f"/v2/mine/app/blobs/{sha256(shared)}", shared),
        ):
            response = await proxy.client.request("GET", path)
            assert (response.code, response.body) == (200, body)
        response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
        assert response.code == 503


@pytest_twisted.ensureDeferred
async def test_other_repositories_still_come_from_upstream(upstream: Upstream, tmp_path: object) -> None:
    manifest, _ = await upstream.client.pushImage("team/app", "v1", [b"layer"])
    async with proxyRegistry(os.path.join(str(tmp_path), "p"), upstream.url, ALLOWPUSH) as proxy:
        await proxy.client.pushImage("mine/app", "v1", [b"ours"])
        upstream.counting.seen.clear()
        response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
        assert (response.code, response.body) == (200, manifest)
        assert upstream.counting.count("GET", "/v2/team/app/manifests/v1") == 1
        # A pull of what neither has asks upstream, and makes nothing ours.
        response = await proxy.client.request("GET", "/v2/team/none/manifests/v1")
        assert (response.code, response.errorCode()) == (404, "MANIFEST_UNKNOWN")
        assert upstream.counting.count("GET", "/v2/team/none/manifests/v1") == 1
        assert not await exists(proxy.cache.registry.driver, layout.proxyOwn("team/none"))


async def refusedPushes(proxy: Proxy, name: str, message: str) -> None:
    """
    Every way a push starts, refused to C{name} with C{message}.
    """
    blob = b"pushed"
    attempts = [
        ("POST", f"/v2/{name}/blobs/uploads/", None),
        ("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(blob)}", blob),
        ("POST", f"/v2/{name}/blobs/uploads/?mount={sha256(blob)}&from=other/app", None),
        ("PUT", f"/v2/{name}/manifests/v2", b"{}"),
        ("DELETE", f"/v2/{name}/manifests/v1", None),
    ]
    for method, path, body in attempts:
        response = await proxy.client.request(method, path, body)
        assert (response.code, response.errorCode()) == (405, "UNSUPPORTED"), (method, path)
        assert message in response.json()["errors"][0]["message"]


@pytest_twisted.ensureDeferred
async def test_a_push_into_what_is_cached_is_refused(
    upstream: Upstream, proxyStorage: SeaweedFS | None, tmp_path: object
) -> None:
    manifest, _ = await upstream.client.pushImage("team/app", "v1", [b"layer"])
    layerOnly = await upstream.client.pushBlob("team/blobs", b"a blob alone")
    root = storeRoot(str(tmp_path), "p", proxyStorage)
    async with proxyRegistry(root, upstream.url, ALLOWPUSH, s3=proxyStorage) as proxy:
        await proxy.client.pushBlob("other/app", b"pushed")
        assert (await proxy.client.request("GET", "/v2/team/app/manifests/v1")).code == 200
        assert (await proxy.client.request("GET", f"/v2/team/blobs/blobs/{layerOnly}")).code == 200
        await proxy.cache.settled()
        driver = proxy.cache.registry.driver
        # Pulled by another instance, with nothing of it left but the record.
        record = layout.proxyEntry("team/recorded", "blobs", Digest.parse(layerOnly))
        await driver.putContent(record, b'{"pulled": 0, "size": 12}')
        before = await files(driver)
        message = "is a cache of upstream"
        for name in ("team/app", "team/blobs", "team/recorded"):
            await refusedPushes(proxy, name, message)
        assert await files(driver) == before
        response = await proxy.client.request("GET", "/v2/team/app/manifests/v1")
        assert (response.code, response.body) == (200, manifest)


@pytest_twisted.ensureDeferred
async def test_without_allowpush_pushes_are_refused(upstream: Upstream, tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "p")
    async with proxyRegistry(root, upstream.url) as proxy:
        await refusedPushes(proxy, "mine/app", "mine/app is a cache of upstream")
        assert not os.path.exists(os.path.join(root, "docker/registry/v2/_proxy/own"))


@pytest_twisted.ensureDeferred
async def test_named_upstreams_are_never_ours(upstream: Upstream, tmp_path: object) -> None:
    config = proxyConfig(upstream.url, ALLOWPUSH) + (
        f"  upstreams:\n    - name: named.example\n      remoteurl: {upstream.url}\n"
    )
    async with proxyRegistry(os.path.join(str(tmp_path), "p"), "", config=config) as proxy:
        named = ("/v2/named.example/team/app/blobs/uploads/", "/v2/team/app/blobs/uploads/?ns=named.example")
        for path in named:
            response = await proxy.client.request("POST", path)
            assert (response.code, response.errorCode()) == (405, "UNSUPPORTED"), path
            assert "cache of upstream named.example" in response.json()["errors"][0]["message"]
        # The default upstream's name space takes them.
        await proxy.client.pushImage("team/app", "v1", [b"ours"])


@pytest_twisted.ensureDeferred
async def test_deletes_in_ours_stay_ours(upstream: Upstream, tmp_path: object) -> None:
    await upstream.client.pushImage("mine/app", "v2", [b"the upstream's"])
    async with proxyRegistry(os.path.join(str(tmp_path), "p"), upstream.url, ALLOWPUSH) as proxy:
        _, digest = await proxy.client.pushImage("mine/app", "v1", [b"ours"])
        response = await proxy.client.request("DELETE", f"/v2/mine/app/manifests/{digest}")
        assert response.code == 202
        upstream.counting.seen.clear()
        # Empty, and still ours: the upstream's v2 is not seen.
        for tag in ("v1", "v2"):
            response = await proxy.client.request("GET", f"/v2/mine/app/manifests/{tag}")
            assert (response.code, response.errorCode()) == (404, "MANIFEST_UNKNOWN")
        assert upstreamRequests(upstream) == 0
        await proxy.client.pushImage("mine/app", "v3", [b"ours again"])


@pytest_twisted.ensureDeferred
async def test_an_upload_is_ours_on_every_step(upstream: Upstream, tmp_path: object) -> None:
    data = os.urandom(20_000)
    async with proxyRegistry(os.path.join(str(tmp_path), "p"), upstream.url, ALLOWPUSH) as proxy:
        started = await proxy.client.request("POST", "/v2/mine/app/blobs/uploads/")
        assert started.code == 202
        location = started.header("Location")
        assert location is not None
        response = await proxy.client.request("PATCH", location, data[:10_000], {"Content-Range": "0-9999"})
        assert response.code == 202
        assert (await proxy.client.request("GET", location)).header("Range") == "0-9999"
        done = await proxy.client.request("PUT", f"{location}?digest={sha256(data)}", data[10_000:])
        assert done.code == 201, done
        response = await proxy.client.request("GET", f"/v2/mine/app/blobs/{sha256(data)}")
        assert (response.code, response.body) == (200, data)
        # A mount from a repository of ours into a new one makes it ours too.
        response = await proxy.client.request(
            "POST", f"/v2/mine/copy/blobs/uploads/?mount={sha256(data)}&from=mine/app"
        )
        assert response.code == 201
    assert upstreamRequests(upstream) == 0


@pytest_twisted.ensureDeferred
async def test_what_was_pulled_as_it_became_ours_is_not_evicted(upstream: Upstream, tmp_path: object) -> None:
    clock = wallClock()
    root = os.path.join(str(tmp_path), "p")
    async with proxyRegistry(root, upstream.url, ALLOWPUSH, clock=clock) as proxy:
        mine, digest = await proxy.client.pushImage("mine/app", "v1", [b"ours"])
        # A pull another instance cached just before the push made it ours
        # left its record.
        record = layout.proxyEntry("mine/app", "manifests", Digest.parse(digest))
        driver = proxy.cache.registry.driver
        await driver.putContent(record, f'{{"pulled": {clock.seconds()}, "size": {len(mine)}}}'.encode())
        clock.advance(3600)
        assert await Eviction(proxy.cache).run() == 0
        assert not await exists(driver, record)
        response = await proxy.client.request("GET", "/v2/mine/app/manifests/v1")
        assert (response.code, response.body) == (200, mine)
