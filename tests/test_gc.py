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

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

import txregistry
from tests.helpers import OCI_MANIFEST, Client, ReferenceRegistry, SyncClient, serving, sha256
from tests.s3server import SeaweedFS
from txregistry.reference import Digest
from txregistry.registry import GarbageCollector
from txregistry.service import registryOf

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


def ociManifest(config: str, configSize: int, layers: list[tuple[str, int]]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": configSize,
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}
                for d, n in layers
            ],
        }
    ).encode()


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
    grace = 2.0
    config = gcConfig(root, grace="2s")
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
