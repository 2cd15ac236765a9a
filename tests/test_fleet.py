"""
Instances of a cache sharing one store fetch each blob from upstream once
for the whole fleet: the first to miss it takes a lease in the store, the
others stream the download from it while it arrives, and fetch it
themselves when it is gone.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import DeferredList

from tests.test_drivers import driver  # noqa: F401 (a fixture)
from txregistry.storage import IStorageDriver


@pytest_twisted.ensureDeferred
async def test_exclusive_create(driver: IStorageDriver) -> None:  # noqa: F811
    path = "/a/lease"
    assert await driver.createExclusive(path, b"first")
    assert not await driver.createExclusive(path, b"second")
    assert await driver.getContent(path) == b"first"
    await driver.delete(path)
    # Of many at once, exactly one.
    results = await DeferredList([driver.createExclusive(path, b"%d" % i) for i in range(8)])
    won = [i for i, (ok, created) in enumerate(results) if ok and created]
    assert len(won) == 1
    assert await driver.getContent(path) == b"%d" % won[0]
    # Nothing else beside it (no temporaries left).
    assert await driver.list("/a") == [path]
