"""
A blob's bytes as they arrive, in a file on local disk, read by any number
of clients at their own pace: a slow reader holds neither memory nor what
feeds the spool. The last byte is held back until the bytes are known to be
right, so that no reader can take a corrupt blob for a whole one.
"""

from __future__ import annotations

import os
import tempfile

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from txregistry.storage import IReader


class Spool:
    """
    Bytes as they are L{write}n to a file in C{directory}, for
    L{SpoolReader}s. The file is closed once the spool has L{end}ed and its
    last reader is closed.

    @ivar failure: Why the bytes will never be whole, once known: readers
        fail with it.
    """

    def __init__(self, directory: str | None = None) -> None:
        # Unbuffered: what is written is at once there for readers' preads.
        self._file = tempfile.TemporaryFile(buffering=0, dir=directory)
        self.received = 0
        self.verified = False
        self.ended = False
        self.failure: Failure | None = None
        self._waiters: list[Deferred[None]] = []
        self._readers = 0

    @property
    def readers(self) -> int:
        """
        How many read the spool now.
        """
        return self._readers

    @property
    def closed(self) -> bool:
        """
        Whether the file is gone: the spool ended and its readers closed.
        """
        return self._file.closed

    def fileno(self) -> int:
        return self._file.fileno()

    def write(self, data: bytes) -> int:
        """
        Add C{data} for readers; returns its offset in the file.
        """
        offset = self.received
        self._file.write(data)
        self.received += len(data)
        self._wake()
        return offset

    def verify(self) -> None:
        """
        What was written is whole and right: readers may have its last byte.
        """
        self.verified = True
        self._wake()

    def end(self) -> None:
        """
        Nothing more is written.
        """
        self.ended = True
        self._wake()
        self._release()

    def available(self) -> int:
        """
        Bytes readers may have: all once verified, all but the last before.
        """
        return self.received if self.verified else max(self.received - 1, 0)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _more(self) -> Deferred[None]:
        if self.ended:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def _release(self, reader: bool = False) -> None:
        if reader:
            self._readers -= 1
        if self.ended and self._readers == 0 and not self._file.closed:
            self._file.close()

    def _pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._file.fileno(), size, offset)


@implementer(IReader)
class SpoolReader:
    """
    A reader of C{spool} from C{offset}, that waits for bytes still to come
    and keeps the spool's file open until it is closed.
    """

    def __init__(self, spool: Spool, offset: int) -> None:
        self._spool = spool
        self._offset = offset
        # Whether this reader keeps the spool's file open.
        self._holding = True
        spool._readers += 1

    def read(self, size: int) -> Deferred[bytes]:
        spool = self._spool
        if spool.failure is not None:
            return fail(spool.failure)
        available = spool.available()
        if self._offset < available:
            data = spool._pread(min(size, available - self._offset), self._offset)
            self._offset += len(data)
            return succeed(data)
        if spool.verified:
            return succeed(b"")
        return spool._more().addCallback(lambda _: self.read(size))

    def close(self) -> None:
        if self._holding:
            self._holding = False
            self._spool._release(reader=True)
