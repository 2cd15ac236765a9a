"""
Pushing blobs: monolithic, chunked, resumed, mounted, cancelled.
"""

import os

import pytest_twisted

from tests.helpers import ChunkedBody, Client, sha256

DATA = os.urandom(300_000)


async def start(client: Client, name: str = "r") -> str:
    response = await client.request("POST", f"/v2/{name}/blobs/uploads/")
    assert response.code == 202
    assert response.header("Range") == "0-0"
    uuid = response.header("Docker-Upload-UUID")
    location = response.header("Location")
    assert uuid and location and location.endswith(f"/v2/{name}/blobs/uploads/{uuid}")
    return location


@pytest_twisted.ensureDeferred
async def test_chunked_with_content_range(registry: Client) -> None:
    location = await start(registry)
    offset = 0
    for chunk in (DATA[:100_000], DATA[100_000:250_000], DATA[250_000:]):
        headers = {
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            "Content-Type": "application/octet-stream",
        }
        response = await registry.request("PATCH", location, chunk, headers)
        assert response.code == 202, response
        offset += len(chunk)
        assert response.header("Range") == f"0-{offset - 1}"
        location = response.header("Location")
    status = await registry.request("GET", location)
    assert status.code == 204
    assert status.header("Range") == f"0-{len(DATA) - 1}"
    digest = sha256(DATA)
    done = await registry.request("PUT", f"{location}?digest={digest}")
    assert done.code == 201
    assert done.header("Docker-Content-Digest") == digest
    assert done.header("Location").endswith(f"/v2/r/blobs/{digest}")
    assert (await registry.request("GET", f"/v2/r/blobs/{digest}")).body == DATA


@pytest_twisted.ensureDeferred
async def test_chunked_without_content_range_and_last_chunk_in_put(registry: Client) -> None:
    location = await start(registry)
    response = await registry.request("PATCH", location, DATA[:123_456])
    assert response.code == 202
    digest = sha256(DATA)
    done = await registry.request("PUT", f"{location}?digest={digest}", DATA[123_456:])
    assert done.code == 201
    assert (await registry.request("GET", f"/v2/r/blobs/{digest}")).body == DATA


@pytest_twisted.ensureDeferred
async def test_streamed_chunked_transfer_encoding(registry: Client) -> None:
    location = await start(registry)
    response = await registry.request("PATCH", location, ChunkedBody([DATA[:1000], DATA[1000:]]))
    assert response.code == 202
    assert response.header("Range") == f"0-{len(DATA) - 1}"


@pytest_twisted.ensureDeferred
async def test_out_of_order_chunk(registry: Client) -> None:
    location = await start(registry)
    response = await registry.request("PATCH", location, DATA[:1000], {"Content-Range": "0-999"})
    assert response.code == 202
    for badRange in ("500-1499", "2000-2999", "0-999"):
        response = await registry.request("PATCH", location, DATA[:1000], {"Content-Range": badRange})
        assert response.code == 416, badRange
        assert response.header("Range") == "0-999"
        assert response.errorCode() == "RANGE_INVALID"
    status = await registry.request("GET", location)
    assert status.header("Range") == "0-999"


@pytest_twisted.ensureDeferred
async def test_content_range_disagreeing_with_length(registry: Client) -> None:
    location = await start(registry)
    response = await registry.request("PATCH", location, DATA[:1000], {"Content-Range": "0-499"})
    assert response.code == 416
    assert (await registry.request("GET", location)).header("Range") == "0-0"


@pytest_twisted.ensureDeferred
async def test_wrong_digest_cancels_upload(registry: Client) -> None:
    location = await start(registry)
    await registry.request("PATCH", location, DATA)
    wrong = sha256(b"something else")
    response = await registry.request("PUT", f"{location}?digest={wrong}")
    assert (response.code, response.errorCode()) == (400, "DIGEST_INVALID")
    assert (await registry.request("GET", f"/v2/r/blobs/{wrong}")).code == 404
    assert (await registry.request("GET", location)).code == 404


@pytest_twisted.ensureDeferred
async def test_monolithic_wrong_digest(registry: Client) -> None:
    wrong = sha256(b"other")
    response = await registry.request("POST", f"/v2/r/blobs/uploads/?digest={wrong}", DATA)
    assert (response.code, response.errorCode()) == (400, "DIGEST_INVALID")
    assert (await registry.request("HEAD", f"/v2/r/blobs/{wrong}")).code == 404
    assert (await registry.request("HEAD", f"/v2/r/blobs/{sha256(DATA)}")).code == 404


@pytest_twisted.ensureDeferred
async def test_put_without_digest(registry: Client) -> None:
    location = await start(registry)
    response = await registry.request("PUT", location, b"abc")
    assert (response.code, response.errorCode()) == (400, "DIGEST_INVALID")


@pytest_twisted.ensureDeferred
async def test_cancel(registry: Client) -> None:
    location = await start(registry)
    await registry.request("PATCH", location, DATA[:10])
    response = await registry.request("DELETE", location)
    assert response.code == 204
    for method in ("GET", "PATCH", "DELETE"):
        response = await registry.request(method, location, b"x" if method == "PATCH" else None)
        assert (response.code, response.errorCode()) == (404, "BLOB_UPLOAD_UNKNOWN"), method


@pytest_twisted.ensureDeferred
async def test_unknown_upload(registry: Client) -> None:
    for uuid in ("0f0e4c1a-8b7b-4a4e-9d7e-3d2b9e9a0b1c", "..", "a..b"):
        response = await registry.request("GET", f"/v2/r/blobs/uploads/{uuid}")
        assert response.code == 404, uuid
        assert response.errorCode() == "BLOB_UPLOAD_UNKNOWN"


@pytest_twisted.ensureDeferred
async def test_upload_belongs_to_its_repository(registry: Client) -> None:
    location = await start(registry, "one")
    other = location.replace("/v2/one/", "/v2/two/")
    response = await registry.request("PATCH", other, b"data")
    assert response.code == 404


@pytest_twisted.ensureDeferred
async def test_mount(registry: Client) -> None:
    digest = await registry.pushBlob("source/repo", DATA)
    response = await registry.request("POST", f"/v2/target/blobs/uploads/?mount={digest}&from=source/repo")
    assert response.code == 201
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("Location").endswith(f"/v2/target/blobs/{digest}")
    assert (await registry.request("GET", f"/v2/target/blobs/{digest}")).body == DATA


@pytest_twisted.ensureDeferred
async def test_mount_missing_opens_upload(registry: Client) -> None:
    digest = sha256(b"not here")
    response = await registry.request("POST", f"/v2/target/blobs/uploads/?mount={digest}&from=source")
    assert response.code == 202
    assert response.header("Docker-Upload-UUID")
    assert (await registry.request("HEAD", f"/v2/target/blobs/{digest}")).code == 404


@pytest_twisted.ensureDeferred
async def test_blob_pushed_twice(registry: Client) -> None:
    first = await registry.pushBlob("a", DATA)
    second = await registry.pushBlob("b", DATA)
    assert first == second
    assert (await registry.request("GET", f"/v2/b/blobs/{second}")).body == DATA


@pytest_twisted.ensureDeferred
async def test_invalid_name_changes_nothing(fsRegistry: Client) -> None:
    response = await fsRegistry.request("POST", "/v2/UPPER/blobs/uploads/")
    assert (response.code, response.errorCode()) == (400, "NAME_INVALID")
    assert not os.path.exists(os.path.join(fsRegistry.root, "docker/registry/v2/repositories"))  # type: ignore[attr-defined]
