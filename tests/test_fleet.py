"""
Instances of a cache sharing one store fetch each blob from upstream once
for the whole fleet: the first to miss it takes a lease in the store, the
others stream the download from it while it arrives, and fetch it
themselves when it is gone.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

import txregistry
from tests.conftest import configFor
from tests.helpers import Client, RegistryProcess, sha256
from tests.proxy import Counting, Upstream, listen
from tests.s3server import SeaweedFS
from tests.test_drivers import driver  # noqa: F401 (a fixture)
from txregistry.storage import IStorageDriver


@pytest_twisted.ensureDeferred
async def test_exclusive_create(driver: IStorageDriver) -> None:  # noqa: F811
    path = "/a/lease"
    assert await driver.createExclusive(path, b"first")
    assert not await driver.createExclusive(path, b"second")
    assert await driver.getContent(path) == b"first"
    await driver.delete(path)
    # Of many at once, exactly one.
    results = await DeferredList([driver.createExclusive(path, b"%d" % i) for i in range(8)])
    won = [i for i, (ok, created) in enumerate(results) if ok and created]
    assert len(won) == 1
    assert await driver.getContent(path) == b"%d" % won[0]
    # Nothing else beside it (no temporaries left).
    assert await driver.list("/a") == [path]


class SlowBlobs(Resource):
    """
    The upstream's edge: blob GETs for C{blobs} answered here, C{rate}
    bytes a second, counting what was sent; everything else goes to the
    real registry behind.
    """

    def __init__(self, inner: Any, blobs: dict[str, bytes], rate: int) -> None:
        super().__init__()
        self.inner = inner
        self.blobs = blobs
        self.rate = rate
        self.sent: Counter[str] = Counter()

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        digest = request.path.decode().rpartition("/blobs/")[2]
        if request.method == b"GET" and digest in self.blobs:
            return _Trickle(self, digest)
        return self.inner.getChildWithDefault(path, request)


class _Trickle(Resource):
    isLeaf = True
    chunk = 64 * 1024

    def __init__(self, edge: SlowBlobs, digest: str) -> None:
        super().__init__()
        self.edge = edge
        self.digest = digest

    def render(self, request: Request) -> Any:
        data = self.edge.blobs[self.digest]
        request.setHeader("Content-Type", "application/octet-stream")
        request.setHeader("Content-Length", str(len(data)))
        gone: list[object] = []
        request.notifyFinish().addErrback(gone.append)
        interval = self.chunk / self.edge.rate

        def send(offset: int) -> None:
            if gone:
                return
            piece = data[offset : offset + self.chunk]
            request.write(piece)
            self.edge.sent[self.digest] += len(piece)
            if offset + self.chunk < len(data):
                reactor.callLater(interval, send, offset + self.chunk)
            else:
                request.finish()

        send(0)
        return NOT_DONE_YET


@asynccontextmanager
async def slowUpstream(root: str, rate: int) -> AsyncIterator[tuple[Upstream, SlowBlobs, Client]]:
    """
    A counting upstream registry whose blobs trickle out at C{rate}; a
    client that pushes to it.
    """
    site = txregistry.site(configFor(root))
    edge = SlowBlobs(site.resource, {}, rate)
    counting = Counting(edge)
    site.resource = counting
    upstream = await listen(site)
    upstream.counting = counting  # type: ignore[attr-defined]
    try:
        yield upstream, edge, upstream.client  # type: ignore[misc]
    finally:
        await upstream.stop()


async def pushImage(client: Client, edge: SlowBlobs, layers: list[bytes]) -> list[str]:
    await client.pushImage("team/app", "v1", layers)
    digests = [sha256(layer) for layer in layers]
    edge.blobs.update(zip(digests, layers, strict=True))
    return digests


SECRET = "fleet-secret-0123456789"


def fleetInstance(
    tmp: str, storage: list[str], upstream: str, lease: str = "2m", secret: str = SECRET
) -> RegistryProcess:
    """
    A cache of C{upstream} in a process of its own, in a fleet on
    C{storage} (the lines of a storage driver's section).
    """
    process = RegistryProcess(os.path.join(tmp, "instance"), overrideRoot=False)
    path = os.path.join(tmp, f"fleet-{process.port}.yml")
    lines = [
        "version: 0.1",
        "log:",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        *(f"  {line}" for line in storage),
        "http:",
        f"  secret: {secret}",
        "proxy:",
        f"  remoteurl: {upstream}",
        "  timeout: 5s",
        "  fleet:",
        f"    advertise: http://127.0.0.1:{process.port}",
        f"    lease: {lease}",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    process.config = path
    return process


@contextmanager
def fleet(tmp: str, storage: list[str], upstream: str, count: int = 3) -> Iterator[list[RegistryProcess]]:
    processes = [fleetInstance(tmp, storage, upstream) for _ in range(count)]
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()


async def pull(client: Client, digests: list[str]) -> list[bytes]:
    manifest = await client.request(
        "GET", "/v2/team/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert manifest.code == 200, manifest
    bodies = await gatherResults(
        [Deferred.fromCoroutine(client.request("GET", f"/v2/team/app/blobs/{d}")) for d in digests]
    )
    assert [b.code for b in bodies] == [200] * len(digests), bodies
    return [b.body for b in bodies]


def s3Storage(seaweedfs: SeaweedFS) -> list[str]:
    return ["s3:", *(f"  {line}" for line in seaweedfs.configLines(f"/fleet/{uuid.uuid4()}"))]


def filesystemStorage(tmp: str) -> list[str]:
    return ["filesystem:", f"  rootdirectory: {os.path.join(tmp, 'shared')}"]


@pytest.mark.parametrize("store", ["s3", "filesystem"])
@pytest_twisted.ensureDeferred
async def test_one_upstream_fetch_per_blob_for_the_fleet(
    store: str, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    tmp = str(tmp_path)
    storage = s3Storage(request.getfixturevalue("seaweedfs")) if store == "s3" else filesystemStorage(tmp)
    layers = [os.urandom(3 * 1024 * 1024 + i) for i in range(3)]
    async with slowUpstream(os.path.join(tmp, "upstream"), 8 * 1024 * 1024) as (upstream, edge, pusher):
        digests = await pushImage(pusher, edge, layers)
        with fleet(tmp, storage, upstream.url) as processes:
            clients = [Client(process.base) for process in processes]
            try:
                # Five pulls at once on each of the three instances.
                pulls = [pull(client, digests) for client in clients for _ in range(5)]
                results = await gatherResults([Deferred.fromCoroutine(p) for p in pulls])
            finally:
                for client in clients:
                    await client.close()
        for bodies in results:
            assert [sha256(body) for body in bodies] == digests
        fetched = {d: upstream.counting.count("GET", f"/v2/team/app/blobs/{d}") for d in digests}
        assert fetched == {d: 1 for d in digests}
