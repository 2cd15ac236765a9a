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
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

import txregistry
from tests.conftest import configFor
from tests.helpers import Client, RegistryProcess, serving, sha256
from tests.proxy import Counting, Upstream, listen, upstreamRegistry
from tests.s3server import SeaweedFS
from tests.test_startup import SERVE, run
from txregistry.reference import Digest
from txregistry.service import registryOf
from txregistry.signing import authorization
from txregistry.storage import layout


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


async def pull(
    client: Client, digests: list[str], ready: Deferred[None], arrived: list[Client]
) -> list[bytes]:
    """
    Pull the image: its manifest, then (said in C{arrived}) once C{ready}
    fires, its blobs.
    """
    manifest = await client.request(
        "GET", "/v2/team/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert manifest.code == 200, manifest
    arrived.append(client)
    await ready
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
                # Five pulls at once on each of the three instances, whose
                # blobs are all asked for at once.
                ready: list[Deferred[None]] = [Deferred() for _ in range(15)]
                arrived: list[Client] = []
                pulls = [pull(clients[i // 5], digests, ready[i], arrived) for i in range(15)]
                pulling = gatherResults([Deferred.fromCoroutine(p) for p in pulls])
                await until(lambda: len(arrived) == len(pulls))
                for d in ready:
                    d.callback(None)
                results = await pulling
            finally:
                for client in clients:
                    await client.close()
        for bodies in results:
            assert [sha256(body) for body in bodies] == digests
        fetched = {d: upstream.counting.count("GET", f"/v2/team/app/blobs/{d}") for d in digests}
        warnings = [line for p in processes for line in p.output().splitlines() if "#warn" in line]
        assert fetched == {d: 1 for d in digests}, warnings


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = reactor.seconds() + timeout
    while not condition():
        assert reactor.seconds() < deadline, "timed out"
        await deferLater(reactor, 0.05)


@pytest_twisted.ensureDeferred
async def test_holder_killed_mid_download(tmp_path: object, seaweedfs: SeaweedFS) -> None:
    tmp = str(tmp_path)
    root = f"/fleet/{uuid.uuid4()}"
    storage = ["s3:", *(f"  {line}" for line in seaweedfs.configLines(root))]
    layer = os.urandom(6 * 1024 * 1024)
    digest = sha256(layer)
    path = f"/v2/team/app/blobs/{digest}"
    async with slowUpstream(os.path.join(tmp, "upstream"), 2 * 1024 * 1024) as (upstream, edge, pusher):
        await pushImage(pusher, edge, [layer])
        with fleet(tmp, storage, upstream.url) as (a, b, c):
            clients = [Client(process.base) for process in (a, b, c)]
            try:
                holding = Deferred.fromCoroutine(clients[0].request("GET", path))
                holding.addErrback(lambda _: None)
                await until(lambda: edge.sent[digest] > 0)
                others = [Deferred.fromCoroutine(client.request("GET", path)) for client in clients[1:] * 2]
                await until(lambda: edge.sent[digest] >= len(layer) // 3)
                # B and C stream from A: nothing else asked upstream.
                assert upstream.counting.count("GET", path) == 1
                a.kill()
                bodies = await gatherResults(others)
                assert [(r.code, sha256(r.body)) for r in bodies] == [(200, digest)] * 4
                # From the upstream, once or twice (B and C each on their own).
                assert upstream.counting.count("GET", path) in (2, 3)
            finally:
                for client in clients:
                    await client.close()
    # What is in the store is whole.
    registry = registryOf(configFor(root, seaweedfs))
    try:
        assert await registry.storedSize(Digest.parse(digest)) == len(layer)
        assert sha256(await registry.driver.getContent(layout.blobData(Digest.parse(digest)))) == digest
    finally:
        await registry.driver.close()


def fleetConfig(
    upstream: str, secret: str | None = SECRET, advertise: str | None = "http://127.0.0.1:1"
) -> str:
    lines = ["proxy:", f"  remoteurl: {upstream}", "  fleet:"]
    if advertise is not None:
        lines.append(f"    advertise: {advertise}")
    lines.append("    lease: 1m")
    if secret is not None:
        lines += ["http:", f"  secret: {secret}"]
    return "\n".join(lines) + "\n"


@pytest_twisted.ensureDeferred
async def test_the_fleet_endpoint_needs_a_fresh_signature_and_serves_no_store(tmp_path: object) -> None:
    async with upstreamRegistry(os.path.join(str(tmp_path), "upstream")) as upstream:
        layer = os.urandom(100_000)
        digest = await upstream.client.pushBlob("team/app", layer)
        async with serving(configFor(None, extra=fleetConfig(upstream.url))) as instance:
            # Now in its store.
            assert (await instance.request("GET", f"/v2/team/app/blobs/{digest}")).body == layer
            path = f"/_txregistry/fleet/blobs/{digest}"
            now = reactor.seconds()
            cases = {
                None: 401,
                "Basic dXNlcjpwYXNz": 401,
                "Fleet": 403,
                f"Fleet {int(now)}:{'0' * 64}": 403,
                authorization(b"another-secret-0123456789", digest, now): 403,
                authorization(SECRET.encode(), digest, now - 120): 403,
                authorization(SECRET.encode(), digest, now + 120): 403,
                authorization(SECRET.encode(), sha256(b"other"), now): 403,
                # Good: but nothing is being fetched, and the store is not served.
                authorization(SECRET.encode(), digest, now): 404,
            }
            for header, status in cases.items():
                response = await instance.request(
                    "GET", path, headers={"Authorization": header} if header else {}
                )
                assert (header, response.code) == (header, status)
                assert layer not in response.body
                assert response.json()["errors"][0]["code"] in ("UNAUTHORIZED", "DENIED", "BLOB_UNKNOWN")
            bad = "sha256:nothex"
            response = await instance.request(
                "GET",
                f"/_txregistry/fleet/blobs/{bad}",
                headers={"Authorization": authorization(SECRET.encode(), bad, now)},
            )
            assert response.code == 404
            assert (await instance.request("GET", "/_txregistry/other")).code == 404


@pytest.mark.parametrize(
    ("secret", "advertise", "line"),
    [
        (None, "http://127.0.0.1:1", "http.secret: the instances of proxy.fleet sign"),
        ("short", "http://127.0.0.1:1", "http.secret: must be at least 16 characters"),
        (SECRET, None, "proxy.fleet.advertise: missing"),
        (SECRET, "127.0.0.1:5000", "proxy.fleet.advertise: expected a URL"),
    ],
)
def test_a_fleet_that_cannot_be_stops_start_up(
    tmp_path: object, secret: str | None, advertise: str | None, line: str
) -> None:
    path = os.path.join(str(tmp_path), "config.yml")
    with open(path, "w") as f:
        f.write(
            "version: 0.1\nstorage:\n  inmemory:\n" + fleetConfig("http://127.0.0.1:1", secret, advertise)
        )
    result = run([*SERVE, path], cwd=str(tmp_path))
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert line in result.stderr, result.stderr
