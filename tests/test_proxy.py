"""
The pull-through cache, between a real upstream txregistry and clients,
on filesystem storage and on S3.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.helpers import sha256
from tests.proxy import Proxy, Upstream, proxyRegistry, storeRoot, upstreamRegistry
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
