"""
Start-up from the command line, as people meet it.
"""

from __future__ import annotations

import os

from tests.helpers import RegistryProcess, SyncClient


def writeConfig(directory: str, text: str, name: str = "config.yml") -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


S3_CONFIG = (
    "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    regionendpoint: http://127.0.0.1:9\n"
    "    accesskey: a\n    secretkey: s\n"
)


def test_root_wins_over_s3_storage(tmp_path: object) -> None:
    """
    C{--root DIR} stores in DIR whatever storage the configuration names.
    """
    root = os.path.join(str(tmp_path), "store")
    process = RegistryProcess(root, writeConfig(str(tmp_path), S3_CONFIG))
    process.start()
    try:
        digest = SyncClient(process.port).pushBlob("r", b"content")
    finally:
        process.stop()
    hexdigest = digest.split(":")[1]
    path = os.path.join(root, "docker/registry/v2/blobs/sha256", hexdigest[:2], hexdigest, "data")
    with open(path, "rb") as f:
        assert f.read() == b"content"
