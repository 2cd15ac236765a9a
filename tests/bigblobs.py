"""
Large blobs for tests that run a registry in its own process: made up a
MiB at a time, pushed in chunks, pulled slowly, with the server's memory
watched.
"""

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from tests.helpers import ServerProcess, SyncClient, SyncResponse

MiB = 1024 * 1024


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
    def __init__(self, registry: ServerProcess) -> None:
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


def slowPull(
    port: int, path: str, readSize: int, pause: float, slowBytes: int | None = None
) -> tuple[int, str]:
    """
    GET a blob through a socket with a small receive buffer, reading a
    little at a time with pauses (for the first C{slowBytes}, if given):
    the server must wait for us, not buffer.
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
        if slowBytes is None or total < slowBytes:
            time.sleep(pause)
    sock.close()
    return total, "sha256:" + hasher.hexdigest()


def roundTripInBoundedMemory(
    registry: ServerProcess, size: int, chunkSize: int, readSize: int, pause: float, limit: int = 64 * MiB
) -> None:
    """
    Push a blob of C{size} in chunks and pull it back slowly, checking the
    bytes and that the registry's resident memory grew by less than C{limit}.
    """
    blob = Pattern(size)
    time.sleep(0.5)
    idle = registry.rss()
    sampler = RSSSampler(registry)
    sampler.start()
    try:
        pushInChunks(registry.port, blob, chunkSize)
        total, digest = slowPull(registry.port, f"/v2/big/blobs/{blob.digest}", readSize, pause)
    finally:
        peak = sampler.stop()
    assert (total, digest) == (blob.size, blob.digest)
    print(f"{registry.kind}: idle RSS {idle / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB")
    assert peak - idle < limit, f"RSS grew by {(peak - idle) / MiB:.1f} MiB (idle {idle / MiB:.1f} MiB)"


def finishUpload(port: int, location: str, blob: Pattern, held: int) -> None:
    """
    Send the rest of C{blob} from byte C{held} on, as a client carrying on
    where the registry says the upload stands, and finish the upload.
    """
    response, body = call(
        port,
        "PATCH",
        location,
        blob.chunks(held, blob.size),
        {"Content-Length": str(blob.size - held), "Content-Range": f"{held}-{blob.size - 1}"},
    )
    assert response.status == 202, body
    response, body = call(port, "PUT", f"{location}?digest={blob.digest}")
    assert response.status == 201, body
