"""
HTTP as a registry's clients speak it, and as some of them abuse it:
bodies nobody asked for, absolute-form targets, references that are no
tag, and what the server says about itself and its storage.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from tests.helpers import Client, RawResponse, RegistryProcess, freePort, sha256
from txregistry.manifest import MAX_MANIFEST_SIZE, OCI_MANIFEST
from txregistry.pump import Pump
from txregistry.reference import Digest
from txregistry.registry import Registry, purgeUploads
from txregistry.storage import MemoryDriver

MiB = 1024 * 1024
#: Announced by the bodies that are never sent whole.
HUGE = 10_000_000_000


class RawConnection:
    """
    A blocking connection that sends exactly the bytes it is given, for
    requests an HTTP client will not make.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._received = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def sendBody(self, size: int) -> int:
        """
        Send up to C{size} bytes of body; how many went out before the peer
        closed the connection, if it did.
        """
        chunk = b"x" * (64 * 1024)
        sent = 0
        try:
            while sent < size:
                piece = chunk[: size - sent]
                self.sock.sendall(piece)
                sent += len(piece)
        except OSError:
            pass
        return sent

    def _recv(self, deadline: float) -> bytes:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def readResponse(self, deadline: float) -> RawResponse:
        """
        One response, read whole by C{deadline} (its body is as long as its
        Content-Length says).
        """
        try:
            while b"\r\n\r\n" not in self._received:
                data = self._recv(deadline)
                if not data:
                    pytest.fail(f"closed before a whole response: {self._received!r}")
                self._received += data
            head, _, rest = self._received.partition(b"\r\n\r\n")
            statusLine, *lines = head.decode("latin-1").split("\r\n")
            headers: dict[str, list[str]] = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
            length = int(headers["content-length"][0])
            while len(rest) < length:
                data = self._recv(deadline)
                if not data:
                    pytest.fail(f"closed before a whole response: {self._received + rest!r}")
                rest += data
        except TimeoutError:
            pytest.fail(f"no whole response in time, only {self._received!r}")
        self._received = rest[length:]
        return RawResponse(int(statusLine.split()[1]), headers, rest[:length])

    def readUntilClosed(self, deadline: float) -> bytes:
        """
        What else arrives until the peer closes the connection, which it
        must do by C{deadline}.
        """
        received, self._received = self._received, b""
        try:
            while data := self._recv(deadline):
                received += data
        except TimeoutError:
            pytest.fail(f"the connection was still open at the deadline, after {received!r}")
        return received

    def close(self) -> None:
        self.sock.close()


def rawRequest(
    port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> RawResponse:
    """
    One request with C{target} as the request line's target, on a
    connection of its own.
    """
    lines = [f"{method} {target} HTTP/1.1", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in {"Host": f"127.0.0.1:{port}", **(headers or {})}.items()]
    connection = RawConnection(port)
    try:
        connection.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return connection.readResponse(time.monotonic() + 10)
    finally:
        connection.close()


def portOf(client: Client) -> int:
    port = urlsplit(client.base).port
    assert port is not None
    return port


@pytest.fixture
def spooling(tmp_path: object) -> Iterator[tuple[RegistryProcess, str]]:
    """
    A registry in its own process whose temporary files, if it made any,
    would be in a directory of their own.
    """
    spool = os.path.join(str(tmp_path), "spool")
    os.makedirs(spool)
    process = RegistryProcess(os.path.join(str(tmp_path), "store"), env={"TMPDIR": spool})
    process.start()
    yield process, spool
    process.stop()


def spooled(process: RegistryProcess, spool: str) -> list[str]:
    """
    The temporary files C{process} has, open or not.
    """
    assert process.process is not None
    fds = f"/proc/{process.process.pid}/fd"
    targets = []
    for fd in os.listdir(fds):
        try:
            targets.append(os.readlink(os.path.join(fds, fd)))
        except FileNotFoundError:
            continue
    return [t for t in targets if t.startswith(spool)] + os.listdir(spool)


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("POST", "/", 404),
        ("POST", "/v2/", 405),
        ("GET", "/v2/", 200),
        ("GET", "/v2", 200),
        ("POST", "http://127.0.0.1:{port}/v2/", 405),
    ],
)
def test_unwanted_body_is_neither_awaited_nor_spooled(
    spooling: tuple[RegistryProcess, str], method: str, target: str, status: int
) -> None:
    process, spool = spooling
    target = target.format(port=process.port)
    normal = rawRequest(process.port, method, target)
    assert normal.status == status

    connection = RawConnection(process.port)
    try:
        connection.send(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {HUGE}\r\n\r\n".encode()
        )
        # Not one byte of the body sent yet: the answer needs none of it.
        response = connection.readResponse(time.monotonic() + 5)
        assert (response.status, response.body) == (normal.status, normal.body)
        assert response.header("Connection") == "close"
        # More than the server throws away before it closes the connection,
        # and nothing near what was announced: the close must come while we
        # wait.
        connection.sendBody(3 * MiB)
        assert spooled(process, spool) == []
        assert connection.readUntilClosed(time.monotonic() + 5) == b""
    finally:
        connection.close()
    assert spooled(process, spool) == []


@pytest.mark.parametrize("form", ["origin", "absolute"])
def test_manifest_too_large_is_refused_without_reading_the_rest(
    spooling: tuple[RegistryProcess, str], form: str
) -> None:
    process, spool = spooling
    path = "/v2/r/manifests/latest"
    target = path if form == "origin" else f"http://127.0.0.1:{process.port}{path}"
    connection = RawConnection(process.port)
    try:
        connection.send(
            f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {OCI_MANIFEST}\r\n"
            f"Content-Length: {HUGE}\r\n\r\n".encode()
        )
        # Past the limit, and past what is then thrown away.
        connection.sendBody(MAX_MANIFEST_SIZE + 2 * MiB)
        response = connection.readResponse(time.monotonic() + 5)
        assert response.status == 413
        assert response.errorCodes() == ["SIZE_INVALID"]
        assert connection.readUntilClosed(time.monotonic() + 5) == b""
    finally:
        connection.close()
    assert spooled(process, spool) == []
    assert rawRequest(process.port, "GET", "/v2/r/tags/list").status == 404


@pytest_twisted.ensureDeferred
async def test_absolute_form_targets(registry: Client) -> None:
    port = portOf(registry)
    authority = f"127.0.0.1:{port}"

    base = await deferToThread(rawRequest, port, "GET", f"http://{authority}/v2/")
    assert (base.status, json.loads(base.body)) == (200, {})
    assert base.header("Docker-Distribution-API-Version") == "registry/2.0"

    # RFC 9112 section 3.2.2: the target's authority, not Host, says where
    # the client means to go.
    uploads = f"http://{authority}/v2/r/blobs/uploads/"
    started = await deferToThread(rawRequest, port, "POST", uploads, b"", {"Host": "elsewhere.invalid"})
    assert started.status == 202, started
    location = urlsplit(started.header("Location") or "")
    assert location.netloc == authority
    assert location.path.startswith("/v2/r/blobs/uploads/"), location
    uuid = location.path.removeprefix("/v2/r/blobs/uploads/")
    assert uuid and "/" not in uuid, location

    content = b"absolute content"
    digest = sha256(content)
    done = await deferToThread(
        rawRequest, port, "PUT", f"http://{authority}{location.path}?digest={digest}", content
    )
    assert done.status == 201, done
    assert done.header("Docker-Content-Digest") == digest

    pulled = await registry.request("GET", f"/v2/r/blobs/{digest}")
    assert (pulled.code, pulled.body) == (200, content)
    pulledAbsolute = await deferToThread(rawRequest, port, "GET", f"http://{authority}/v2/r/blobs/{digest}")
    assert (pulledAbsolute.status, pulledAbsolute.body) == (200, content)


@pytest_twisted.ensureDeferred
async def test_no_server_header(registry: Client) -> None:
    digest = await registry.pushBlob("r", b"layer")
    started = await registry.request("POST", "/v2/r/blobs/uploads/")
    answers = [
        await registry.request("GET", "/v2/"),
        await registry.request("HEAD", "/v2/"),
        await registry.request("GET", "/"),
        await registry.request("POST", "/v2/"),
        await registry.request("GET", "/v2/UPPER/tags/list"),
        await registry.request("GET", "/v2/r/manifests/missing"),
        await registry.request("GET", f"/v2/r/blobs/{digest}"),
        await registry.request("HEAD", f"/v2/r/blobs/{digest}"),
        await registry.request("GET", "/v2/_catalog"),
        started,
        await registry.request("DELETE", started.header("Location") or ""),
    ]
    assert [a.code for a in answers] == [200, 200, 404, 405, 400, 404, 200, 200, 200, 202, 204]
    assert [a.header("Server") for a in answers] == [None] * len(answers)

    # An answer given before the body it does not want.
    early = await deferToThread(
        rawRequest, portOf(registry), "PATCH", "/v2/r/blobs/uploads/no-such-upload", b"x" * 1024
    )
    assert early.status == 404
    assert early.header("Server") is None


@pytest_twisted.ensureDeferred
async def test_reference_neither_tag_nor_digest(registry: Client) -> None:
    manifest, _ = await registry.pushImage("r", "latest", [b"layer"])
    other = json.dumps({**json.loads(manifest), "annotations": {"other": "yes"}}).encode()
    for name in ("r", "absent"):
        for reference in (".INVALID_MANIFEST_NAME", "x" * 129):
            path = f"/v2/{name}/manifests/{reference}"
            for method in ("GET", "HEAD", "DELETE"):
                response = await registry.request(method, path)
                assert response.code == 404, (method, path)
                if method != "HEAD":
                    assert response.errorCode() == "MANIFEST_UNKNOWN", (method, path)
            put = await registry.pushManifest(name, reference, other)
            assert (put.code, put.errorCode()) == (400, "TAG_INVALID"), path

    assert (await registry.request("GET", "/v2/r/tags/list")).json()["tags"] == ["latest"]
    assert (await registry.request("GET", "/v2/absent/tags/list")).code == 404
    for name in ("r", "absent"):
        assert (await registry.request("GET", f"/v2/{name}/manifests/{sha256(other)}")).code == 404
    assert (await registry.request("GET", "/v2/_catalog")).json()["repositories"] == ["r"]


def unavailableStorage(tmp_path: object, purging: bool) -> RegistryProcess:
    """
    A registry in its own process whose S3 storage is a port nothing
    listens on, purging old uploads at start-up or not.
    """
    return RegistryProcess(
        os.path.join(str(tmp_path), "store"),
        storage=[
            "s3:",
            "  accesskey: key",
            "  secretkey: secret",
            "  region: us-east-1",
            f"  regionendpoint: http://127.0.0.1:{freePort()}",
            "  bucket: absent",
            "maintenance:",
            "  uploadpurging:",
            f"    enabled: {str(purging).lower()}",
        ],
    )


def test_storage_unavailable_is_one_line_per_request(tmp_path: object) -> None:
    process = unavailableStorage(tmp_path, purging=False)
    process.start()
    try:
        paths = ["/v2/r/tags/list", "/v2/_catalog", "/v2/r/manifests/latest"]
        # At once: each waits for S3 to be tried again a few times.
        with ThreadPoolExecutor(len(paths)) as pool:
            responses = list(pool.map(lambda path: rawRequest(process.port, "GET", path), paths))
        for path, response in zip(paths, responses, strict=True):
            assert (response.status, response.errorCodes()) == (503, ["UNAVAILABLE"]), path
    finally:
        process.stop()
    output = process.output()
    assert "Traceback" not in output
    failures = [line for line in output.splitlines() if "storage is unavailable" in line]
    assert len(failures) == len(paths), output
    assert all("Connection refused" in line for line in failures), failures


def test_storage_unavailable_to_the_upload_purger_is_one_line(tmp_path: object) -> None:
    process = unavailableStorage(tmp_path, purging=True)
    process.start()
    try:
        # The purger starts at once, and gives up once S3 has been tried
        # again a few times.
        deadline = time.monotonic() + 10
        while "purging uploads failed" not in process.output():
            assert time.monotonic() < deadline, process.output()
            time.sleep(0.1)
    finally:
        process.stop()
    output = process.output()
    assert "Traceback" not in output
    [failure] = [line for line in output.splitlines() if "purging uploads failed" in line]
    assert "Connection refused" in failure, failure


@pytest_twisted.ensureDeferred
async def test_upload_progress_is_bounded_and_purged() -> None:
    # Imported here so that the other tests of this module run on code
    # without the bound.
    from txregistry.registry.cache import ContentCache
    from txregistry.registry.uploads import PROGRESS_ENTRIES

    registry = Registry(MemoryDriver())
    # The progress is private to Uploads, and only what it holds in memory
    # says whether memory is bounded: read here, in this test alone.
    progress = registry.uploads._progress
    assert isinstance(progress, ContentCache)
    assert progress.maxBytes == PROGRESS_ENTRIES

    for _ in range(50):
        await registry.uploads.start("r")
    assert progress.size == 50
    assert len(await purgeUploads(registry, timedelta(0))) == 50
    assert progress.size == 0

    started = [await registry.uploads.start("r") for _ in range(PROGRESS_ENTRIES + 10)]
    assert progress.size == PROGRESS_ENTRIES
    # An upload whose progress was dropped is still there, and is hashed
    # again from storage when it goes on.
    first = started[0].uuid
    await registry.uploads.append("r", first, bodyOf(b"some "))
    for _ in range(PROGRESS_ENTRIES):
        await registry.uploads.start("r")
    size = await registry.uploads.finish("r", first, Digest.of(b"some bytes"), bodyOf(b"bytes"))
    assert size == len(b"some bytes")


def bodyOf(data: bytes) -> Pump:
    pump = Pump(limit=len(data))
    pump.received(data)
    pump.end()
    return pump


def test_a_body_sent_to_a_blob_being_read_is_not_held(spooling: tuple[RegistryProcess, str]) -> None:
    """
    A client that sends a body nobody takes while it reads a large answer:
    HTTPChannel resumes the connection each time some of the answer has
    gone, so only the body's own bound keeps the server's memory flat.
    """
    process, _ = spooling
    blob = os.urandom(64 * MiB)
    digest = sha256(blob)
    assert rawRequest(process.port, "POST", f"/v2/big/blobs/uploads/?digest={digest}", blob).status == 201
    before = process.rss()
    connection = RawConnection(process.port)
    try:
        head = f"GET /v2/big/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {HUGE}\r\n\r\n"
        connection.send(head.encode())
        with ThreadPoolExecutor(1) as pool:
            # The answer is read as fast as it comes, while the body goes.
            reading = pool.submit(connection.readUntilClosed, time.monotonic() + 30)
            sent = connection.sendBody(128 * MiB)
            peak = process.rss()
            try:
                connection.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # Cut already.
            reading.result()
    finally:
        connection.close()
    assert sent < 32 * MiB, f"the server took {sent / MiB:.0f} MiB of a body it does not read"
    assert peak - before < 16 * MiB, f"memory grew by {(peak - before) / MiB:.1f} MiB"
    assert rawRequest(process.port, "GET", "/v2/").status == 200


@pytest_twisted.ensureDeferred
async def test_no_100_continue_after_the_final_answer(fsRegistry: Client) -> None:
    def ask() -> tuple[RawResponse, bytes]:
        connection = RawConnection(portOf(fsRegistry))
        try:
            connection.send(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"
            )
            response = connection.readResponse(time.monotonic() + 5)
            # The body is never sent, as it was not asked for: the server
            # must not wait for it, and what else comes is no 100 Continue
            # (it would be taken for the answer to a next request).
            return response, connection.readUntilClosed(time.monotonic() + 5)
        finally:
            connection.close()

    response, rest = await deferToThread(ask)
    assert response.status == 404
    assert rest == b""


@pytest_twisted.ensureDeferred
async def test_a_client_that_leaves_mid_body_is_no_failure(fsRegistry: Client) -> None:
    started = await fsRegistry.request("POST", "/v2/team/app/blobs/uploads/")
    location = urlsplit(started.header("Location") or "").path
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:

        def leave() -> None:
            connection = RawConnection(portOf(fsRegistry))
            connection.send(
                f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {8 * MiB}\r\n\r\n".encode()
            )
            connection.sendBody(MiB)
            connection.close()

        await deferToThread(leave)
        # The server hears of the close in its own time.
        await deferLater(reactor, 0.5)
        status = await fsRegistry.request("GET", location)
    finally:
        globalLogPublisher.removeObserver(events.append)
    # Nobody is left to tell, and nothing went wrong on our side.
    assert [e for e in events if "log_failure" in e] == []
    # What arrived is kept, for the client to carry on from.
    assert status.code == 204
