"""
The registry auth dance as a client sees it: C{WWW-Authenticate}
challenges, and bearer tokens kept until they expire.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import attrs

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
_SCHEME = re.compile(r"[\s,]*([A-Za-z][A-Za-z0-9_-]*)(?=[\s,]|$)[\s,]*")

#: Seconds a token lives when its issuer does not say (the token spec's
#: default), and how long before expiry it is no longer used.
DEFAULT_TOKEN_LIFETIME = 60
_EXPIRY_MARGIN = 5


@attrs.frozen
class Challenge:
    """
    One C{WWW-Authenticate} challenge: C{Bearer} with C{realm}, C{service}
    and C{scope}, or C{Basic}.
    """

    scheme: str
    params: dict[str, str] = attrs.field(factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parseChallenges(header: str) -> list[Challenge]:
    """
    The challenges in a C{WWW-Authenticate} header value. Parameters of
    unknown schemes are kept; what cannot be read is skipped.
    """
    challenges: list[Challenge] = []
    position = 0
    while position < len(header):
        match = _SCHEME.match(header, position)
        if match is None:
            break
        scheme = match.group(1).lower()
        position = match.end()
        params: dict[str, str] = {}
        while position < len(header):
            param = _PARAM.match(header, position)
            # A token followed by whitespace, not "=", starts the next challenge.
            if param is None:
                break
            quoted, bare = param.group(2), param.group(3)
            params[param.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
            position = param.end()
        challenges.append(Challenge(scheme, params))
    return challenges


@attrs.frozen
class _Token:
    value: str
    expires: float


class TokenCache:
    """
    Bearer tokens by scope, each until shortly before it expires.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, _Token] = {}

    def get(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is None:
            return None
        if token.expires <= self._clock():
            del self._tokens[scope]
            return None
        return token.value

    def put(self, scope: str, value: str, lifetime: float | None) -> None:
        lifetime = DEFAULT_TOKEN_LIFETIME if not lifetime or lifetime <= 0 else lifetime
        self._tokens[scope] = _Token(value, self._clock() + max(lifetime - _EXPIRY_MARGIN, 1))
