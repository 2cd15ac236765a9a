"""
Which repositories are the registry's own on a registry that caches a
default upstream (every other repository is the upstream's): a marker in
the store for each, so that every instance sharing the store agrees.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from txregistry.registry.catalog import walk
from txregistry.storage import IStorageDriver, PathNotFound, layout

#: What of a repository in the store says something is there.
_HELD = {"_manifests", "_layers", "_uploads"}
#: What of a repository in the pull record says it was cached.
_PULLED = {"_blobs", "_manifests"}


class OwnMarks:
    """
    The markers of own repositories. Nothing here removes one: a
    repository becomes the registry's own, never the reverse, so every
    instance may remember that it is.
    """

    def __init__(self, driver: IStorageDriver, clock: Callable[[], float]) -> None:
        self.driver = driver
        self.clock = clock

    async def marked(self, name: str) -> bool:
        try:
            # One request to S3, where a stat of what is missing takes two.
            await self.driver.getContent(layout.proxyOwn(name))
        except PathNotFound:
            return False
        return True

    async def mark(self, name: str) -> None:
        """
        Make C{name} the registry's own. Instances racing to mark it all
        write the same thing, so a replacing write is as good as an
        exclusive one.
        """
        await self.driver.putContent(layout.proxyOwn(name), json.dumps({"since": self.clock()}).encode())

    async def holdsContent(self, name: str) -> bool:
        """
        Whether anything of repository C{name} is in the store (manifests,
        tags, blob links, uploads, which a cache's downloads go through
        too) or in the pull record.
        """
        for path, kinds in ((layout.repository(name), _HELD), (layout.proxyRepository(name), _PULLED)):
            try:
                children = await self.driver.list(path)
            except PathNotFound:
                continue
            if kinds & {layout.basename(child) for child in children}:
                return True
        return False

    async def all(self) -> list[str]:
        """
        Every marked repository, sorted.
        """
        return sorted(
            [name async for name, children in walk(self.driver, layout.PROXY_OWN) if "_own" in children]
        )
