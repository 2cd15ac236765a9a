"""
Bad input of every kind gets a proper answer: malformed HTTP, storage that
fails under the registry, leftovers of killed processes and manifests built
to exhaust the parser.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.bigblobs import call, startUpload
from tests.conftest import configFor
from tests.helpers import Client, RawResponse, RegistryProcess, SyncClient, serving, sha256
from txregistry.manifest import OCI_MANIFEST
from txregistry.reference import Digest
from txregistry.registry import purgeUploads
from txregistry.service import registryOf
from txregistry.storage import FilesystemDriver, StorageUnavailable, layout


def exchange(port: int, request: bytes) -> bytes:
    """
    Send C{request} as it is and read until the server closes.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def parse(answer: bytes) -> RawResponse:
    """
    One HTTP/1.1 response, which must be whole and framed by Content-Length.
    """
    head, separator, body = answer.partition(b"\r\n\r\n")
    assert separator, answer
    statusLine, *lines = head.decode("latin-1").split("\r\n")
    version, status, _ = statusLine.split(" ", 2)
    assert version == "HTTP/1.1", statusLine
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, value = line.split(":", 1)
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    assert headers.get("content-length") == [str(len(body))], answer
    return RawResponse(int(status), headers, body)


async def send(client: Client, request: bytes) -> RawResponse:
    port = urlsplit(client.base).port
    assert port is not None
    return parse(await deferToThread(exchange, port, request))


async def assertStillServing(client: Client) -> None:
    response = await send(client, b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert response.status == 200


def assertRefused(response: RawResponse, status: int) -> None:
    assert response.status == status, response
    assert response.header("connection") == "close"
    assert response.body.startswith(str(status).encode()), response.body
    assert response.header("location") is None


def upload(host: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /v2/hosts/blobs/uploads/ HTTP/1.1\r\nHost: "
        + host
        + b"\r\n"
        + extra
        + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


@pytest_twisted.ensureDeferred
async def test_invalid_host_is_refused_before_anything_runs(fsRegistry: Client) -> None:
    for host in (b"a b", b"a\x01b", b"a\x7fb", b"a/b", b"user@a", b"a\tb", b"a?b", b"a#b", b"\xc3\xa9"):
        assertRefused(await send(fsRegistry, upload(host)), 400)
    assertRefused(await send(fsRegistry, upload(b"one", b"Host: two\r\n")), 400)
    # A header folded over two lines is one with a space inside.
    assertRefused(await send(fsRegistry, upload(b"a\r\n b")), 400)
    root = fsRegistry.root  # type: ignore[attr-defined]
    assert not os.path.exists(os.path.join(root, "docker", "registry", "v2", "repositories"))
    await assertStillServing(fsRegistry)


@pytest_twisted.ensureDeferred
async def test_valid_hosts_are_used_in_locations(fsRegistry: Client) -> None:
    for host in (b"localhost", b"localhost:5000", b"127.0.0.1:80", b"[::1]:5000", b"my_registry.local"):
        response = await send(fsRegistry, upload(host))
        assert response.status == 202, response
        location = response.header("location")
        assert location is not None and location.startswith(f"http://{host.decode()}/v2/hosts/"), location


@pytest_twisted.ensureDeferred
async def test_invalid_content_length_is_refused(fsRegistry: Client) -> None:
    for length in (str(2**63).encode(), b"9" * 30, b"-1", b"1e3", b"0x10", b"+5", b"\xd9\xa3"):
        request = (
            b"POST /v2/lengths/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
            + length
            + b"\r\nConnection: close\r\n\r\n"
        )
        assertRefused(await send(fsRegistry, request), 400)
    twice = (
        b"POST /v2/lengths/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\nxy"
    )
    assertRefused(await send(fsRegistry, twice), 400)
    root = fsRegistry.root  # type: ignore[attr-defined]
    assert not os.path.exists(os.path.join(root, "docker", "registry", "v2", "repositories"))
    await assertStillServing(fsRegistry)


@pytest_twisted.ensureDeferred
async def test_over_long_header_lines_are_answered(fsRegistry: Client) -> None:
    long = b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"a" * 65536 + b"\r\n\r\n"
    assertRefused(await send(fsRegistry, long), 431)
    many = b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n" + b"".join(
        b"X-Many-%d: %s\r\n" % (i, b"a" * 1000) for i in range(40)
    )
    assertRefused(await send(fsRegistry, many + b"\r\n"), 431)
    await assertStillServing(fsRegistry)


@pytest_twisted.ensureDeferred
async def test_over_long_request_lines_are_answered(fsRegistry: Client) -> None:
    line = b"GET /v2/" + b"a" * 65536 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assertRefused(await send(fsRegistry, line), 414)
    # Also while a request line is still arriving, with no end in sight.
    assertRefused(await send(fsRegistry, b"GET /v2/" + b"a" * 20000), 414)
    await assertStillServing(fsRegistry)


@pytest_twisted.ensureDeferred
async def test_malformed_requests_get_a_whole_answer(fsRegistry: Client) -> None:
    for request in (
        b"NONSENSE\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
    ):
        assertRefused(await send(fsRegistry, request), 400)
    await assertStillServing(fsRegistry)


@contextmanager
def tmpfs(where: str, size: str) -> Iterator[None]:
    """
    A small tmpfs mounted at C{where}: a file system that really fills up
    or really is read-only, not one that pretends to be. Skips the test
    where mounting is not allowed.
    """
    os.makedirs(where)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where]
    mount = subprocess.run(command, capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode(errors='replace').strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", where], check=True)


def assertUnavailable(status: int, body: bytes, root: str) -> None:
    assert status == 503, body
    assert b'"UNAVAILABLE"' in body, body
    # Storage paths, never where the server keeps them.
    assert b"/docker/registry/v2/" in body, body
    assert os.path.dirname(root).encode() not in body, body


@pytest_twisted.ensureDeferred
async def test_full_disk_is_unavailability(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "small")
    with tmpfs(root, "1m"):
        async with serving(configFor(root)) as client:
            started = await client.request("POST", "/v2/full/blobs/uploads/")
            assert started.code == 202
            location = started.header("Location")
            assert location is not None
            full = await client.request("PATCH", location, b"x" * (2 * 1024 * 1024))
            assertUnavailable(full.code, full.body, root)
            assert (await client.request("GET", "/v2/")).code == 200
            # Once the space is given back, pushes work again.
            assert (await client.request("DELETE", location)).code == 204
            await client.pushBlob("full", b"small enough")


@pytest_twisted.ensureDeferred
async def test_read_only_storage_is_unavailability(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "store")
    with tmpfs(root, "16m"):
        async with serving(configFor(root)) as client:
            digest = await client.pushBlob("ro", b"pushed before")
            subprocess.run(["mount", "-o", "remount,ro", root], check=True)
            try:
                refused = await client.request("POST", "/v2/ro/blobs/uploads/")
                assertUnavailable(refused.code, refused.body, root)
                # Reads go on.
                blob = await client.request("GET", f"/v2/ro/blobs/{digest}")
                assert (blob.code, blob.body) == (200, b"pushed before")
            finally:
                subprocess.run(["mount", "-o", "remount,rw", root], check=True)


@pytest_twisted.ensureDeferred
async def test_full_disk_fails_every_writer_call_as_unavailability(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "small")
    with tmpfs(root, "1m"):
        driver = FilesystemDriver(root)
        filling = await driver.writer("/fill/data")
        with pytest.raises(StorageUnavailable, match="^/fill/data: No space left on device$"):
            while True:
                await filling.write(b"x" * 65536)
        # Small writes are buffered: the disk says no when they are flushed.
        for end in ("commit", "close"):
            writer = await driver.writer(f"/{end}/data")
            await writer.write(b"buffered")
            with pytest.raises(StorageUnavailable, match=f"^/{end}/data: No space left on device$"):
                await getattr(writer, end)()
        writer = await driver.writer("/cancel/data")
        await writer.write(b"buffered")
        await writer.cancel()
        assert not os.path.exists(os.path.join(root, "cancel", "data"))
        await filling.cancel()
        await driver.checkHealth()


class SmallFilesRegistry(RegistryProcess):
    """
    A registry that may write no file larger than C{limit} bytes: writes
    past it fail with EFBIG, a failure of the operating system's own, with
    no mount needed.
    """

    limit = 1024 * 1024

    def command(self) -> list[str]:
        python, _, module, *args = super().command()
        assert module == "txregistry.cli"
        wrapper = (
            "import resource, runpy, signal, sys;"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({self.limit}, {self.limit}));"
            "sys.argv[0] = 'txregistry';"
            "runpy.run_module('txregistry.cli', run_name='__main__')"
        )
        return [python, "-c", wrapper, *args]


def test_file_too_large_is_unavailability(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "store")
    registry = SmallFilesRegistry(root)
    registry.start()
    try:
        location = startUpload(registry.port)
        response, body = call(registry.port, "PATCH", location, b"x" * (2 * registry.limit))
        assertUnavailable(response.status, body, root)
        assert call(registry.port, "GET", "/v2/")[0].status == 200
        response, _ = call(registry.port, "DELETE", location)
        assert response.status == 204
        small = b"small enough"
        response, _ = call(registry.port, "POST", f"/v2/big/blobs/uploads/?digest={sha256(small)}", small)
        assert response.status == 201
    finally:
        registry.stop()


def plant(path: str, hoursOld: float) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"half written")
    then = time.time() - hoursOld * 3600
    os.utime(path, (then, then))
    return path


def test_leftover_temporaries_are_purged_at_start(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "store")
    first = RegistryProcess(root)
    first.start()
    try:
        manifest, digest, _ = SyncClient(first.port).pushImage("left/over", "v1", [b"layer"])
    finally:
        first.stop()
    # What putContent leaves when killed between writing and renaming.
    v2 = os.path.join(root, "docker", "registry", "v2")
    tag = os.path.join(v2, "repositories", "left", "over", "_manifests", "tags", "v1", "current")
    old = [
        plant(os.path.join(tag, f"link.{uuid.uuid4().hex}.tmp"), 3),
        plant(os.path.join(v2, "blobs", "sha256", "ab", "ab" * 32, f"data.{uuid.uuid4().hex}.tmp"), 3),
    ]
    fresh = plant(os.path.join(tag, f"link.{uuid.uuid4().hex}.tmp"), 0.5)
    notOurs = plant(os.path.join(v2, "notes.tmp"), 3)
    config = os.path.join(str(tmp_path), "config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /ignored\n"
            "  maintenance:\n    uploadpurging:\n      age: 1m\n      interval: 1h\n"
        )
    second = RegistryProcess(root, config)
    second.start()
    try:
        deadline = time.monotonic() + 10
        while any(map(os.path.exists, old)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(os.path.exists, old))
        # Younger than an hour, whatever the purge age: a writer may own it.
        assert os.path.exists(fresh)
        assert os.path.exists(notOurs)
        response = SyncClient(second.port).request(
            "GET", "/v2/left/over/manifests/v1", headers={"Accept": OCI_MANIFEST}
        )
        assert (response.status, response.body) == (200, manifest)
        assert response.headers["Docker-Content-Digest"] == digest
        assert "purged leftover temporary /docker/registry/v2/repositories/left/over/" in second.output()
    finally:
        second.stop()


@pytest_twisted.ensureDeferred
async def test_leftover_temporaries_older_than_the_purge_age(fsRegistry: Client, tmp_path: object) -> None:
    root = fsRegistry.root  # type: ignore[attr-defined]
    registry = registryOf(configFor(root))
    await fsRegistry.pushBlob("left", b"kept")
    directory = os.path.join(root, "docker", "registry", "v2", "repositories", "left")
    day, week = (
        plant(os.path.join(directory, f"link.{uuid.uuid4().hex}.tmp"), hours) for hours in (25, 8 * 24)
    )
    dayPath, weekPath = ("/" + os.path.relpath(path, root) for path in (day, week))
    assert await purgeUploads(registry, timedelta(days=7), dryRun=True) == [weekPath]
    assert os.path.exists(week)
    assert await purgeUploads(registry, timedelta(days=7)) == [weekPath]
    assert not os.path.exists(week)
    assert await purgeUploads(registry, timedelta(days=1)) == [dayPath]
    assert not os.path.exists(day)
    assert await purgeUploads(registry, timedelta(days=1)) == []
    assert (await fsRegistry.request("GET", f"/v2/left/blobs/{sha256(b'kept')}")).body == b"kept"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def deepManifests() -> list[bytes]:
    """
    Manifests nested far deeper than any is: in a field of theirs, in a
    field of no meaning, and all the way down.
    """
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"), "size": 2}
    base = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}
    head = json.dumps(base)[:-1]
    return [
        f'{head}, "annotations": {nested(1000)}}}'.encode(),
        f'{head}, "x-unknown": {nested(100_000)}}}'.encode(),
        (head + ', "x-unknown": ' + '{"a": ' * 5000 + "{}" + "}" * 5001).encode(),
        nested(1000).encode(),
    ]


@pytest_twisted.ensureDeferred
async def test_deeply_nested_manifests_are_invalid(registry: Client) -> None:
    await registry.pushBlob("deep", b"{}")
    for manifest in deepManifests():
        response = await registry.pushManifest("deep", "v1", manifest)
        assert (response.code, response.errorCode()) == (400, "MANIFEST_INVALID"), response
        assert b"nested too deeply" in response.body
        response = await registry.pushManifest("deep", sha256(manifest), manifest)
        assert (response.code, response.errorCode()) == (400, "MANIFEST_INVALID"), response
    for reference in ["v1", *(sha256(manifest) for manifest in deepManifests())]:
        response = await registry.request("GET", f"/v2/deep/manifests/{reference}")
        assert (response.code, response.errorCode()) == (404, "MANIFEST_UNKNOWN"), response
    assert (await registry.request("GET", "/v2/")).code == 200


@pytest_twisted.ensureDeferred
async def test_deeply_nested_manifest_in_storage_is_served(fsRegistry: Client) -> None:
    """
    registry:2 parses nesting to a depth of 10000: a store it wrote may
    hold a manifest deeper than ours parses.
    """
    manifest = deepManifests()[0]
    digest = Digest.parse(sha256(manifest))
    driver = FilesystemDriver(fsRegistry.root)  # type: ignore[attr-defined]
    await driver.putContent(layout.blobData(digest), manifest)
    await driver.putContent(layout.revisionLink("deep", digest), str(digest).encode())
    await driver.putContent(layout.tagCurrentLink("deep", "v1"), str(digest).encode())
    response = await fsRegistry.request("GET", "/v2/deep/manifests/v1")
    assert (response.code, response.body) == (200, manifest)
    response = await fsRegistry.request("DELETE", f"/v2/deep/manifests/{digest}")
    assert response.code == 202, response
    response = await fsRegistry.request("GET", f"/v2/deep/manifests/{digest}")
    assert response.code == 404, response
