"""
Eviction: cached content that has not been pulled for its upstream's
C{ttl} is removed, and, past C{proxy.maxsize}, the least recently pulled
blobs too. Blobs go only when no cached manifest still references them
(or, for the size cap, when they are the oldest), and never while a
repository of our own links them. Nothing of a repository of our own is
evicted.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from twisted.internet.defer import Deferred

from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.manifest import parseManifest
from txregistry.proxy.cache import PullThroughCache
from txregistry.reference import Digest
from txregistry.registry import Entry
from txregistry.services import Repeating

log = logger(__name__)


class Eviction:
    def __init__(self, cache: PullThroughCache) -> None:
        self.cache = cache
        self.registry = cache.registry
        self._holders: Counter[Digest] = Counter()
        self._own: list[str] | None = None

    async def run(self) -> int:
        """
        One pass; the number of blobs and manifests removed.
        """
        now = self.cache.clock.seconds()
        self._own = None
        own = set(await self._ownRepositories())
        entries = []
        for entry in await self.cache.record.entries():
            if entry.name in own:
                # Pulled as it became ours: content of ours now, never evicted.
                await self.cache.record.remove(entry)
            else:
                entries.append(entry)
        self._holders = Counter(e.digest for e in entries)
        live: list[Entry] = []
        removed = 0
        for entry in entries:
            if entry.kind == "manifests" and now - entry.pulled > self.cache.ttl(entry.name):
                await self._removeManifest(entry)
                removed += 1
            else:
                live.append(entry)
        referenced = await self._referenced([e for e in live if e.kind == "manifests"])
        blobs: dict[Digest, list[Entry]] = defaultdict(list)
        for entry in live:
            if entry.kind == "blobs":
                blobs[entry.digest].append(entry)
        for digest, holders in list(blobs.items()):
            expired = [e for e in holders if now - e.pulled > self.cache.ttl(e.name)]
            if digest in referenced or not expired:
                continue
            for entry in expired:
                await self._unlinkBlob(entry)
                holders.remove(entry)
                removed += 1
            if not holders:
                del blobs[digest]
                await self._deleteContent(digest, expired[0].size)
        removed += await self._cap(blobs)
        return removed

    async def _cap(self, blobs: dict[Digest, list[Entry]]) -> int:
        total = sum(holders[0].size for holders in blobs.values())
        limit = self.cache.config.maxSize
        if limit is None:
            self.cache.metrics.cachedBytes = total
            return 0
        removed = 0
        oldestFirst = sorted(blobs.items(), key=lambda item: max(e.pulled for e in item[1]))
        for digest, holders in oldestFirst:
            if total <= limit:
                break
            for entry in holders:
                await self._unlinkBlob(entry)
                removed += 1
            await self._deleteContent(digest, holders[0].size)
            total -= holders[0].size
        self.cache.metrics.cachedBytes = total
        return removed

    async def _referenced(self, manifests: list[Entry]) -> set[Digest]:
        found: set[Digest] = set()
        for entry in manifests:
            content = await self.registry.manifestContent(entry.digest)
            if content is None:
                continue
            try:
                manifest = parseManifest(content)
            except RegistryError:
                continue
            found.update(d.digest for d in manifest.blobs)
        return found

    async def _removeManifest(self, entry: Entry) -> None:
        try:
            # Its tags, its referrer link and its revision, as a delete would.
            await self.registry.manifests(entry.name).delete(str(entry.digest))
        except RegistryError:
            pass  # Evicted meanwhile, by another instance on the same store.
        self.cache.metrics.evictions["manifest"] += 1
        if not await self._forget(entry):
            await self._deleteContent(entry.digest, entry.size)
        log.info("evicted manifest {name}@{digest}", name=entry.name, digest=entry.digest)

    async def _unlinkBlob(self, entry: Entry) -> None:
        try:
            await self.registry.blobs(entry.name).delete(entry.digest)
        except RegistryError:
            pass
        self.cache.metrics.evictions["blob"] += 1
        await self._forget(entry)

    async def _forget(self, entry: Entry) -> int:
        """
        Remove an entry; how many others still hold its content.
        """
        await self.cache.record.remove(entry)
        self._holders[entry.digest] -= 1
        return self._holders[entry.digest]

    async def _ownRepositories(self) -> list[str]:
        """
        The repositories of our own, listed once a pass: those no upstream
        serves, or with a default upstream, those pushes have made ours.
        """
        if self._own is None:
            if self.cache.config.default is None:
                catalog = await self.registry.catalog()
                self._own = [name for name in catalog.names if self.cache.route(name) is None]
            else:
                self._own = await self.cache.own.marks.all()
        return self._own

    async def _deleteContent(self, digest: Digest, size: int) -> None:
        """
        Remove content from the blob store unless a repository of our own
        (one no upstream serves) links it.
        """
        for name in await self._ownRepositories():
            if await self.registry.links(name, digest):
                return
        await self.registry.deleteContent(digest)
        self.cache.metrics.evictedBytes += size
        log.info("evicted blob {digest}", digest=digest)


def evict(eviction: Eviction) -> Deferred[None]:
    """
    One pass of C{eviction}, its outcome logged: on its own, or before
    garbage collection's sweep in the same job.
    """
    d = Deferred.fromCoroutine(eviction.run())

    def done(removed: int) -> None:
        if removed:
            log.info("eviction removed {count} cached items", count=removed)

    return d.addCallbacks(done, lambda f: log.failure("eviction failed", f))


class EvictionService(Repeating):
    """
    Eviction every C{proxy.evictioninterval}.
    """

    def __init__(self, cache: PullThroughCache) -> None:
        self.eviction = Eviction(cache)
        super().__init__(cache.config.evictionInterval.total_seconds(), self._run, cache.clock)

    def _run(self) -> Deferred[None]:
        return evict(self.eviction)
