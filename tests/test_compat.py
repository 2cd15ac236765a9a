"""
One store, two registries: txregistry and the reference (CNCF distribution
2.8, what registry:2 runs) read and write each other's stores.
"""

import os
import uuid

import pytest

from tests.helpers import ReferenceRegistry, RegistryProcess, ServerProcess, SyncClient, sha256, withQuery

pytestmark = pytest.mark.skipif(
    ReferenceRegistry.binary is None,
    reason="the reference registry is not installed (apt-get install docker-registry)",
)


def pullImage(client: SyncClient, name: str, tag: str, manifest: bytes, blobs: dict[str, bytes]) -> None:
    response = client.request(
        "GET", f"/v2/{name}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert response.status == 200, response
    assert response.body == manifest
    assert response.headers["Docker-Content-Digest"] == sha256(manifest)
    for digest, content in blobs.items():
        fetched = client.request("GET", f"/v2/{name}/blobs/{digest}")
        assert fetched.status == 200, digest
        assert fetched.body == content
    assert tag in client.request("GET", f"/v2/{name}/tags/list").body.decode()
    assert name in client.request("GET", "/v2/_catalog").body.decode()


@pytest.fixture(params=["filesystem", "s3"])
def storage(request: pytest.FixtureRequest) -> list[str] | None:
    """
    The store both registries share: a directory, or a root in a bucket.
    """
    if request.param == "filesystem":
        return None
    server = request.getfixturevalue("seaweedfs")
    lines = server.configLines(f"/compat/{uuid.uuid4()}")
    # registry:2's S3 driver wants these said for a plain-HTTP endpoint.
    return ["s3:", *(f"  {line}" for line in lines), "  secure: false", "  v4auth: true"]


def pushWith(server: ServerProcess, name: str) -> tuple[bytes, dict[str, bytes]]:
    layers = [os.urandom(200_000), os.urandom(1000)]
    server.start()
    try:
        manifest, _, digests = SyncClient(server.port).pushImage(name, "v1", layers)
    finally:
        server.stop()
    config = b'{"architecture": "amd64", "os": "linux"}'
    return manifest, dict(zip(digests, [config, *layers], strict=True))


def test_reference_reads_our_store(tmp_path: object, storage: list[str] | None) -> None:
    root = os.path.join(str(tmp_path), "store")
    manifest, blobs = pushWith(RegistryProcess(root, storage=storage), "ours/app")
    reference = ReferenceRegistry(root, storage=storage)
    reference.start()
    try:
        pullImage(SyncClient(reference.port), "ours/app", "v1", manifest, blobs)
    finally:
        reference.stop()


def test_we_read_the_reference_store(tmp_path: object, storage: list[str] | None) -> None:
    root = os.path.join(str(tmp_path), "store")
    manifest, blobs = pushWith(ReferenceRegistry(root, storage=storage), "theirs/app")
    ours = RegistryProcess(root, storage=storage)
    ours.start()
    try:
        pullImage(SyncClient(ours.port), "theirs/app", "v1", manifest, blobs)
        # And keep writing to it: a new tag on their manifest.
        client = SyncClient(ours.port)
        response = client.request(
            "PUT",
            "/v2/theirs/app/manifests/v2",
            manifest,
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert response.status == 201
    finally:
        ours.stop()


def test_upload_started_on_the_reference_finished_on_ours(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "store")
    data = os.urandom(3_000_000)
    reference = ReferenceRegistry(root)
    reference.start()
    try:
        client = SyncClient(reference.port)
        started = client.request("POST", "/v2/shared/blobs/uploads/")
        assert started.status == 202
        patched = client.request(
            "PATCH", started.location(), data[:1_000_000], {"Content-Type": "application/octet-stream"}
        )
        assert patched.status == 202
        location = patched.location()
    finally:
        reference.stop()
    ours = RegistryProcess(root)
    ours.start()
    try:
        client = SyncClient(ours.port)
        status = client.request("GET", location)
        assert status.status == 204
        assert status.headers["Range"] == "0-999999"
        done = client.request("PUT", withQuery(location, digest=sha256(data)), data[1_000_000:])
        assert done.status == 201, done
        assert client.request("GET", f"/v2/shared/blobs/{sha256(data)}").body == data
    finally:
        ours.stop()
