"""
What checked out, kept for a bounded time and count, so that the next
request with the same credentials costs a dictionary lookup.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from twisted.internet.interfaces import IReactorTime

K = TypeVar("K")
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """
    Values by key, each until its own expiry (C{lifetime} seconds from when
    it was put, or sooner), C{size} at most: the least recently used go
    first.
    """

    def __init__(self, clock: IReactorTime, lifetime: float, size: int) -> None:
        self._clock = clock
        self.lifetime = lifetime
        self.size = size
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock.seconds():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, expires: float | None = None) -> None:
        """
        Keep C{value} until C{expires} (a time of the clock), if that comes
        before the lifetime is up.
        """
        until = self._clock.seconds() + self.lifetime
        if expires is not None:
            until = min(until, expires)
        self._entries[key] = (value, until)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
