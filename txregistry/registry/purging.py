"""
Removing uploads that were started long ago and never finished
(registry:2's C{storage.maintenance.uploadpurging}), and what writes that a
killed process left half done leave in storage.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

from txregistry.logging import logger
from txregistry.registry.catalog import repositories
from txregistry.registry.registry import Registry
from txregistry.services import Repeating
from txregistry.storage import IPurgeable, PathNotFound, StorageUnavailable, layout

log = logger(__name__)

# A driver's temporary lives for one write of a small file: seconds. One
# untouched for an hour belongs to no live writer, in this process or in any
# other sharing the storage, even on a hung network file system or between
# hosts whose clocks disagree by minutes; a shorter upload purge age does
# not make it younger.
_TEMPORARY_AGE = timedelta(hours=1)


async def purgeUploads(registry: Registry, age: timedelta, dryRun: bool = False) -> list[str]:
    """
    Remove every upload older than C{age}, and the storage driver's
    temporaries at least as old; the paths of those removed (or, with
    C{dryRun}, of those that would have been).
    """
    driver = registry.driver
    now = datetime.now(timezone.utc)
    cutoff = now - age
    purged = []
    for name in await repositories(driver, withManifests=False):
        try:
            uploads = await driver.list(layout.uploads(name))
        except PathNotFound:
            continue
        for path in uploads:
            uuid = layout.basename(path)
            startedAt = await registry.uploads.startedAt(name, uuid)
            if startedAt is None:
                # Without startedat it is no upload of ours or of registry:2.
                continue
            if startedAt < cutoff:
                purged.append(path)
                if dryRun:
                    log.info("would purge upload {path} started {startedAt}", path=path, startedAt=startedAt)
                else:
                    log.info("purging upload {path} started {startedAt}", path=path, startedAt=startedAt)
                    await registry.uploads.cancel(name, uuid)
    purgeable = IPurgeable(driver, None)
    if purgeable is not None:
        temporaries = await purgeable.purgeTemporaries(now - max(age, _TEMPORARY_AGE), dryRun)
        for path in temporaries:
            if dryRun:
                log.info("would purge leftover temporary {path}", path=path)
            else:
                log.info("purged leftover temporary {path}", path=path)
        purged += temporaries
    return purged


class UploadPurger(Repeating):
    """
    Purges old uploads and leftover temporaries every C{interval}, starting
    at once.
    """

    def __init__(self, registry: Registry, age: timedelta, interval: timedelta, dryRun: bool) -> None:
        super().__init__(interval.total_seconds(), self._purge)
        self._registry = registry
        self._age = age
        self._dryRun = dryRun

    def _purge(self) -> Deferred[None]:
        d = ensureDeferred(purgeUploads(self._registry, self._age, self._dryRun))
        d.addErrback(self._failed)
        return d.addCallback(lambda _: None)

    def _failed(self, failure: Failure) -> None:
        if failure.check(StorageUnavailable):
            # Said in one line, at every interval until storage is back.
            log.error("purging uploads failed: {why}", why=failure.getErrorMessage())
        else:
            log.failure("purging uploads failed", failure)
