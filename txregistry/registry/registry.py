"""
A registry: one store, its repositories and the rules it runs under.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from zope.interface import implementer

from txregistry.errors import RegistryError
from txregistry.reference import Digest
from txregistry.registry.blobs import BLOB_SIZE_CACHE_ENTRIES, Blobs
from txregistry.registry.cache import ContentCache
from txregistry.registry.catalog import catalogPage
from txregistry.registry.interfaces import IRegistry, Listing
from txregistry.registry.links import deleteIfPresent, exists
from txregistry.registry.manifests import MANIFEST_CACHE_BYTES, Manifests, StoredManifest
from txregistry.registry.pulls import PullRecord
from txregistry.registry.referrers import Referrers
from txregistry.registry.repository import Repository
from txregistry.registry.tags import Tags
from txregistry.registry.uploads import Uploads
from txregistry.registry.uses import UseRecord
from txregistry.storage import IStorageDriver, PathNotFound, layout


@implementer(IRegistry)
class Registry:
    """
    The registry's content on one storage driver. C{readOnly} refuses every
    change (registry:2's maintenance mode); C{deleteEnabled} allows
    deleting blobs, manifests and tags. With C{uses} (a garbage collector
    runs on the store), every use of content is recorded there first.

    Every write to the store goes through here: uploads (the one way
    content becomes a blob), manifests and tags, and L{deleteContent},
    which also forgets what the registry's caches hold of it.
    """

    def __init__(
        self,
        driver: IStorageDriver,
        deleteEnabled: bool = False,
        readOnly: bool = False,
        blobDescriptors: int = BLOB_SIZE_CACHE_ENTRIES,
        uses: UseRecord | None = None,
    ) -> None:
        self.driver = driver
        self.deleteEnabled = deleteEnabled
        self.readOnly = readOnly
        self.uses = uses
        self.uploads = Uploads(driver, uses)
        self.manifestCache: ContentCache[Digest, StoredManifest] = ContentCache(MANIFEST_CACHE_BYTES)
        self.blobSizes: ContentCache[Digest, int] = ContentCache(blobDescriptors)

    def viewer(self) -> Registry:
        """
        The same registry (its store and caches) for reading that is no use
        of content, such as the web UI's: nothing read through it is
        recorded for garbage collection.
        """
        view = copy.copy(self)
        view.uses = None
        view.uploads = Uploads(self.driver, None)
        return view

    def repository(self, name: str, namespace: str | None = None) -> Repository:
        # A registry serves one namespace: containerd's ?ns= names ours.
        return Repository(self, name)

    def blobs(self, name: str) -> Blobs:
        return Blobs(self.driver, name, self.blobSizes, self.uses)

    def manifests(self, name: str) -> Manifests:
        return Manifests(self.driver, name, self.manifestCache, self.blobSizes, self.uses)

    def tags(self, name: str) -> Tags:
        return Tags(self.driver, name)

    def referrers(self, name: str) -> Referrers:
        return Referrers(self.driver, name, self.manifestCache)

    async def catalog(self, after: str | None = None, limit: int | None = None) -> Listing:
        return await catalogPage(self.driver, after, limit)

    def pullRecord(self, clock: Callable[[], float], every: Callable[[str], float]) -> PullRecord:
        """
        When content was last pulled from each repository, kept in the
        store (see L{PullRecord}).
        """
        return PullRecord(self.driver, clock, every)

    def leasePath(self, digest: Digest) -> str:
        """
        Where the fleet's lease on fetching C{digest} is kept.
        """
        return layout.proxyLease(digest)

    async def storedSize(self, digest: Digest) -> int | None:
        """
        The size of content in the blob store, whichever repository it came
        for; C{None} where the store does not have it.
        """
        try:
            return (await self.driver.stat(layout.blobData(digest))).size
        except PathNotFound:
            return None

    async def manifestContent(self, digest: Digest) -> bytes | None:
        """
        The bytes of a manifest in the blob store, whichever repository has
        it; C{None} where the store does not have it.
        """
        try:
            return await self.driver.getContent(layout.blobData(digest))
        except PathNotFound:
            return None

    async def links(self, name: str, digest: Digest) -> bool:
        """
        Whether repository C{name} links content C{digest}, as a blob or as
        a manifest.
        """
        for link in (layout.layerLink(name, digest), layout.revisionLink(name, digest)):
            if await exists(self.driver, link):
                return True
        return False

    async def deleteContent(self, digest: Digest) -> bool:
        """
        Remove content from the blob store, and from what this registry
        holds of it in memory. Whether it was there. Repositories that link
        it are not asked: that is the caller's to have made sure of.
        """
        self.forgetContent(digest)
        return await deleteIfPresent(self.driver, layout.blobDirectory(digest))

    def forgetContent(self, digest: Digest) -> None:
        """
        Drop what this registry holds in memory of content removed from
        the store.
        """
        self.blobSizes.discard(digest)
        self.manifestCache.discard(digest)

    def checkWritable(self) -> None:
        if self.readOnly:
            raise RegistryError.unsupported("the registry is in read-only mode")

    def checkDeletable(self) -> None:
        self.checkWritable()
        if not self.deleteEnabled:
            raise RegistryError.unsupported("deletes are disabled (storage.delete.enabled is false)")
