"""
Manifests of a repository: kept byte for byte in the blob store, linked as
revisions, reached by digest or through tags; and the record of each
push to a repository.
"""

from __future__ import annotations

import json

import attrs

from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.manifest import Manifest, isForeign, parseManifest, storedMediaType
from txregistry.reference import Digest, checkTag, looksLikeDigest, lookupTag
from txregistry.registry.blobs import Blobs
from txregistry.registry.cache import ContentCache
from txregistry.registry.interfaces import RepositorySummary
from txregistry.registry.links import deleteIfPresent, exists, readLink, writeLink
from txregistry.registry.tags import Tags
from txregistry.registry.uses import UseRecord
from txregistry.storage import IStorageDriver, PathNotFound, layout

log = logger(__name__)


@attrs.frozen
class StoredManifest:
    digest: Digest
    content: bytes
    mediaType: str


#: Manifest contents kept in memory, by digest, for each registry.
MANIFEST_CACHE_BYTES = 16 * 1024 * 1024


@attrs.frozen
class Manifests:
    driver: IStorageDriver
    name: str
    cache: ContentCache[Digest, StoredManifest] = attrs.field(factory=lambda: ContentCache(0))
    blobSizes: ContentCache[Digest, int] = attrs.field(factory=lambda: ContentCache(0))
    uses: UseRecord | None = None

    @property
    def tags(self) -> Tags:
        return Tags(self.driver, self.name)

    async def _digestOf(self, reference: str) -> Digest:
        if looksLikeDigest(reference):
            return Digest.parse(reference)
        return await self.tags.resolve(lookupTag(reference))

    async def get(self, reference: str) -> StoredManifest:
        """
        The manifest a tag or digest names in this repository.
        """
        digest = await self._digestOf(reference)
        if await readLink(self.driver, layout.revisionLink(self.name, digest)) != digest:
            raise RegistryError.manifestUnknown(reference)
        stored = self.cache.get(digest)
        if stored is not None:
            return stored
        try:
            content = await self.driver.getContent(layout.blobData(digest))
        except PathNotFound:
            raise RegistryError.manifestUnknown(reference) from None
        stored = StoredManifest(digest, content, storedMediaType(content))
        self.cache.put(digest, stored, len(content))
        return stored

    async def _checkReferences(self, manifest: Manifest) -> dict[Digest, int]:
        """
        Check that the repository has everything C{manifest} references:
        the size of each blob it names, by digest.
        """
        blobs = Blobs(self.driver, self.name, self.blobSizes, self.uses)
        claimed: dict[Digest, int] = {}
        for descriptor in manifest.blobs:
            if isForeign(descriptor) or descriptor.digest in claimed:
                # A digest named again is claimed once: a manifest that
                # repeats one costs the store one write for it, not many.
                continue
            try:
                claimed[descriptor.digest] = await blobs.claim(descriptor.digest)
            except RegistryError:
                raise RegistryError(
                    "MANIFEST_BLOB_UNKNOWN",
                    "the manifest references a blob this repository does not have",
                    {"digest": str(descriptor.digest)},
                ) from None
        for child in {child.digest: child for child in manifest.children}.values():
            if self.uses is not None:
                await self.uses.use(child.digest)
            if not await exists(self.driver, layout.revisionLink(self.name, child.digest)):
                raise RegistryError(
                    "MANIFEST_BLOB_UNKNOWN",
                    "the index references a manifest this repository does not have",
                    {"digest": str(child.digest)},
                )
        return claimed

    async def put(self, reference: str, content: bytes, contentType: str | None) -> Manifest:
        """
        Store a manifest under a tag or its digest. Nothing is written unless
        the manifest is valid and everything it references is here.
        """
        tag = None
        if looksLikeDigest(reference):
            digest = Digest.parse(reference)
            actual = Digest.of(content, digest.algorithm)
            if actual != digest:
                raise RegistryError(
                    "DIGEST_INVALID",
                    "the manifest's content does not match the digest it was pushed by",
                    {"expected": str(digest), "actual": str(actual)},
                )
        else:
            tag = checkTag(reference)
            digest = Digest.of(content)
        manifest = parseManifest(content, contentType)
        sizes = await self._checkReferences(manifest)
        await self.store(digest, content, manifest, tag)
        try:
            await self._recordPush(manifest, sizes)
        except Exception:
            # The push took effect: a record not written is a summary
            # out of date, not a push to fail (and to send no event for).
            log.failure("the record of a push to {name} was not written", name=self.name)
        return manifest

    async def _recordPush(self, manifest: Manifest, sizes: dict[Digest, int]) -> None:
        """
        Record that the repository was pushed to (by the store's clock: the
        record's modification time) and the size of the image pushed: its
        blobs, each once, and for an index those of its manifests. It costs
        the push one write (and for an index a read of each manifest, most
        likely cached, as its client pushed it just before), whatever the
        repository holds, and every push's record is right for that push.
        """
        for child in {child.digest for child in manifest.children}:
            stored = await self.get(str(child))
            for descriptor in parseManifest(stored.content, stored.mediaType).blobs:
                if not isForeign(descriptor):
                    sizes.setdefault(descriptor.digest, descriptor.size)
        size = sum(sizes.values())
        await self.driver.putContent(layout.lastPush(self.name), json.dumps({"size": size}).encode())

    async def summary(self) -> RepositorySummary:
        """
        What the last push recorded: two reads of one small file.
        """
        path = layout.lastPush(self.name)
        try:
            pushed = (await self.driver.stat(path)).modified
            content = await self.driver.getContent(path)
        except PathNotFound:
            return RepositorySummary()
        try:
            size = json.loads(content)["size"]
        except (ValueError, TypeError, KeyError, RecursionError):
            size = None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            size = None
        return RepositorySummary(pushed, size)

    async def store(self, digest: Digest, content: bytes, manifest: Manifest | None, tag: str | None) -> None:
        """
        Keep C{content}, whose digest is C{digest}, as a revision of the
        repository, tagged C{tag} if given, without checking what it
        references (a pull-through cache fetches that when it is asked).
        """
        if self.uses is not None:
            await self.uses.use(digest)
        if not await exists(self.driver, layout.blobData(digest)):
            await self.driver.putContent(layout.blobData(digest), content)
        # Served as any instance would serve it: typed from the bytes alone.
        self.cache.put(digest, StoredManifest(digest, content, storedMediaType(content)), len(content))
        await writeLink(self.driver, layout.revisionLink(self.name, digest), digest)
        if manifest is not None and manifest.subject is not None:
            await writeLink(
                self.driver, layout.referrerLink(self.name, manifest.subject.digest, digest), digest
            )
        if tag is not None:
            await self.tags.tag(tag, digest)

    async def delete(self, reference: str) -> list[str]:
        """
        Delete a tag, or a manifest revision with every tag that points at
        it: the tags deleted. Content stays in the blob store until garbage
        collection.
        """
        if not looksLikeDigest(reference):
            await self.tags.untag(lookupTag(reference))
            return [reference]
        stored = await self.get(reference)
        untagged = await self.tags.pointingAt(stored.digest)
        for tag in untagged:
            await self.tags.untag(tag)
        manifest = None
        try:
            manifest = parseManifest(stored.content)
        except RegistryError:
            pass
        if manifest is not None and manifest.subject is not None:
            await deleteIfPresent(
                self.driver, layout.referrerLink(self.name, manifest.subject.digest, stored.digest)
            )
        await deleteIfPresent(self.driver, layout.revisionLink(self.name, stored.digest))
        return untagged
