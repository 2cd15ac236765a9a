from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_twisted

import txregistry
from tests.helpers import Client, serving


def configFor(root: str | None, **storage: object) -> txregistry.Config:
    """
    A configuration with filesystem storage in C{root} (in-memory storage
    where C{root} is C{None}), deletes enabled unless C{delete=False}.
    """
    if root is None:
        lines = ["version: 0.1", "storage:", "  inmemory:"]
    else:
        lines = ["version: 0.1", "storage:", "  filesystem:", f"    rootdirectory: {root}"]
    if storage.get("delete", True):
        lines += ["  delete:", "    enabled: true"]
    if storage.get("readonly"):
        lines += ["  maintenance:", "    readonly:", "      enabled: true"]
    return txregistry.parseConfig("\n".join(lines) + "\n", environ={})


async def serve(root: str | None) -> AsyncIterator[Client]:
    async with serving(configFor(root)) as client:
        client.root = root  # type: ignore[attr-defined]
        yield client


@pytest.fixture(params=["filesystem", "inmemory"])
def driverName(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_twisted.async_yield_fixture
async def registry(driverName: str, tmp_path: object) -> AsyncIterator[Client]:
    """
    A client of a registry listening on loopback in this process, with
    deletes enabled: once on filesystem storage, once in memory.
    """
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
