"""
Pushing, pulling and deleting manifests of every kind.
"""

import json
import os

import pytest_twisted

from tests.helpers import Client, sha256
from txregistry.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
)


async def dockerImage(client: Client, name: str) -> dict:
    config = b'{"architecture":"arm64","os":"linux"}'
    layer = os.urandom(2000)
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": await client.pushBlob(name, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": await client.pushBlob(name, layer),
                "size": len(layer),
            }
        ],
    }


@pytest_twisted.ensureDeferred
async def test_oci_manifest_by_tag_and_digest(registry: Client) -> None:
    body, digest = await registry.pushImage("team/app", "v1", [b"layer one", b"layer two"])
    for reference in ("v1", digest):
        response = await registry.request("GET", f"/v2/team/app/manifests/{reference}")
        assert response.code == 200
        assert response.body == body
        assert response.header("Content-Type") == OCI_MANIFEST
        assert response.header("Docker-Content-Digest") == digest
        head = await registry.request("HEAD", f"/v2/team/app/manifests/{reference}")
        assert head.code == 200
        assert head.body == b""
        assert head.header("Content-Length") == str(len(body))
        assert head.header("Docker-Content-Digest") == digest


@pytest_twisted.ensureDeferred
async def test_manifest_stored_byte_for_byte(registry: Client) -> None:
    image = await dockerImage(registry, "r")
    # Odd spacing and key order: a re-serialised manifest would differ.
    body = json.dumps(image, indent=7, sort_keys=True).encode() + b"\n\n"
    response = await registry.pushManifest("r", "spaced", body, DOCKER_MANIFEST)
    assert response.code == 201
    assert response.header("Docker-Content-Digest") == sha256(body)
    assert response.header("Location").endswith(f"/v2/r/manifests/{sha256(body)}")
    fetched = await registry.request("GET", "/v2/r/manifests/spaced")
    assert fetched.body == body
    assert fetched.header("Content-Type") == DOCKER_MANIFEST


@pytest_twisted.ensureDeferred
async def test_push_by_digest(registry: Client) -> None:
    body = json.dumps(await dockerImage(registry, "r")).encode()
    digest = sha256(body)
    response = await registry.pushManifest("r", digest, body, DOCKER_MANIFEST)
    assert response.code == 201
    assert response.header("Docker-Content-Digest") == digest
    assert (await registry.request("GET", f"/v2/r/manifests/{digest}")).body == body
    tags = await registry.request("GET", "/v2/r/tags/list")
    assert tags.json()["tags"] == []


@pytest_twisted.ensureDeferred
async def test_push_by_wrong_digest(registry: Client) -> None:
    body = json.dumps(await dockerImage(registry, "r")).encode()
    wrong = sha256(b"not it")
    response = await registry.pushManifest("r", wrong, body, DOCKER_MANIFEST)
    assert (response.code, response.errorCode()) == (400, "DIGEST_INVALID")
    assert (await registry.request("GET", f"/v2/r/manifests/{sha256(body)}")).code == 404


@pytest_twisted.ensureDeferred
async def test_indexes(registry: Client) -> None:
    _, amd = await registry.pushImage("multi", "amd64", [b"amd"])
    _, arm = await registry.pushImage("multi", "arm64", [b"arm"])
    for mediaType, tag in ((OCI_INDEX, "oci"), (DOCKER_MANIFEST_LIST, "docker")):
        index = {
            "schemaVersion": 2,
            "mediaType": mediaType,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": amd,
                    "size": 1,
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": arm,
                    "size": 1,
                    "platform": {"architecture": "arm64", "os": "linux"},
                },
            ],
        }
        response = await registry.pushManifest("multi", tag, index, mediaType)
        assert response.code == 201, response
        fetched = await registry.request("GET", f"/v2/multi/manifests/{tag}")
        assert fetched.header("Content-Type") == mediaType
        assert fetched.json() == index


@pytest_twisted.ensureDeferred
async def test_index_with_missing_child(registry: Client) -> None:
    missing = sha256(b"no such manifest")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 3}],
    }
    response = await registry.pushManifest("multi", "broken", index, OCI_INDEX)
    assert (response.code, response.errorCode()) == (400, "MANIFEST_BLOB_UNKNOWN")
    assert response.json()["errors"][0]["detail"]["digest"] == missing
    assert (await registry.request("GET", "/v2/multi/manifests/broken")).code == 404


@pytest_twisted.ensureDeferred
async def test_missing_layer(registry: Client) -> None:
    image = await dockerImage(registry, "r")
    missing = sha256(b"missing layer")
    image["layers"].append(
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": missing, "size": 13}
    )
    response = await registry.pushManifest("r", "latest", image, DOCKER_MANIFEST)
    assert (response.code, response.errorCode()) == (400, "MANIFEST_BLOB_UNKNOWN")
    assert (await registry.request("GET", "/v2/r/tags/list")).code == 404


@pytest_twisted.ensureDeferred
async def test_layer_of_another_repository_is_missing(registry: Client) -> None:
    image = await dockerImage(registry, "other")
    response = await registry.pushManifest("r", "latest", image, DOCKER_MANIFEST)
    assert (response.code, response.errorCode()) == (400, "MANIFEST_BLOB_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_foreign_layers_need_not_exist(registry: Client) -> None:
    image = await dockerImage(registry, "win")
    image["layers"].insert(
        0,
        {
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": sha256(b"windows base"),
            "size": 12,
            "urls": ["https://example.invalid/layer"],
        },
    )
    assert (await registry.pushManifest("win", "ltsc", image, DOCKER_MANIFEST)).code == 201


@pytest_twisted.ensureDeferred
async def test_artifact(registry: Client) -> None:
    empty = await registry.pushBlob("art", b"{}")
    payload = await registry.pushBlob("art", b"signature bytes")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": payload, "size": 15}],
    }
    response = await registry.pushManifest("art", "sig", manifest)
    assert response.code == 201
    assert (await registry.request("GET", "/v2/art/manifests/sig")).json() == manifest


@pytest_twisted.ensureDeferred
async def test_invalid_manifests(registry: Client) -> None:
    image = await dockerImage(registry, "r")
    noConfig = {k: v for k, v in image.items() if k != "config"}
    badSize = json.loads(json.dumps(image))
    badSize["layers"][0]["size"] = -1
    badDigest = json.loads(json.dumps(image))
    badDigest["layers"][0]["digest"] = "sha256:xyz"
    cases = [
        (b"{not json", DOCKER_MANIFEST),
        (b"[1, 2]", DOCKER_MANIFEST),
        (json.dumps({**image, "schemaVersion": 3}).encode(), DOCKER_MANIFEST),
        (json.dumps(noConfig).encode(), DOCKER_MANIFEST),
        (json.dumps(badSize).encode(), DOCKER_MANIFEST),
        (json.dumps(badDigest).encode(), DOCKER_MANIFEST),
        (json.dumps(image).encode(), OCI_MANIFEST),  # Content-Type disagrees with mediaType
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX}).encode(), OCI_INDEX),
    ]
    for body, mediaType in cases:
        response = await registry.pushManifest("r", "bad", body, mediaType)
        assert (response.code, response.errorCode()) == (400, "MANIFEST_INVALID"), body
    assert (await registry.request("GET", "/v2/r/manifests/bad")).code == 404


@pytest_twisted.ensureDeferred
async def test_schema1_refused(registry: Client) -> None:
    schema1 = {"schemaVersion": 1, "name": "r", "tag": "old", "fsLayers": [], "history": []}
    response = await registry.pushManifest(
        "r", "old", schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws"
    )
    assert (response.code, response.errorCode()) == (400, "MANIFEST_INVALID")
    assert "schema1" in response.json()["errors"][0]["message"]


@pytest_twisted.ensureDeferred
async def test_oversized_manifest(registry: Client) -> None:
    image = await dockerImage(registry, "r")
    image["annotations"] = {"padding": "x" * (5 * 1024 * 1024)}
    response = await registry.pushManifest("r", "huge", image, DOCKER_MANIFEST)
    assert response.code == 413
    assert "4 MiB" in response.json()["errors"][0]["message"]
    assert (await registry.request("GET", "/v2/r/manifests/huge")).code == 404
    # The connection that was cut short is not reused; the next one works.
    assert (await registry.request("GET", "/v2/")).code == 200


@pytest_twisted.ensureDeferred
async def test_invalid_tag(registry: Client) -> None:
    image = await dockerImage(registry, "r")
    response = await registry.pushManifest("r", "-starts-with-dash", image, DOCKER_MANIFEST)
    assert (response.code, response.errorCode()) == (400, "TAG_INVALID")
    response = await registry.pushManifest("r", "x" * 129, image, DOCKER_MANIFEST)
    assert (response.code, response.errorCode()) == (400, "TAG_INVALID")


@pytest_twisted.ensureDeferred
async def test_unknown_manifest(registry: Client) -> None:
    for reference in ("nope", sha256(b"nope")):
        response = await registry.request("GET", f"/v2/r/manifests/{reference}")
        assert (response.code, response.errorCode()) == (404, "MANIFEST_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_retag(registry: Client) -> None:
    _, first = await registry.pushImage("r", "latest", [b"one"])
    _, second = await registry.pushImage("r", "latest", [b"two"])
    assert first != second
    response = await registry.request("GET", "/v2/r/manifests/latest")
    assert response.header("Docker-Content-Digest") == second
    assert (await registry.request("GET", f"/v2/r/manifests/{first}")).code == 200


@pytest_twisted.ensureDeferred
async def test_delete_tag(registry: Client) -> None:
    _, digest = await registry.pushImage("r", "v1", [b"one"])
    await registry.pushManifest("r", "v2", (await registry.request("GET", "/v2/r/manifests/v1")).body)
    response = await registry.request("DELETE", "/v2/r/manifests/v1")
    assert response.code == 202
    assert (await registry.request("GET", "/v2/r/manifests/v1")).code == 404
    assert (await registry.request("GET", "/v2/r/manifests/v2")).code == 200
    assert (await registry.request("GET", f"/v2/r/manifests/{digest}")).code == 200
    assert (await registry.request("GET", "/v2/r/tags/list")).json()["tags"] == ["v2"]
    again = await registry.request("DELETE", "/v2/r/manifests/v1")
    assert (again.code, again.errorCode()) == (404, "MANIFEST_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_delete_by_digest_removes_its_tags(registry: Client) -> None:
    _, digest = await registry.pushImage("r", "v1", [b"one"])
    _, other = await registry.pushImage("r", "v2", [b"two"])
    response = await registry.request("DELETE", f"/v2/r/manifests/{digest}")
    assert response.code == 202
    assert (await registry.request("GET", f"/v2/r/manifests/{digest}")).code == 404
    assert (await registry.request("GET", "/v2/r/manifests/v1")).code == 404
    assert (await registry.request("GET", "/v2/r/tags/list")).json()["tags"] == ["v2"]
    assert (await registry.request("GET", f"/v2/r/manifests/{other}")).code == 200
