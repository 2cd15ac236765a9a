"""
Leases kept in a store that several instances share, so that one of them
at a time does something: the fleet's fetch of a blob from upstream (the
others read from the lease where to stream the download from), or garbage
collection. The first instance creates the lease (an exclusive create,
which exactly one racer wins).

A lease says where its holder can be reached and until when it holds.
The holder renews it every third of its duration while it downloads and
deletes it when done; an expired lease (its holder died, or cannot reach
the store) is deleted by whoever finds it, and the race run again. Expiry
is by the clocks of the instances, which must roughly agree.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from txregistry.logging import logger
from txregistry.storage import IStorageDriver, PathNotFound

log = logger(__name__)

#: How often an instance runs the race for a lease before it gives up and
#: fetches without one.
_ATTEMPTS = 3

#: What a lease is on: a blob's digest, or the one thing there is to do.
K = TypeVar("K")


@attrs.frozen
class Holder:
    """
    Another instance's lease: where it can be reached.
    """

    address: str


@attrs.frozen
class _Content:
    owner: str
    address: str
    expires: float

    def encode(self) -> bytes:
        return json.dumps(attrs.asdict(self)).encode()

    @classmethod
    def parse(cls, content: bytes) -> _Content | None:
        try:
            document = json.loads(content)
            found = cls(str(document["owner"]), str(document["address"]), float(document["expires"]))
        except (ValueError, TypeError, KeyError, RecursionError):
            return None
        return found


class Lease(Generic[K]):
    """
    This instance's lease on C{key}, renewed until L{release}d. C{tookOver}:
    whether it was had by removing an expired one, which two instances may
    do at once, each removing the other's (L{confirm} says who kept it);
    C{held} turns false once a renewal finds it taken over.
    """

    def __init__(self, leases: Leases[K], key: K, owner: str, tookOver: bool = False) -> None:
        self._leases = leases
        self.key = key
        self.owner = owner
        self.tookOver = tookOver
        self.held = True
        self._renewal = LoopingCall(self._renew)
        self._renewal.clock = leases.clock
        self._renewal.start(leases.duration / 3, now=False).addErrback(
            lambda f: log.failure("renewing the lease on {key}", f, key=key)
        )

    async def confirm(self) -> bool:
        """
        Whether the lease in the store is still this one.
        """
        self.held = await self._mine()
        return self.held

    async def _mine(self) -> bool:
        try:
            found = _Content.parse(await self._leases.driver.getContent(self._leases.path(self.key)))
        except PathNotFound:
            return False
        return found is not None and found.owner == self.owner

    def _renew(self) -> Deferred[None]:
        async def renew() -> None:
            # Another instance may have taken it over after it expired: that
            # lease is not overwritten.
            if not await self.confirm():
                log.warn("the lease on {key} was taken over", key=self.key)
                self._renewal.stop()
                return
            await self._leases.driver.putContent(
                self._leases.path(self.key), self._leases.content(self.owner)
            )

        d: Deferred[None] = Deferred.fromCoroutine(renew())
        # A renewal that fails is tried again at the next interval.
        d.addErrback(lambda f: log.warn("renewing the lease on {key}: {why}", key=self.key, why=f.value))
        return d

    async def release(self) -> None:
        """
        Stop renewing and delete the lease, unless it is no longer ours.
        """
        if self._renewal.running:
            self._renewal.stop()
        try:
            if await self._mine():
                await self._leases.driver.delete(self._leases.path(self.key))
        except PathNotFound:
            pass
        except Exception:
            # It expires anyway.
            log.failure("releasing the lease on {key}", Failure(), key=self.key)


class Leases(Generic[K]):
    """
    Leases of this instance (reached at C{address} by the others, and told
    apart from them by it), kept at C{path(key)}, lasting C{duration}
    seconds unless renewed.
    """

    def __init__(
        self,
        driver: IStorageDriver,
        path: Callable[[K], str],
        address: str,
        duration: float,
        clock: IReactorTime,
    ) -> None:
        self.driver = driver
        self.path = path
        self.address = address
        self.duration = duration
        self.clock = clock

    def content(self, owner: str) -> bytes:
        return _Content(owner, self.address, self.clock.seconds() + self.duration).encode()

    async def claim(self, key: K) -> Lease[K] | Holder | None:
        """
        A lease of ours on C{key}, or the live lease another instance
        holds; C{None} if the race could not be settled (the caller then
        goes on without a lease, or does not go on). Fails if the store
        cannot be reached.
        """
        path = self.path(key)
        removed = False
        for _ in range(_ATTEMPTS):
            owner = uuid.uuid4().hex
            if await self.driver.createExclusive(path, self.content(owner)):
                return Lease(self, key, owner, removed)
            try:
                found = _Content.parse(await self.driver.getContent(path))
            except PathNotFound:
                # Released meanwhile: race again.
                continue
            if found is not None and found.owner == owner:
                # Our own create, retried by the driver after its answer was lost.
                return Lease(self, key, owner)
            if found is not None and found.expires > self.clock.seconds() and found.address != self.address:
                return Holder(found.address)
            # Expired, unreadable, or left by an earlier run of this instance
            # (whose downloads are gone with it).
            removed = True
            try:
                await self.driver.delete(path)
            except PathNotFound:
                pass
        return None
