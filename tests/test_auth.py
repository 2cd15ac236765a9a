"""
auth.htpasswd: every route behind the one guard, Basic credentials checked
with bcrypt in threads (once, then remembered), the file read again when it
changes, and real clients logging in.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import bcrypt
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.server import Site
from zope.interface import implementer

import txregistry
from tests.helpers import Client, RegistryProcess, serving
from tests.proxy import proxyConfig, proxyRegistry, upstreamRegistry
from tests.test_mirror import DOCKER, DOCKERD, Dockerd
from tests.test_skopeo import makeLayout
from txregistry.auth import (
    PULL,
    PUSH,
    Access,
    AuthenticatedAccess,
    HtpasswdAuthenticator,
    IAccessPolicy,
    Identity,
)
from txregistry.registry import Registry
from txregistry.storage import FilesystemDriver
from txregistry.web import RegistryResource, RootResource, SiteRequest
from txregistry.web.context import Context, Guard
from txregistry.web.fleet import FleetBlobEndpoint
from txregistry.web.responses import Endpoint
from txregistry.web.router import ROUTES, ErrorEndpoint, route

REALM = "test realm"
DIGEST = "sha256:" + "0" * 64
UUID = "3f0c7a8e-0000-4000-8000-000000000000"
SKOPEO = shutil.which("skopeo")


def entry(user: str, password: str, rounds: int = 4, prefix: bytes = b"$2b$") -> bytes:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds))
    return user.encode() + b":" + prefix + hashed[4:] + b"\n"


def writeUsers(path: str, *entries: bytes) -> None:
    # Replaced whole, as an editor or a deployment would.
    with open(path + ".new", "wb") as f:
        f.write(b"".join(entries))
    os.replace(path + ".new", path)


def basic(user: str | bytes, password: str | bytes) -> dict[str, str]:
    raw = (user.encode() if isinstance(user, str) else user) + b":"
    raw += password.encode() if isinstance(password, str) else password
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


ALICE = basic("alice", "secret")


def configText(root: str, users: str) -> str:
    return (
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"auth:\n  htpasswd:\n    realm: {REALM}\n    path: {users}\n"
    )


@pytest.fixture
def users(tmp_path: Any) -> str:
    path = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(path, entry("alice", "secret", prefix=b"$2y$"), entry("bob", "hunter2"))
    return path


@pytest_twisted.async_yield_fixture
async def guarded(tmp_path: Any, users: str) -> AsyncIterator[Client]:
    config = txregistry.parseConfig(configText(os.path.join(str(tmp_path), "store"), users), environ={})
    async with serving(config) as client:
        yield client


@pytest_twisted.async_yield_fixture
async def open_(tmp_path: Any) -> AsyncIterator[Client]:
    root = os.path.join(str(tmp_path), "open")
    text = f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
    async with serving(txregistry.parseConfig(text, environ={})) as client:
        yield client


def concurrently(*requests: Any) -> Any:
    return gatherResults([Deferred.fromCoroutine(r) for r in requests])


def siteWith(root: str, guard: Guard) -> Site:
    registry = Registry(FilesystemDriver(root))
    site = Site(RootResource(RegistryResource(registry, Context(registry, guard=guard))))
    site.requestFactory = SiteRequest
    return site


def paths() -> Iterator[tuple[str, str]]:
    """
    Every route the router knows, with each method its endpoint has and
    one it has not.
    """
    for known in ROUTES:
        path = known.example.replace("<name>", "team/app")
        path = path.replace("<reference>", UUID if "uploads" in path else DIGEST)
        for method in [*known.endpoint.methods(), "OPTIONS"]:
            yield method, path


#: Not routes: what the router answers with an error, for every method.
ERRORS = [
    ("GET", "/v2/nothing/here"),
    ("PUT", "/v2/Bad..Name/manifests/latest"),
    ("DELETE", "/v2/a/blobs/not-a-digest"),
    ("GET", "/elsewhere"),
]


def concrete(cls: type[Endpoint]) -> Iterator[type[Endpoint]]:
    for sub in cls.__subclasses__():
        if sub.methods() and sub is not ErrorEndpoint:
            yield sub
        yield from concrete(sub)


def test_routes_are_all_known() -> None:
    """
    The routes the guard's tests go through are every endpoint there is,
    and none of them answers without passing the guard: a route added
    later fails here until it is in L{ROUTES}. The fleet's endpoint, beside
    C{/v2/} and not a registry route, is the one other: what it answers
    needs the fleet's signature instead (tests/test_fleet.py).
    """
    assert set(concrete(Endpoint)) - {FleetBlobEndpoint} == {known.endpoint for known in ROUTES}
    context = Context(Registry(FilesystemDriver("/nonexistent")))
    for known in ROUTES:
        assert known.endpoint.render is Endpoint.render, known
        path = known.example.replace("<name>", "a/b").replace("<reference>", DIGEST)
        assert isinstance(route(context, path.split("/")[2:]), known.endpoint), known
    assert ErrorEndpoint.render is Endpoint.render


@pytest_twisted.ensureDeferred
async def test_every_route_asks_anonymous_clients_to_log_in(guarded: Client) -> None:
    for method, path in [*paths(), *ERRORS]:
        response = await guarded.request(method, path)
        assert response.code == 401, (method, path, response)
        assert response.header("WWW-Authenticate") == f'Basic realm="{REALM}"', (method, path)
        if method != "HEAD":
            assert response.errorCode() == "UNAUTHORIZED", (method, path)


@pytest_twisted.ensureDeferred
async def test_every_route_lets_a_user_through(guarded: Client, open_: Client) -> None:
    """
    With the right password, each route answers as it does on an open
    registry.
    """
    for method, path in [*paths(), *ERRORS]:
        expected = await open_.request(method, path)
        response = await guarded.request(method, path, headers=ALICE)
        assert response.code == expected.code, (method, path, response)
        assert response.code not in (401, 403, 500), (method, path, response)
    # And a real push and pull.
    await guarded.request("GET", "/v2/", headers=ALICE)
    response = await guarded.request("POST", "/v2/team/app/blobs/uploads/?digest=" + sha(b"x"), b"x", ALICE)
    assert response.code == 201
    response = await guarded.request("GET", "/v2/team/app/blobs/" + sha(b"x"), headers=ALICE)
    assert (response.code, response.body) == (200, b"x")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "headers",
    [
        basic("alice", "wrong"),
        basic("mallory", "secret"),
        basic("", "secret"),
        basic("alice", ""),
        basic("alice", "secret" + "x" * 100),
        {"Authorization": "Basic"},
        {"Authorization": "Basic "},
        {"Authorization": base64.b64encode(b"alice:secret").decode()},
        {"Authorization": "Bearer " + base64.b64encode(b"alice:secret").decode()},
        {"Authorization": "Basic not*base64!"},
        {"Authorization": "Basic " + base64.b64encode(b"alicesecret").decode()},
        basic(b"\xff\xfe", "secret"),
        basic("alice", b"\xff\xfe"),
        {"Authorization": "Basic " + "A" * 16000},
        {"Authorization": "Basic " + base64.b64encode(b"alice:" + b"s" * 11000).decode()},
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_credentials(guarded: Client, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/v2/"), ("GET", "/v2/team/app/tags/list"), ("PUT", "/v2/a/manifests/1")]:
        response = await guarded.request(method, path, headers=headers)
        assert response.code == 401, response
        assert response.header("WWW-Authenticate") == f'Basic realm="{REALM}"'
        assert response.errorCode() == "UNAUTHORIZED"


@pytest_twisted.ensureDeferred
async def test_non_utf8_authorization_header(guarded: Client) -> None:
    # Bytes no client library would send.
    def raw() -> bytes:
        host, port = guarded.base.rsplit("/", 1)[-1].split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(
                b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \xff\xfe\x80\r\n"
                b"Connection: close\r\n\r\n"
            )
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        return answer

    answer = await deferToThread(raw)
    assert answer.startswith(b"HTTP/1.1 401 "), answer


@implementer(IAccessPolicy)
class NoPushToLibrary:
    """
    The policy that later access rules will be: here, nobody pushes to
    C{library/}, nor pulls from C{secret/}.
    """

    def allows(self, identity: Identity, access: Access) -> bool:
        if identity.anonymous:
            return False
        name = access.repository or ""
        return not (
            (access.action == PUSH and name.startswith("library/"))
            or (access.action == PULL and name.startswith("secret/"))
        )


@pytest_twisted.ensureDeferred
async def test_denied_is_403_and_mounts_need_pull_on_the_source(tmp_path: Any, users: str) -> None:
    authenticator = HtpasswdAuthenticator(users, REALM, reactor, reactor)
    site = siteWith(os.path.join(str(tmp_path), "store"), Guard(authenticator, NoPushToLibrary()))
    async with serving(None, site) as client:
        response = await client.request("POST", "/v2/library/x/blobs/uploads/", headers=ALICE)
        assert (response.code, response.errorCode()) == (403, "DENIED")
        response = await client.request("POST", "/v2/library/x/blobs/uploads/")
        assert response.code == 401
        response = await client.request("POST", "/v2/mine/blobs/uploads/", headers=ALICE)
        assert response.code == 202
        mount = f"/v2/mine/blobs/uploads/?mount={DIGEST}&from="
        response = await client.request("POST", mount + "secret/x", headers=ALICE)
        assert (response.code, response.errorCode()) == (403, "DENIED")
        response = await client.request("POST", mount + "public/x", headers=ALICE)
        assert response.code == 202
        assert (await client.request("GET", "/v2/secret/x/tags/list", headers=ALICE)).code == 403


@pytest_twisted.ensureDeferred
async def test_bcrypt_in_threads_once_and_bounded(tmp_path: Any, users: str) -> None:
    """
    bcrypt runs off the reactor thread, at most four at once; concurrent
    requests with the same credentials share one check, and credentials
    that checked out are not checked again.
    """
    threads: list[threading.Thread] = []
    running = [0, 0]
    lock = threading.Lock()

    def checkPassword(password: bytes, hashed: bytes) -> bool:
        threads.append(threading.current_thread())
        with lock:
            running[0] += 1
            running[1] = max(running)
        try:
            return bcrypt.checkpw(password, hashed)
        finally:
            with lock:
                running[0] -= 1

    authenticator = HtpasswdAuthenticator(users, REALM, reactor, reactor, checkPassword=checkPassword)
    site = siteWith(os.path.join(str(tmp_path), "store"), Guard(authenticator, AuthenticatedAccess()))
    async with serving(None, site) as client:
        answers = await concurrently(*[client.request("GET", "/v2/", headers=ALICE) for _ in range(20)])
        assert {a.code for a in answers} == {200}
        assert len(threads) == 1
        await client.request("GET", "/v2/", headers=ALICE)
        assert len(threads) == 1
        wrong = [client.request("GET", "/v2/", headers=basic("bob", f"wrong{i}")) for i in range(30)]
        assert {a.code for a in await concurrently(*wrong)} == {401}
    assert len(threads) == 31
    assert threading.main_thread() not in threads
    assert running[1] <= 4


@pytest_twisted.ensureDeferred
async def test_login_storm(tmp_path: Any) -> None:
    """
    200 wrong passwords at once (bcrypt at cost 10) leave the registry
    answering a user who logged in before, at once.
    """
    path = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(path, entry("alice", "secret", rounds=10), entry("bob", "hunter2", rounds=10))
    config = txregistry.parseConfig(configText(os.path.join(str(tmp_path), "store"), path), environ={})
    async with serving(config) as client:
        other = Client(client.base)
        try:
            assert (await other.request("GET", "/v2/", headers=ALICE)).code == 200
            started = time.monotonic()
            storm = concurrently(
                *[client.request("GET", "/v2/", headers=basic("bob", f"guess{i}")) for i in range(200)]
            )
            latencies = []
            for _ in range(5):
                before = time.monotonic()
                assert (await other.request("GET", "/v2/", headers=ALICE)).code == 200
                latencies.append(time.monotonic() - before)
            assert not storm.called, "the storm ended before the other client was answered"
            assert {a.code for a in await storm} == {401}
            assert max(latencies) < 0.5, (latencies, time.monotonic() - started)
        finally:
            await other.close()


@pytest_twisted.ensureDeferred
async def test_file_read_again_when_it_changes(guarded: Client, users: str) -> None:
    assert (await guarded.request("GET", "/v2/", headers=ALICE)).code == 200
    carol = basic("carol", "pw")
    assert (await guarded.request("GET", "/v2/", headers=carol)).code == 401
    writeUsers(users, entry("carol", "pw"), entry("bob", "hunter2"))

    async def becomes(headers: dict[str, str], code: int) -> None:
        deadline = time.monotonic() + 10
        while (await guarded.request("GET", "/v2/", headers=headers)).code != code:
            assert time.monotonic() < deadline, (headers, code)
            await sleep(0.2)

    await becomes(carol, 200)
    # Remembered before, forgotten with the file that had her.
    assert (await guarded.request("GET", "/v2/", headers=ALICE)).code == 401
    # A file that stops making sense lets nobody in until it does again.
    writeUsers(users, b"carol:{SHA}c2VjcmV0\n")
    await becomes(carol, 401)
    writeUsers(users, entry("alice", "secret"))
    await becomes(ALICE, 200)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


def test_empty_file_lets_nobody_in(tmp_path: Any) -> None:
    """
    As registry:2 2.8: an empty file starts a registry nobody can use (until
    the file has users).
    """
    path = os.path.join(str(tmp_path), "htpasswd")
    open(path, "w").close()
    config = os.path.join(str(tmp_path), "config.yml")
    with open(config, "w") as f:
        f.write(configText(os.path.join(str(tmp_path), "store"), path))
    process = RegistryProcess(os.path.join(str(tmp_path), "store"), config)
    process.start()
    try:
        url = f"http://127.0.0.1:{process.port}/v2/"
        request = urllib.request.Request(url, headers=ALICE)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 401
    finally:
        process.stop()


def skopeo(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    assert SKOPEO is not None
    result = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=120)
    assert (result.returncode == 0) == ok, result.stderr
    return result


def processWith(directory: str, text: Callable[[str], str]) -> RegistryProcess:
    """
    A registry in a process of its own, started with the configuration
    C{text} gives for a store in C{directory}.
    """
    config = os.path.join(directory, "config.yml")
    store = os.path.join(directory, "store")
    with open(config, "w") as f:
        f.write(text(store))
    process = RegistryProcess(store, config)
    process.start()
    return process


def htpasswdProcess(directory: str, users: str) -> RegistryProcess:
    """
    A registry in a process of its own, behind the htpasswd file C{users}.
    """
    return processWith(directory, lambda store: configText(store, users))


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")
def test_skopeo_with_credentials(tmp_path: Any, users: str) -> None:
    process = htpasswdProcess(str(tmp_path), users)
    try:
        source = os.path.join(str(tmp_path), "layout")
        makeLayout(source, "1.0")
        image = f"docker://127.0.0.1:{process.port}/skopeo/test:1.0"
        refused = skopeo("copy", "--dest-tls-verify=false", f"oci:{source}:1.0", image, ok=False)
        assert "401" in refused.stderr or "authentication required" in refused.stderr, refused.stderr
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "bob:wrong",
            f"oci:{source}:1.0",
            image,
            ok=False,
        )
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:secret", f"oci:{source}:1.0", image)
        back = os.path.join(str(tmp_path), "back")
        skopeo("copy", "--src-tls-verify=false", image, f"oci:{back}:copied", ok=False)
        skopeo("copy", "--src-tls-verify=false", "--src-creds", "bob:hunter2", image, f"oci:{back}:copied")
        assert os.path.exists(os.path.join(back, "index.json"))
    finally:
        process.stop()


@pytest_twisted.ensureDeferred
async def test_pull_through_cache_behind_htpasswd(tmp_path: Any, users: str) -> None:
    """
    Clients authenticate to the cache, as to any registry; the upstream is
    asked as before.
    """
    async with upstreamRegistry(os.path.join(str(tmp_path), "upstream")) as upstream:
        manifest, _ = await upstream.client.pushImage("library/app", "1.0", [b"layer"])
        auth = f"auth:\n  htpasswd:\n    realm: {REALM}\n    path: {users}\n"
        config = proxyConfig(upstream.url) + auth
        async with proxyRegistry(os.path.join(str(tmp_path), "cache"), upstream.url, config=config) as proxy:
            response = await proxy.client.request("GET", "/v2/library/app/manifests/1.0")
            assert response.code == 401
            assert response.header("WWW-Authenticate") == f'Basic realm="{REALM}"'
            assert upstream.counting.count("GET", "/v2/library/app/manifests/1.0") == 0
            response = await proxy.client.request("GET", "/v2/library/app/manifests/1.0", headers=ALICE)
            assert (response.code, response.body) == (200, manifest)


@pytest_twisted.ensureDeferred
async def test_anonymous_push_changes_nothing(guarded: Client) -> None:
    data = b"x" * (3 * 1024 * 1024)
    response = await guarded.request("POST", f"/v2/team/app/blobs/uploads/?digest={sha(data)}", data)
    assert response.code == 401
    response = await guarded.request("PUT", "/v2/team/app/manifests/1.0", b"{}")
    assert response.code == 401
    assert (await guarded.request("HEAD", f"/v2/team/app/blobs/{sha(data)}", headers=ALICE)).code == 404
    assert (await guarded.request("GET", "/v2/_catalog", headers=ALICE)).json() == {"repositories": []}


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")
@pytest.mark.skipif(
    DOCKERD is None or DOCKER is None, reason="dockerd is not installed (apt-get install docker.io)"
)
def test_docker_login_push_pull(tmp_path: Any, users: str) -> None:
    process = htpasswdProcess(str(tmp_path), users)
    host = f"127.0.0.1:{process.port}"
    os.makedirs(os.path.join(str(tmp_path), "docker"))
    daemon = Dockerd(os.path.join(str(tmp_path), "docker"), f"http://{host}")
    clientConfig = os.path.join(str(tmp_path), "client")

    def docker(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        # A client configuration of its own, for the credentials login keeps.
        assert DOCKER is not None
        command = [DOCKER, "--host", f"unix://{daemon.socket}", "--config", clientConfig, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, input=input)

    try:
        why = daemon.ready()
        if why is not None:
            pytest.skip(f"dockerd cannot run here: {why}")
        source = os.path.join(str(tmp_path), "layout")
        makeLayout(source, "1.0")
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:secret",
            f"oci:{source}:1.0",
            f"docker://{host}/a/b:1.0",
        )
        wrong = docker("login", "-u", "alice", "--password-stdin", host, input="nope\n")
        assert wrong.returncode != 0, wrong.stdout
        right = docker("login", "-u", "alice", "--password-stdin", host, input="secret\n")
        assert right.returncode == 0, right.stderr
        for args in (
            ["pull", f"{host}/a/b:1.0"],
            ["tag", f"{host}/a/b:1.0", f"{host}/c/d:2"],
            ["push", f"{host}/c/d:2"],
            ["rmi", f"{host}/c/d:2", f"{host}/a/b:1.0"],
            ["pull", f"{host}/c/d:2"],
        ):
            result = docker(*args)
            assert result.returncode == 0, (args, result.stderr)
        assert docker("logout", host).returncode == 0
        assert docker("rmi", f"{host}/c/d:2").returncode == 0
        refused = docker("pull", f"{host}/c/d:2")
        assert refused.returncode != 0
        assert "no basic auth credentials" in refused.stderr or "unauthorized" in refused.stderr, (
            refused.stderr
        )
    finally:
        daemon.stop()
        process.stop()
