"""
Blobs as a repository sees them: content in the shared blob store that the
repository links to.
"""

from __future__ import annotations

import attrs

from txregistry.errors import RegistryError
from txregistry.reference import Digest
from txregistry.registry.cache import ContentCache
from txregistry.registry.links import deleteIfPresent, readLink, writeLink
from txregistry.registry.uses import UseRecord
from txregistry.storage import IReader, IRedirectingDriver, IStorageDriver, PathNotFound, layout

#: Blob sizes kept in memory, by digest, for each registry: a blob's size
#: never changes, so a HEAD costs storage one request (its link), not two.
BLOB_SIZE_CACHE_ENTRIES = 100_000


@attrs.frozen
class Blobs:
    driver: IStorageDriver
    name: str
    sizes: ContentCache[Digest, int] = attrs.field(factory=lambda: ContentCache(0))
    uses: UseRecord | None = None

    async def size(self, digest: Digest) -> int:
        """
        The size of a blob the repository links to; C{BLOB_UNKNOWN} if it
        does not, or if the blob store lost the content.
        """
        # The link is always read: whether a repository has a blob can
        # change on any instance sharing the store.
        if await readLink(self.driver, layout.layerLink(self.name, digest)) != digest:
            raise RegistryError.blobUnknown(digest)
        size = self.sizes.get(digest)
        if size is None:
            try:
                size = (await self.driver.stat(layout.blobData(digest))).size
            except PathNotFound:
                raise RegistryError.blobUnknown(digest) from None
            self.sizes.put(digest, size, 1)
        return size

    def redirectURL(self, digest: Digest) -> str | None:
        """
        Where a client can fetch the blob from storage itself, if storage
        hands out such URLs.
        """
        if not IRedirectingDriver.providedBy(self.driver):
            return None
        return IRedirectingDriver(self.driver).redirectURL(layout.blobData(digest))

    async def open(self, digest: Digest, offset: int = 0) -> IReader:
        try:
            return await self.driver.reader(layout.blobData(digest), offset)
        except PathNotFound:
            raise RegistryError.blobUnknown(digest) from None

    async def link(self, digest: Digest) -> None:
        await writeLink(self.driver, layout.layerLink(self.name, digest), digest)

    async def delete(self, digest: Digest) -> None:
        """
        Unlink the blob from the repository. The content stays in the blob
        store for other repositories until garbage collection.
        """
        if not await deleteIfPresent(self.driver, layout.layerLink(self.name, digest)):
            raise RegistryError.blobUnknown(digest)

    async def claim(self, digest: Digest) -> int:
        """
        L{size}, for a push that will rely on the blob: its use recorded
        first, and its content looked for in the store itself, when a
        garbage collector may be removing it.
        """
        if self.uses is not None:
            await self.uses.claim(digest)
        return await self.size(digest)

    async def mount(self, digest: Digest, source: str) -> int | None:
        """
        Link a blob that repository C{source} has into this one. The size of
        the blob, or C{None} when C{source} does not have it.
        """
        try:
            size = await Blobs(self.driver, source, self.sizes, self.uses).claim(digest)
        except RegistryError:
            return None
        await self.link(digest)
        return size
