"""
The ways to run a registry: twistd with no options, the console script, a
resource in another program's site; and its background upload purging.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import pytest_twisted
from twisted.web.resource import Resource
from twisted.web.server import Site

import txregistry
from tests.conftest import configFor
from tests.helpers import Client, RegistryProcess, SyncClient, freePort, serving, sha256
from txregistry.registry import purgeUploads
from txregistry.service import registryOf
from txregistry.storage import layout

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def waitForPort(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}: {process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("never listened")


def portFree(port: int) -> bool:
    with socket.socket() as s:
        # As Twisted listens: a port whose old connections wait in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@pytest_twisted.ensureDeferred
async def test_twistd_with_no_options(tmp_path: object) -> None:
    if not portFree(5000):
        pytest.skip("port 5000 is in use on this machine")
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    process = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "registry"],
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        waitForPort(5000, process)
        client = Client("http://127.0.0.1:5000")
        digest = await client.pushBlob("default/place", b"layer")
        await client.close()
        hexdigest = digest.split(":")[1]
        data = os.path.join(
            str(tmp_path), "registry-data/docker/registry/v2/blobs/sha256", hexdigest[:2], hexdigest, "data"
        )
        assert open(data, "rb").read() == b"layer"
    finally:
        process.terminate()
        process.wait(10)


@pytest_twisted.ensureDeferred
async def test_console_script_with_config_file(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "from-config")
    port = freePort()
    config = os.path.join(str(tmp_path), "config.yml")
    with open(config, "w") as f:
        f.write(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
            f"http:\n  addr: 127.0.0.1:{port}\nredis: {{}}\n"
        )
    script = os.path.join(os.path.dirname(sys.executable), "txregistry")
    if not os.path.exists(script):
        pytest.skip("the txregistry console script is not installed (pip install .)")
    process = subprocess.Popen(
        [script, "serve", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        waitForPort(port, process)
        client = Client(f"http://127.0.0.1:{port}")
        await client.pushBlob("r", b"content")
        await client.close()
        assert os.path.isdir(os.path.join(root, "docker/registry/v2/repositories/r"))
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "config key redis is not supported yet and is ignored" in output


@pytest_twisted.ensureDeferred
async def test_embed_example(tmp_path: object) -> None:
    port = freePort()
    root = os.path.join(str(tmp_path), "embedded")
    process = subprocess.Popen(
        [sys.executable, os.path.join(EXAMPLES, "embed.py"), f"tcp:{port}:interface=127.0.0.1", root],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        waitForPort(port, process)
        client = Client(f"http://127.0.0.1:{port}")
        body, digest = await client.pushImage("embedded/app", "v1", [os.urandom(3_000_000)])
        assert (await client.request("GET", "/v2/embedded/app/manifests/v1")).body == body
        assert (await client.request("GET", "/")).body == b"my service, with a registry at /v2/\n"
        await client.close()
    finally:
        process.terminate()
        process.wait(10)


@pytest_twisted.ensureDeferred
async def test_resource_in_a_plain_site(tmp_path: object) -> None:
    """
    Without RegistryRequest, twisted.web reads bodies first; the resource
    still works, reading them from there.
    """
    root = Resource()
    root.putChild(b"v2", txregistry.resource(configFor(os.path.join(str(tmp_path), "s"))))
    async with serving(None, Site(root)) as client:
        layer = os.urandom(1_500_000)
        body, digest = await client.pushImage("plain", "v1", [layer])
        started = await client.request("POST", "/v2/plain/blobs/uploads/")
        location = started.header("Location")
        response = await client.request("PATCH", location, layer[:1000])
        assert response.code == 202
        done = await client.request("PUT", f"{location}?digest={sha256(layer)}", layer[1000:])
        assert done.code == 201
        assert (await client.request("GET", "/v2/plain/manifests/v1")).body == body


@pytest_twisted.ensureDeferred
async def test_purge_old_uploads(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "s")
    registry = registryOf(configFor(root))
    old = await registry.uploads.start("team/app")
    fresh = await registry.uploads.start("team/app")
    # registry:2 writes startedat as RFC 3339 with nanoseconds.
    await registry.driver.putContent(
        layout.uploadStartedAt("team/app", old.uuid), b"2020-01-02T03:04:05.123456789Z"
    )
    dry = await purgeUploads(registry, timedelta(hours=1), dryRun=True)
    assert dry == [layout.upload("team/app", old.uuid)]
    assert await registry.uploads.status("team/app", old.uuid)
    purged = await purgeUploads(registry, timedelta(hours=1))
    assert purged == [layout.upload("team/app", old.uuid)]
    assert not os.path.exists(root + layout.upload("team/app", old.uuid))
    assert (await registry.uploads.status("team/app", fresh.uuid)).size == 0


def test_purging_runs_in_the_background(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "store")
    stale = root + layout.upload("r", "0f0e4c1a-8b7b-4a4e-9d7e-3d2b9e9a0b1c")
    os.makedirs(stale)
    with open(os.path.join(stale, "startedat"), "w") as f:
        f.write("2001-01-01T00:00:00Z")
    config = os.path.join(str(tmp_path), "config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /ignored\n"
            "  maintenance:\n    uploadpurging:\n      age: 1h\n      interval: 1h\n"
        )
    process = RegistryProcess(root, config)
    process.start()
    try:
        deadline = time.monotonic() + 10
        while os.path.exists(stale) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(stale)
    finally:
        process.stop()


def test_tls_on_the_plain_port_is_turned_away_at_once(tmp_path: object) -> None:
    process = RegistryProcess(os.path.join(str(tmp_path), "store"))
    process.start()
    try:
        with socket.create_connection(("127.0.0.1", process.port), timeout=5) as sock:
            # The start of a TLS ClientHello: a handshake record, TLS 1.0 framing.
            sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(32))
            answer = sock.recv(200)
        assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n")
        # Plain HTTP on the same port still works.
        with socket.create_connection(("127.0.0.1", process.port), timeout=5) as sock:
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(200).startswith(b"HTTP/1.1 200 OK")
    finally:
        process.stop()


def test_listening_with_tls(tmp_path: object) -> None:
    import ssl

    pytest.importorskip("OpenSSL", reason="TLS needs pyOpenSSL (pip install 'txregistry[tls]')")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    key, cert = os.path.join(str(tmp_path), "key.pem"), os.path.join(str(tmp_path), "cert.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    listen = f"ssl:{{port}}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    process = RegistryProcess(os.path.join(str(tmp_path), "store"), listen=listen)
    process.start()
    try:
        context = ssl.create_default_context(cafile=cert)
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", process.port), timeout=5) as raw:
            with context.wrap_socket(raw) as sock:
                sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                assert sock.recv(200).startswith(b"HTTP/1.1 200 OK")
    finally:
        process.stop()


@pytest.mark.parametrize(
    "level, accessLog, expectInfo, expectWarning, expectAccess",
    [
        ("info", True, True, True, True),
        ("warn", True, False, True, True),
        ("error", False, False, False, False),
    ],
)
def test_log_level_and_access_log(
    tmp_path: object, level: str, accessLog: bool, expectInfo: bool, expectWarning: bool, expectAccess: bool
) -> None:
    config = os.path.join(str(tmp_path), "config.yml")
    with open(config, "w") as f:
        f.write(
            f"version: 0.1\nlog:\n  level: {level}\n"
            f"  accesslog:\n    disabled: {str(not accessLog).lower()}\n"
            "storage:\n  filesystem:\n    rootdirectory: /ignored\nredis: {}\n"
        )
    process = RegistryProcess(os.path.join(str(tmp_path), "store"), config)
    process.start()
    try:
        assert SyncClient(process.port).request("GET", "/v2/").status == 200
    finally:
        process.stop()
    output = process.output()
    assert ("txregistry: filesystem storage" in output) == expectInfo
    assert ("config key redis is not supported yet" in output) == expectWarning
    assert ('"GET /v2/ HTTP/1.1" 200' in output) == expectAccess


def test_example_config_needs_no_warnings() -> None:
    config = txregistry.loadConfig(os.path.join(EXAMPLES, "config.yml"), environ={})
    assert config.warnings == ()
    assert config.storage.deleteEnabled
    assert config.http.listen == ("tcp:5000",)
