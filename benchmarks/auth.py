"""
The cost of authentication: txregistry beside the reference registry (CNCF
distribution, registry:2), measured in the same run on the same machine,
with auth.htpasswd and without any auth.

Each server runs pinned to one core (taskset -c 0) on a fresh filesystem
store, wrk and this client on the other (core 1). Both servers read the
same htpasswd file: one user, bcrypt at cost 10 (then cost 5), $2y$ as
htpasswd -B writes it. Onto each server an image (config, one 1 KiB
layer, a manifest tagged latest) is pushed, then wrk measures requests per
second with 4 connections:

- manifest GET by tag with Basic credentials, at bcrypt cost 10 and 5,
  and with no auth configured at all;
- GET /v2/ with no auth configured, anonymous on the server with auth
  (every answer a 401), and with Basic credentials.

    python benchmarks/auth.py            # about three minutes
    python benchmarks/auth.py --quick    # 3 s wrk runs instead of 10 s
    python benchmarks/auth.py --server-python /srv/txregistry/bin/python

Needs wrk (apt-get install wrk) and the bcrypt package; compares with
docker-registry when it is installed (apt-get install docker-registry).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial

import bcrypt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from bench import OCI_MANIFEST, Client, Server  # noqa: E402

USER, PASSWORD = "bench", "bench-password"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
ACCEPT = {"Accept": OCI_MANIFEST}
CONNECTIONS = 4
NAME = "bench/small"
MANIFEST = f"/v2/{NAME}/manifests/latest"

Command = Callable[[str, int], list[str]]


def writeUsers(directory: str, rounds: int) -> str:
    """
    An htpasswd file of one user, hashed as C{htpasswd -B -C rounds} does.
    """
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds))
    path = os.path.join(directory, f"htpasswd-{rounds}")
    with open(path, "wb") as f:
        f.write(USER.encode() + b":$2y$" + hashed[4:] + b"\n")
    return path


def withAuth(command: Callable[..., list[str]], users: str) -> Command:
    """
    C{command} (bench.py's, which takes the configuration's extra sections)
    with registry:2's auth.htpasswd added to its configuration.
    """
    return partial(command, extra=f"auth:\n  htpasswd:\n    realm: bench\n    path: {users}\n")


class AuthClient(Client):
    """
    bench.py's client, sending the same headers with every request.
    """

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        super().__init__(port)
        self.headers = headers

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return super().request(method, path, body, {**self.headers, **(headers or {})})


def expect(port: int, path: str, headers: dict[str, str], status: int) -> None:
    got, _, body = Client(port).request("GET", path, headers=headers)
    if got != status:
        raise RuntimeError(f"GET {path}: {got} where {status} was expected: {body[:200]!r}")


def pushSmall(port: int, headers: dict[str, str]) -> None:
    client = AuthClient(port, headers)
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(1024)
    client.push(NAME, config, None)
    client.push(NAME, layer, None)
    client.pushManifest(NAME, "latest", config, [layer])


def measure(name: str, command: Command, users: dict[int, str], seconds: int) -> dict[str, float]:
    """
    Every case on C{name}: a server of its own for no auth and for each cost.
    """
    figures: dict[str, float] = {}

    def serve(run: Command, headers: dict[str, str]) -> tuple[Server, str]:
        server = Server(name, run)
        server.start()
        time.sleep(1.0)
        pushSmall(server.port, headers)
        return server, f"http://127.0.0.1:{server.port}"

    server, base = serve(command, {})
    try:
        expect(server.port, MANIFEST, ACCEPT, 200)
        figures["manifest GET, no auth"] = bench.wrk(base + MANIFEST, seconds, ACCEPT, CONNECTIONS)
        figures["GET /v2/, no auth"] = bench.wrk(base + "/v2/", seconds, connections=CONNECTIONS)
    finally:
        server.stop()
    for rounds, path in users.items():
        server, base = serve(withAuth(command, path), BASIC)
        try:
            authenticated = {**ACCEPT, **BASIC}
            expect(server.port, MANIFEST, ACCEPT, 401)
            expect(server.port, MANIFEST, authenticated, 200)
            figures[f"manifest GET, Basic, cost {rounds}"] = bench.wrk(
                base + MANIFEST, seconds, authenticated, CONNECTIONS
            )
            if rounds == max(users):
                expect(server.port, "/v2/", {}, 401)
                figures[f"GET /v2/, anonymous 401, cost {rounds}"] = bench.wrk(
                    base + "/v2/", seconds, connections=CONNECTIONS, refused=True
                )
                figures[f"GET /v2/, Basic, cost {rounds}"] = bench.wrk(
                    base + "/v2/", seconds, BASIC, CONNECTIONS
                )
        finally:
            server.stop()
    return figures


def printTable(results: dict[str, dict[str, float]]) -> None:
    """
    A row per case, a column per server, txregistry's ratio to the
    reference, and txregistry's ratio to the same request with no auth.
    """
    names = list(results)
    width = 34
    header = f"{'case':{width}}" + "".join(f"{n + ' req/s':>18}" for n in names)
    print(header + ("   tx/reference" if len(names) == 2 else "") + "   tx auth-on/off")
    ours = results["txregistry"]
    for key in sorted(ours, key=lambda key: not key.startswith("manifest")):
        value = ours[key]
        row = f"{key:{width}}" + "".join(f"{results[n][key]:18.1f}" for n in names)
        if len(names) == 2:
            row += f"{value / results['reference'][key]:14.2f}x"
        baseline = ours["manifest GET, no auth" if key.startswith("manifest") else "GET /v2/, no auth"]
        print(row + ("" if "no auth" in key else f"{value / baseline:17.2f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench.addCommonArguments(parser)
    arguments = parser.parse_args()
    bench.SERVER_PYTHON = arguments.server_python
    if not all(shutil.which(tool) for tool in ("wrk", "taskset")):
        sys.exit("needs wrk and taskset: apt-get install wrk util-linux")
    os.sched_setaffinity(0, {bench.CLIENT_CORE})
    seconds = 3 if arguments.quick else 10
    directory = tempfile.mkdtemp(prefix="bench-auth-")
    try:
        users = {rounds: writeUsers(directory, rounds) for rounds in (10, 5)}
        results = {"txregistry": measure("txregistry", bench.txregistryCommand, users, seconds)}
        if not arguments.no_reference and shutil.which("docker-registry"):
            results["reference"] = measure("reference", bench.referenceCommand, users, seconds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    printTable(results)
    print(f"\n{CONNECTIONS} connections, {seconds} s each; auth-on/off = txregistry with auth / without.")


if __name__ == "__main__":
    main()
