"""
End to end with a real client: skopeo copies an image from an OCI layout
into the registry and back, inspects it, lists its tags and deletes it.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator

import pytest

from tests.helpers import RegistryProcess, SyncClient

SKOPEO = shutil.which("skopeo")
pytestmark = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")


def layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """
    A gzipped tar of C{files}, and the digest of the tar (its diff ID).
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(content))
    tarBytes = raw.getvalue()
    return gzip.compress(tarBytes, mtime=0), "sha256:" + hashlib.sha256(tarBytes).hexdigest()


def writeBlob(layout: str, content: bytes) -> dict[str, object]:
    hexdigest = hashlib.sha256(content).hexdigest()
    os.makedirs(os.path.join(layout, "blobs/sha256"), exist_ok=True)
    with open(os.path.join(layout, "blobs/sha256", hexdigest), "wb") as f:
        f.write(content)
    return {"digest": f"sha256:{hexdigest}", "size": len(content)}


def makeLayout(layout: str, tag: str) -> dict[str, object]:
    """
    An OCI image layout holding one image of two layers; its manifest.
    """
    layers = [layer({"etc/hello": b"hello\n"}), layer({"bin/big": os.urandom(2_000_000)})]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/big"]},
        "rootfs": {"type": "layers", "diff_ids": [diffID for _, diffID in layers]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **writeBlob(layout, json.dumps(config).encode()),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **writeBlob(layout, compressed)}
            for compressed, _ in layers
        ],
    }
    descriptor = writeBlob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **descriptor,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return manifest


def skopeo(*args: str) -> str:
    result = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def registry(tmp_path: object) -> Iterator[RegistryProcess]:
    process = RegistryProcess(
        os.path.join(str(tmp_path), "store"), env={"REGISTRY_STORAGE_DELETE_ENABLED": "true"}
    )
    process.start()
    yield process
    process.stop()


def test_copy_inspect_list_delete(registry: RegistryProcess, tmp_path: object) -> None:
    source = os.path.join(str(tmp_path), "source")
    manifest = makeLayout(source, "1.0")
    image = f"docker://127.0.0.1:{registry.port}/skopeo/test"
    tls = "--dest-tls-verify=false"

    skopeo("copy", tls, f"oci:{source}:1.0", f"{image}:1.0")
    skopeo("copy", tls, f"oci:{source}:1.0", f"{image}:latest")

    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"{image}:1.0"))
    assert inspected["Architecture"] == "amd64"
    assert inspected["Layers"] == [d["digest"] for d in manifest["layers"]]
    assert sorted(inspected["RepoTags"]) == ["1.0", "latest"]
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"{image}:1.0"))
    assert raw == manifest

    tags = json.loads(skopeo("list-tags", "--tls-verify=false", image))
    assert sorted(tags["Tags"]) == ["1.0", "latest"]

    back = os.path.join(str(tmp_path), "back")
    skopeo("copy", "--src-tls-verify=false", f"{image}:1.0", f"oci:{back}:copied")
    for descriptor in manifest["layers"]:
        hexdigest = descriptor["digest"].split(":")[1]
        with (
            open(os.path.join(back, "blobs/sha256", hexdigest), "rb") as f,
            open(os.path.join(source, "blobs/sha256", hexdigest), "rb") as g,
        ):
            assert f.read() == g.read()

    skopeo("delete", "--tls-verify=false", f"{image}:1.0")
    client = SyncClient(registry.port)
    assert client.request("GET", "/v2/skopeo/test/manifests/1.0").status == 404
    assert client.request("GET", "/v2/skopeo/test/manifests/latest").status == 404
