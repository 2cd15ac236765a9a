"""
Running registries for tests and speaking HTTP to them.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

import attrs
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
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


async def listen(config: txregistry.Config) -> tuple[Any, str]:
    """
    Serve a registry with C{config} on a free loopback port in this process;
    the listening port and the registry's base URL.
    """
    site = txregistry.site(config)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    return port, f"http://127.0.0.1:{port.getHost().port}"


class RegistryProcess:
    """
    C{txregistry serve} in a process of its own, on a loopback port.
    """

    def __init__(self, root: str, config: str | None = None, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.config = config
        self.env = env or {}
        self.port = freePort()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        parent = os.path.dirname(os.path.abspath(root))
        os.makedirs(parent, exist_ok=True)
        self.logPath = os.path.join(parent, f"registry-{self.port}.log")

    def start(self, timeout: float = 20.0) -> None:
        args = [
            sys.executable,
            "-m",
            "txregistry.cli",
            "serve",
            "--listen",
            f"tcp:{self.port}:interface=127.0.0.1",
            "--root",
            self.root,
        ]
        if self.config is not None:
            args.append(self.config)
        self.log = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"registry exited with {self.process.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"registry did not start listening: {self.output()}")

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
