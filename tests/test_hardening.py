"""
Bad input of every kind gets a proper answer: malformed HTTP, storage that
fails under the registry, leftovers of killed processes and manifests built
to exhaust the parser.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import attrs
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.helpers import Client


@attrs.frozen
class RawResponse:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def exchange(port: int, request: bytes) -> bytes:
    """
    Send C{request} as it is and read until the server closes.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def parse(answer: bytes) -> RawResponse:
    """
    One HTTP/1.1 response, which must be whole and framed by Content-Length.
    """
    head, separator, body = answer.partition(b"\r\n\r\n")
    assert separator, answer
    statusLine, *lines = head.decode("latin-1").split("\r\n")
    version, status, _ = statusLine.split(" ", 2)
    assert version == "HTTP/1.1", statusLine
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, value = line.split(":", 1)
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    assert headers.get("content-length") == [str(len(body))], answer
    return RawResponse(int(status), headers, body)


async def send(client: Client, request: bytes) -> RawResponse:
    port = urlsplit(client.base).port
    assert port is not None
    return parse(await deferToThread(exchange, port, request))


async def assertStillServing(client: Client) -> None:
    response = await send(client, b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert response.status == 200


def assertRefused(response: RawResponse, status: int) -> None:
    assert response.status == status, response
    assert response.header("connection") == "close"
    assert response.body.startswith(str(status).encode()), response.body
    assert response.header("location") is None


def upload(host: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /v2/hosts/blobs/uploads/ HTTP/1.1\r\nHost: "
        + host
        + b"\r\n"
        + extra
        + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


@pytest_twisted.ensureDeferred
async def test_invalid_host_is_refused_before_anything_runs(fsRegistry: Client) -> None:
    for host in (b"a b", b"a\x01b", b"a\x7fb", b"a/b", b"user@a", b"a\tb", b"a?b", b"a#b", b"\xc3\xa9"):
        assertRefused(await send(fsRegistry, upload(host)), 400)
    assertRefused(await send(fsRegistry, upload(b"one", b"Host: two\r\n")), 400)
    # A header folded over two lines is one with a space inside.
    assertRefused(await send(fsRegistry, upload(b"a\r\n b")), 400)
    root = fsRegistry.root  # type: ignore[attr-defined]
    assert not os.path.exists(os.path.join(root, "docker", "registry", "v2", "repositories"))
    await assertStillServing(fsRegistry)


@pytest_twisted.ensureDeferred
async def test_valid_hosts_are_used_in_locations(fsRegistry: Client) -> None:
    for host in (b"localhost", b"localhost:5000", b"127.0.0.1:80", b"[::1]:5000", b"my_registry.local"):
        response = await send(fsRegistry, upload(host))
        assert response.status == 202, response
        location = response.header("location")
        assert location is not None and location.startswith(f"http://{host.decode()}/v2/hosts/"), location


@pytest_twisted.ensureDeferred
async def test_invalid_content_length_is_refused(fsRegistry: Client) -> None:
    for length in (str(2**63).encode(), b"9" * 30, b"-1", b"1e3", b"0x10", b"+5", b"\xd9\xa3"):
        request = (
            b"POST /v2/lengths/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
            + length
            + b"\r\nConnection: close\r\n\r\n"
        )
        assertRefused(await send(fsRegistry, request), 400)
    twice = (
        b"POST /v2/lengths/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\nxy"
    )
    assertRefused(await send(fsRegistry, twice), 400)
    root = fsRegistry.root  # type: ignore[attr-defined]
    assert not os.path.exists(os.path.join(root, "docker", "registry", "v2", "repositories"))
    await assertStillServing(fsRegistry)


@pytest_twisted.ensureDeferred
async def test_over_long_header_lines_are_answered(fsRegistry: Client) -> None:
    long = b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"a" * 65536 + b"\r\n\r\n"
    assertRefused(await send(fsRegistry, long), 431)
    many = b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n" + b"".join(
        b"X-Many-%d: %s\r\n" % (i, b"a" * 1000) for i in range(40)
    )
    assertRefused(await send(fsRegistry, many + b"\r\n"), 431)
    await assertStillServing(fsRegistry)


@pytest_twisted.ensureDeferred
async def test_over_long_request_lines_are_answered(fsRegistry: Client) -> None:
    line = b"GET /v2/" + b"a" * 65536 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    assertRefused(await send(fsRegistry, line), 414)
    # Also while a request line is still arriving, with no end in sight.
    assertRefused(await send(fsRegistry, b"GET /v2/" + b"a" * 20000), 414)
    await assertStillServing(fsRegistry)


@pytest_twisted.ensureDeferred
async def test_malformed_requests_get_a_whole_answer(fsRegistry: Client) -> None:
    for request in (
        b"NONSENSE\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
    ):
        assertRefused(await send(fsRegistry, request), 400)
    await assertStillServing(fsRegistry)
