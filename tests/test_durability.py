"""
A registry in its own process: bounded memory with large blobs and slow
readers, uploads that survive a restart, and a store that a kill -9 cannot
corrupt.
"""

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.bigblobs import (
    MiB,
    Pattern,
    call,
    finishUpload,
    pushInChunks,
    roundTripInBoundedMemory,
    slowPull,
    startUpload,
)
from tests.helpers import RegistryProcess, SyncClient


@pytest.fixture
def process(tmp_path: object) -> Iterator[RegistryProcess]:
    registry = RegistryProcess(os.path.join(str(tmp_path), "store"))
    registry.start()
    yield registry
    registry.stop()


def test_large_blob_in_bounded_memory(process: RegistryProcess) -> None:
    roundTripInBoundedMemory(process, 512 * MiB, 64 * MiB, 128 * 1024, 0.001)


def sendUntilCut(sock: socket.socket, size: int, sent: list[int]) -> None:
    """
    Send C{size} bytes of body, adding to C{sent[0]} as they go out, until
    all are sent or the peer cuts the connection.
    """
    chunk = b"x" * MiB
    try:
        while sent[0] < size:
            sock.sendall(chunk[: size - sent[0]])
            sent[0] += min(len(chunk), size - sent[0])
    except OSError:
        pass


def readUntilClosed(sock: socket.socket, deadline: float) -> bytes:
    """
    Everything the peer sends until it closes the connection (an end of
    file, or a reset once we have read what came before it); fail if it has
    not closed it by C{deadline}.
    """
    received = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            pytest.fail(f"the connection was still open at the deadline, after {received!r}")
        if not data:
            return received
        received += data


def test_early_error_on_large_body_keeps_server_well(process: RegistryProcess) -> None:
    unknown = "/v2/big/blobs/uploads/0f0e4c1a-8b7b-4a4e-9d7e-3d2b9e9a0b1c"
    # A body a little under what is read and thrown away: the answer arrives whole.
    response, body = call(process.port, "PATCH", unknown, b"x" * (900 * 1024))
    assert response.status == 404
    assert b"BLOB_UPLOAD_UNKNOWN" in body
    assert response.headers["Connection"] == "close"

    # A far larger one: the server answers, then cuts the connection rather
    # than read it all, while we are still sending.
    size = 256 * MiB
    sock = socket.create_connection(("127.0.0.1", process.port))
    sock.sendall(f"PATCH {unknown} HTTP/1.1\r\nHost: test\r\nContent-Length: {size}\r\n\r\n".encode())
    sent = [0]
    sender = threading.Thread(target=sendUntilCut, args=(sock, size, sent), daemon=True)
    sender.start()
    try:
        received = readUntilClosed(sock, time.monotonic() + 10)
        sender.join(10)
        assert not sender.is_alive()
    finally:
        sock.close()

    head, separator, errorBody = received.partition(b"\r\n\r\n")
    assert separator, f"no whole response before the close: {received!r}"
    statusLine, *headerLines = head.decode("latin-1").split("\r\n")
    assert statusLine.startswith("HTTP/1.1 404 "), statusLine
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in headerLines)}
    assert headers["connection"] == "close"
    # Received whole before the close: exactly the announced body, nothing after.
    assert len(errorBody) == int(headers["content-length"])
    assert [e["code"] for e in json.loads(errorBody)["errors"]] == ["BLOB_UPLOAD_UNKNOWN"]
    # The close came while the body was still arriving, not after all of it.
    assert sent[0] < size // 4, f"the server read {sent[0]} of {size} bytes before closing"

    # Other clients are served as before.
    response, _ = call(process.port, "GET", "/v2/")
    assert response.status == 200
    small = Pattern(2 * MiB)
    pushInChunks(process.port, small, MiB)
    total, digest = slowPull(process.port, f"/v2/big/blobs/{small.digest}", MiB, 0)
    assert (total, digest) == (small.size, small.digest)
    assert process.rss() < 150 * MiB


def test_upload_survives_restart(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "store")
    blob = Pattern(20 * MiB)
    first = RegistryProcess(root)
    first.start()
    try:
        location = startUpload(first.port)
        half = blob.size // 2
        response, _ = call(first.port, "PATCH", location, blob.chunks(0, half), {"Content-Length": str(half)})
        assert response.status == 202
    finally:
        first.stop()

    second = RegistryProcess(root)
    second.start()
    try:
        response, _ = call(second.port, "GET", location)
        assert response.status == 204
        assert response.headers["Range"] == f"0-{half - 1}"
        finishUpload(second.port, location, blob, half)
        total, digest = slowPull(second.port, f"/v2/big/blobs/{blob.digest}", 1 * MiB, 0)
        assert (total, digest) == (blob.size, blob.digest)
        assert "re-hashing" in second.output()
    finally:
        second.stop()


def test_kill_during_upload_leaves_store_readable(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "store")
    existing = Pattern(3 * MiB)
    blob = Pattern(64 * MiB)
    registry = RegistryProcess(root)
    registry.start()
    pushInChunks(registry.port, existing, 1 * MiB, "kept")
    location = startUpload(registry.port)

    # Send headers for the whole blob and a part of its body, then kill -9.
    sock = socket.create_connection(("127.0.0.1", registry.port))
    sock.sendall(
        f"PUT {location}?digest={blob.digest} HTTP/1.1\r\nHost: test\r\n"
        f"Content-Length: {blob.size}\r\n\r\n".encode()
    )
    sent = 0
    for chunk in blob.chunks(0, blob.size // 2):
        sock.sendall(chunk)
        sent += len(chunk)
    time.sleep(0.3)
    registry.kill()
    sock.close()

    restarted = RegistryProcess(root)
    restarted.start()
    try:
        response, _ = call(restarted.port, "HEAD", f"/v2/big/blobs/{blob.digest}")
        assert response.status == 404
        total, digest = slowPull(restarted.port, f"/v2/kept/blobs/{existing.digest}", MiB, 0)
        assert (total, digest) == (existing.size, existing.digest)
        hexdigest = blob.digest.split(":")[1]
        assert not os.path.exists(f"{root}/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}")
        pushInChunks(restarted.port, blob, 16 * MiB)
        response, _ = call(restarted.port, "HEAD", f"/v2/big/blobs/{blob.digest}")
        assert response.status == 200
        assert response.headers["Content-Length"] == str(blob.size)
    finally:
        restarted.stop()


def openFiles(registry: RegistryProcess) -> int:
    assert registry.process is not None
    return len(os.listdir(f"/proc/{registry.process.pid}/fd"))


def test_clients_that_go_away_mid_download_leave_nothing_open(process: RegistryProcess) -> None:
    blob = Pattern(64 * MiB)
    pushInChunks(process.port, blob, 64 * MiB)
    SyncClient(process.port).request("GET", "/v2/")
    baseline = openFiles(process)
    for _ in range(5):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", process.port))
        sock.sendall(f"GET /v2/big/blobs/{blob.digest} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.close()
    deadline = time.monotonic() + 10
    while openFiles(process) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    # At most: the baseline may still count the socket of the request before.
    assert openFiles(process) <= baseline
    # The registry still serves the blob whole.
    total, digest = slowPull(process.port, f"/v2/big/blobs/{blob.digest}", MiB, 0)
    assert (total, digest) == (blob.size, blob.digest)


def test_upload_resumes_after_a_client_drops_mid_chunk(process: RegistryProcess) -> None:
    blob = Pattern(8 * MiB)
    location = startUpload(process.port)
    baseline = openFiles(process)
    sock = socket.create_connection(("127.0.0.1", process.port))
    sock.sendall(f"PATCH {location} HTTP/1.1\r\nHost: test\r\nContent-Length: {blob.size}\r\n\r\n".encode())
    for chunk in blob.chunks(0, 3 * MiB):
        sock.sendall(chunk)
    time.sleep(0.3)
    sock.close()
    deadline = time.monotonic() + 10
    while openFiles(process) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert openFiles(process) <= baseline

    # What reached storage is kept; the client continues from there.
    status, _ = call(process.port, "GET", location)
    assert status.status == 204
    held = int(status.headers["Range"].split("-")[1]) + 1
    assert 0 < held <= 3 * MiB
    finishUpload(process.port, location, blob, held)
