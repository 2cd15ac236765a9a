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
    it was put, or sooner), C{size} at most (by count, or by the weights
    they were put with): the least recently used go first.
    """

    def __init__(self, clock: IReactorTime, lifetime: float, size: int) -> None:
        self._clock = clock
        self.lifetime = lifetime
        self.size = size
        self._entries: OrderedDict[K, tuple[V, float, int]] = OrderedDict()
        self._weight = 0

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock.seconds():
            del self._entries[key]
            self._weight -= entry[2]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, expires: float | None = None, weight: int = 1) -> None:
        """
        Keep C{value} until C{expires} (a time of the clock), if that comes
        before the lifetime is up.
        """
        if weight > self.size:
            return
        until = self._clock.seconds() + self.lifetime
        if expires is not None:
            until = min(until, expires)
        old = self._entries.pop(key, None)
        if old is not None:
            self._weight -= old[2]
        self._entries[key] = (value, until, weight)
        self._weight += weight
        while self._weight > self.size:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._weight -= dropped

    def clear(self) -> None:
        self._entries.clear()
        self._weight = 0
