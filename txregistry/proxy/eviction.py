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

import attrs
from twisted.internet.defer import Deferred

from txregistry.errors import RegistryError
from txregistry.flight import SingleFlight
from txregistry.logging import logger
from txregistry.manifest import parseManifest
from txregistry.proxy.cache import PullThroughCache
from txregistry.reference import Digest
from txregistry.registry import Entry
from txregistry.services import Repeating

log = logger(__name__)


#: Why an entry goes: not pulled for its upstream's ttl; among the least
#: recently pulled blobs past C{proxy.maxsize}; or, not due yet, once its
#: ttl expires.
TTL, MAXSIZE, EXPIRES = "ttl", "maxsize", "expires"


@attrs.frozen
class Removal:
    """
    An entry of the pull record that eviction removes, C{why}, and when:
    the time its ttl expired or expires (C{EXPIRES}: unless it is pulled
    before), or for C{MAXSIZE} the time of the pass.
    """

    entry: Entry
    why: str
    at: float


@attrs.frozen
class _Plan:
    #: What a pass removes now, in order.
    removals: list[Removal]
    #: The rest, by when their ttl lets them go.
    later: list[Removal]
    #: The size of the blobs kept.
    cachedBytes: int


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
        entries, ours = await self._entries()
        for entry in ours:
            # Pulled as it became ours: content of ours now, never evicted.
            await self.cache.record.remove(entry)
        self._holders = Counter(e.digest for e in entries)
        plan = await self._plan(entries, now)
        for removal in plan.removals:
            await self._remove(removal.entry)
        self.cache.metrics.cachedBytes = plan.cachedBytes
        return len(plan.removals)

    async def upcoming(self, limit: int) -> list[Removal]:
        """
        What passes would remove next, C{limit} at most: what is due now,
        in the order a pass removes it, then the rest by when its ttl
        expires. Reads what a pass reads; changes nothing.
        """
        entries, _ = await self._entries()
        plan = await self._plan(entries, self.cache.clock.seconds())
        return (plan.removals + plan.later)[:limit]

    async def _entries(self) -> tuple[list[Entry], list[Entry]]:
        """
        The pull record's entries: those eviction may remove, and those of
        repositories of our own.
        """
        self._own = None
        own = set(await self._ownRepositories())
        entries: list[Entry] = []
        ours: list[Entry] = []
        for entry in await self.cache.record.entries():
            (ours if entry.name in own else entries).append(entry)
        return entries, ours

    async def _plan(self, entries: list[Entry], now: float) -> _Plan:
        """
        What goes, and what after: the one place eviction's rules are.
        """
        expires = {e: e.pulled + self.cache.ttl(e.name) for e in entries}
        removals: list[Removal] = []
        live: list[Entry] = []
        for entry in sorted(entries, key=lambda e: e.pulled):
            if entry.kind == "manifests" and now > expires[entry]:
                removals.append(Removal(entry, TTL, expires[entry]))
            else:
                live.append(entry)
        # A blob a cached manifest references stays while the manifest does.
        referenced = await self._referenced([e for e in live if e.kind == "manifests"], expires)
        blobs: dict[Digest, list[Entry]] = defaultdict(list)
        for entry in live:
            if entry.kind == "blobs":
                blobs[entry.digest].append(entry)
        for digest, holders in list(blobs.items()):
            expired = [e for e in holders if now > expires[e]]
            if digest in referenced or not expired:
                continue
            removals += [Removal(e, TTL, expires[e]) for e in expired]
            holders[:] = [e for e in holders if e not in expired]
            if not holders:
                del blobs[digest]
        total = sum(holders[0].size for holders in blobs.values())
        limit = self.cache.config.maxSize
        if limit is not None:
            oldestFirst = sorted(blobs.items(), key=lambda item: max(e.pulled for e in item[1]))
            for digest, holders in oldestFirst:
                if total <= limit:
                    break
                removals += [Removal(e, MAXSIZE, now) for e in holders]
                total -= holders[0].size
                del blobs[digest]
        later = [Removal(e, EXPIRES, expires[e]) for e in live if e.kind == "manifests"]
        later += [
            Removal(e, EXPIRES, max(expires[e], referenced.get(e.digest, 0.0)))
            for holders in blobs.values()
            for e in holders
        ]
        return _Plan(removals, sorted(later, key=lambda r: r.at), total)

    async def _referenced(self, manifests: list[Entry], expires: dict[Entry, float]) -> dict[Digest, float]:
        """
        The blobs C{manifests} reference, each with when the last of the
        manifests referencing it expires.
        """
        found: dict[Digest, float] = {}
        for entry in manifests:
            content = await self.registry.manifestContent(entry.digest)
            if content is None:
                continue
            try:
                manifest = parseManifest(content)
            except RegistryError:
                continue
            for descriptor in manifest.blobs:
                found[descriptor.digest] = max(found.get(descriptor.digest, 0.0), expires[entry])
        return found

    async def _remove(self, entry: Entry) -> None:
        """
        Remove an entry, as a delete would (a manifest's tags, referrer
        link and revision; a blob's link), and its content with the last
        entry that holds it.
        """
        try:
            if entry.kind == "manifests":
                await self.registry.manifests(entry.name).delete(str(entry.digest))
            else:
                await self.registry.blobs(entry.name).delete(entry.digest)
        except RegistryError:
            pass  # Evicted meanwhile, by another instance on the same store.
        self.cache.metrics.evictions["manifest" if entry.kind == "manifests" else "blob"] += 1
        await self.cache.record.remove(entry)
        self._holders[entry.digest] -= 1
        if not self._holders[entry.digest]:
            await self._deleteContent(entry.digest, entry.size)
        if entry.kind == "manifests":
            log.info("evicted manifest {name}@{digest}", name=entry.name, digest=entry.digest)

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


class Preview:
    """
    What eviction removes next, for those who look (the web UI's cache
    page): one L{Eviction.upcoming} for all who ask while it runs, and its
    answer kept for C{maxAge} seconds of the cache's clock, or until
    eviction removes something, so that however often it is looked at, the
    pull record and the cached manifests are read at most once in that
    time.

    @param limit: how many removals are shown: what the next pass takes,
        then what the next ttls to expire let go.
    """

    def __init__(self, cache: PullThroughCache, limit: int = 20, maxAge: float = 30.0) -> None:
        self.cache = cache
        self.limit = limit
        self.maxAge = maxAge
        self._flight: SingleFlight[list[Removal]] = SingleFlight()
        self._answer: tuple[float, int, list[Removal]] | None = None

    async def removals(self) -> list[Removal]:
        """
        What eviction removes next, as of at most C{maxAge} seconds ago.
        """
        if self._answer is not None:
            asked, evicted, removals = self._answer
            if self.cache.clock.seconds() - asked < self.maxAge and evicted == self._evicted():
                return removals
        return await self._flight.run("upcoming", self._look)

    def _evicted(self) -> int:
        return sum(self.cache.metrics.evictions.values())

    async def _look(self) -> list[Removal]:
        asked, evicted = self.cache.clock.seconds(), self._evicted()
        removals = await Eviction(self.cache).upcoming(self.limit)
        self._answer = (asked, evicted, removals)
        return removals


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
