"""
Pushes on a cache of a default upstream (C{allowpush} with C{remoteurl}):
a push to a repository that holds nothing cached makes it the registry's
own, for every instance on the store at once; a push to one that holds
cached content is refused.
"""

from __future__ import annotations

from zope.interface import implementer

from txregistry.logging import logger
from txregistry.manifest import Descriptor, Manifest
from txregistry.reference import Digest
from txregistry.registry import (
    BlobSource,
    IBody,
    IRepository,
    Listing,
    ManifestSource,
    Repository,
    RepositorySummary,
    UploadStatus,
)
from txregistry.registry.cache import ContentCache
from txregistry.registry.owned import OwnMarks

log = logger(__name__)

#: Own repositories an instance remembers being own.
_REMEMBERED = 100_000


class OwnRepositories:
    """
    Which repositories are ours, as the store says. Only that a repository
    is ours is remembered, since that never changes back; that it is not is
    asked of the store every time, as another instance may have made it
    ours since.
    """

    def __init__(self, marks: OwnMarks) -> None:
        self.marks = marks
        self._known: ContentCache[str, bool] = ContentCache(_REMEMBERED)

    async def isOwn(self, name: str) -> bool:
        if self._known.get(name):
            return True
        if not await self.marks.marked(name):
            return False
        self._known.put(name, True, 1)
        return True

    async def claim(self, name: str) -> bool:
        """
        Make C{name} ours unless it holds cached content; whether it is ours.
        """
        if await self.isOwn(name):
            return True
        if await self.marks.holdsContent(name):
            # What we found may be the first push of another instance, which
            # marks the repository before it writes anything.
            return await self.isOwn(name)
        await self.marks.mark(name)
        self._known.put(name, True, 1)
        log.info("repository {name} is now the registry's own, not the upstream's", name=name)
        return True


@implementer(IRepository)
class ClaimableRepository:
    """
    A repository the default upstream serves through C{cached} until a push
    makes it the registry's own, C{mine}. Which one it is is asked of the
    store at every request, so the web layer's C{checkWritable} checks only
    what the registry refuses everywhere; the first request of a push (an
    upload, a mount, a manifest) claims the repository or is refused as a
    cache's.
    """

    def __init__(self, own: OwnRepositories, cached: IRepository, mine: Repository) -> None:
        self.own = own
        self.cached = cached
        self.mine = mine
        self.name = mine.name

    def checkWritable(self) -> None:
        self.mine.registry.checkWritable()

    def checkDeletable(self) -> None:
        self.mine.registry.checkDeletable()

    async def _current(self) -> IRepository:
        return self.mine if await self.own.isOwn(self.name) else self.cached

    async def _claimed(self) -> Repository:
        if not await self.own.claim(self.name):
            self.cached.checkWritable()
        return self.mine

    async def blob(self, digest: Digest, head: bool = False) -> BlobSource:
        source: BlobSource = await (await self._current()).blob(digest, head)
        return source

    async def manifest(self, reference: str, head: bool = False) -> ManifestSource:
        source: ManifestSource = await (await self._current()).manifest(reference, head)
        return source

    async def tags(self) -> list[str]:
        tags: list[str] = await (await self._current()).tags()
        return tags

    async def tagPage(self, after: str | None = None, limit: int | None = None) -> Listing:
        page: Listing = await (await self._current()).tagPage(after, limit)
        return page

    async def referrers(self, subject: Digest, artifactType: str | None) -> list[Descriptor]:
        found: list[Descriptor] = await (await self._current()).referrers(subject, artifactType)
        return found

    async def summary(self) -> RepositorySummary:
        summary: RepositorySummary = await (await self._current()).summary()
        return summary

    async def uploadStatus(self, uuid: str) -> UploadStatus:
        status: UploadStatus = await (await self._current()).uploadStatus(uuid)
        return status

    async def appendUpload(self, uuid: str, body: IBody, start: int | None) -> UploadStatus:
        status: UploadStatus = await (await self._current()).appendUpload(uuid, body, start)
        return status

    async def finishUpload(self, uuid: str, digest: Digest, body: IBody | None, start: int | None) -> int:
        size: int = await (await self._current()).finishUpload(uuid, digest, body, start)
        return size

    async def cancelUpload(self, uuid: str) -> None:
        await (await self._current()).cancelUpload(uuid)

    async def deleteBlob(self, digest: Digest) -> None:
        await (await self._current()).deleteBlob(digest)

    async def deleteManifest(self, reference: str) -> list[str]:
        return await (await self._current()).deleteManifest(reference)

    # The requests a push starts with.

    async def startUpload(self) -> UploadStatus:
        return await (await self._claimed()).startUpload()

    async def pushBlob(self, digest: Digest, body: IBody) -> int:
        return await (await self._claimed()).pushBlob(digest, body)

    async def mount(self, digest: Digest, source: str) -> int | None:
        return await (await self._claimed()).mount(digest, source)

    async def putManifest(self, reference: str, content: bytes, contentType: str | None) -> Manifest:
        return await (await self._claimed()).putManifest(reference, content, contentType)
