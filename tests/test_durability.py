"""
A registry in its own process: bounded memory with large blobs and slow
readers, uploads that survive a restart, and a store that a kill -9 cannot
corrupt.
"""

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.helpers import RegistryProcess, SyncClient, SyncResponse

MiB = 1024 * 1024


@pytest.fixture
def process(tmp_path: object) -> Iterator[RegistryProcess]:
    registry = RegistryProcess(os.path.join(str(tmp_path), "store"))
    registry.start()
    yield registry
    registry.stop()


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | Iterator[bytes] = b"",
    headers: dict[str, str] | None = None,
) -> tuple[SyncResponse, bytes]:
    response = SyncClient(port).request(method, path, body, headers)
    return response, response.body


class Pattern:
    """
    A large blob made of one random MiB repeated with a counter, produced a
    MiB at a time so the test never holds it whole.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.block = os.urandom(MiB)
        hasher = hashlib.sha256()
        for chunk in self.chunks(0, size):
            hasher.update(chunk)
        self.digest = "sha256:" + hasher.hexdigest()

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        position = start
        while position < end:
            index, offset = divmod(position, MiB)
            block = index.to_bytes(8, "big") + self.block[8:]
            piece = block[offset : offset + min(MiB - offset, end - position)]
            yield piece
            position += len(piece)


class RSSSampler(threading.Thread):
    def __init__(self, registry: RegistryProcess) -> None:
        super().__init__(daemon=True)
        self.registry = registry
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.registry.rss())
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def startUpload(port: int, name: str = "big") -> str:
    response, _ = call(port, "POST", f"/v2/{name}/blobs/uploads/")
    assert response.status == 202
    return urlsplit(response.headers["Location"]).path


def pushInChunks(port: int, blob: Pattern, chunkSize: int, name: str = "big") -> None:
    location = startUpload(port, name)
    for start in range(0, blob.size, chunkSize):
        end = min(start + chunkSize, blob.size)
        response, body = call(
            port,
            "PATCH",
            location,
            blob.chunks(start, end),
            {"Content-Length": str(end - start), "Content-Range": f"{start}-{end - 1}"},
        )
        assert response.status == 202, body
        location = urlsplit(response.headers["Location"]).path
    response, body = call(port, "PUT", f"{location}?digest={blob.digest}")
    assert response.status == 201, body


def slowPull(port: int, path: str, readSize: int, pause: float) -> tuple[int, str]:
    """
    GET a blob through a socket with a small receive buffer, reading a
    little at a time with pauses: the server must wait for us, not buffer.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    hasher, total = hashlib.sha256(), 0
    while True:
        data = sock.recv(readSize)
        if not data:
            break
        hasher.update(data)
        total += len(data)
        time.sleep(pause)
    sock.close()
    return total, "sha256:" + hasher.hexdigest()


def test_large_blob_in_bounded_memory(process: RegistryProcess) -> None:
    blob = Pattern(512 * MiB)
    time.sleep(0.5)
    idle = process.rss()
    sampler = RSSSampler(process)
    sampler.start()
    try:
        pushInChunks(process.port, blob, 64 * MiB)
        total, digest = slowPull(process.port, f"/v2/big/blobs/{blob.digest}", 128 * 1024, 0.001)
    finally:
        peak = sampler.stop()
    assert (total, digest) == (blob.size, blob.digest)
    growth = peak - idle
    print(f"idle RSS {idle / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB")
    assert growth < 64 * MiB, f"RSS grew by {growth / MiB:.1f} MiB (idle {idle / MiB:.1f} MiB)"


def test_early_error_on_large_body_keeps_server_well(process: RegistryProcess) -> None:
    unknown = "/v2/big/blobs/uploads/0f0e4c1a-8b7b-4a4e-9d7e-3d2b9e9a0b1c"
    # A body a little under what is read and thrown away: the answer arrives whole.
    response, body = call(process.port, "PATCH", unknown, b"x" * (900 * 1024))
    assert response.status == 404
    assert b"BLOB_UPLOAD_UNKNOWN" in body
    assert response.headers["Connection"] == "close"
    # A far larger one: the server cuts the connection rather than read it all.
    blob = Pattern(256 * MiB)
    try:
        call(process.port, "PATCH", unknown, blob.chunks(0, blob.size), {"Content-Length": str(blob.size)})
    except OSError:
        pass
    response, _ = call(process.port, "GET", "/v2/")
    assert response.status == 200
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
        response, body = call(
            second.port,
            "PATCH",
            location,
            blob.chunks(half, blob.size),
            {"Content-Length": str(blob.size - half), "Content-Range": f"{half}-{blob.size - 1}"},
        )
        assert response.status == 202, body
        response, body = call(second.port, "PUT", f"{location}?digest={blob.digest}")
        assert response.status == 201, body
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
    response, body = call(
        process.port,
        "PATCH",
        location,
        blob.chunks(held, blob.size),
        {"Content-Length": str(blob.size - held), "Content-Range": f"{held}-{blob.size - 1}"},
    )
    assert response.status == 202, body
    response, body = call(process.port, "PUT", f"{location}?digest={blob.digest}")
    assert response.status == 201, body
