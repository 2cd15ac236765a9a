"""
Listings of a large registry: the web UI's pages and the API's, a page at
a time, on filesystem storage.

txregistry runs pinned to one core (taskset -c 0) with the UI on, over a
store of one repository with 2,000 tags and 1,000 others (40 groups of
25); this client runs on the other core. Each path is asked for in turn,
one request at a time after a few to warm up, and the median and 95th
percentile of its times are printed: the UI's repository and repositories
pages (the first and one further on), /v2/_catalog?n=100 and
/v2/<name>/tags/list?n=100. The target: UI pages under 200 ms. With the
reference registry installed (apt-get install docker-registry), its API
listings over the same store are measured too.

    python benchmarks/listing.py
    python benchmarks/listing.py --requests 200
    python benchmarks/listing.py --server-python /srv/txregistry/bin/python
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from bench import CLIENT_CORE, Client, Server  # noqa: E402

BIG = "big/app"
TAGS = [f"t{i:04d}" for i in range(2000)]
OTHERS = [f"group{g:02d}/app{a:02d}" for g in range(40) for a in range(25)]

PATHS = {
    "UI repository page": f"/ui/repository?name={BIG}",
    "UI repository page, further on": f"/ui/repository?name={BIG}&last=t1500",
    "UI repositories page": "/ui/",
    "UI repositories page, further on": "/ui/?last=group30/app10",
    "UI repositories page, filtered": "/ui/?q=app1",
    "/v2/_catalog?n=100": "/v2/_catalog?n=100",
    "/v2/_catalog?n=100, further on": "/v2/_catalog?n=100&last=group30/app10",
    "/tags/list?n=100": f"/v2/{BIG}/tags/list?n=100",
    "/tags/list?n=100, further on": f"/v2/{BIG}/tags/list?n=100&last=t1500",
}


def inThreads(work: list[Callable[[Client], None]], port: int, threads: int = 4) -> None:
    """
    Do each of C{work} with a client of C{port}, C{threads} at once.
    """
    lock = threading.Lock()

    def run() -> None:
        client = Client(port)
        while True:
            with lock:
                if not work:
                    return
                job = work.pop()
            job(client)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def fill(port: int) -> None:
    """
    One repository with 2,000 tags of one image, and 1,000 with one tag
    each.
    """
    config, layer = b'{"architecture": "amd64", "os": "linux"}', b"layer"

    def repository(name: str) -> Callable[[Client], None]:
        def push(client: Client) -> None:
            client.push(name, config, None)
            client.push(name, layer, None)
            client.pushManifest(name, "latest", config, [layer])

        return push

    first = Client(port)
    repository(BIG)(first)
    manifest = first.pushManifest(BIG, TAGS[0], config, [layer])

    def tag(name: str) -> Callable[[Client], None]:
        def push(client: Client) -> None:
            status, _, body = client.request(
                "PUT", f"/v2/{BIG}/manifests/{name}", manifest, {"Content-Type": bench.OCI_MANIFEST}
            )
            assert status == 201, (status, body)

        return push

    inThreads([tag(name) for name in TAGS[1:]] + [repository(name) for name in OTHERS], port)


def timed(port: int, path: str, requests: int) -> tuple[float, float]:
    """
    The median and 95th percentile, in milliseconds, of C{requests} GETs of
    C{path}, one at a time.
    """
    client = Client(port)
    for _ in range(3):
        status, _, body = client.request("GET", path)
        assert status == 200, (path, status, body[:200])
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        client.request("GET", path)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), statistics.quantiles(times, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests per path (default 50)")
    parser.add_argument("--no-reference", action="store_true", help="measure txregistry alone")
    parser.add_argument(
        "--server-python",
        default=sys.executable,
        help="the Python to run txregistry with (a virtualenv with it installed); default: this one",
    )
    arguments = parser.parse_args()
    bench.SERVER_PYTHON = arguments.server_python
    if not shutil.which("taskset"):
        sys.exit("needs taskset: apt-get install util-linux")
    os.sched_setaffinity(0, {CLIENT_CORE})

    ours = Server(
        "txregistry", lambda root, port: bench.txregistryCommand(root, port, "ui:\n  enabled: true\n")
    )
    results: dict[str, dict[str, tuple[float, float]]] = {}
    ours.start()
    try:
        started = time.perf_counter()
        fill(ours.port)
        print(
            f"filled in {time.perf_counter() - started:.0f} s: "
            f"{len(TAGS)} tags, {len(OTHERS) + 1} repositories"
        )
        results["txregistry"] = {
            label: timed(ours.port, path, arguments.requests) for label, path in PATHS.items()
        }
        if not arguments.no_reference and shutil.which("docker-registry"):
            # The same store, read by the reference: its API listings alone.
            reference = Server("reference", lambda _, port: bench.referenceCommand(ours.root, port))
            reference.start()
            try:
                results["reference"] = {
                    label: timed(reference.port, path, arguments.requests)
                    for label, path in PATHS.items()
                    if path.startswith("/v2/")
                }
            finally:
                reference.stop()
    finally:
        ours.stop()

    width = max(len(label) for label in PATHS) + 2
    print(f"\n{'ms, median / p95':<{width}}" + "".join(f"{name:>22}" for name in results))
    for label in PATHS:
        cells = [results[name].get(label) for name in results]
        print(
            f"{label:<{width}}"
            + "".join(f"{'-':>22}" if c is None else f"{f'{c[0]:.1f} / {c[1]:.1f}':>22}" for c in cells)
        )


if __name__ == "__main__":
    main()
