"""
When cached content was last pulled, kept in the store beside it so that
every instance sharing the store evicts by the same record.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs

from txregistry.errors import RegistryError
from txregistry.reference import Digest
from txregistry.registry.cache import ContentCache
from txregistry.storage import IStorageDriver, PathNotFound, layout

KINDS = ("blobs", "manifests")
#: Entries this instance remembers having written recently.
_REMEMBERED = 100_000


@attrs.frozen
class Entry:
    name: str
    kind: str
    digest: Digest
    pulled: float
    size: int

    @property
    def path(self) -> str:
        return layout.proxyEntry(self.name, self.kind, self.digest)


class PullRecord:
    """
    C{touch} writes an entry at most once per C{every(name)} seconds for
    each piece of content, so that a busy mirror does not write to its
    store on every pull.
    """

    def __init__(
        self, driver: IStorageDriver, clock: Callable[[], float], every: Callable[[str], float]
    ) -> None:
        self.driver = driver
        self.clock = clock
        self.every = every
        self._written: ContentCache[tuple[str, str, Digest], float] = ContentCache(_REMEMBERED)

    async def touch(self, name: str, kind: str, digest: Digest, size: int) -> None:
        now = self.clock()
        key = (name, kind, digest)
        last = self._written.get(key)
        if last is not None and now - last < self.every(name):
            return
        self._written.put(key, now, 1)
        content = json.dumps({"pulled": now, "size": size}).encode()
        await self.driver.putContent(layout.proxyEntry(name, kind, digest), content)

    async def remove(self, entry: Entry) -> None:
        self._written.discard((entry.name, entry.kind, entry.digest))
        try:
            await self.driver.delete(entry.path)
        except PathNotFound:
            pass

    async def entries(self) -> list[Entry]:
        """
        Every entry in the store.
        """
        found: list[Entry] = []
        await self._walk(layout.PROXY_REPOSITORIES, found)
        return found

    async def _list(self, path: str) -> list[str]:
        try:
            return await self.driver.list(path)
        except PathNotFound:
            return []

    async def _walk(self, path: str, found: list[Entry]) -> None:
        for child in sorted(await self._list(path)):
            base = layout.basename(child)
            if base.startswith("_") and base[1:] in KINDS:
                name = child[len(layout.PROXY_REPOSITORIES) + 1 : -len(base) - 1]
                await self._read(name, base[1:], child, found)
            elif not base.startswith("_"):
                await self._walk(child, found)

    async def _read(self, name: str, kind: str, path: str, found: list[Entry]) -> None:
        for algorithm in await self._list(path):
            for entryPath in await self._list(algorithm):
                try:
                    digest = Digest.parse(f"{layout.basename(algorithm)}:{layout.basename(entryPath)}")
                    document = json.loads(await self.driver.getContent(entryPath))
                    found.append(Entry(name, kind, digest, float(document["pulled"]), int(document["size"])))
                except (PathNotFound, RegistryError, ValueError, KeyError, TypeError, RecursionError):
                    # Gone meanwhile, or not ours: nothing to evict by.
                    continue
