"""
A repository of a registry on storage, as the web layer sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from zope.interface import implementer

from txregistry.errors import RegistryError
from txregistry.manifest import Descriptor, Manifest
from txregistry.reference import Digest
from txregistry.registry.interfaces import (
    BlobSource,
    IBody,
    IRepository,
    Listing,
    ManifestSource,
    RepositorySummary,
    UploadStatus,
)

if TYPE_CHECKING:
    from txregistry.registry.registry import Registry


@implementer(IRepository)
@attrs.frozen
class Repository:
    """
    Repository C{name} of C{registry}. C{refusal}, when set, is why pushes
    and deletes are refused here although the registry takes them (a
    pull-through cache that takes no pushes of its own).
    """

    registry: Registry
    name: str
    refusal: str | None = None

    def checkWritable(self) -> None:
        self.registry.checkWritable()
        if self.refusal is not None:
            raise RegistryError.unsupported(self.refusal)

    def checkDeletable(self) -> None:
        self.checkWritable()
        self.registry.checkDeletable()

    async def blob(self, digest: Digest, head: bool = False) -> BlobSource:
        blobs = self.registry.blobs(self.name)
        size = await blobs.size(digest)
        if self.registry.uses is not None:
            await self.registry.uses.pull(digest)
        return BlobSource(digest, size, lambda offset: blobs.open(digest, offset), blobs.redirectURL(digest))

    async def deleteBlob(self, digest: Digest) -> None:
        self.checkDeletable()
        await self.registry.blobs(self.name).delete(digest)

    async def mount(self, digest: Digest, source: str) -> int | None:
        self.checkWritable()
        return await self.registry.blobs(self.name).mount(digest, source)

    async def manifest(self, reference: str, head: bool = False) -> ManifestSource:
        stored = await self.registry.manifests(self.name).get(reference)
        if self.registry.uses is not None:
            await self.registry.uses.pull(stored.digest)
        return ManifestSource(stored.digest, stored.mediaType, len(stored.content), stored.content)

    async def putManifest(self, reference: str, content: bytes, contentType: str | None) -> Manifest:
        self.checkWritable()
        return await self.registry.manifests(self.name).put(reference, content, contentType)

    async def deleteManifest(self, reference: str) -> list[str]:
        self.checkDeletable()
        return await self.registry.manifests(self.name).delete(reference)

    async def tags(self) -> list[str]:
        return await self.registry.tags(self.name).all()

    async def tagPage(self, after: str | None = None, limit: int | None = None) -> Listing:
        return await self.registry.tags(self.name).page(after, limit)

    async def referrers(self, subject: Digest, artifactType: str | None) -> list[Descriptor]:
        return await self.registry.referrers(self.name).of(subject, artifactType)

    async def summary(self) -> RepositorySummary:
        return await self.registry.manifests(self.name).summary()

    async def pushBlob(self, digest: Digest, body: IBody) -> int:
        self.checkWritable()
        upload = await self.registry.uploads.start(self.name)
        return await self.registry.uploads.receive(self.name, upload.uuid, digest, body)

    async def startUpload(self) -> UploadStatus:
        self.checkWritable()
        return await self.registry.uploads.start(self.name)

    async def uploadStatus(self, uuid: str) -> UploadStatus:
        return await self.registry.uploads.status(self.name, uuid)

    async def appendUpload(self, uuid: str, body: IBody, start: int | None) -> UploadStatus:
        self.checkWritable()
        return await self.registry.uploads.append(self.name, uuid, body, start)

    async def finishUpload(self, uuid: str, digest: Digest, body: IBody | None, start: int | None) -> int:
        self.checkWritable()
        return await self.registry.uploads.finish(self.name, uuid, digest, body, start)

    async def cancelUpload(self, uuid: str) -> None:
        self.checkWritable()
        await self.registry.uploads.cancel(self.name, uuid)
