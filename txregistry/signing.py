"""
The requests instances of a fleet make of each other, signed with their
shared C{http.secret}: an HMAC-SHA256 over what is asked for and a time,
good for a short window either side of it.
"""

from __future__ import annotations

import hashlib
import hmac

from txregistry.errors import RegistryError

#: The authorization scheme of the fleet's requests: C{Fleet <time>:<hmac>}.
SCHEME = "Fleet"
#: Seconds a signed request is good for, either side of the time it says.
WINDOW = 30


def _mac(secret: bytes, digest: str, timestamp: int) -> str:
    return hmac.new(secret, f"{digest}\n{timestamp}".encode(), hashlib.sha256).hexdigest()


def authorization(secret: bytes, digest: str, now: float) -> str:
    """
    The C{Authorization} value of a request for C{digest} at time C{now}.
    """
    timestamp = int(now)
    return f"{SCHEME} {timestamp}:{_mac(secret, digest, timestamp)}"


def checkAuthorization(header: bytes | None, secret: bytes, digest: str, now: float) -> None:
    """
    Raise C{UNAUTHORIZED} (no fleet credentials) or C{DENIED} (wrong or
    stale ones) unless C{header} signs C{digest} within the window.
    """
    scheme, _, value = (header or b"").decode("latin-1").partition(" ")
    if scheme != SCHEME:
        raise RegistryError("UNAUTHORIZED", "fleet credentials needed")
    timestamp, _, mac = value.strip().partition(":")
    valid = timestamp.isascii() and timestamp.isdigit() and len(timestamp) < 20
    expected = _mac(secret, digest, int(timestamp)) if valid else ""
    # Compared before the time is looked at, in constant time either way.
    if not hmac.compare_digest(mac.encode("latin-1"), expected.encode()) or not expected:
        raise RegistryError("DENIED", "fleet credentials refused")
    if abs(now - int(timestamp)) > WINDOW:
        raise RegistryError("DENIED", "fleet credentials expired")
