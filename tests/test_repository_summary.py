"""
Each repository's last push and size on the web UI's repositories page
(L{txregistry.registry.IRepository.summary}), over HTTP against registries
on loopback: recorded by every push, the size that of the distinct blobs
of the image pushed, read without changing the store, the same from
every instance on one bucket, and a store registry:2 wrote or reads still
its own.
"""

from __future__ import annotations

import html
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime, timezone
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.conftest import configFor
from tests.helpers import Client, ReferenceRegistry, SyncClient, ociManifest, serving, sha256
from tests.proxy import proxyConfig, proxyRegistry, upstreamRegistry
from tests.s3server import SeaweedFS
from txregistry.service import registryOf
from txregistry.storage import IStorageDriver, PathNotFound

UI = "ui:\n  enabled: true\n"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
NONE = "\u2014"


def storeRoot(driverName: str, tmp_path: Any) -> str | None:
    if driverName == "s3":
        return f"/tests/{uuid.uuid4()}"
    return os.path.join(str(tmp_path), "store") if driverName == "filesystem" else None


def s3For(driverName: str, request: pytest.FixtureRequest) -> SeaweedFS | None:
    return request.getfixturevalue("seaweedfs") if driverName == "s3" else None


@pytest_twisted.async_yield_fixture
async def ui(driverName: str, tmp_path: Any, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    config = configFor(storeRoot(driverName, tmp_path), s3For(driverName, request), extra=UI)
    async with serving(config) as client:
        yield client


async def pushImage(client: Client, name: str, tag: str, blobs: list[bytes]) -> None:
    """
    An OCI image of the config C{blobs[0]} and the layers after it.
    """
    digests = [await client.pushBlob(name, blob) for blob in blobs]
    manifest = ociManifest(
        digests[0], len(blobs[0]), [(d, len(b)) for d, b in zip(digests[1:], blobs[1:], strict=True)]
    )
    response = await client.pushManifest(name, tag, manifest)
    assert response.code == 201, response


def cellText(cell: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()


async def repositories(client: Client) -> tuple[list[str], dict[str, list[str]]]:
    """
    The repositories page's headings (of its first table) and each row's
    cells, by repository.
    """
    response = await client.request("GET", "/ui/")
    assert response.code == 200, response
    body = response.body.decode()
    headings = [cellText(h) for h in re.findall(r"<th>(.*?)</th>", body.split("</thead>")[0])]
    rows = {
        html.unescape(name): [cellText(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for name, row in re.findall(r'<tr data-name="([^"]+)">(.*?)</tr>', body)
    }
    return headings, rows


def shownTime(cell: str) -> float:
    return datetime.strptime(cell, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


async def later() -> None:
    # The page shows times to the second, and S3 keeps no finer one.
    await deferLater(reactor, 1.1, lambda: None)


@pytest_twisted.ensureDeferred
async def test_last_push_and_size(ui: Client) -> None:
    config1, shared, only1 = b'{"os": "linux", "n": 1}', b"s" * 300, b"a" * 100
    before = time.time()
    await pushImage(ui, "app", "v1", [config1, shared, only1])
    headings, rows = await repositories(ui)
    assert headings == ["Repository", "Tags", "Last push (UTC)", "Size"]
    name, count, pushed, size = rows["app"]
    assert (name, count) == ("app", "1")
    # The store's clock, here this machine's.
    assert int(before) - 1 <= shownTime(pushed) <= time.time() + 1
    assert size == f"{len(config1) + len(shared) + len(only1)} B"

    await later()
    # A second image, which names one layer twice: that layer counts once.
    config2, only2 = b'{"os": "linux", "n": 2}', b"b" * 50
    await pushImage(ui, "app", "v2", [config2, shared, only2, shared])
    _, rows = await repositories(ui)
    _, count, pushedAgain, size = rows["app"]
    assert count == "2"
    assert shownTime(pushedAgain) > shownTime(pushed)
    assert size == f"{len(config2) + len(shared) + len(only2)} B"


@pytest_twisted.ensureDeferred
async def test_an_index_is_the_size_of_its_platforms(ui: Client) -> None:
    # Pushed before: what else the repository holds does not count.
    await pushImage(ui, "app", "old", [b"{}", b"o" * 7])
    shared = b"s" * 300
    platforms = []
    for config, own in (
        (b'{"architecture": "amd64"}', b"a" * 100),
        (b'{"architecture": "arm64"}', b"r" * 40),
    ):
        digests = [await ui.pushBlob("app", blob) for blob in (config, shared, own)]
        manifest = ociManifest(digests[0], len(config), [(digests[1], len(shared)), (digests[2], len(own))])
        response = await ui.pushManifest("app", sha256(manifest), manifest)
        assert response.code == 201, response
        platforms.append({"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest)})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms}
    assert (await ui.pushManifest("app", "v1", index, OCI_INDEX)).code == 201
    # Each platform's config and layers, the shared layer once.
    expected = 25 + 25 + len(shared) + 100 + 40
    assert (await repositories(ui))[1]["app"][3] == f"{expected} B"


async def snapshot(driver: IStorageDriver, path: str = "/") -> dict[str, tuple[int, float, bytes]]:
    """
    Every file below C{path}: its size, modification time and content.
    """
    found: dict[str, tuple[int, float, bytes]] = {}
    try:
        children = await driver.list(path)
    except PathNotFound:
        return found
    for child in children:
        try:
            info = await driver.stat(child)
        except PathNotFound:
            # SeaweedFS lists a directory just emptied, with nothing in it.
            continue
        if info.isDirectory:
            found.update(await snapshot(driver, child))
        else:
            found[child] = (info.size, info.modified, await driver.getContent(child))
    return found


@pytest.mark.parametrize("driverName", ["filesystem", "s3"])
@pytest_twisted.ensureDeferred
async def test_a_page_view_changes_nothing(
    driverName: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    config = configFor(storeRoot(driverName, tmp_path), s3For(driverName, request), extra=UI)
    store = registryOf(config).driver
    try:
        async with serving(config) as client:
            await pushImage(client, "app", "v1", [b"{}", b"layer"])
            await pushImage(client, "tools/lint", "v1", [b'{"a": 1}', b"lint"])
            before = await snapshot(store)
            await later()
            _, rows = await repositories(client)
            assert (await client.request("HEAD", "/ui/")).code == 200
            assert rows["app"][3] == "7 B" and rows["tools/lint"][3] == "12 B"
            assert await snapshot(store) == before
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_instances_on_one_bucket_agree(seaweedfs: SeaweedFS) -> None:
    root = f"/shared/{uuid.uuid4()}"
    async with AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(serving(configFor(root, seaweedfs, extra=UI))) for _ in "ab"]
        await pushImage(nodes[0], "app", "v1", [b"{}", b"x" * 10])
        first = [(await repositories(node))[1]["app"] for node in nodes]
        assert first[0] == first[1] and first[0][3] == "12 B"
        await later()
        await pushImage(nodes[1], "app", "v2", [b'{"b": 2}', b"x" * 10, b"y" * 5])
        second = [(await repositories(node))[1]["app"] for node in nodes]
        assert second[0] == second[1] and second[0][3] == "23 B"
        assert shownTime(second[0][2]) > shownTime(first[0][2])


@pytest.mark.skipif(ReferenceRegistry.binary is None, reason="the reference registry is not installed")
@pytest_twisted.ensureDeferred
async def test_a_store_shared_with_registry_2(tmp_path: Any) -> None:
    root = os.path.join(str(tmp_path), "store")
    reference = ReferenceRegistry(root)
    reference.start()
    try:
        SyncClient(reference.port).pushImage("theirs/app", "v1", [b"theirs"])
    finally:
        reference.stop()
    async with serving(configFor(root, extra=UI)) as client:
        await pushImage(client, "ours", "v1", [b"{}", b"ours"])
        await pushImage(client, "ours/nested", "v1", [b"{}", b"nested"])
        _, rows = await repositories(client)
    # Pushed by registry:2: no record, and nothing made up.
    assert rows["theirs/app"][1:] == ["1", NONE, NONE]
    assert rows["ours"][3] == "6 B" and rows["ours"][2] != NONE
    # Our record is nothing registry:2 trips over: a repository below
    # one that has it is still in its catalog.
    reference = ReferenceRegistry(root)
    reference.start()
    try:
        catalog = SyncClient(reference.port).request("GET", "/v2/_catalog")
    finally:
        reference.stop()
    assert catalog.status == 200
    assert catalog.body == b'{"repositories":["ours","ours/nested","theirs/app"]}\n'


@pytest_twisted.ensureDeferred
async def test_cached_and_own_repositories_of_a_cache(tmp_path: Any) -> None:
    async with upstreamRegistry(str(tmp_path / "upstream")) as upstream:
        await pushImage(upstream.client, "library/app", "v1", [b"{}", b"x" * 5000])
        config = proxyConfig(upstream.url, "  allowpush: true\n") + UI
        async with proxyRegistry(str(tmp_path / "proxy"), upstream.url, config=config) as proxy:
            client = proxy.client
            manifest = await client.request("GET", "/v2/library/app/manifests/v1")
            assert manifest.code == 200
            await proxy.cache.settled()
            await pushImage(client, "mine/tool", "v1", [b"{}", b"mine"])
            _, rows = await repositories(client)
    # Fetching from upstream is no push; its tag cached counts.
    assert rows["library/app"][1:] == ["1", upstream.url, NONE, NONE]
    assert rows["mine/tool"][1] == "1" and rows["mine/tool"][2] != NONE
    assert rows["mine/tool"][3] == "6 B"


@pytest_twisted.ensureDeferred
async def test_a_record_storage_cannot_read_makes_the_page_unavailable(tmp_path: Any) -> None:
    """
    Storage failing on one row's record answers the page 503, as storage
    trouble does anywhere, not 500.
    """
    root = os.path.join(str(tmp_path), "store")
    async with serving(configFor(root, extra=UI)) as client:
        for name in ("app", "other"):
            await pushImage(client, name, "v1", [b"{}", name.encode()])
        record = os.path.join(root, "docker/registry/v2/repositories/app/_summary/lastpush")
        os.remove(record)
        os.mkdir(record)
        response = await client.request("GET", "/ui/")
    assert response.code == 503, response
