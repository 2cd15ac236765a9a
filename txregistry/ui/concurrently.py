"""
What a page reads for each of its rows, read at once.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, FirstError, gatherResults

T = TypeVar("T")


async def concurrently(reads: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """
    The results of C{reads}, run at once, in their order. The first to fail
    fails the whole with its own error (a L{RegistryError}, storage
    unavailable), as if it had run alone: the page answers with what that
    error means, and the others' failures are not left unhandled.
    """
    try:
        return await gatherResults([Deferred.fromCoroutine(read) for read in reads], consumeErrors=True)
    except FirstError as e:
        e.subFailure.raiseException()
        raise
