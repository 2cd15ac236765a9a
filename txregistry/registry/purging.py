"""
Removing uploads that were started long ago and never finished
(registry:2's C{storage.maintenance.uploadpurging}).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, ensureDeferred

from txregistry.logging import logger
from txregistry.registry.catalog import repositories
from txregistry.registry.registry import Registry
from txregistry.storage import PathNotFound, layout

log = logger(__name__)


async def purgeUploads(registry: Registry, age: timedelta, dryRun: bool = False) -> list[str]:
    """
    Remove every upload older than C{age}; the paths of those removed (or,
    with C{dryRun}, of those that would have been).
    """
    driver = registry.driver
    cutoff = datetime.now(timezone.utc) - age
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
    return purged


class UploadPurger(TimerService):
    """
    Purges old uploads every C{interval}, starting at once.
    """

    def __init__(self, registry: Registry, age: timedelta, interval: timedelta, dryRun: bool) -> None:
        super().__init__(interval.total_seconds(), self._purge)
        self._registry = registry
        self._age = age
        self._dryRun = dryRun

    def _purge(self) -> Deferred[None]:
        d = ensureDeferred(purgeUploads(self._registry, self._age, self._dryRun))
        d.addErrback(lambda f: log.failure("purging uploads failed", f))
        return d.addCallback(lambda _: None)
