from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_twisted

import txregistry
from tests.helpers import Client, listen


def configFor(root: str, **storage: object) -> txregistry.Config:
    lines = ["version: 0.1", "storage:", "  filesystem:", f"    rootdirectory: {root}"]
    if storage.get("delete", True):
        lines += ["  delete:", "    enabled: true"]
    if storage.get("readonly"):
        lines += ["  maintenance:", "    readonly:", "      enabled: true"]
    return txregistry.parseConfig("\n".join(lines) + "\n", environ={})


@pytest_twisted.async_yield_fixture
async def registry(tmp_path: object) -> AsyncIterator[Client]:
    """
    A client of a registry on filesystem storage, listening on loopback in
    this process, with deletes enabled.
    """
    root = os.path.join(str(tmp_path), "store")
    port, base = await listen(configFor(root))
    client = Client(base)
    client.root = root  # type: ignore[attr-defined]
    yield client
    await client.close()
    await port.stopListening()


@pytest.fixture
def store(tmp_path: object) -> str:
    return os.path.join(str(tmp_path), "store")
