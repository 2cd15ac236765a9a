"""
registry:2's C{auth.htpasswd}: users and their bcrypt hashes in a file,
read again when it changes, and Basic credentials checked against them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Sequence

import bcrypt
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from zope.interface import implementer

from txregistry.auth.challenges import basic
from txregistry.auth.interfaces import ANONYMOUS, Access, IAuthenticator, Identity
from txregistry.auth.remembered import Remembered
from txregistry.errors import RegistryError
from txregistry.flight import SingleFlight
from txregistry.logging import logger

log = logger(__name__)

_BCRYPT = re.compile(rb"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
#: Longer Basic credentials than this are refused unread.
MAX_CREDENTIALS = 4096
#: How often, at most, the file is looked at again.
CHECK_INTERVAL = 1.0
#: Dummy hash checked for unknown users, so that they take as long as known ones.
_NOBODY = b"$2b$10$FwMedtPuw1oHH7uniYCWQe93N7ZE6Arpm7RsU953fponPAp./C50e"


class HtpasswdError(Exception):
    """
    A file that cannot be used, said in one line that never shows a hash.
    """


def parseHtpasswd(content: bytes, path: str) -> dict[str, bytes]:
    """
    The users of an htpasswd file and their bcrypt hashes. Blank lines and
    lines starting with C{#} are skipped; a later line for a user wins.
    """
    users: dict[str, bytes] = {}
    for number, line in enumerate(content.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        user, colon, hashed = line.partition(b":")
        if not colon or not user:
            raise HtpasswdError(f"{path}: line {number} is not user:hash")
        if not _BCRYPT.fullmatch(hashed):
            raise HtpasswdError(f"{path}: line {number}: only bcrypt hashes ($2y$, $2b$, $2a$) are supported")
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            raise HtpasswdError(f"{path}: line {number}: the user name is not UTF-8") from None
        users[name] = hashed
    return users


def _stamp(status: os.stat_result) -> tuple[int, int, int, int]:
    return (status.st_ino, status.st_dev, status.st_size, status.st_mtime_ns)


def readHtpasswd(path: str) -> tuple[tuple[int, int, int, int], dict[str, bytes]]:
    """
    The file's identity (inode, device, size, mtime) and its users.
    """
    try:
        with open(path, "rb") as f:
            # Of the file read, not of whatever the path names a moment later.
            stamp = _stamp(os.fstat(f.fileno()))
            content = f.read()
    except FileNotFoundError:
        # registry:2 makes the file then, for a user "docker" with a
        # password it writes to its log: not a secret we would keep.
        raise HtpasswdError(f"{path}: no such file (make it first: see the README)") from None
    except OSError as e:
        raise HtpasswdError(f"{path}: cannot read: {e.strerror}") from None
    return stamp, parseHtpasswd(content, path)


@implementer(IAuthenticator)
class HtpasswdAuthenticator:
    """
    Basic credentials checked against an htpasswd file. bcrypt runs in the
    reactor's thread pool, at most C{concurrency} checks at once, and once
    for each set of credentials asked about at the same time; credentials
    that checked out are remembered (as an HMAC under a key of this
    process, never the password) for C{lifetime} seconds, C{size} at most,
    and forgotten when the file changes.
    """

    def __init__(
        self,
        path: str,
        realm: str,
        reactor: IReactorThreads,
        clock: IReactorTime,
        lifetime: float = 300.0,
        size: int = 10_000,
        concurrency: int = 4,
        checkPassword: Callable[[bytes, bytes], bool] = bcrypt.checkpw,
    ) -> None:
        self.path = path
        self.realm = realm
        self._reactor = reactor
        self._clock = clock
        self._checkPassword = checkPassword
        self._key = secrets.token_bytes(32)
        self._verified: Remembered[bytes, bool] = Remembered(clock, lifetime, size)
        self._checks = DeferredSemaphore(concurrency)
        self._flight: SingleFlight[bool] = SingleFlight()
        self._stamp, self._users = readHtpasswd(path)
        self._lastLook = clock.seconds()
        self._looking = False

    def challenge(self, needs: Sequence[Access]) -> RegistryError:
        return RegistryError(
            "UNAUTHORIZED", "authentication required", headers={"WWW-Authenticate": basic(self.realm)}
        )

    def refusal(self, identity: Identity, needs: Sequence[Access]) -> RegistryError:
        return RegistryError("DENIED", "requested access to the resource is denied")

    def authenticate(self, authorization: bytes | None, needs: Sequence[Access] = ()) -> Deferred[Identity]:
        return Deferred.fromCoroutine(self._authenticate(authorization))

    async def _authenticate(self, authorization: bytes | None) -> Identity:
        if authorization is None:
            return ANONYMOUS
        self._lookAgain()
        credentials = self._credentials(authorization)
        if credentials is None:
            raise self.challenge(())
        user, password = credentials
        key = hmac.new(self._key, user.encode() + b":" + password, hashlib.sha256).digest()
        if self._verified.get(key) is None:
            users = self._users
            if not await self._flight.run(key, lambda: self._check(users, user, password)):
                raise self.challenge(())
            # Not if the file changed while bcrypt ran: then it said so of
            # a hash that may be gone.
            if users is self._users:
                self._verified.put(key, True)
        return Identity(user)

    def _credentials(self, authorization: bytes) -> tuple[str, bytes] | None:
        scheme, _, encoded = authorization.strip().partition(b" ")
        if scheme.lower() != b"basic" or len(encoded) > MAX_CREDENTIALS:
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
            user, colon, password = decoded.partition(b":")
            name = user.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not colon or not name:
            return None
        return name, password

    async def _check(self, users: dict[str, bytes], user: str, password: bytes) -> bool:
        hashed = users.get(user)
        known = hashed is not None

        def check() -> bool:
            # bcrypt reads 72 bytes of a password and no more; bcrypt 5
            # refuses to be given more, where htpasswd and Go cut it short.
            right = self._checkPassword(password[:72], hashed if hashed is not None else _NOBODY)
            return right and known

        result: bool = await self._checks.run(
            deferToThreadPool, self._reactor, self._reactor.getThreadPool(), check
        )
        return result

    def _lookAgain(self) -> None:
        """
        Read the file again in a thread if it changed, once a second at
        most; requests meanwhile go on with the users read last.
        """
        now = self._clock.seconds()
        if self._looking or now - self._lastLook < CHECK_INTERVAL:
            return
        self._lastLook = now
        self._looking = True
        d = deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._readIfChanged, self._stamp)
        d.addCallbacks(self._read, self._unreadable)
        d.addBoth(self._done)

    def _readIfChanged(
        self, stamp: tuple[int, int, int, int]
    ) -> tuple[tuple[int, int, int, int], dict[str, bytes]] | None:
        try:
            if _stamp(os.stat(self.path)) == stamp:
                return None
        except OSError:
            pass
        return readHtpasswd(self.path)

    def _read(self, result: tuple[tuple[int, int, int, int], dict[str, bytes]] | None) -> None:
        if result is None:
            return
        self._stamp, self._users = result
        self._verified.clear()
        log.info("{path}: read again, {count} users", path=self.path, count=len(self._users))

    def _unreadable(self, failure: Failure) -> None:
        # Closed on doubt: a file that cannot be read lets nobody in until
        # it can.
        why = failure.getErrorMessage() if failure.check(HtpasswdError) else repr(failure.value)
        log.error("htpasswd: {why}; refusing every user until it is fixed", why=why)
        self._stamp, self._users = (0, 0, 0, 0), {}
        self._verified.clear()

    def _done(self, _: object) -> None:
        self._looking = False
