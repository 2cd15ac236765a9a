"""
The referrers of a manifest: the manifests in the same repository whose
C{subject} names it (OCI distribution-spec 1.1).
"""

from __future__ import annotations

import attrs

from txregistry.errors import RegistryError
from txregistry.manifest import Descriptor, parseManifest
from txregistry.reference import Digest
from txregistry.registry.cache import ContentCache
from txregistry.registry.links import readLink
from txregistry.registry.manifests import Manifests, StoredManifest
from txregistry.storage import IStorageDriver, PathNotFound, layout


@attrs.frozen
class Referrers:
    driver: IStorageDriver
    name: str
    cache: ContentCache[Digest, StoredManifest]

    async def of(self, subject: Digest, artifactType: str | None = None) -> list[Descriptor]:
        """
        Descriptors of the referrers of C{subject}, those of C{artifactType}
        alone if one is given, ordered by digest so that pages are stable.
        The subject need not exist.
        """
        try:
            algorithms = await self.driver.list(layout.referrers(self.name, subject))
        except PathNotFound:
            return []
        manifests = Manifests(self.driver, self.name, self.cache)
        found = []
        for algorithmPath in algorithms:
            try:
                entries = await self.driver.list(algorithmPath)
            except PathNotFound:
                continue
            for entry in entries:
                digest = await readLink(self.driver, f"{entry}/link")
                if digest is None:
                    continue
                try:
                    stored = await manifests.get(str(digest))
                except RegistryError:
                    continue
                descriptor = parseManifest(stored.content).asReferrer(digest)
                if artifactType is None or descriptor.artifactType == artifactType:
                    found.append(descriptor)
        return sorted(found, key=lambda d: str(d.digest))
