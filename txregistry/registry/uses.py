"""
When content was last used (uploaded, linked, referenced by a manifest
pushed, or pulled), kept in the store so that garbage collection on any
instance sharing it leaves alone what another is using.

Each writer records its use of content before it looks whether the store
has it; garbage collection looks at the record, hides the content, then
looks again (see L{txregistry.registry.collection}). So a writer that saw
the content recorded its use before the second look, and the content is
put back; one that records it later looks later too, and finds it gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.reference import Digest
from txregistry.registry.cache import ContentCache
from txregistry.registry.links import deleteIfPresent
from txregistry.storage import IStorageDriver, PathNotFound, StorageUnavailable, layout

log = logger(__name__)

#: Pulls this instance remembers having recorded recently.
_REMEMBERED = 100_000


class UseRecord:
    """
    Uses of content, each written at once, but a pull of the same content
    at most once every C{every} seconds of C{clock} by this instance, so
    that pulls do not write to the store each time.
    """

    def __init__(self, driver: IStorageDriver, every: float, clock: Callable[[], float] = time.time) -> None:
        self.driver = driver
        self.every = every
        self.clock = clock
        self._pulled: ContentCache[Digest, float] = ContentCache(_REMEMBERED)

    async def use(self, digest: Digest) -> None:
        """
        Record a use of C{digest} now, before looking whether the store has
        it.
        """
        self._pulled.put(digest, self.clock(), 1)
        await self.driver.putContent(layout.gcUse(digest), b"")

    async def claim(self, digest: Digest) -> None:
        """
        Record a use of C{digest}, then make sure the store has its content
        (read from the store, never from a cache): C{BLOB_UNKNOWN} if not.
        """
        await self.use(digest)
        try:
            await self.driver.stat(layout.blobData(digest))
        except PathNotFound:
            raise RegistryError.blobUnknown(digest) from None

    async def pull(self, digest: Digest) -> None:
        """
        Record a pull of C{digest}, if this instance has not lately. A
        record that cannot be written is said in the log, never to the
        client: the pull itself has what it asked for.
        """
        last = self._pulled.get(digest)
        if last is None or self.clock() - last >= self.every:
            try:
                await self.use(digest)
            except StorageUnavailable as e:
                log.warn("the pull of {digest} is not recorded: {why}", digest=digest, why=e)

    async def lastUsed(self, digest: Digest) -> float | None:
        try:
            return (await self.driver.stat(layout.gcUse(digest))).modified
        except PathNotFound:
            return None

    async def forget(self, digest: Digest) -> None:
        self._pulled.discard(digest)
        await deleteIfPresent(self.driver, layout.gcUse(digest))
