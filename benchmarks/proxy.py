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

    python benchmarks/proxy.py
    python benchmarks/proxy.py --server-python /srv/txregistry/bin/python
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from bench import Client, MiB, Server, image  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-reference", action="store_true", help="measure txregistry alone")
    parser.add_argument("--server-python", default=sys.executable, help="the Python to run txregistry with")
    arguments = parser.parse_args()
    bench.SERVER_PYTHON = arguments.server_python

    def ours(config: Callable[[str, int], str]) -> Callable[[str, int], list[str]]:
        return lambda root, port: [bench.SERVER_PYTHON, "-m", "txregistry.cli", "serve", config(root, port)]

    def reference(config: Callable[[str, int], str]) -> Callable[[str, int], list[str]]:
        binary = shutil.which("docker-registry") or "docker-registry"
        return lambda root, port: [binary, "serve", config(root, port)]

    # The upstream, the relay and the clients share the other core.
    os.sched_setaffinity(0, {bench.CLIENT_CORE})
    upstream = Server("upstream", bench.txregistryCommand, core=bench.CLIENT_CORE)
    upstream.start()
    try:
        config, layers = image(1)
        client = Client(upstream.port)
        client.push("bench/app", config, None)
        for layer in layers:
            client.push("bench/app", layer, None)
        client.pushManifest("bench/app", "latest", config, layers)
        size = len(config) + sum(map(len, layers))
        relay = Relay(upstream.port)
        direct = pullOnce(upstream.port, "bench/app")
        viaRelay = pullOnce(relay.port, "bench/app")
        relay.reset()
        results = {"txregistry": measure("txregistry", ours, relay, size)}
        if not arguments.no_reference and shutil.which("docker-registry"):
            results["reference"] = measure("reference", reference, relay, size)
    finally:
        upstream.stop()

    print(
        f"image: {size / MiB:.0f} MiB; pulled straight from the upstream at {direct:.1f} MB/s, "
        f"through the counting relay at {viaRelay:.1f} MB/s\n"
    )
    bench.printTable(results, 40, 2)
    print("\nratio = txregistry / reference; for RSS, seconds and upstream bytes lower is better.")


if __name__ == "__main__":
    main()
