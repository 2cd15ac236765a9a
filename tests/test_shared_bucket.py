"""
Several registries, one bucket: what one does, the others see at once,
with no state of their own to share.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

import txregistry
from tests.conftest import configFor
from tests.helpers import Client, RegistryProcess, SyncClient, serving, sha256
from tests.proxy import proxyRegistry, upstreamRegistry
from tests.s3server import SeaweedFS
from txregistry.service import registryOf


@pytest_twisted.async_yield_fixture
async def nodes(seaweedfs: SeaweedFS) -> AsyncIterator[list[Client]]:
    """
    Three registries in this process, each with its own registry and
    driver objects, on one root in one bucket: three nodes of a cluster.
    """
    root = f"/shared/{uuid.uuid4()}"
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(serving(configFor(root, seaweedfs))) for _ in range(3)]


@pytest_twisted.ensureDeferred
async def test_push_on_one_pull_from_the_others(nodes: list[Client]) -> None:
    a, b, c = nodes
    layers = [os.urandom(3_000_000), os.urandom(1000)]
    body, digest = await a.pushImage("team/app", "v1", layers)
    for node in (b, c):
        response = await node.request("GET", "/v2/team/app/manifests/v1")
        assert response.body == body
        assert response.header("Docker-Content-Digest") == digest
        for layer in layers:
            assert (await node.request("GET", f"/v2/team/app/blobs/{sha256(layer)}")).body == layer
        assert (await node.request("GET", "/v2/team/app/tags/list")).json()["tags"] == ["v1"]
        assert (await node.request("GET", "/v2/_catalog")).json()["repositories"] == ["team/app"]


@pytest_twisted.ensureDeferred
async def test_delete_on_one_is_seen_by_the_others(nodes: list[Client]) -> None:
    a, b, c = nodes
    _, digest = await a.pushImage("team/app", "v1", [b"layer"])
    await a.pushImage("team/app", "v2", [b"other layer"])
    # C reads the manifest first, so it is in C's cache.
    assert (await c.request("GET", f"/v2/team/app/manifests/{digest}")).code == 200
    assert (await b.request("DELETE", f"/v2/team/app/manifests/{digest}")).code == 202
    assert (await c.request("GET", f"/v2/team/app/manifests/{digest}")).code == 404
    assert (await c.request("GET", "/v2/team/app/manifests/v1")).code == 404
    assert (await c.request("GET", "/v2/team/app/tags/list")).json()["tags"] == ["v2"]


@pytest.mark.parametrize("split", [1_000_000, 6 * 1024 * 1024])
@pytest_twisted.ensureDeferred
async def test_upload_started_on_one_finished_on_another(nodes: list[Client], split: int) -> None:
    a, b, c = nodes
    data = os.urandom(split + 2_500_000)
    started = await a.request("POST", "/v2/team/app/blobs/uploads/")
    location = started.header("Location")
    response = await a.request("PATCH", location, data[:split], {"Content-Range": f"0-{split - 1}"})
    assert response.code == 202
    # B has no hash of what A received: it reads the upload back from S3.
    path = location.split("/v2/", 1)[1]
    status = await b.request("GET", f"/v2/{path}")
    assert status.header("Range") == f"0-{split - 1}"
    done = await b.request("PUT", f"/v2/{path}?digest={sha256(data)}", data[split:])
    assert done.code == 201, done
    assert (await c.request("GET", f"/v2/team/app/blobs/{sha256(data)}")).body == data


@pytest_twisted.ensureDeferred
async def test_wrong_digest_across_nodes_makes_no_blob(nodes: list[Client]) -> None:
    a, b, _ = nodes
    data = os.urandom(2_000_000)
    started = await a.request("POST", "/v2/team/app/blobs/uploads/")
    location = started.header("Location")
    await a.request("PATCH", location, data)
    path = location.split("/v2/", 1)[1]
    claimed = sha256(b"something else")
    response = await b.request("PUT", f"/v2/{path}?digest={claimed}")
    assert (response.code, response.errorCode()) == (400, "DIGEST_INVALID")
    for digest in (claimed, sha256(data)):
        assert (await a.request("HEAD", f"/v2/team/app/blobs/{digest}")).code == 404


@pytest_twisted.ensureDeferred
async def test_s3_requests_per_read(seaweedfs: SeaweedFS) -> None:
    """
    What each read costs in S3 requests once this instance has seen the
    content: always the link that says the repository has it (another
    instance may have deleted it), and no more than the content itself.
    """
    config = configFor(f"/costs/{uuid.uuid4()}", seaweedfs)
    registry = registryOf(config)
    client = registry.driver.client  # type: ignore[attr-defined]
    async with serving(None, txregistry.site(config, registry)) as node:
        layer = os.urandom(100_000)
        _, manifestDigest = await node.pushImage("team/app", "v1", [layer])
        blob = f"/v2/team/app/blobs/{sha256(layer)}"

        async def cost(method: str, path: str) -> int:
            before = sum(client.requests.values())
            response = await node.request(method, path)
            assert response.code == 200
            return sum(client.requests.values()) - before

        assert await cost("HEAD", blob) == 1
        assert await cost("GET", blob) == 2
        assert await cost("GET", "/v2/team/app/manifests/v1") == 2
        assert await cost("GET", f"/v2/team/app/manifests/{manifestDigest}") == 1


@pytest_twisted.ensureDeferred
async def test_blob_reads_redirected_to_presigned_urls(seaweedfs: SeaweedFS) -> None:
    config = configFor(f"/redirect/{uuid.uuid4()}", seaweedfs, redirect=True)
    async with serving(config) as node:
        layer = os.urandom(300_000)
        digest = await node.pushBlob("team/app", layer)
        response = await node.request("GET", f"/v2/team/app/blobs/{digest}")
        assert response.code == 307
        assert response.header("Docker-Content-Digest") == digest
        location = response.header("Location")
        assert location.startswith(seaweedfs.endpoint) and "X-Amz-Signature=" in location
        assert "X-Amz-Expires=1200" in location
        # The presigned URL is all a client needs: S3 checks its signature.
        assert (await node.request("GET", location)).body == layer
        head = await node.request("HEAD", f"/v2/team/app/blobs/{digest}")
        assert (head.code, head.header("Content-Length")) == (200, str(len(layer)))
        missing = await node.request("GET", f"/v2/team/app/blobs/{sha256(b'missing')}")
        assert missing.code == 404


def test_example_s3_config_runs(seaweedfs: SeaweedFS, tmp_path: object) -> None:
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "s3.yml")
    assert txregistry.loadConfig(example, environ={}).warnings == ()
    env = seaweedfs.environment(f"/example/{uuid.uuid4()}")
    process = RegistryProcess(os.path.join(str(tmp_path), "logs"), example, env, overrideRoot=False)
    process.start()
    try:
        client = SyncClient(process.port)
        manifest, digest, blobs = client.pushImage("team/app", "v1", [os.urandom(1_000_000)])
        assert client.request("GET", "/v2/team/app/manifests/v1").body == manifest
        assert client.request("GET", f"/v2/team/app/blobs/{blobs[1]}").status == 200
    finally:
        process.stop()


@pytest_twisted.ensureDeferred
async def test_a_push_on_a_mirror_is_pulled_at_once_from_the_others(
    seaweedfs: SeaweedFS, tmp_path: object
) -> None:
    root = f"/shared/{uuid.uuid4()}"
    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(upstreamRegistry(os.path.join(str(tmp_path), "upstream")))
        cached, _ = await upstream.client.pushImage("team/app", "v1", [b"the upstream's"])
        a, b, c = [
            await stack.enter_async_context(
                proxyRegistry(root, upstream.url, "  allowpush: true\n", s3=seaweedfs)
            )
            for _ in range(3)
        ]
        assert (await a.client.request("GET", "/v2/team/app/manifests/v1")).body == cached
        await a.cache.settled()
        upstream.counting.seen.clear()

        layers = [os.urandom(100_000), os.urandom(1000)]
        body, digest = await a.client.pushImage("mine/app", "v1", layers)
        for node in (b, c):
            response = await node.client.request("GET", "/v2/mine/app/manifests/v1")
            assert (response.code, response.body) == (200, body)
            for layer in layers:
                assert (await node.client.request("GET", f"/v2/mine/app/blobs/{sha256(layer)}")).body == layer
            assert (await node.client.request("GET", "/v2/mine/app/tags/list")).json()["tags"] == ["v1"]
        # Ours on every node: B pushes on, and C deletes.
        await b.client.pushImage("mine/app", "v2", [b"more"])
        assert (await c.client.request("DELETE", f"/v2/mine/app/manifests/{digest}")).code == 202
        assert (await a.client.request("GET", "/v2/mine/app/tags/list")).json()["tags"] == ["v2"]
        # Two nodes' first pushes to one repository, at once: both land.
        pushes = [
            node.client.pushImage("race/app", tag, [tag.encode()]) for node, tag in ((b, "b"), (c, "c"))
        ]
        await gatherResults([Deferred.fromCoroutine(push) for push in pushes])
        assert (await a.client.request("GET", "/v2/race/app/tags/list")).json()["tags"] == ["b", "c"]
        assert sum(upstream.counting.seen.values()) == 0

        # What A cached is the upstream's on every node.
        response = await c.client.request("POST", "/v2/team/app/blobs/uploads/")
        assert (response.code, response.errorCode()) == (405, "UNSUPPORTED")
        response = await b.client.request("GET", "/v2/_catalog")
        assert response.json()["repositories"] == ["mine/app", "race/app", "team/app"]
