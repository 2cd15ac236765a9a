"""
Fetching, checking and deleting blobs.
"""

import os

import pytest_twisted

from tests.conftest import configFor
from tests.helpers import Client, serving, sha256

DATA = bytes(range(256)) * 40


@pytest_twisted.ensureDeferred
async def test_get_and_head(registry: Client) -> None:
    digest = await registry.pushBlob("library/busybox", DATA)
    response = await registry.request("GET", f"/v2/library/busybox/blobs/{digest}")
    assert response.code == 200
    assert response.body == DATA
    assert response.header("Content-Length") == str(len(DATA))
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("Accept-Ranges") == "bytes"
    head = await registry.request("HEAD", f"/v2/library/busybox/blobs/{digest}")
    assert head.code == 200
    assert head.body == b""
    assert head.header("Content-Length") == str(len(DATA))
    assert head.header("Docker-Content-Digest") == digest


@pytest_twisted.ensureDeferred
async def test_blob_stored_in_registry2_layout(fsRegistry: Client) -> None:
    digest = await fsRegistry.pushBlob("a/b", DATA)
    hexdigest = digest.split(":")[1]
    v2 = os.path.join(fsRegistry.root, "docker/registry/v2")  # type: ignore[attr-defined]
    with open(f"{v2}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", "rb") as f:
        assert f.read() == DATA
    with open(f"{v2}/repositories/a/b/_layers/sha256/{hexdigest}/link", "rb") as f:
        assert f.read() == digest.encode()
    assert os.listdir(f"{v2}/repositories/a/b/_uploads") == []


@pytest_twisted.ensureDeferred
async def test_ranges(registry: Client) -> None:
    digest = await registry.pushBlob("r", DATA)
    size = len(DATA)
    cases = {
        "bytes=0-9": (DATA[:10], f"bytes 0-9/{size}"),
        "bytes=100-": (DATA[100:], f"bytes 100-{size - 1}/{size}"),
        "bytes=-5": (DATA[-5:], f"bytes {size - 5}-{size - 1}/{size}"),
        f"bytes=10-{size + 100}": (DATA[10:], f"bytes 10-{size - 1}/{size}"),
    }
    for header, (body, contentRange) in cases.items():
        response = await registry.request("GET", f"/v2/r/blobs/{digest}", headers={"Range": header})
        assert response.code == 206, header
        assert response.body == body, header
        assert response.header("Content-Range") == contentRange
        assert response.header("Content-Length") == str(len(body))


@pytest_twisted.ensureDeferred
async def test_unsatisfiable_range(registry: Client) -> None:
    digest = await registry.pushBlob("r", DATA)
    for header in (f"bytes={len(DATA)}-", "bytes=-0", "bytes=20-10"):
        response = await registry.request("GET", f"/v2/r/blobs/{digest}", headers={"Range": header})
        assert response.code == 416, header
        assert response.header("Content-Range") == f"bytes */{len(DATA)}"
        assert response.header("Content-Length") == str(len(response.body))
        assert response.errorCode() == "RANGE_INVALID"


@pytest_twisted.ensureDeferred
async def test_unknown_blob(registry: Client) -> None:
    missing = sha256(b"nothing")
    for method in ("GET", "HEAD"):
        response = await registry.request(method, f"/v2/r/blobs/{missing}")
        assert response.code == 404
    response = await registry.request("GET", f"/v2/r/blobs/{missing}")
    assert response.errorCode() == "BLOB_UNKNOWN"


@pytest_twisted.ensureDeferred
async def test_blob_of_other_repository_is_not_visible(registry: Client) -> None:
    digest = await registry.pushBlob("mine", DATA)
    response = await registry.request("GET", f"/v2/yours/blobs/{digest}")
    assert response.code == 404
    assert response.errorCode() == "BLOB_UNKNOWN"


@pytest_twisted.ensureDeferred
async def test_bad_digests(registry: Client) -> None:
    for digest, code, status in (
        ("sha256:abc", "DIGEST_INVALID", 400),
        ("sha256:" + "G" * 64, "DIGEST_INVALID", 400),
        ("md5:" + "a" * 32, "UNSUPPORTED", 400),
        ("nocolon", "DIGEST_INVALID", 400),
    ):
        response = await registry.request("GET", f"/v2/r/blobs/{digest}")
        assert (response.code, response.errorCode()) == (status, code), digest


@pytest_twisted.ensureDeferred
async def test_sha512_blob(registry: Client) -> None:
    import hashlib

    digest = "sha512:" + hashlib.sha512(DATA).hexdigest()
    response = await registry.request("POST", f"/v2/r/blobs/uploads/?digest={digest}", DATA)
    assert response.code == 201
    fetched = await registry.request("GET", f"/v2/r/blobs/{digest}")
    assert fetched.body == DATA
    assert fetched.header("Docker-Content-Digest") == digest


@pytest_twisted.ensureDeferred
async def test_delete(registry: Client) -> None:
    digest = await registry.pushBlob("r", DATA)
    response = await registry.request("DELETE", f"/v2/r/blobs/{digest}")
    assert response.code == 202
    assert (await registry.request("HEAD", f"/v2/r/blobs/{digest}")).code == 404
    again = await registry.request("DELETE", f"/v2/r/blobs/{digest}")
    assert (again.code, again.errorCode()) == (404, "BLOB_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_delete_disabled(tmp_path: object) -> None:
    async with serving(configFor(os.path.join(str(tmp_path), "s"), delete=False)) as client:
        digest = await client.pushBlob("r", DATA)
        response = await client.request("DELETE", f"/v2/r/blobs/{digest}")
        assert (response.code, response.errorCode()) == (405, "UNSUPPORTED")
        assert (await client.request("HEAD", f"/v2/r/blobs/{digest}")).code == 200


@pytest_twisted.ensureDeferred
async def test_empty_blob(registry: Client) -> None:
    digest = await registry.pushBlob("r", b"")
    response = await registry.request("GET", f"/v2/r/blobs/{digest}")
    assert response.code == 200
    assert response.body == b""
    assert response.header("Content-Length") == "0"
