"""
End to end with podman behind auth.htpasswd: a user pushes and pulls; without
credentials, or with wrong ones, neither goes through and a refused push
stores nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import RegistryProcess, SyncClient, sha256
from tests.test_auth import ALICE, entry, htpasswdProcess, writeUsers
from tests.test_skopeo import layer
from txregistry.manifest import OCI_MANIFEST

PODMAN = shutil.which("podman")
#: Every check is a small image over loopback: a minute means podman hangs.
TIMEOUT = 60
# The manifest types podman may push, for reading its manifest back.
ACCEPT = ", ".join([OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"])


class Podman:
    """
    podman as root in a container, with storage, configuration, signature
    policy and logins of its own under C{directory} (and its run-time state
    in C{runroot}); only containers/image's blob cache, which root cannot
    move, is the host's C{/var/lib/containers/cache}.
    """

    def __init__(self, directory: str, runroot: str) -> None:
        self.directory = directory
        self.runroot = runroot
        os.makedirs(os.path.join(directory, "tmp"), exist_ok=True)
        self.policy = self.write("policy.json", json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": self.write("containers.conf", ""),
            "CONTAINERS_REGISTRIES_CONF": self.write("registries.conf", ""),
            # No logins: one kept by the host cannot stand in for --creds.
            "REGISTRY_AUTH_FILE": self.write("auth.json", json.dumps({"auths": {}})),
            "TMPDIR": os.path.join(directory, "tmp"),
        }

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def __call__(self, *args: str, ok: bool | None = True) -> subprocess.CompletedProcess[str]:
        """
        Run C{podman args}; C{ok} is whether it must succeed (C{None}: no matter).
        """
        assert PODMAN is not None
        command = [
            PODMAN,
            # Root in a container: no overlay mounts, no systemd for cgroups, no journald.
            "--storage-driver=vfs",
            "--root",
            os.path.join(self.directory, "root"),
            "--runroot",
            self.runroot,
            "--tmpdir",
            os.path.join(self.directory, "libpod"),
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            *args,
        ]
        # Nothing on stdin: podman asks for a password it lacks, and must not wait.
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=self.env,
        )
        if ok is not None:
            assert (result.returncode == 0) == ok, (args, result.stdout, result.stderr)
        return result

    def importImage(self, name: str) -> None:
        """
        A one-layer image made here, as C{name}.
        """
        compressed, _ = layer({"etc/hello": b"hello\n"})
        path = os.path.join(self.directory, "rootfs.tar.gz")
        with open(path, "wb") as f:
            f.write(compressed)
        self("import", "--quiet", "--signature-policy", self.policy, path, name)

    def push(self, name: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self("push", "--tls-verify=false", "--signature-policy", self.policy, *args, name, ok=ok)

    def pull(self, name: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self("pull", "--tls-verify=false", "--signature-policy", self.policy, *args, name, ok=ok)

    def inspect(self, name: str) -> dict[str, Any]:
        inspected: dict[str, Any] = json.loads(self("image", "inspect", name).stdout)[0]
        return inspected

    def exists(self, name: str) -> bool:
        return self("image", "exists", name, ok=None).returncode == 0


@pytest.fixture(scope="module")
def probed(tmp_path_factory: Any) -> None:
    """
    Skip the module where podman is missing or cannot run here.
    """
    if PODMAN is None:
        pytest.skip("podman is not installed (apt-get install podman)")
    with shortDirectory() as runroot:
        try:
            result = Podman(str(tmp_path_factory.mktemp("probe")), runroot)("info", ok=None)
        except subprocess.TimeoutExpired:
            pytest.skip(f"podman info did not answer within {TIMEOUT}s")
    if result.returncode != 0:
        pytest.skip(f"podman cannot run here: {result.stderr.strip()[-500:]}")


@pytest.fixture
def podman(probed: None, tmp_path: Any) -> Iterator[Podman]:
    with shortDirectory() as runroot:
        yield Podman(os.path.join(str(tmp_path), "podman"), runroot)


def shortDirectory() -> tempfile.TemporaryDirectory[str]:
    # podman refuses a runroot of more than 50 characters (its sockets are there).
    return tempfile.TemporaryDirectory(prefix="podman-", dir="/tmp")


@pytest.fixture
def registry(tmp_path: Any) -> Iterator[RegistryProcess]:
    users = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(users, entry("alice", "secret", prefix=b"$2y$"), entry("bob", "hunter2"))
    process = htpasswdProcess(str(tmp_path), users)
    yield process
    process.stop()


def refusedForCredentials(result: subprocess.CompletedProcess[str]) -> None:
    # Refused for its credentials, not for anything else going wrong.
    assert any(why in result.stderr for why in ("unauthorized", "authentication required")), result.stderr


def storedFiles(registry: RegistryProcess) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(registry.root) for f in files]


def test_push_and_pull_with_credentials(podman: Podman, registry: RegistryProcess) -> None:
    name = f"127.0.0.1:{registry.port}/team/app:1.0"
    podman.importImage(name)
    imageID = podman.inspect(name)["Id"]
    digestFile = os.path.join(podman.directory, "digest")
    podman.push(name, "--creds", "alice:secret", "--digestfile", digestFile)
    with open(digestFile) as f:
        pushed = f.read().strip()

    # What the registry has is what podman pushed.
    client = SyncClient(registry.port)
    stored = client.request("GET", "/v2/team/app/manifests/1.0", headers={**ALICE, "Accept": ACCEPT})
    assert stored.status == 200, stored
    assert sha256(stored.body) == pushed

    podman("rmi", name)
    assert not podman.exists(name)
    pulled = podman.pull(name, "--quiet", "--creds", "bob:hunter2")
    assert pulled.stdout.strip().splitlines()[-1] == imageID
    inspected = podman.inspect(name)
    assert inspected["Id"] == imageID
    assert inspected["Digest"] == pushed


def test_refused_without_or_with_wrong_credentials(podman: Podman, registry: RegistryProcess) -> None:
    name = f"127.0.0.1:{registry.port}/team/app:1.0"
    podman.importImage(name)
    for creds in ([], ["--creds", "alice:wrong"], ["--creds", "mallory:secret"]):
        refusedForCredentials(podman.push(name, *creds, ok=False))
    client = SyncClient(registry.port)
    catalog = client.request("GET", "/v2/_catalog", headers=ALICE)
    assert (catalog.status, json.loads(catalog.body)) == (200, {"repositories": []})
    assert storedFiles(registry) == []

    # Once a user has pushed it, pulling still takes a user.
    podman.push(name, "--creds", "alice:secret")
    assert storedFiles(registry) != []
    podman("rmi", name)
    for creds in ([], ["--creds", "bob:wrong"], ["--creds", "mallory:hunter2"]):
        refusedForCredentials(podman.pull(name, *creds, ok=False))
        assert not podman.exists(name)
