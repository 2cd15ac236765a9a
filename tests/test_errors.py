"""
Errors are part of the API: every failure answers with the OCI error body.
"""

import os

import pytest_twisted

import txregistry
from tests.conftest import configFor
from tests.helpers import Client, serving, sha256


@pytest_twisted.ensureDeferred
async def test_unknown_routes(registry: Client) -> None:
    for path in ("/", "/v1/", "/v2/r/unknown/thing", "/v2/r/blobs/", "/v2/_catalog/x", "/favicon.ico"):
        response = await registry.request("GET", path)
        assert response.code == 404, path
        assert response.header("Content-Type") == "application/json"
        assert response.json()["errors"][0]["code"], path


@pytest_twisted.ensureDeferred
async def test_wrong_methods(registry: Client) -> None:
    digest = sha256(b"x")
    cases = {
        ("POST", "/v2/"): "GET, HEAD",
        ("PUT", "/v2/_catalog"): "GET, HEAD",
        ("POST", f"/v2/r/blobs/{digest}"): "GET, HEAD, DELETE",
        ("PATCH", "/v2/r/manifests/latest"): "GET, HEAD, PUT, DELETE",
        ("GET", "/v2/r/blobs/uploads/"): "POST",
        ("POST", "/v2/r/blobs/uploads/some-uuid"): "GET, PUT, PATCH, DELETE",
        ("DELETE", "/v2/r/tags/list"): "GET, HEAD",
    }
    for (method, path), allow in cases.items():
        response = await registry.request(method, path)
        assert response.code == 405, (method, path)
        assert response.header("Allow") == allow, (method, path)
        assert response.errorCode() == "UNSUPPORTED"


@pytest_twisted.ensureDeferred
async def test_invalid_names(registry: Client) -> None:
    for name in ("UPPER", "a//b", "-a", "a-", "a..b", "a/" * 128 + "b", "x" * 256):
        response = await registry.request("GET", f"/v2/{name}/tags/list")
        assert (response.code, response.errorCode()) == (400, "NAME_INVALID"), name
    longest = "/".join(["abcdefghi"] * 25) + "/abcde"
    assert len(longest) == 255
    await registry.pushImage(longest, "latest", [b"x"])
    assert (await registry.request("GET", f"/v2/{longest}/tags/list")).json()["tags"] == ["latest"]


@pytest_twisted.ensureDeferred
async def test_percent_encoded_digest(registry: Client) -> None:
    digest = await registry.pushBlob("r", b"content")
    response = await registry.request("GET", "/v2/r/blobs/" + digest.replace(":", "%3A"))
    assert response.body == b"content"


@pytest_twisted.ensureDeferred
async def test_read_only(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "s")
    async with serving(configFor(root)) as writer:
        _, digest = await writer.pushImage("r", "v1", [b"layer"])

    async with serving(configFor(root, readonly=True)) as client:
        assert (await client.request("GET", "/v2/r/manifests/v1")).code == 200
        assert (await client.request("GET", f"/v2/r/manifests/{digest}")).code == 200
        for method, path, body in (
            ("POST", "/v2/r/blobs/uploads/", None),
            ("POST", f"/v2/r/blobs/uploads/?digest={sha256(b'y')}", b"y"),
            ("PUT", "/v2/r/manifests/v2", b"{}"),
            ("DELETE", f"/v2/r/manifests/{digest}", None),
            ("DELETE", "/v2/r/manifests/v1", None),
        ):
            response = await client.request(method, path, body)
            assert (response.code, response.errorCode()) == (405, "UNSUPPORTED"), (method, path)
        assert (await client.request("GET", "/v2/r/tags/list")).json()["tags"] == ["v1"]
        assert (await client.request("GET", "/v2/_catalog")).json()["repositories"] == ["r"]


@pytest_twisted.ensureDeferred
async def test_configured_headers_and_host(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "s")
    config = txregistry.parseConfig(
        f"""
version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
http:
  host: https://registry.example.test
  headers:
    X-Content-Type-Options: [nosniff]
    X-Two: [a, b]
""",
        environ={},
    )
    async with serving(config) as client:
        for path in ("/v2/", "/nothing", "/v2/r/tags/list"):
            response = await client.request("GET", path)
            assert response.header("X-Content-Type-Options") == "nosniff", path
            assert response.headers.getRawHeaders("X-Two") == ["a", "b"]
        started = await client.request("POST", "/v2/r/blobs/uploads/")
        assert started.header("Location").startswith("https://registry.example.test/v2/r/blobs/uploads/")


@pytest_twisted.ensureDeferred
async def test_relative_urls(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "s")
    text = f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  relativeurls: true\n"
    async with serving(txregistry.parseConfig(text, environ={})) as client:
        started = await client.request("POST", "/v2/r/blobs/uploads/")
        assert started.header("Location").startswith("/v2/r/blobs/uploads/")
