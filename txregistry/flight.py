"""
Single flight: callers asking for the same thing at once share one
attempt at getting it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

V = TypeVar("V")


class SingleFlight(Generic[V]):
    def __init__(self) -> None:
        self._waiting: dict[Hashable, list[Deferred[V]]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[V]]) -> V:
        """
        The result of C{work()}, or of the call already running for C{key}.
        """
        waiting = self._waiting.get(key)
        if waiting is not None:
            d: Deferred[V] = Deferred()
            waiting.append(d)
            return await d
        waiting = self._waiting[key] = []
        try:
            result = await work()
        except BaseException:
            failure = Failure()
            del self._waiting[key]
            for d in waiting:
                d.errback(failure)
            raise
        del self._waiting[key]
        for d in waiting:
            d.callback(result)
        return result
