"""
Real clients through the pull-through cache: skopeo with a mirror in its
registries.conf, and a Docker daemon with C{--registry-mirror}, pulling
images that exist only on a loopback upstream.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

import txregistry
from tests.bigblobs import MiB, Pattern, RSSSampler, pushInChunks, slowPull
from tests.helpers import RegistryProcess, SyncClient
from tests.s3server import SeaweedFS
from tests.test_skopeo import SKOPEO, makeLayout, skopeo
from txregistry.manifest import OCI_MANIFEST

pytestmark = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")
DOCKERD = shutil.which("dockerd")
DOCKER = shutil.which("docker")
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")


def mirrorConfig(directory: str, upstream: RegistryProcess, extra: str = "") -> str:
    path = os.path.join(directory, "mirror.yml")
    with open(path, "w") as f:
        # The storage root is overridden by --root.
        f.write("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: unused\n")
        f.write(f"proxy:\n  remoteurl: {upstream.base}\n{extra}")
    return path


@pytest.fixture(scope="module")
def registries(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryProcess, RegistryProcess, dict]]:
    """
    An upstream holding C{team/app:v1} and C{library/hello:latest}, and a
    cache of it.
    """
    directory = str(tmp_path_factory.mktemp("mirror"))
    upstream = RegistryProcess(os.path.join(directory, "upstream"))
    upstream.start()
    layout = os.path.join(directory, "layout")
    manifest = makeLayout(layout, "v1")
    for image in ("team/app:v1", "library/hello:latest"):
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:v1",
            f"docker://127.0.0.1:{upstream.port}/{image}",
        )
    proxy = RegistryProcess(os.path.join(directory, "proxy"), config=mirrorConfig(directory, upstream))
    proxy.start()
    yield upstream, proxy, manifest
    proxy.stop()
    upstream.stop()


def test_skopeo_pulls_through_a_mirror(
    registries: tuple[RegistryProcess, RegistryProcess, dict], tmp_path: object
) -> None:
    _, proxy, manifest = registries
    conf = os.path.join(str(tmp_path), "registries.conf")
    with open(conf, "w") as f:
        # A registry name that cannot resolve: every byte comes from the mirror.
        f.write(
            '[[registry]]\nprefix = "registry.invalid"\nlocation = "registry.invalid"\n'
            f'[[registry.mirror]]\nlocation = "127.0.0.1:{proxy.port}"\ninsecure = true\n'
        )
    target = os.path.join(str(tmp_path), "copied")
    skopeo("--registries-conf", conf, "copy", "docker://registry.invalid/team/app:v1", f"oci:{target}:v1")
    for descriptor in manifest["layers"]:
        assert os.path.exists(os.path.join(target, "blobs/sha256", descriptor["digest"].split(":")[1]))
    catalog = json.loads(SyncClient(proxy.port).request("GET", "/v2/_catalog").body)
    assert "team/app" in catalog["repositories"]


class Daemon:
    """
    A daemon of a test's own, started in C{directory} with C{command} and
    logging to a file there, answering on C{socket}.
    """

    name = "daemon"

    def __init__(self, directory: str, socket: str, command: list[str]) -> None:
        self.directory = directory
        self.socket = socket
        self.log = open(os.path.join(directory, f"{self.name}.log"), "wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def answers(self) -> bool:
        raise NotImplementedError()

    def ready(self, timeout: float = 60) -> str | None:
        """
        C{None} once the daemon answers; why not, if it cannot start.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with open(self.log.name, errors="replace") as f:
                    return f"{self.name} exited with {self.process.returncode}: {f.read()[-500:]}"
            if os.path.exists(self.socket) and self.answers():
                return None
            time.sleep(0.2)
        return f"{self.name} did not answer within {timeout:.0f} s"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


class Dockerd(Daemon):
    """
    A Docker daemon of our own: private directories and socket, no
    networking of its own, pulling Docker Hub images through C{mirror}.
    """

    name = "dockerd"

    def __init__(self, directory: str, mirror: str) -> None:
        socket = os.path.join(directory, "docker.sock")
        assert DOCKERD is not None
        super().__init__(
            directory,
            socket,
            [
                DOCKERD,
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
                f"--data-root={directory}/data",
                f"--exec-root={directory}/exec",
                f"--pidfile={directory}/dockerd.pid",
                f"--host=unix://{socket}",
                f"--registry-mirror={mirror}",
            ],
        )

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert DOCKER is not None
        return subprocess.run(
            [DOCKER, "--host", f"unix://{self.socket}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def answers(self) -> bool:
        return self.docker("version", timeout=10).returncode == 0


@pytest.mark.skipif(
    DOCKERD is None or DOCKER is None, reason="dockerd is not installed (apt-get install docker.io)"
)
def test_docker_pulls_through_the_mirror(
    registries: tuple[RegistryProcess, RegistryProcess, dict], tmp_path: object
) -> None:
    _, proxy, manifest = registries
    daemon = Dockerd(str(tmp_path), f"http://127.0.0.1:{proxy.port}")
    try:
        why = daemon.ready()
        if why is not None:
            pytest.skip(f"dockerd cannot run here: {why}")
        # Both exist only on the loopback upstream: Docker Hub is not reached.
        for image in ("hello", "team/app:v1"):
            result = daemon.docker("pull", image)
            assert result.returncode == 0, result.stderr
        result = daemon.docker("image", "inspect", "team/app:v1")
        assert result.returncode == 0
        assert json.loads(result.stdout)[0]["RootFS"]["Layers"]
    finally:
        daemon.stop()
    catalog = json.loads(SyncClient(proxy.port).request("GET", "/v2/_catalog").body)
    assert {"library/hello", "team/app"} <= set(catalog["repositories"])
    assert len(manifest["layers"]) == 2


@pytest.fixture
def outage(tmp_path: object) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    """
    An upstream holding C{library/cached:v1}, and a cache of it that asks
    the upstream about the tag on every pull.
    """
    directory = str(tmp_path)
    upstream = RegistryProcess(os.path.join(directory, "upstream"))
    upstream.start()
    layout = os.path.join(directory, "layout")
    makeLayout(layout, "v1")
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{layout}:v1",
        f"docker://127.0.0.1:{upstream.port}/library/cached:v1",
    )
    config = mirrorConfig(directory, upstream, "  revalidate: 0s\n")
    proxy = RegistryProcess(os.path.join(directory, "proxy"), config=config)
    proxy.start()
    yield upstream, proxy
    proxy.stop()
    upstream.stop()


@pytest.mark.skipif(
    DOCKERD is None or DOCKER is None, reason="dockerd is not installed (apt-get install docker.io)"
)
def test_docker_pulls_from_the_cache_while_the_upstream_is_down(
    outage: tuple[RegistryProcess, RegistryProcess],
) -> None:
    """
    Docker resolves the tag by HEAD and GETs the manifest by digest: once
    pulled, the image is pulled again from the cache alone.
    """
    upstream, proxy = outage
    # Short: the daemon's sockets are unix sockets below it.
    directory = tempfile.mkdtemp(prefix="dockerd-")
    daemon = Dockerd(directory, f"http://127.0.0.1:{proxy.port}")
    try:
        why = daemon.ready()
        if why is not None:
            pytest.skip(f"dockerd cannot run here: {why}")
        result = daemon.docker("pull", "cached:v1")
        assert result.returncode == 0, result.stderr
        upstream.stop()
        result = daemon.docker("rmi", "cached:v1")
        assert result.returncode == 0, result.stderr
        result = daemon.docker("pull", "cached:v1")
        assert result.returncode == 0, result.stderr + proxy.output()[-2000:]
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


class Containerd(Daemon):
    """
    A containerd of our own: private root, state and sockets, no CRI.
    """

    name = "containerd"

    def __init__(self, directory: str) -> None:
        socket = os.path.join(directory, "containerd.sock")
        config = os.path.join(directory, "config.toml")
        with open(config, "w") as f:
            f.write(
                f'version = 2\nroot = "{directory}/root"\nstate = "{directory}/state"\n'
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                f'[grpc]\n  address = "{socket}"\n'
                f'[ttrpc]\n  address = "{socket}.ttrpc"\n'
                f'[debug]\n  address = "{directory}/debug.sock"\n'
            )
        assert CONTAINERD is not None
        super().__init__(directory, socket, [CONTAINERD, "--config", config])

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert CTR is not None
        return subprocess.run(
            [CTR, "--address", self.socket, *args], capture_output=True, text=True, timeout=timeout
        )

    def answers(self) -> bool:
        return self.ctr("version", timeout=10).returncode == 0


@pytest.mark.skipif(CONTAINERD is None or CTR is None, reason="containerd is not installed")
def test_containerd_pulls_from_the_cache_while_the_upstream_is_down(
    outage: tuple[RegistryProcess, RegistryProcess], tmp_path: object
) -> None:
    upstream, proxy = outage
    # Short: a unix socket's path has at most 108 bytes.
    directory = tempfile.mkdtemp(prefix="ctrd-")
    hosts = os.path.join(str(tmp_path), "hosts")
    os.makedirs(os.path.join(hosts, "docker.io"))
    with open(os.path.join(hosts, "docker.io", "hosts.toml"), "w") as f:
        # The server cannot be reached here: every byte comes from the mirror.
        f.write(
            'server = "https://registry-1.docker.io"\n'
            f'[host."http://127.0.0.1:{proxy.port}"]\n  capabilities = ["pull", "resolve"]\n'
        )
    daemon = Containerd(directory)
    try:
        why = daemon.ready()
        if why is not None:
            pytest.skip(f"containerd cannot run here: {why}")
        image = "docker.io/library/cached:v1"
        pull = ("images", "pull", "--hosts-dir", hosts, "--plain-http", "--snapshotter", "native", image)
        result = daemon.ctr(*pull)
        assert result.returncode == 0, result.stderr
        upstream.stop()
        result = daemon.ctr("images", "rm", "--sync", image)
        assert result.returncode == 0, result.stderr
        result = daemon.ctr(*pull)
        assert result.returncode == 0, result.stderr + proxy.output()[-2000:]
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_slow_client_pulls_uncached_blob_in_bounded_memory(tmp_path: object) -> None:
    """
    A 256 MiB blob, not cached yet, read at 1 MiB/s: the upstream's bytes
    wait on disk, not in memory, and the client still gets every byte.
    """
    directory = str(tmp_path)
    upstream = RegistryProcess(os.path.join(directory, "upstream"))
    upstream.start()
    proxy = RegistryProcess(os.path.join(directory, "proxy"), config=mirrorConfig(directory, upstream))
    proxy.start()
    try:
        blob = Pattern(256 * MiB)
        pushInChunks(upstream.port, blob, 64 * MiB)
        time.sleep(0.5)
        idle = proxy.rss()
        sampler = RSSSampler(proxy)
        sampler.start()
        try:
            # 1 MiB/s for 20 s, meanwhile the whole blob arrives from upstream;
            # then the rest as fast as it comes.
            total, digest = slowPull(proxy.port, f"/v2/big/blobs/{blob.digest}", 64 * 1024, 1 / 16, 20 * MiB)
        finally:
            peak = sampler.stop()
        assert (total, digest) == (blob.size, blob.digest)
        print(f"proxy: idle RSS {idle / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB")
        assert peak - idle < 64 * MiB
    finally:
        proxy.stop()
        upstream.stop()


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def test_example_mirror_config_runs(
    registries: tuple[RegistryProcess, RegistryProcess, dict], seaweedfs: SeaweedFS, tmp_path: object
) -> None:
    """
    examples/mirror.yml as shipped, pointed by environment variables alone
    at the test's S3 server and at the loopback upstream.
    """
    upstream, _, manifest = registries
    example = os.path.join(EXAMPLES, "mirror.yml")
    assert txregistry.loadConfig(example, environ={}).warnings == ()
    env = {**seaweedfs.environment(f"/mirror/{uuid.uuid4()}"), "REGISTRY_PROXY_REMOTEURL": upstream.base}
    process = RegistryProcess(os.path.join(str(tmp_path), "logs"), example, env, overrideRoot=False)
    process.start()
    try:
        client = SyncClient(process.port)
        response = client.request("GET", "/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert json.loads(response.body) == manifest
        for descriptor in manifest["layers"]:
            response = client.request("GET", f"/v2/team/app/blobs/{descriptor['digest']}")
            assert hashlib.sha256(response.body).hexdigest() == descriptor["digest"].split(":")[1]
        refused = client.request("POST", "/v2/team/app/blobs/uploads/")
        assert refused.status == 405
    finally:
        process.stop()


def test_example_multi_upstream_config_runs(
    registries: tuple[RegistryProcess, RegistryProcess, dict], tmp_path: object
) -> None:
    upstream, _, manifest = registries
    example = os.path.join(EXAMPLES, "multi-upstream.yml")
    config = txregistry.loadConfig(example, environ={})
    assert config.warnings == ()
    assert config.proxy is not None and [u.name for u in config.proxy.upstreams] == [
        "docker.io",
        "ghcr.io",
        "quay.io",
        "registry.k8s.io",
    ]
    # The upstreams, all on loopback: the file's own list, with its URLs swapped.
    upstreams = [{"name": u.name, "remoteurl": upstream.base} for u in config.proxy.upstreams]
    env = {"REGISTRY_PROXY_UPSTREAMS": json.dumps(upstreams)}
    process = RegistryProcess(os.path.join(str(tmp_path), "cache"), example, env)
    process.start()
    try:
        client = SyncClient(process.port)
        for path in ("/v2/team/app/manifests/v1?ns=docker.io", "/v2/ghcr.io/team/app/manifests/v1"):
            response = client.request("GET", path, headers={"Accept": OCI_MANIFEST})
            assert (response.status, json.loads(response.body)) == (200, manifest)
        # Not an upstream's: the registry's own, which takes pushes.
        pushed, _, _ = client.pushImage("own/app", "v1", [b"private layer"])
        assert client.request("GET", "/v2/own/app/manifests/v1").body == pushed
    finally:
        process.stop()
