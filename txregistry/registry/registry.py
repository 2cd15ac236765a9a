"""
A registry: one store, its repositories and the rules it runs under.
"""

from __future__ import annotations

from txregistry.errors import RegistryError
from txregistry.reference import Digest
from txregistry.registry.blobs import BLOB_SIZE_CACHE_ENTRIES, Blobs
from txregistry.registry.cache import ContentCache
from txregistry.registry.catalog import repositories
from txregistry.registry.manifests import MANIFEST_CACHE_BYTES, Manifests, StoredManifest
from txregistry.registry.referrers import Referrers
from txregistry.registry.tags import Tags
from txregistry.registry.uploads import Uploads
from txregistry.storage import IStorageDriver


class Registry:
    """
    The registry's content on one storage driver. C{readOnly} refuses every
    change (registry:2's maintenance mode); C{deleteEnabled} allows
    deleting blobs, manifests and tags.
    """

    def __init__(self, driver: IStorageDriver, deleteEnabled: bool = False, readOnly: bool = False) -> None:
        self.driver = driver
        self.deleteEnabled = deleteEnabled
        self.readOnly = readOnly
        self.uploads = Uploads(driver)
        self.manifestCache: ContentCache[Digest, StoredManifest] = ContentCache(MANIFEST_CACHE_BYTES)
        self.blobSizes: ContentCache[Digest, int] = ContentCache(BLOB_SIZE_CACHE_ENTRIES)

    def blobs(self, name: str) -> Blobs:
        return Blobs(self.driver, name, self.blobSizes)

    def manifests(self, name: str) -> Manifests:
        return Manifests(self.driver, name, self.manifestCache, self.blobSizes)

    def tags(self, name: str) -> Tags:
        return Tags(self.driver, name)

    def referrers(self, name: str) -> Referrers:
        return Referrers(self.driver, name, self.manifestCache)

    async def catalog(self) -> list[str]:
        return await repositories(self.driver)

    def checkWritable(self) -> None:
        if self.readOnly:
            raise RegistryError.unsupported("the registry is in read-only mode")

    def checkDeletable(self) -> None:
        self.checkWritable()
        if not self.deleteEnabled:
            raise RegistryError.unsupported("deletes are disabled (storage.delete.enabled is false)")
