"""
Running registries for tests and speaking HTTP to them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlencode, urlsplit

import attrs
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
    IResolutionReceiver,
)
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

import txregistry
from txregistry.manifest import OCI_MANIFEST


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@implementer(IBodyProducer)
class ChunkedBody:
    """
    A request body of unknown length, sent with Transfer-Encoding: chunked,
    one chunk at a time.
    """

    length = UNKNOWN_LENGTH

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks

    def startProducing(self, consumer: Any) -> Deferred[None]:
        for chunk in self._chunks:
            consumer.write(chunk)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@attrs.frozen
class Response:
    code: int
    headers: Any
    body: bytes
    #: The Content-Length, which Twisted's client keeps apart from the headers.
    length: int | None = None

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        if not values and name.lower() == "content-length" and self.length is not None:
            return str(self.length)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def errorCode(self) -> str:
        return str(self.json()["errors"][0]["code"])


class Client:
    """
    An HTTP client for one registry, with a connection pool that is closed
    at the end of the test.
    """

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.agent = Agent(reactor, pool=self.pool)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | IBodyProducer | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        response = await treq.request(
            method,
            self.url(path),
            data=body,
            headers={k: [v] for k, v in (headers or {}).items()},
            agent=self.agent,
            allow_redirects=False,
        )
        content = await treq.content(response)
        length = response.length if isinstance(response.length, int) else None
        return Response(response.code, response.headers, content, length)

    async def pushBlob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        response = await self.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data)
        assert response.code == 201, response
        return digest

    async def pushManifest(
        self, name: str, reference: str, manifest: dict[str, Any] | bytes, mediaType: str = OCI_MANIFEST
    ) -> Response:
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        return await self.request(
            "PUT", f"/v2/{name}/manifests/{reference}", body, {"Content-Type": mediaType}
        )

    async def pushImage(self, name: str, tag: str, layers: list[bytes], **extra: Any) -> tuple[bytes, str]:
        """
        Push a config and C{layers} and an OCI manifest for them; the
        manifest's bytes and digest.
        """
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
        configDigest = await self.pushBlob(name, config)
        descriptors = []
        for layer in layers:
            descriptors.append(
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": await self.pushBlob(name, layer),
                    "size": len(layer),
                }
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": configDigest,
                "size": len(config),
            },
            "layers": descriptors,
            **extra,
        }
        body = json.dumps(manifest).encode()
        response = await self.pushManifest(name, tag, body)
        assert response.code == 201, response
        return body, sha256(body)

    def close(self) -> Deferred[None]:
        return self.pool.closeCachedConnections()


@asynccontextmanager
async def serving(config: txregistry.Config | None, site: Any = None) -> AsyncIterator[Client]:
    """
    A client of a registry with C{config} (or of C{site}) listening on a free
    loopback port in this process, for the length of the block.
    """
    if site is None:
        assert config is not None
        site = txregistry.site(config)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    client = Client(f"http://127.0.0.1:{port.getHost().port}")
    try:
        yield client
    finally:
        await client.close()
        await port.stopListening()


class ServerProcess:
    """
    A server in a process of its own, listening on a loopback port, with its
    output in a log file beside its root. Its storage is a filesystem at
    C{root}, or C{storage}: the lines of a C{storage} driver section.
    """

    kind = "server"
    #: Variables of this environment the server must not see.
    dropEnvironment: tuple[str, ...] = ()

    def __init__(
        self, root: str, env: dict[str, str] | None = None, storage: list[str] | None = None
    ) -> None:
        self.root = root
        self.storage = storage
        self.env = env or {}
        self.port = freePort()
        self.base = f"http://127.0.0.1:{self.port}"
        self.parent = os.path.dirname(os.path.abspath(root))
        os.makedirs(self.parent, exist_ok=True)
        self.logPath = os.path.join(self.parent, f"{self.kind}-{self.port}.log")
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError()

    def writeConfig(self) -> str:
        """
        A registry:2 configuration file for this server's storage and port.
        """
        driver = self.storage or ["filesystem:", f"  rootdirectory: {self.root}"]
        path = os.path.join(self.parent, f"{self.kind}-{self.port}.yml")
        with open(path, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n"
                + "".join(f"  {line}\n" for line in driver)
                + f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{self.port}\n"
            )
        return path

    def start(self, timeout: float = 20.0) -> None:
        self.log = open(self.logPath, "ab")
        env = {k: v for k, v in os.environ.items() if k not in self.dropEnvironment}
        self.process = subprocess.Popen(
            self.command(), stdout=self.log, stderr=subprocess.STDOUT, env={**env, **self.env}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not start listening: {self.output()}")

    def output(self) -> str:
        with open(self.logPath, errors="replace") as f:
            return f.read()

    def rss(self) -> int:
        """
        The process's resident memory, in bytes.
        """
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if not self.log.closed:
            self.log.close()


class RegistryProcess(ServerProcess):
    """
    C{txregistry serve} on a filesystem root, with a configuration file if
    given one, or on C{storage}.
    """

    kind = "txregistry"

    def __init__(
        self,
        root: str,
        config: str | None = None,
        env: dict[str, str] | None = None,
        listen: str = "tcp:{port}:interface=127.0.0.1",
        storage: list[str] | None = None,
        overrideRoot: bool = True,
    ) -> None:
        super().__init__(root, env, storage)
        self.config = config
        self.listen = listen
        self.overrideRoot = overrideRoot

    def command(self) -> list[str]:
        if self.storage is not None:
            return [sys.executable, "-m", "txregistry.cli", "serve", self.writeConfig()]
        args = [
            sys.executable,
            "-m",
            "txregistry.cli",
            "serve",
            "--listen",
            self.listen.format(port=self.port),
        ]
        if self.overrideRoot:
            args += ["--root", self.root]
        return args if self.config is None else [*args, self.config]


class ReferenceRegistry(ServerProcess):
    """
    CNCF distribution 2.8 (Debian's docker-registry, what registry:2 runs)
    on a filesystem root.
    """

    kind = "reference"
    binary = shutil.which("docker-registry")
    # Its AWS SDK panics when asked to load a CA bundle into distribution's
    # HTTP transport; the tests' S3 endpoint is plain HTTP anyway.
    dropEnvironment = ("AWS_CA_BUNDLE",)

    def command(self) -> list[str]:
        assert self.binary is not None
        return [self.binary, "serve", self.writeConfig()]

    def writeConfig(self) -> str:
        path = super().writeConfig()
        with open(path) as f:
            text = f.read()
        # Its upload purger, walking S3 at start, panics on the keys
        # SeaweedFS shows for a directory just emptied (a name ending in
        # "/"); no test asks it to purge.
        quiet = "storage:\n  maintenance:\n    uploadpurging:\n      enabled: false\n"
        text = text.replace("storage:\n", quiet, 1)
        with open(path, "w") as f:
            f.write(text)
        return path


def ociManifest(config: str, configSize: int, layers: list[tuple[str, int]]) -> bytes:
    """
    An OCI image manifest of a config and layers, each by digest and size.
    """
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": configSize,
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}
                for d, n in layers
            ],
        }
    ).encode()


def withQuery(location: str, **parameters: str) -> str:
    return location + ("&" if "?" in location else "?") + urlencode(parameters)


@attrs.frozen
class SyncResponse:
    status: int
    headers: Any
    body: bytes

    def location(self) -> str:
        """
        The path and query of the Location header, absolute or not.
        """
        parts = urlsplit(self.headers["Location"])
        return f"{parts.path}?{parts.query}" if parts.query else parts.path


class SyncClient:
    """
    A blocking HTTP client, for registries in other processes: a new
    connection each request.
    """

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] = b"",
        headers: dict[str, str] | None = None,
    ) -> SyncResponse:
        return self._request(method, "127.0.0.1", self.port, path, body, headers or {})

    def _request(
        self,
        method: str,
        host: str,
        port: int,
        path: str,
        body: bytes | Iterable[bytes],
        headers: dict[str, str],
    ) -> SyncResponse:
        connection = HTTPConnection(host, port, timeout=120)
        try:
            allHeaders = dict(headers)
            if isinstance(body, bytes):
                allHeaders.setdefault("Content-Length", str(len(body)))
            connection.request(method, path, body, allHeaders)
            response = connection.getresponse()
            result = SyncResponse(response.status, response.headers, response.read())
        finally:
            connection.close()
        if method in ("GET", "HEAD") and result.status == 307:
            # Blob reads redirected to storage (registry:2 on S3 presigns a URL).
            target = urlsplit(result.headers["Location"])
            where = f"{target.path}?{target.query}" if target.query else target.path
            return self._request(method, target.hostname or host, target.port or 80, where, b"", {})
        return result

    def pushBlob(self, name: str, data: bytes) -> str:
        """
        Push a blob as registry:2 takes it: POST, then PUT with the body.
        """
        digest = sha256(data)
        started = self.request("POST", f"/v2/{name}/blobs/uploads/")
        assert started.status == 202, started
        done = self.request("PUT", withQuery(started.location(), digest=digest), data)
        assert done.status == 201, done
        return digest

    def pushImage(self, name: str, tag: str, layers: list[bytes]) -> tuple[bytes, str, list[str]]:
        """
        Push an OCI image; its manifest, the manifest's digest and the
        digests of its config and layers.
        """
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        blobs = [self.pushBlob(name, config)] + [self.pushBlob(name, layer) for layer in layers]
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": blobs[0],
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(layer)}
                    for d, layer in zip(blobs[1:], layers, strict=True)
                ],
            }
        ).encode()
        response = self.request(
            "PUT", f"/v2/{name}/manifests/{tag}", manifest, {"Content-Type": OCI_MANIFEST}
        )
        assert response.status == 201, response
        return manifest, sha256(manifest), blobs


@implementer(IHostResolution)
@attrs.frozen
class _Resolution:
    name: str

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class _NoNames:
    """
    A resolver that knows no host names, and says so at once: what
    getaddrinfo failing looks like to Twisted.
    """

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        resolutionReceiver.resolutionComplete()
        return resolution


@implementer(IReactorTCP, IReactorTime, IReactorPluggableNameResolver)
class ReactorWithoutDNS:
    """
    The reactor, but with a name resolver that resolves nothing: the one
    fake of the tests of names that do not resolve, which must neither
    depend on this machine's DNS nor wait for it.
    """

    nameResolver = _NoNames()

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


@attrs.frozen
class RawResponse:
    status: int
    #: Header names in lower case, each with all its values.
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def errorCodes(self) -> list[str]:
        return [e["code"] for e in json.loads(self.body)["errors"]]
