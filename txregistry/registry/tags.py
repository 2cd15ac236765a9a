"""
Tags: names in a repository that point at one manifest revision each.
"""

from __future__ import annotations

import attrs

from txregistry.errors import RegistryError
from txregistry.reference import Digest
from txregistry.registry.interfaces import Listing
from txregistry.registry.links import deleteIfPresent, exists, readLink, writeLink
from txregistry.storage import IStorageDriver, PathNotFound, layout


@attrs.frozen
class Tags:
    driver: IStorageDriver
    name: str

    async def resolve(self, tag: str) -> Digest:
        digest = await readLink(self.driver, layout.tagCurrentLink(self.name, tag))
        if digest is None:
            raise RegistryError.manifestUnknown(tag)
        return digest

    async def tag(self, tag: str, digest: Digest) -> None:
        # The index link first: registry:2's garbage collector reads it to
        # know which revisions a tag ever pointed at.
        await writeLink(self.driver, layout.tagIndexLink(self.name, tag, digest), digest)
        await writeLink(self.driver, layout.tagCurrentLink(self.name, tag), digest)

    async def untag(self, tag: str) -> None:
        if not await deleteIfPresent(self.driver, layout.tag(self.name, tag)):
            raise RegistryError.manifestUnknown(tag)

    async def all(self) -> list[str]:
        """
        Every tag, sorted; C{NAME_UNKNOWN} for a repository that has no
        manifests (only blobs, or nothing), as the catalog sees it.
        """
        try:
            paths = await self.driver.list(layout.tags(self.name))
        except PathNotFound:
            if await exists(self.driver, layout.manifests(self.name)):
                return []
            raise RegistryError.nameUnknown(self.name) from None
        return sorted(layout.basename(path) for path in paths)

    async def page(self, after: str | None = None, limit: int | None = None) -> Listing:
        """
        The tags after C{after}, C{limit} at most, as L{all} finds them:
        the tags are one directory, listed in one call.
        """
        return Listing.of(await self.all(), after, limit)

    async def pointingAt(self, digest: Digest) -> list[str]:
        found = []
        for tag in await self.all():
            if await readLink(self.driver, layout.tagCurrentLink(self.name, tag)) == digest:
                found.append(tag)
        return found
