"""
The pull-through cache: repositories served from an upstream registry,
kept in the registry's own storage as they are pulled.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from twisted.internet import reactor as defaultReactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse
from zope.interface import implementer

from txregistry.config import Fleet, Proxy
from txregistry.errors import RegistryError
from txregistry.flight import SingleFlight
from txregistry.logging import logger
from txregistry.manifest import MAX_MANIFEST_SIZE, Descriptor, Manifest, parseManifest, storedMediaType
from txregistry.proxy.download import BlobDownload, DownloadFailed
from txregistry.proxy.metrics import ProxyMetrics
from txregistry.proxy.own import ClaimableRepository, OwnRepositories
from txregistry.proxy.route import Route
from txregistry.proxy.upstream import (
    MANIFEST_ACCEPT,
    BodyTooLarge,
    UpstreamClient,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRefused,
    readBody,
    remoteName,
)
from txregistry.reference import Digest, looksLikeDigest, lookupTag
from txregistry.registry import (
    BlobSource,
    IRegistry,
    IRepository,
    Listing,
    ManifestSource,
    Registry,
    Repository,
    RepositorySummary,
)
from txregistry.registry.cache import ContentCache
from txregistry.registry.owned import OwnMarks
from txregistry.storage import IReader

if TYPE_CHECKING:
    # The fleet's, imported when one is joined.
    from txregistry.proxy.eviction import Preview
    from txregistry.proxy.peer import PeerClient, PeerDownload
    from txregistry.registry.leases import Holder, Lease, Leases

log = logger(__name__)

#: The most pages of an upstream's tag list followed.
_MAX_TAG_PAGES = 100
#: Tags and tag lists whose freshness an instance keeps in memory.
_REMEMBERED = 100_000


@implementer(IReader)
class _CountingReader:
    def __init__(self, reader: IReader, metrics: ProxyMetrics) -> None:
        self._reader = reader
        self._metrics = metrics

    def read(self, size: int) -> Deferred[bytes]:
        def count(data: bytes) -> bytes:
            self._metrics.pushed["blob"] += len(data)
            return data

        return self._reader.read(size).addCallback(count)

    def close(self) -> None:
        self._reader.close()


def asRegistryError(error: UpstreamError, unknown: RegistryError) -> RegistryError:
    """
    What a client is told when the upstream cannot give what is not cached.
    """
    if isinstance(error, UpstreamNotFound):
        return unknown
    if isinstance(error, UpstreamRateLimited):
        return RegistryError(
            "TOOMANYREQUESTS",
            f"{error}; not cached here",
            headers={"Retry-After": str(error.retryAfter)},
        )
    if isinstance(error, UpstreamRefused):
        # Not 401: the client's credentials are not the ones refused.
        return RegistryError("UNAUTHORIZED", str(error), status=502)
    return RegistryError.unavailable(f"{error}; not cached here")


def _described(digest: Digest, content: bytes) -> ManifestSource:
    return ManifestSource(digest, storedMediaType(content), len(content), None)


def _saidDigest(response: IResponse) -> Digest | None:
    """
    The C{Docker-Content-Digest} an upstream answered with, where it gave
    one we can use.
    """
    said = response.headers.getRawHeaders(b"docker-content-digest", [b""])[0].decode("latin-1")
    try:
        return Digest.parse(said)
    except RegistryError:
        return None


@implementer(IRepository)
class CachedRepository:
    """
    A repository served from an upstream through the cache: read as the
    cache reads it, never written by clients.
    """

    def __init__(self, cache: PullThroughCache, route: Route) -> None:
        self.cache = cache
        self.route = route
        self.name = route.name

    def checkWritable(self) -> None:
        raise RegistryError.unsupported(
            f"repository {self.name} is a cache of upstream {self.route.client.label}: "
            "pushes and deletes are refused"
        )

    checkDeletable = checkWritable

    async def blob(self, digest: Digest, head: bool = False) -> BlobSource:
        self.cache.metrics.requests["blob"] += 1
        return await self.cache.blob(self.route, digest, head)

    async def manifest(self, reference: str, head: bool = False) -> ManifestSource:
        self.cache.metrics.requests["manifest"] += 1
        return await self.cache.manifest(self.route, reference, head)

    async def tags(self) -> list[str]:
        return await self.cache.tags(self.route)

    async def tagPage(self, after: str | None = None, limit: int | None = None) -> Listing:
        # A page of the tag list the cache holds: no upstream request of
        # its own.
        return Listing.of(await self.cache.tags(self.route), after, limit)

    async def referrers(self, subject: Digest, artifactType: str | None) -> list[Descriptor]:
        # What is cached: the upstream's referrers API is not asked.
        return await self.cache.registry.referrers(self.name).of(subject, artifactType)

    async def summary(self) -> RepositorySummary:
        # Nothing is pushed here: what the cache fetched is no push.
        return RepositorySummary()

    async def _refused(self, *args: object) -> Any:
        self.checkWritable()

    deleteBlob = mount = pushBlob = putManifest = deleteManifest = _refused
    startUpload = uploadStatus = appendUpload = finishUpload = cancelUpload = _refused


@implementer(IRegistry)
class PullThroughCache:
    """
    Repositories of upstream registries, cached in C{registry}'s storage,
    beside (with C{allowpush}) repositories of the registry's own.

    C{reactor} makes the requests to upstreams; C{clock} says what time it
    is for everything that expires (tag revalidation, pull records and
    their ttl, the breaker's back-off, tokens).
    """

    def __init__(
        self,
        registry: Registry,
        config: Proxy,
        reactor: Any = None,
        spoolDirectory: str | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.registry = registry
        self.config = config
        self.reactor = reactor if reactor is not None else defaultReactor
        self.clock: IReactorTime = clock if clock is not None else self.reactor
        self.spoolDirectory = spoolDirectory
        self.metrics = ProxyMetrics()
        self.clients = {
            u.name: UpstreamClient(u, config.timeout, self.metrics, self.reactor, clock=self.clock)
            for u in config.upstreams
        }
        self.record = registry.pullRecord(self.clock.seconds, self._touchEvery)
        self._downloads: dict[Digest, BlobDownload] = {}
        self._recording: set[Deferred[None]] = set()
        self._flights: SingleFlight[Any] = SingleFlight()
        # When each tag was last found current upstream and what it pointed
        # at, and each repository's tag list: this instance's, bounded by
        # entries.
        self._checked: ContentCache[tuple[str, str], tuple[float, ManifestSource]] = ContentCache(_REMEMBERED)
        # The tags to record once a manifest a HEAD found is stored.
        self._tagging: dict[tuple[str, Digest], set[str]] = {}
        self._tagLists: ContentCache[str, tuple[float, list[str]]] = ContentCache(_REMEMBERED)
        # The fleet, once joined.
        self._leases: Leases | None = None
        self._peers: PeerClient | None = None
        # Blobs being streamed from the instances fetching them.
        self._streams: dict[Digest, PeerDownload] = {}
        # Who waits for the upstream's answer to a fetch leased here.
        self._starting: dict[Digest, list[Deferred[None]]] = {}

    # The registry contract.

    def repository(self, name: str, namespace: str | None = None) -> IRepository:
        route = self.route(name, namespace)
        if route is not None and self.config.allowPush and route.client is self.clients.get(""):
            # The default upstream's, unless a push has made it ours; a
            # named upstream's never is.
            mine = Repository(self.registry, name)
            return ClaimableRepository(self.own, CachedRepository(self, route), mine)
        if route is not None:
            return CachedRepository(self, route)
        refusal = None
        if not self.config.allowPush:
            refusal = (
                "this registry is a pull-through cache: pushes are refused "
                "(proxy.allowpush: true allows them to repositories that no upstream serves)"
            )
        return Repository(self.registry, name, refusal)

    @cached_property
    def evictionPreview(self) -> Preview:
        """
        What eviction removes next, for the web UI's cache page.
        """
        from txregistry.proxy.eviction import Preview

        return Preview(self)

    @cached_property
    def own(self) -> OwnRepositories:
        """
        Which repositories the default upstream would serve are ours.
        """
        return OwnRepositories(OwnMarks(self.registry.driver, self.clock.seconds))

    async def catalog(self, after: str | None = None, limit: int | None = None) -> Listing:
        # What is cached, and the repositories of our own: both are in the
        # store as any repository is.
        return await self.registry.catalog(after, limit)

    # Which upstream, if any.

    def route(self, name: str, ns: str | None = None) -> Route | None:
        """
        The upstream a repository is served from: the named upstream its
        first component (or the C{ns} query parameter containerd sends)
        names, else the default upstream; C{None} for a repository of our
        own.
        """
        first, _, rest = name.partition("/")
        if rest and first and first in self.clients:
            client = self.clients[first]
            return Route(client, name, remoteName(client.upstream, rest))
        if ns and ns in self.clients:
            client = self.clients[ns]
            return Route(client, f"{ns}/{name}", remoteName(client.upstream, name))
        default = self.clients.get("")
        if default is None:
            return None
        return Route(default, name, remoteName(default.upstream, name))

    def ttl(self, name: str) -> float:
        route = self.route(name)
        upstream = route.client.upstream if route is not None else self.config.upstreams[0]
        return upstream.ttl.total_seconds()

    def _touchEvery(self, name: str) -> float:
        # A pull moves an entry's eviction by at most a tenth of its ttl.
        return min(self.ttl(name) / 10, 3600.0)

    def _touch(self, name: str, kind: str, digest: Digest, size: int) -> None:
        # Not waited for: the client's answer does not depend on it.
        d = Deferred.fromCoroutine(self.record.touch(name, kind, digest, size))
        d.addErrback(lambda f: log.failure("recording a pull of {digest}", f, digest=digest))
        self._recording.add(d)
        d.addBoth(lambda _: self._recording.discard(d))

    async def settled(self) -> None:
        """
        Wait for the downloads under way to be stored (clients may have had
        every byte before that) and the pulls recorded so far to be in the
        store.
        """
        while self._downloads or self._streams or self._recording:
            pending = [download.done for download in self._downloads.values()]
            pending += [stream.done for stream in self._streams.values()]
            await DeferredList(pending + list(self._recording), consumeErrors=True)

    async def _recorded(self) -> None:
        while self._recording:
            await DeferredList(list(self._recording))

    # Manifests.

    async def manifest(self, route: Route, reference: str, head: bool = False) -> ManifestSource:
        if looksLikeDigest(reference):
            return await self._manifestByDigest(route, Digest.parse(reference))
        return await self._manifestByTag(route, lookupTag(reference), head)

    def _answer(self, route: Route, digest: Digest, content: bytes) -> ManifestSource:
        self._touch(route.name, "manifests", digest, len(content))
        self.metrics.pushed["manifest"] += len(content)
        return ManifestSource(digest, storedMediaType(content), len(content), content)

    def _hit(self, route: Route, cached: ManifestSource) -> ManifestSource:
        self.metrics.hits["manifest"] += 1
        assert cached.content is not None
        return self._answer(route, cached.digest, cached.content)

    async def _cached(self, route: Route, reference: str) -> ManifestSource | None:
        try:
            return await self.registry.repository(route.name).manifest(reference)
        except RegistryError as e:
            if e.code == "MANIFEST_UNKNOWN":
                return None
            raise

    async def _manifestByDigest(self, route: Route, digest: Digest) -> ManifestSource:
        cached = await self._cached(route, str(digest))
        if cached is not None:
            log.debug("cache hit: manifest {name}@{digest}", name=route.name, digest=digest)
            return self._hit(route, cached)
        log.debug("cache miss: manifest {name}@{digest}", name=route.name, digest=digest)

        async def fetch() -> ManifestSource:
            content, _ = await self._fetchManifest(route, str(digest), digest)
            return self._answer(route, digest, content)

        try:
            answer: ManifestSource = await self._flights.run(("manifest", route.name, str(digest)), fetch)
        except UpstreamError as e:
            raise asRegistryError(e, RegistryError.manifestUnknown(str(digest))) from None
        return answer

    async def _fetchManifest(
        self, route: Route, reference: str, expected: Digest | None
    ) -> tuple[bytes, Digest]:
        """
        Get a manifest from upstream and keep it byte for byte, tagged when
        fetched by tag.
        """
        self.metrics.misses["manifest"] += 1
        response = await route.client.request(
            "manifest", "GET", route.remote, f"manifests/{reference}", {"Accept": MANIFEST_ACCEPT}
        )
        route.client.check(response, f"manifest {route.remote}:{reference}")
        try:
            content = await readBody(response, MAX_MANIFEST_SIZE)
        except BodyTooLarge:
            raise RegistryError(
                "MANIFEST_INVALID", f"upstream {route.client.label} sent a manifest over 4 MiB"
            ) from None
        self.metrics.pulled[route.client.label, "manifest"] += len(content)
        if expected is None:
            # By tag: the digest the upstream says it sent, if it says.
            expected = _saidDigest(response)
        digest = Digest.of(content, expected.algorithm if expected is not None else "sha256")
        if expected is not None and digest != expected:
            raise RegistryError(
                "MANIFEST_INVALID",
                f"upstream {route.client.label} sent a manifest that does not match its digest",
                {"expected": str(expected), "actual": str(digest)},
                status=502,
            )
        manifest: Manifest | None
        try:
            manifest = parseManifest(content)
        except RegistryError:
            manifest = None
        tag = None if looksLikeDigest(reference) else reference
        await self.registry.manifests(route.name).store(digest, content, manifest, tag)
        if tag is not None:
            self._checked.put((route.name, tag), (self.clock.seconds(), _described(digest, content)), 1)
        return content, digest

    async def _upstreamDigest(
        self, route: Route, tag: str, deadline: float | None = None
    ) -> ManifestSource | None:
        """
        What the upstream's tag points at now, by C{HEAD} (which Docker Hub
        does not count as a pull); C{None} if the upstream did not say.
        """
        response = await route.client.request(
            "manifest",
            "HEAD",
            route.remote,
            f"manifests/{tag}",
            {"Accept": MANIFEST_ACCEPT},
            deadline=deadline,
        )
        route.client.check(response, f"manifest {route.remote}:{tag}")
        said = _saidDigest(response)
        if said is None:
            return None
        headers = response.headers
        mediaType = headers.getRawHeaders(b"content-type", [b"application/octet-stream"])[0].decode("latin-1")
        length = headers.getRawHeaders(b"content-length", [b""])[0]
        return ManifestSource(
            said, mediaType.split(";")[0].strip(), int(length) if length.isdigit() else 0, None
        )

    async def _manifestByTag(self, route: Route, tag: str, head: bool) -> ManifestSource:
        cached = await self._cached(route, tag)
        known = self._checked.get((route.name, tag))
        current = None
        if known is not None and self.clock.seconds() - known[0] < self.config.revalidate.total_seconds():
            if cached is not None and cached.digest == known[1].digest:
                log.debug("cache hit: {name}:{tag}, revalidated lately", name=route.name, tag=tag)
                return self._hit(route, cached)
            if (route.name, known[1].digest) in self._tagging:
                # Moved, and the new manifest is being stored already.
                current = known[1]
        if current is None:
            log.debug(
                "cache {outcome}: {name}:{tag}, asking upstream",
                outcome="miss" if cached is None else "revalidation",
                name=route.name,
                tag=tag,
            )
        try:
            if current is None:
                # HEADs and GETs of a tag share one look at the upstream.
                current = await self._flights.run(
                    ("tag", route.name, tag), lambda: self._lookUp(route, tag, head, cached is not None)
                )
            answer = await self._current(route, tag, current, head, cached)
        except (UpstreamError, RegistryError) as e:
            if cached is not None and not isinstance(e, UpstreamNotFound):
                log.warn("serving {name}:{tag} from the cache: {error}", name=route.name, tag=tag, error=e)
                return self._hit(route, cached)
            if isinstance(e, RegistryError):
                raise
            raise asRegistryError(e, RegistryError.manifestUnknown(tag)) from None
        return answer

    async def _lookUp(self, route: Route, tag: str, head: bool, cached: bool) -> ManifestSource:
        """
        What the upstream's tag points at, with the content where it had
        to be fetched by tag (already stored and tagged then).
        """
        current = None
        if cached or head:
            # With a copy to fall back on, an upstream slow to answer is
            # not waited for as long as one that is sending content.
            deadline = self.config.revalidateTimeout if cached else None
            current = await self._upstreamDigest(route, tag, deadline)
        if current is None:
            content, digest = await self._fetchManifest(route, tag, None)
            return ManifestSource(digest, storedMediaType(content), len(content), content)
        self._checked.put((route.name, tag), (self.clock.seconds(), current), 1)
        return current

    async def _current(
        self, route: Route, tag: str, current: ManifestSource, head: bool, cached: ManifestSource | None
    ) -> ManifestSource:
        """
        The answer for a tag that points at C{current} upstream.
        """
        if current.content is not None:
            return self._answer(route, current.digest, current.content)
        if cached is not None and cached.digest == current.digest:
            log.debug(
                "cache revalidated: {name}:{tag} is still {digest}",
                name=route.name,
                tag=tag,
                digest=current.digest,
            )
            return self._hit(route, cached)
        log.debug("cache: {name}:{tag} is now {digest}", name=route.name, tag=tag, digest=current.digest)
        if head:
            # Docker and containerd GET the manifest by digest next; the
            # tag is recorded once it is stored, whether or not they do.
            self._tagWhenStored(route, tag, current.digest)
            return current
        answer = await self._manifestByDigest(route, current.digest)
        await self.registry.tags(route.name).tag(tag, current.digest)
        return answer

    def _tagWhenStored(self, route: Route, tag: str, digest: Digest) -> None:
        key = (route.name, digest)
        tags = self._tagging.get(key)
        if tags is not None:
            tags.add(tag)
            return
        tags = self._tagging[key] = {tag}

        async def storeAndTag() -> None:
            try:
                # The fetch a client's GET by digest shares, if it comes.
                await self._manifestByDigest(route, digest)
                while tags:
                    await self.registry.tags(route.name).tag(tags.pop(), digest)
            finally:
                del self._tagging[key]

        d = Deferred.fromCoroutine(storeAndTag())
        d.addErrback(
            lambda f: log.warn(
                "caching manifest {digest} of {name} failed: {why}",
                digest=digest,
                name=route.name,
                why=f.getErrorMessage(),
            )
        )
        # Waited for as pulls being recorded are, by settled() and close().
        self._recording.add(d)
        d.addBoth(lambda _: self._recording.discard(d))

    # Blobs.

    async def blob(self, route: Route, digest: Digest, head: bool = False) -> BlobSource:
        blobs = self.registry.blobs(route.name)
        size: int | None
        try:
            size = await blobs.size(digest)
        except RegistryError:
            size = await self._elsewhere(route, digest)
        if size is not None:
            log.debug("cache hit: blob {digest} of {name}", digest=digest, name=route.name)
            self.metrics.hits["blob"] += 1
            self._touch(route.name, "blobs", digest, size)

            async def open(offset: int) -> IReader:
                return _CountingReader(await blobs.open(digest, offset), self.metrics)

            return BlobSource(digest, size, open, blobs.redirectURL(digest))
        download: BlobDownload | PeerDownload | None = self._downloads.get(digest)
        if download is None:
            download = self._streams.get(digest)
        log.debug(
            "cache miss: blob {digest} of {name}{joined}",
            digest=digest,
            name=route.name,
            joined="" if download is None else ", joining its download",
        )
        if download is None and head:
            return await self._headBlob(route, digest)
        if download is None:
            try:
                download = await self._flights.run(("blob", digest), lambda: self._download(route, digest))
            except UpstreamError as e:
                raise asRegistryError(e, RegistryError.blobUnknown(digest)) from None
            if download is None:
                # Stored by the instance of the fleet that fetched it.
                return await self.blob(route, digest, head)
        if isinstance(download, BlobDownload):
            # Linked into each repository it was asked for once stored.
            download.names.add(route.name)

        async def tail(offset: int) -> IReader:
            if download.stored:
                return _CountingReader(await blobs.open(digest, offset), self.metrics)
            try:
                return _CountingReader(download.reader(offset), self.metrics)
            except DownloadFailed as e:
                raise RegistryError(
                    "DIGEST_INVALID",
                    f"upstream {route.client.label} failed to send the blob: {e}",
                    status=502,
                ) from None

        return BlobSource(digest, download.size, tail)

    async def _elsewhere(self, route: Route, digest: Digest) -> int | None:
        """
        The size of a blob that is in the blob store for another repository
        (or was cached by another instance), linked into this one; C{None}
        if it is not there.
        """
        size = await self.registry.storedSize(digest)
        if size is None or digest in self._downloads:
            return None
        await self.registry.blobs(route.name).link(digest)
        return size

    async def _headBlob(self, route: Route, digest: Digest) -> BlobSource:
        async def ask() -> BlobSource:
            response = await route.client.request(
                "blob", "HEAD", route.remote, f"blobs/{digest}", follow=True
            )
            route.client.check(response, f"blob {digest}")
            length = response.headers.getRawHeaders(b"content-length", [b""])[0]
            return BlobSource(digest, int(length) if length.isdigit() else None)

        try:
            source: BlobSource = await self._flights.run(("head", digest), ask)
        except UpstreamError as e:
            raise asRegistryError(e, RegistryError.blobUnknown(digest)) from None
        return source

    # The fleet: instances sharing the store fetch each blob once.

    def joinFleet(self, fleet: Fleet, secret: str) -> None:
        """
        Fetch blobs once for every instance sharing the store: take a lease
        on each blob fetched, and stream those other instances hold leases
        on from them.
        """
        from txregistry.proxy.peer import PeerClient
        from txregistry.registry.leases import Leases

        lease = fleet.lease.total_seconds()
        self._leases = Leases(
            self.registry.driver, self.registry.leasePath, fleet.advertise, lease, self.clock
        )
        self._peers = PeerClient(secret.encode(), self.config.timeout, self.reactor)

    @property
    def downloads(self) -> list[BlobDownload]:
        """
        The blobs being fetched from upstream by this instance.
        """
        return list(self._downloads.values())

    async def inProgress(self, digest: Digest) -> BlobSource | None:
        """
        The blob, while this instance fetches it from upstream, for other
        instances of the fleet: never what is in the store, nor what this
        instance streams from another.
        """
        if digest in self._starting:
            # Leased, and the upstream yet to answer: peers come that soon.
            started: Deferred[None] = Deferred()
            self._starting[digest].append(started)
            await started
        download = self._downloads.get(digest)
        if download is None or download.done.called:
            return None

        async def open(offset: int) -> IReader:
            return download.reader(offset)

        return BlobSource(digest, download.size, open)

    async def _download(self, route: Route, digest: Digest) -> BlobDownload | PeerDownload | None:
        """
        The blob as it arrives: from upstream, or in a fleet from the
        instance fetching it; C{None} if that instance has stored it since.
        """
        if self._leases is None or self._peers is None:
            return await self._fetch(route, digest)
        from txregistry.registry.leases import Holder, Lease

        # From the moment the lease may be in the store, peers that read it
        # and come asking wait here for the fetch to start, rather than be
        # told there is none and fetch the blob themselves.
        self._starting.setdefault(digest, [])
        claim: Lease | Holder | None
        try:
            claim = await self._leases.claim(digest)
            if isinstance(claim, Lease) and await self.registry.storedSize(digest) is not None:
                # Its last holder stored it (and let go) since we looked.
                await claim.release()
                self._started(digest)
                return None
        except Exception as e:
            log.warn("no lease on blob {digest} ({why}): fetching it", digest=digest, why=e)
            claim = None
        if not isinstance(claim, Lease):
            self._started(digest)
        if not isinstance(claim, Holder):
            return await self._fetch(route, digest, claim)

        async def resume(offset: int) -> IReader:
            return await self._resume(route, digest, offset)

        peer = await self._peers.stream(claim.address, digest, resume, self.spoolDirectory)
        if peer is None:
            if await self.registry.storedSize(digest) is not None:
                return None
            return await self._fetch(route, digest)
        self._streams[digest] = peer
        peer.done.addCallback(lambda _: self._streams.pop(digest, None))
        return peer

    async def _resume(self, route: Route, digest: Digest, offset: int) -> IReader:
        """
        A reader from C{offset} of a blob whose stream from another
        instance broke: from the store if it is there, else from a fetch of
        this instance's own.
        """
        blobs = self.registry.blobs(route.name)
        download = self._downloads.get(digest)
        if download is None:
            if await self._elsewhere(route, digest) is not None:
                return await blobs.open(digest, offset)
            download = await self._fetch(route, digest)
        if download.stored:
            return await blobs.open(digest, offset)
        return download.reader(offset)

    def _started(self, digest: Digest) -> None:
        """
        Let the peers waiting for a fetch of C{digest} to start look again.
        """
        for started in self._starting.pop(digest, []):
            started.callback(None)

    async def _fetch(self, route: Route, digest: Digest, lease: Lease | None = None) -> BlobDownload:
        try:
            # One fetch however many ask here: clients, and readers whose
            # stream from another instance broke.
            download = self._downloads.get(digest) or await self._flights.run(
                ("fetch", digest), lambda: self._fetchUpstream(route, digest)
            )
        except BaseException:
            if lease is not None:
                await lease.release()
            raise
        finally:
            self._started(digest)
        if lease is not None:

            def release(result: object) -> object:
                # Not waited for: an unreleased lease expires anyway.
                Deferred.fromCoroutine(lease.release())
                return result

            download.done.addBoth(release)
        return download

    async def _fetchUpstream(self, route: Route, digest: Digest) -> BlobDownload:
        self.metrics.misses["blob"] += 1
        response = await route.client.request("blob", "GET", route.remote, f"blobs/{digest}", follow=True)
        route.client.check(response, f"blob {digest}")
        download = BlobDownload(
            self.registry,
            route.name,
            digest,
            self.reactor,
            self.config.timeout,
            self.spoolDirectory,
            self.metrics,
            route.client.label,
        )
        self._downloads[digest] = download

        def stored(_: object) -> None:
            del self._downloads[digest]
            assert download.size is not None
            for name in download.names:
                self._touch(name, "blobs", digest, download.size)

        def failed(failure: Failure) -> None:
            del self._downloads[digest]
            log.warn("caching blob {digest} failed: {why}", digest=digest, why=failure.getErrorMessage())

        download.done.addCallbacks(stored, failed)
        await download.start(response)
        return download

    # Tags.

    async def tags(self, route: Route) -> list[str]:
        """
        The upstream's tags for the repository, fetched at most once per
        revalidation interval; the cached tags when upstream cannot say.
        """
        now = self.clock.seconds()
        known = self._tagLists.get(route.name)
        if known is not None and now - known[0] < self.config.revalidate.total_seconds():
            log.debug("cache hit: the tags of {name}", name=route.name)
            return known[1]
        log.debug("cache miss: the tags of {name}, asking upstream", name=route.name)
        try:
            tags: list[str] = await self._flights.run(("tags", route.name), lambda: self._fetchTags(route))
        except UpstreamError as e:
            try:
                cached = await self.registry.tags(route.name).all()
            except RegistryError:
                raise asRegistryError(e, RegistryError.nameUnknown(route.name)) from None
            log.warn("serving the tags of {name} from the cache: {error}", name=route.name, error=e)
            return cached
        self._tagLists.put(route.name, (self.clock.seconds(), tags), 1)
        return tags

    async def _fetchTags(self, route: Route) -> list[str]:
        found: list[str] = []
        path = "tags/list"
        for _ in range(_MAX_TAG_PAGES):
            response = await route.client.request("tags", "GET", route.remote, path)
            route.client.check(response, f"the tags of {route.remote}")
            try:
                document = json.loads(await readBody(response))
                found.extend(t for t in document.get("tags") or [] if isinstance(t, str))
            except (ValueError, AttributeError, RecursionError, BodyTooLarge):
                raise UpstreamNotFound(f"upstream {route.client.label} sent no tag list") from None
            link = response.headers.getRawHeaders(b"link", [b""])[0].decode("latin-1")
            if 'rel="next"' not in link:
                break
            target = urljoin(
                f"{route.client.upstream.remoteURL}/v2/{route.remote}/tags/list",
                link.split(">")[0].strip("<"),
            )
            prefix = f"{route.client.upstream.remoteURL}/v2/{route.remote}/"
            if not target.startswith(prefix):
                break
            path = target[len(prefix) :]
        return sorted(set(found))

    async def close(self) -> None:
        await self._recorded()
        await DeferredList([client.close() for client in self.clients.values()])
