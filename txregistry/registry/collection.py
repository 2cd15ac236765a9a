"""
Garbage collection: registry:2's mark and sweep (C{registry
garbage-collect}), safe to run while the registry takes pushes.

The mark starts from every manifest revision of every repository (with
C{removeUntagged}, from those a tag points at alone) and follows what each
references: its blobs, the manifests of an index, and the referrers of
every manifest kept. Blobs nothing marked references are swept, with the
repositories' links to them.

While pushes go on, the sweep leaves alone anything used since the grace
period before the mark began: blobs whose data or last use (see
L{txregistry.registry.uses}) is that recent. Each blob it removes it first
hides (its data moved aside, its links deleted), then looks at its use
again: a push that found the blob recorded its use before it looked, so
before this second look, and the blob is put back; a push that looks later
finds it gone (and uploads it again, or is told it is unknown). Instances
sharing a store run it one at a time, under a lease in the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.manifest import parseManifest
from txregistry.reference import Digest
from txregistry.registry.catalog import repositories
from txregistry.registry.leases import Lease, Leases
from txregistry.registry.links import deleteIfPresent, readLink, writeLink
from txregistry.registry.registry import Registry
from txregistry.registry.uses import UseRecord
from txregistry.services import Repeating
from txregistry.storage import IStorageDriver, PathNotFound, layout

log = logger(__name__)

#: How long a collector's lease lasts unless renewed (every third of it).
LEASE_SECONDS = 60.0
#: How long after taking over an expired lease the collector looks whether
#: it still holds it: longer than another instance that read the same
#: expired lease takes to remove it and make its own.
CONFIRM_SECONDS = 2.0
#: Store calls a run makes between letting the reactor do other work: a
#: filesystem answers many from its page cache without waiting at all.
_BATCH = 100


class _Interrupted(Exception):
    """
    The run stops before its next change to the store: another instance
    took its lease over, or the service is stopping.
    """


@attrs.define
class Counters:
    """
    What collection did since the process started, for metrics.
    """

    runs: int = 0
    blobsReclaimed: int = 0
    manifestsReclaimed: int = 0
    bytesReclaimed: int = 0


@attrs.frozen
class Sweep:
    """
    What one run removed (or, dry, would have): blobs, and with
    C{removeUntagged} manifest revisions as (repository, digest).
    """

    marked: int
    blobs: list[Digest]
    manifests: list[tuple[str, Digest]]
    kept: list[Digest]


@attrs.frozen
class _Untagged:
    name: str
    digest: Digest
    tags: list[str]


async def _list(driver: IStorageDriver, path: str) -> list[str]:
    try:
        return await driver.list(path)
    except PathNotFound:
        return []


async def _digestsBelow(driver: IStorageDriver, path: str, levels: int) -> list[Digest]:
    """
    The digests named by C{<alg>/[<prefix>/]<hex>} directories below
    C{path} (C{levels} 2 or 3); anything else there is not ours.
    """
    found = []
    for algorithm in await _list(driver, path):
        prefixes = [algorithm] if levels == 2 else await _list(driver, algorithm)
        for prefix in prefixes:
            for entry in await _list(driver, prefix):
                try:
                    found.append(Digest.parse(f"{layout.basename(algorithm)}:{layout.basename(entry)}"))
                except RegistryError:
                    continue
    return found


class GarbageCollector:
    """
    Mark and sweep of C{registry}'s store. Content used less than
    C{gracePeriod} seconds before a run's mark began is kept; C{report}
    is given each line of what a run finds, as registry:2 prints it, and
    C{trace} the marking lines.
    """

    def __init__(
        self,
        registry: Registry,
        clock: IReactorTime,
        gracePeriod: float,
        removeUntagged: bool = False,
        dryRun: bool = False,
        report: Callable[[str], None] = lambda line: log.info("{line}", line=line.strip()),
        trace: Callable[[str], None] = lambda line: log.debug("{line}", line=line),
    ) -> None:
        self.registry = registry
        self.driver = registry.driver
        self.gracePeriod = gracePeriod
        self.removeUntagged = removeUntagged
        self.dryRun = dryRun
        self.report = report
        self.trace = trace
        self.counters = Counters()
        self._clock = clock
        self._calls = 0
        self._lease: Lease[None] | None = None
        #: Set when the service stops: a run in progress stops at its next
        #: step, leaving what it set aside for the next run to put back.
        self.stopping = False
        self._uses = registry.uses or UseRecord(registry.driver, gracePeriod / 4)
        self._leases: Leases[None] = Leases(
            self.driver, lambda _: layout.GC_LEASE, uuid.uuid4().hex, LEASE_SECONDS, clock
        )

    async def run(self) -> Sweep | None:
        """
        One mark and sweep; C{None} if another instance is collecting.
        """
        lease = await self._leases.claim(None)
        if isinstance(lease, Lease) and lease.tookOver:
            await deferLater(self._clock, CONFIRM_SECONDS, lambda: None)
            if not await lease.confirm():
                lease = None
        if not isinstance(lease, Lease):
            self.report("another instance is collecting garbage: not collecting now")
            return None
        self._lease = lease
        try:
            # The store's clock, by which blobs and uses are dated too.
            began = (await self.driver.stat(layout.GC_LEASE)).modified
            return await self._collect(began - self.gracePeriod)
        except _Interrupted as e:
            self.report(f"garbage collection stops: {e}")
            return None
        finally:
            self._lease = None
            await lease.release()

    async def due(self, interval: float, now: float) -> bool:
        """
        Whether a run is due at C{now}: no instance sharing the store has
        finished one in the last C{interval} seconds (give or take a
        hundredth, the job's own timing), by the store's dates.
        """
        try:
            last = (await self.driver.stat(layout.GC_LAST_RUN)).modified
        except PathNotFound:
            return True
        return now - last >= interval * 0.99

    async def _step(self) -> None:
        """
        Before each change to the store: stop if the lease is lost, and
        now and then let the reactor serve requests.
        """
        if self.stopping:
            raise _Interrupted("the service is stopping")
        if self._lease is not None and not self._lease.held:
            raise _Interrupted("another instance took the lease over")
        self._calls += 1
        if self._calls % _BATCH == 0:
            await deferLater(self._clock, 0, lambda: None)

    async def _collect(self, cutoff: float) -> Sweep:
        await self._unhide()
        marker = _Marker(self.registry, self.trace)
        untagged: list[_Untagged] = []
        links: dict[Digest, list[str]] = {}
        for name in await repositories(self.driver, withManifests=False):
            self.trace(name)
            await self._step()
            await self._markRepository(name, marker, untagged)
            for digest in await _digestsBelow(self.driver, layout.layers(name), 2):
                links.setdefault(digest, []).append(name)
        removable = [u for u in untagged if u.digest not in marker.marked]
        for entry in removable:
            self.report(f"manifest eligible for deletion: {entry.digest}")
        manifests = []
        for entry in removable:
            if self.dryRun or await self._removeManifest(entry, cutoff):
                manifests.append((entry.name, entry.digest))
            else:
                # Pushed meanwhile: kept, and what it references with it.
                await marker.mark(entry.name, entry.digest)
        stored = await _digestsBelow(self.driver, layout.BLOBS, 3)
        candidates = [d for d in stored if d not in marker.marked]
        self.report(
            f"\n{len(marker.marked)} blobs marked, {len(candidates)} blobs and "
            f"{len(removable)} manifests eligible for deletion"
        )
        swept, kept = [], []
        for digest in candidates:
            self.report(f"blob eligible for deletion: {digest}")
            for name in links.get(digest, []):
                self.report(f"{name}: layer link eligible for deletion: {digest}")
            if self.dryRun or await self._removeBlob(digest, links.get(digest, []), cutoff):
                swept.append(digest)
            else:
                self.report(f"blob kept, used since the grace period before the mark: {digest}")
                kept.append(digest)
        if not self.dryRun:
            await self._forgetUses(set(stored) - set(swept), cutoff)
            # When, for every instance sharing the store.
            await self.driver.putContent(layout.GC_LAST_RUN, b"")
            self.counters.runs += 1
        return Sweep(len(marker.marked), swept, manifests, kept)

    async def _markRepository(self, name: str, marker: _Marker, untagged: list[_Untagged]) -> None:
        revisions = await _digestsBelow(self.driver, f"{layout.manifests(name)}/revisions", 2)
        tags = self.registry.tags(name)
        try:
            allTags = await tags.all()
        except RegistryError:
            allTags = []
        current = set()
        for tag in allTags:
            await self._step()
            found = await readLink(self.driver, layout.tagCurrentLink(name, tag))
            if found is not None:
                current.add(found)
        for digest in revisions:
            await self._step()
            if await readLink(self.driver, layout.revisionLink(name, digest)) != digest:
                # Deleted: registry:2 removes the link and leaves its directory.
                continue
            if self.removeUntagged and digest not in current:
                untagged.append(_Untagged(name, digest, allTags))
            else:
                await marker.mark(name, digest)

    async def _removeManifest(self, entry: _Untagged, cutoff: float) -> bool:
        """
        Remove an untagged revision, as registry:2 does (its tags' index
        entries for it, then its revision link), and its referrer link;
        whether it was, or was kept as pushed since C{cutoff}.
        """
        name, digest = entry.name, entry.digest
        revision = layout.revisionLink(name, digest)
        await self._step()
        try:
            if (await self.driver.stat(revision)).modified >= cutoff:
                return False
        except PathNotFound:
            return False
        if ((await self._uses.lastUsed(digest)) or 0) >= cutoff:
            return False
        for tag in entry.tags:
            index = layout.tagIndexLink(name, tag, digest)
            await deleteIfPresent(self.driver, index.rsplit("/", 1)[0])
        content = await self.registry.manifestContent(digest)
        subject = None
        if content is not None:
            try:
                subject = parseManifest(content).subject
            except RegistryError:
                pass
        if subject is not None:
            link = layout.referrerLink(name, subject.digest, digest)
            await deleteIfPresent(self.driver, link.rsplit("/", 1)[0])
        await deleteIfPresent(self.driver, revision.rsplit("/", 1)[0])
        self.registry.manifestCache.discard(digest)
        self.counters.manifestsReclaimed += 1
        log.info("removed untagged manifest {name}@{digest}", name=name, digest=digest)
        return True

    async def _removeBlob(self, digest: Digest, linkedBy: list[str], cutoff: float) -> bool:
        """
        Remove a blob nothing marked references, unless it was used since
        C{cutoff}; whether it was removed.
        """
        data = layout.blobData(digest)
        await self._step()
        try:
            info = await self.driver.stat(data)
        except PathNotFound:
            # A directory left without data (by a sweep, or a killed write),
            # unless a push about to publish there has said so.
            if ((await self._uses.lastUsed(digest)) or 0) >= cutoff:
                return False
            await self.registry.deleteContent(digest)
            return True
        if info.modified >= cutoff or ((await self._uses.lastUsed(digest)) or 0) >= cutoff:
            return False
        # Hidden, with what linked it: a push that looks for it now finds it
        # gone, and a run stopped from here on puts both back.
        await self.driver.putContent(layout.gcHiddenLinks(digest), "\n".join(linkedBy).encode())
        await self.driver.move(data, layout.gcHidden(digest))
        for name in linkedBy:
            await deleteIfPresent(self.driver, layout.layerLink(name, digest).rsplit("/", 1)[0])
        if ((await self._uses.lastUsed(digest)) or 0) >= cutoff:
            # Found by a push before it was hidden: put back as it was.
            await self._putBack(digest, linkedBy)
            return False
        # Only what was hidden goes: a push that published the blob anew
        # since the last look keeps its data, and its use.
        await self.driver.delete(layout.gcHidden(digest))
        await deleteIfPresent(self.driver, layout.gcHiddenLinks(digest))
        self.registry.forgetContent(digest)
        self.counters.blobsReclaimed += 1
        self.counters.bytesReclaimed += info.size
        log.info("removed blob {digest}", digest=digest)
        return True

    async def _unhide(self) -> None:
        """
        Put back what a run that was stopped while hiding left hidden: the
        next sweep decides again.
        """
        for digest in await _digestsBelow(self.driver, layout.GC_HIDDEN, 2):
            try:
                names = (await self.driver.getContent(layout.gcHiddenLinks(digest))).decode().split()
            except PathNotFound:
                names = []
            await self._putBack(digest, names)
        for digest in await _digestsBelow(self.driver, layout.GC_HIDDEN_LINKS, 2):
            # Its blob was deleted for good before the run stopped.
            await deleteIfPresent(self.driver, layout.gcHiddenLinks(digest))

    async def _putBack(self, digest: Digest, linkedBy: list[str]) -> None:
        """
        A blob set aside, back where it was, and the links to it.
        """
        await self.driver.move(layout.gcHidden(digest), layout.blobData(digest))
        for name in linkedBy:
            await writeLink(self.driver, layout.layerLink(name, digest), digest)
        await deleteIfPresent(self.driver, layout.gcHiddenLinks(digest))

    async def _forgetUses(self, stored: set[Digest], cutoff: float) -> None:
        """
        Drop the record of uses of content the store does not have (pushes
        of manifests that named blobs never uploaded), once old.
        """
        for digest in await _digestsBelow(self.driver, layout.GC_USES, 2):
            if digest in stored:
                continue
            await self._step()
            used = await self._uses.lastUsed(digest)
            if used is not None and used < cutoff:
                await self._uses.forget(digest)


class _Marker:
    """
    The digests reachable from the manifests it is asked to mark.
    """

    def __init__(self, registry: Registry, trace: Callable[[str], None]) -> None:
        self.registry = registry
        self.trace = trace
        self.marked: set[Digest] = set()
        self._visited: set[tuple[str, Digest]] = set()

    async def mark(self, name: str, digest: Digest) -> None:
        if (name, digest) in self._visited:
            return
        self._visited.add((name, digest))
        self.trace(f"{name}: marking manifest {digest} ")
        self.marked.add(digest)
        content = await self.registry.manifestContent(digest)
        if content is None:
            return
        try:
            manifest = parseManifest(content)
        except RegistryError:
            return
        for descriptor in manifest.blobs:
            if descriptor.digest not in self.marked:
                self.trace(f"{name}: marking blob {descriptor.digest}")
                self.marked.add(descriptor.digest)
        for child in manifest.children:
            await self.mark(name, child.digest)
        for referrer in await self.registry.referrers(name).of(digest):
            await self.mark(name, referrer.digest)


class CollectionService(Repeating):
    """
    C{collector} run every C{interval} seconds of C{clock}. With C{before}
    (a pull-through cache's eviction, run every C{everyBefore} seconds),
    one job does both, eviction first, so that the store is walked by one
    of them at a time.
    """

    def __init__(
        self,
        collector: GarbageCollector,
        interval: float,
        clock: IReactorTime,
        before: Callable[[], Awaitable[object]] | None = None,
        everyBefore: float | None = None,
    ) -> None:
        self.collector = collector
        self._time = clock
        self._before = before
        self._gcInterval = interval
        super().__init__(min(interval, everyBefore or interval), self._run, clock)

    def stopService(self) -> Deferred[None]:
        self.collector.stopping = True
        return super().stopService()

    def _run(self) -> Deferred[None]:
        d: Deferred[None] = Deferred.fromCoroutine(self._both())
        return d.addErrback(lambda f: log.failure("garbage collection failed", f))

    async def _both(self) -> None:
        if self._before is not None:
            await self._before()
        # By the store's record, so that instances sharing it (or started
        # one after another) collect once an interval between them.
        if not await self.collector.due(self._gcInterval, self._time.seconds()):
            return
        sweep = await self.collector.run()
        if sweep is not None and sweep.blobs:
            log.info(
                "garbage collection removed {blobs} blobs and {manifests} manifests",
                blobs=len(sweep.blobs),
                manifests=len(sweep.manifests),
            )
