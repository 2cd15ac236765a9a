"""
Garbage collection: registry:2's mark and sweep offline, and ours online,
while pushes go on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock, deferLater
from zope.interface import directlyProvides, providedBy

import txregistry
from tests.helpers import OCI_MANIFEST, Client, ReferenceRegistry, SyncClient, ociManifest, serving, sha256
from tests.s3server import SeaweedFS
from txregistry.reference import Digest
from txregistry.registry import CollectionService, GarbageCollector, Registry, UseRecord
from txregistry.registry.collection import CONFIRM_SECONDS, LEASE_SECONDS
from txregistry.registry.leases import Leases
from txregistry.service import registryOf
from txregistry.storage import layout
from txregistry.storage.memory import MemoryDriver

INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def storedSet(root: str) -> tuple[set[str], set[str]]:
    """
    The blobs in a filesystem store, and its manifest revisions as
    C{name@digest}.
    """
    blobs, revisions = set(), set()
    v2 = os.path.join(root, "docker/registry/v2")
    for path, _, files in os.walk(os.path.join(v2, "blobs")):
        if "data" in files:
            blobs.add(f"sha256:{os.path.basename(path)}")
    for path, _, files in os.walk(os.path.join(v2, "repositories")):
        if "link" in files and "/_manifests/revisions/" in path:
            name = path.split("/repositories/", 1)[1].split("/_manifests/", 1)[0]
            revisions.add(f"{name}@sha256:{os.path.basename(path)}")
    return blobs, revisions


def pushIndex(client: SyncClient, name: str, tag: str, children: list[bytes]) -> str:
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(c), "size": len(c)} for c in children],
        }
    ).encode()
    response = client.request("PUT", f"/v2/{name}/manifests/{tag}", index, {"Content-Type": INDEX})
    assert response.status == 201, response
    return sha256(index)


@pytest.mark.skipif(ReferenceRegistry.binary is None, reason="the reference registry is not installed")
@pytest.mark.parametrize("untagged", [False, True])
def test_same_kept_set_as_the_reference(tmp_path: object, untagged: bool) -> None:
    """
    On a store the reference registry wrote, our offline collection keeps
    what its C{garbage-collect} keeps, except (with C{--delete-untagged})
    the untagged manifests of a tagged index and their layers: registry:2
    2.8 deletes those, so that the index no longer pulls whole, and we keep
    them.
    """
    root = os.path.join(str(tmp_path), "store")
    reference = ReferenceRegistry(root)
    reference.start()
    try:
        client = SyncClient(reference.port)
        shared = os.urandom(3000)
        client.pushImage("app", "v1", [shared, os.urandom(2000)])
        # Retagged: the first v2 is untagged, its own layer referenced by it alone.
        client.pushImage("app", "v2", [shared, os.urandom(2000)])
        client.pushImage("app", "v2", [shared, os.urandom(2000)])
        # Deleted: its layers are garbage.
        _, gone, _ = client.pushImage("other", "old", [os.urandom(2000)])
        assert client.request("DELETE", f"/v2/other/manifests/{gone}").status == 202
        # An index whose children are pushed by digest alone.
        children = []
        for _ in range(2):
            manifest, digest, _ = client.pushImage("multi", "tmp", [os.urandom(1500)])
            children.append(manifest)
        pushIndex(client, "multi", "tmp", children)
        # Only blobs, no manifest.
        client.pushBlob("app", os.urandom(1000))
    finally:
        reference.stop()
    theirs, ours = f"{root}-theirs", f"{root}-ours"
    shutil.copytree(root, theirs, symlinks=True)
    shutil.copytree(root, ours, symlinks=True)
    flags = ["--delete-untagged"] if untagged else []
    theirConfig = ReferenceRegistry(theirs).writeConfig()
    subprocess.run(
        [ReferenceRegistry.binary, "garbage-collect", *flags, theirConfig],
        check=True,
        capture_output=True,
    )
    ourRun = subprocess.run(
        [sys.executable, "-m", "txregistry.cli", "garbage-collect", "--root", ours, *flags, theirConfig],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert "blobs marked" in ourRun.stdout
    assert "blob eligible for deletion: " in ourRun.stdout
    keptByThem, keptByUs = storedSet(theirs), storedSet(ours)
    before = storedSet(root)
    assert keptByUs[0] < before[0]
    if not untagged:
        assert keptByUs[0] - keptByThem[0] == set(), ourRun.stdout
        assert keptByThem[0] - keptByUs[0] == set(), ourRun.stdout
        assert keptByUs == keptByThem
        return
    childDigests = {sha256(c) for c in children}
    childLayers = {d["digest"] for c in children for d in json.loads(c)["layers"]}
    childConfigs = {json.loads(c)["config"]["digest"] for c in children}
    # Theirs: the children's revisions and their layers gone; ours kept.
    assert keptByUs[0] - keptByThem[0] == childLayers | (childConfigs - keptByThem[0])
    assert keptByUs[1] - keptByThem[1] == {f"multi@{d}" for d in childDigests}
    assert keptByThem[0] <= keptByUs[0]
    assert keptByThem[1] <= keptByUs[1]


def gcConfig(root: str, s3: SeaweedFS | None = None, grace: str = "2s") -> txregistry.Config:
    """
    A configuration with online garbage collection, on a filesystem at
    C{root}, or below C{root} in C{s3}'s bucket.
    """
    driver = (
        ["s3:", *(f"  {line}" for line in s3.configLines(root))]
        if s3
        else [
            "filesystem:",
            f"  rootdirectory: {root}",
        ]
    )
    lines = [
        "version: 0.1",
        "storage:",
        *(f"  {line}" for line in driver),
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    gc:",
        "      enabled: true",
        "      interval: 1h",
        f"      graceperiod: {grace}",
    ]
    return txregistry.parseConfig("\n".join(lines) + "\n", environ={})


def age(root: str, digest: str, seconds: float = 3600) -> None:
    """
    Make a blob's data (and the record of its use) as old as if written
    C{seconds} ago.
    """
    hex = digest.split(":", 1)[1]
    v2 = os.path.join(root, "docker/registry/v2")
    for path in (
        os.path.join(v2, "blobs/sha256", hex[:2], hex, "data"),
        os.path.join(v2, "_gc/uses/sha256", hex),
    ):
        if os.path.exists(path):
            then = time.time() - seconds
            os.utime(path, (then, then))


@pytest_twisted.ensureDeferred
async def test_a_pulled_blob_is_kept_until_its_use_is_old(tmp_path: object) -> None:
    root = str(tmp_path)
    config = gcConfig(root)
    registry = registryOf(config)
    collector = GarbageCollector(registry, reactor, 2.0)
    async with serving(None, txregistry.site(config, registry)) as client:
        # Pushed long ago, by another instance.
        async with serving(config) as other:
            orphan = await other.pushBlob("a", b"nobody references me")
        age(root, orphan)
        assert (await client.request("HEAD", f"/v2/a/blobs/{orphan}")).code == 200
        sweep = await collector.run()
        assert sweep is not None and sweep.kept == [Digest.parse(orphan)]
        age(root, orphan)
        sweep = await collector.run()
        assert sweep is not None and sweep.blobs == [Digest.parse(orphan)]
        assert (await client.request("HEAD", f"/v2/a/blobs/{orphan}")).code == 404
    assert collector.counters.runs == 2
    assert collector.counters.blobsReclaimed == 1
    assert collector.counters.bytesReclaimed == len(b"nobody references me")


@pytest_twisted.ensureDeferred
async def test_online_collection_loses_nothing_and_reclaims_the_rest(tmp_path: object) -> None:
    """
    Collection runs in a loop while 8 clients push and pull 100 images,
    half of which reuse (by mounting, or by pushing again) old blobs that
    nothing referenced when the loop began: every image pulls back whole,
    and once the grace period is past, every blob nothing references is
    gone.
    """
    root = str(tmp_path)
    # Longer than a push takes from its upload to its manifest, however
    # busy the machine.
    grace = 6.0
    config = gcConfig(root, grace="6s")
    registry = registryOf(config)
    collector = GarbageCollector(registry, reactor, grace)
    async with serving(None, txregistry.site(config, registry)) as client:
        orphans = [os.urandom(500) for _ in range(60)]
        for orphan in orphans:
            age(root, await client.pushBlob("seed", orphan))
        images: dict[str, tuple[bytes, list[bytes]]] = {}
        junk: list[str] = []
        done = False

        async def collectAll() -> int:
            runs = 0
            while not done:
                await collector.run()
                runs += 1
            return runs

        async def pushAndPull(worker: int) -> None:
            for i in range(worker, 100, 8):
                name = f"img/{i}"
                config = json.dumps({"image": i}).encode()
                blobs = [config, os.urandom(800)]
                if i % 2 == 0:
                    blobs.append(orphans[i // 2])
                for blob in blobs[1:]:
                    digest = sha256(blob)
                    mounted = await client.request(
                        "POST", f"/v2/{name}/blobs/uploads/?mount={digest}&from=seed"
                    )
                    if mounted.code != 201:
                        await client.pushBlob(name, blob)
                await client.pushBlob(name, config)
                junk.append(await client.pushBlob(name, os.urandom(300)))
                manifest = ociManifest(sha256(config), len(config), [(sha256(b), len(b)) for b in blobs[1:]])
                response = await client.pushManifest(name, "v1", manifest)
                assert response.code == 201, response
                images[name] = (manifest, blobs)
                await pullWhole(client, name, manifest, blobs)

        collecting = Deferred.fromCoroutine(collectAll())
        await gatherResults([Deferred.fromCoroutine(pushAndPull(w)) for w in range(8)])
        done = True
        assert await collecting > 1
        for name, (manifest, blobs) in images.items():
            await pullWhole(client, name, manifest, blobs)
        # Past the grace period, the rest goes.
        await deferLater(reactor, grace + 1.1)
        sweep = await collector.run()
        assert sweep is not None
        for name, (manifest, blobs) in images.items():
            await pullWhole(client, name, manifest, blobs)
    referenced = {sha256(m) for m, _ in images.values()} | {
        sha256(b) for _, bs in images.values() for b in bs
    }
    assert storedSet(root)[0] == referenced
    assert not set(junk) & storedSet(root)[0]


async def pullWhole(client: Client, name: str, manifest: bytes, blobs: list[bytes]) -> None:
    response = await client.request("GET", f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert response.code == 200, (name, response)
    assert response.body == manifest
    for blob in blobs:
        fetched = await client.request("GET", f"/v2/{name}/blobs/{sha256(blob)}")
        assert fetched.code == 200, (name, sha256(blob))
        assert fetched.body == blob


@pytest.mark.parametrize("where", ["filesystem", "s3"])
@pytest_twisted.ensureDeferred
async def test_instances_on_one_store_never_collect_at_once(
    where: str, tmp_path: object, request: pytest.FixtureRequest
) -> None:
    """
    Two instances on one store (a directory, or a root in one SeaweedFS
    bucket) started together: one collects, the other is told another
    instance is, every time.
    """
    if where == "s3":
        config = gcConfig(f"/gc/{uuid.uuid4()}", request.getfixturevalue("seaweedfs"))
    else:
        config = gcConfig(str(tmp_path))
    registries = [registryOf(config), registryOf(config)]
    try:
        async with serving(None, txregistry.site(config, registries[0])) as client:
            orphan = await client.pushBlob("a", b"garbage")
        # S3 dates objects to the second: the orphan must be older than the
        # mark's start to be swept.
        await deferLater(reactor, 1.1)
        collectors = [GarbageCollector(r, reactor, 0.001) for r in registries]
        for _ in range(3):
            sweeps = await gatherResults([Deferred.fromCoroutine(c.run()) for c in collectors])
            assert sorted(s is None for s in sweeps) == [False, True]
        assert sum(c.counters.runs for c in collectors) == 3
        assert sum(c.counters.blobsReclaimed for c in collectors) == 1
        assert await registries[0].storedSize(Digest.parse(orphan)) is None
    finally:
        for r in registries:
            await r.driver.close()


def test_configuration() -> None:
    gc = gcConfig("/srv/registry", grace="30m").storage.gc
    assert (gc.enabled, gc.interval.total_seconds(), gc.gracePeriod.total_seconds()) == (True, 3600, 1800)
    plain = "version: 0.1\nstorage:\n  inmemory:\n"
    assert not txregistry.parseConfig(plain, environ={}).storage.gc.enabled
    bad = plain + "  maintenance:\n    gc:\n      enabled: true\n      graceperiod: 0s\n"
    with pytest.raises(
        txregistry.ConfigError, match="storage.maintenance.gc.graceperiod: must be more than 0"
    ):
        txregistry.parseConfig(bad, environ={})


# --- races with a sweep, each at a chosen moment of it ---


class Intercepting:
    """
    A store in memory that lets a test act at a chosen moment: after the
    next call of a method on a path, before its answer is given.
    """

    def __init__(self) -> None:
        self._driver = MemoryDriver()
        self.name = self._driver.name
        directlyProvides(self, providedBy(self._driver))
        self.after: dict[tuple[str, str], list[Callable[[], Awaitable[None]]]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._driver, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            hooks = self.after.get((name, args[0] if args else ""))
            if not hooks:
                return method(*args, **kwargs)
            hook = hooks.pop(0)

            async def then() -> Any:
                result = await method(*args, **kwargs)
                await hook()
                return result

            return Deferred.fromCoroutine(then())

        return call


def storeInMemory() -> tuple[Intercepting, Registry, txregistry.Config]:
    driver = Intercepting()
    registry = Registry(driver, deleteEnabled=True, uses=UseRecord(driver, 1))  # type: ignore[arg-type]
    config = txregistry.parseConfig("version: 0.1\nstorage:\n  inmemory: {}\n  delete:\n    enabled: true\n")
    return driver, registry, config


@pytest_twisted.ensureDeferred
async def test_a_blob_pushed_again_after_the_last_look_stays() -> None:
    """
    A push that finishes between the sweep's last look at a blob's use
    and the blob's removal publishes it anew: that copy stays.
    """
    driver, registry, config = storeInMemory()
    async with serving(None, txregistry.site(config, registry)) as client:
        digest = await client.pushBlob("a", b"orphan")
        await deferLater(reactor, 0.05)

        async def pushAgain() -> None:
            await client.pushBlob("b", b"orphan")

        # The last look is the second stat of the blob's use.
        driver.after[("stat", layout.gcUse(Digest.parse(digest)))] = [noop, pushAgain]
        sweep = await GarbageCollector(registry, reactor, 0.001).run()
        assert sweep is not None and sweep.blobs == [Digest.parse(digest)]
        fetched = await client.request("GET", f"/v2/b/blobs/{digest}")
        assert (fetched.code, fetched.body) == (200, b"orphan")


class _Killed(Exception):
    pass


@pytest_twisted.ensureDeferred
async def test_a_run_stopped_midway_puts_blob_and_links_back() -> None:
    """
    A run that stops with a blob set aside (its links removed) leaves the
    next run to put both back, and to decide again.
    """
    driver, registry, config = storeInMemory()
    async with serving(None, txregistry.site(config, registry)) as client:
        digest = await client.pushBlob("a", b"set aside")
        await deferLater(reactor, 0.05)

        async def die() -> None:
            raise _Killed()

        # Stopped once the blob is set aside and its link removed.
        link = layout.layerLink("a", Digest.parse(digest)).rsplit("/", 1)[0]
        driver.after[("delete", link)] = [die]
        with pytest.raises(_Killed):
            await GarbageCollector(registry, reactor, 0.001).run()
        assert (await client.request("GET", f"/v2/a/blobs/{digest}")).code == 404
        # Used meanwhile: the next run keeps it, where it was.
        assert registry.uses is not None
        await registry.uses.use(Digest.parse(digest))
        sweep = await GarbageCollector(registry, reactor, 0.001).run()
        assert sweep is not None and sweep.kept == [Digest.parse(digest)]
        fetched = await client.request("GET", f"/v2/a/blobs/{digest}")
        assert (fetched.code, fetched.body) == (200, b"set aside")


@pytest_twisted.ensureDeferred
async def test_two_taking_over_an_expired_lease_do_not_both_collect() -> None:
    """
    Two instances that both find the lease of a collector that died, and
    each remove it to make their own, are told apart a moment later: one
    collects.
    """
    driver, registry, _ = storeInMemory()
    clock = Clock()
    clock.advance(1000)
    dead = Leases(driver, lambda _: layout.GC_LEASE, "dead", LEASE_SECONDS, Clock())  # type: ignore[arg-type]
    await driver.putContent(layout.GC_LEASE, dead.content("dead"))
    # Both read the expired lease before either removes it.
    met: Deferred[None] = Deferred()

    async def first() -> None:
        await met

    async def second() -> None:
        met.callback(None)

    driver.after[("getContent", layout.GC_LEASE)] = [first, second]
    collectors = [GarbageCollector(registry, clock, 0.001) for _ in range(2)]
    runs = [Deferred.fromCoroutine(c.run()) for c in collectors]
    clock.advance(CONFIRM_SECONDS)
    sweeps = await gatherResults(runs)
    assert sorted(s is None for s in sweeps) == [False, True]


async def noop() -> None:
    pass


@pytest_twisted.ensureDeferred
async def test_a_stopping_service_ends_its_run_at_the_next_step() -> None:
    """
    Stopping the service does not wait for a whole run: the run stops at
    its next step, and lets go of its lease.
    """
    driver, registry, config = storeInMemory()
    async with serving(None, txregistry.site(config, registry)) as client:
        await client.pushBlob("a", b"left")
    said: list[str] = []
    collector = GarbageCollector(registry, reactor, 0.001, report=said.append)
    service = CollectionService(collector, 3600, reactor)
    await service.stopService()
    assert await collector.run() is None
    assert said[-1] == "garbage collection stops: the service is stopping"
    # Let go of: another may take it at once.
    assert await driver.createExclusive(layout.GC_LEASE, b"")


@pytest_twisted.ensureDeferred
async def test_instances_on_one_store_collect_once_an_interval_between_them() -> None:
    """
    An instance started just after another has collected (a rolling
    restart, a fleet on one bucket) does not collect again until the
    interval has passed, by the store's record of the last run.
    """
    _, registry, _ = storeInMemory()
    collectors = [GarbageCollector(registry, reactor, 0.001) for _ in range(2)]
    for collector in collectors:
        service = CollectionService(collector, 3600, reactor)
        service.startService()
        await service.stopService()
    assert [collector.counters.runs for collector in collectors] == [1, 0]
