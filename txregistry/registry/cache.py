"""
A bounded in-memory cache of content that never changes once written:
what a digest names is the same on every instance, forever, so caching it
needs no invalidation. Whether a repository still links to it is another
matter, and is always asked of storage.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ContentCache(Generic[K, V]):
    """
    Least recently used entries are dropped once their sizes add up to more
    than C{maxBytes}. C{hits} and C{misses} count what L{get} found, for
    metrics.
    """

    def __init__(self, maxBytes: int) -> None:
        self.maxBytes = maxBytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def discard(self, key: K) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[1]

    def put(self, key: K, value: V, size: int) -> None:
        if size > self.maxBytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[1]
        self._entries[key] = (value, size)
        self.size += size
        while self.size > self.maxBytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.size -= dropped
