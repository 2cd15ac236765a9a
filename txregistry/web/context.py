"""
What every endpoint of one registry shares: the registry itself, the
guard every request passes, and how to tell clients where things are.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import attrs
from twisted.web.server import Request

from txregistry.auth import Access, IAccessPolicy, IAuthenticator, Identity
from txregistry.errors import RegistryError
from txregistry.registry import IRegistry


@attrs.frozen
class Guard:
    """
    Who a request comes from, and whether they may do what it needs.
    """

    authenticator: IAuthenticator
    policy: IAccessPolicy

    async def check(self, request: Request, needs: Sequence[Access]) -> Identity:
        """
        The identity of the client, if it may do every one of C{needs}
        (none: any authenticated identity may); otherwise fails with
        C{UNAUTHORIZED} for an anonymous client, C{DENIED} for another.
        """
        identity = await self.authenticator.authenticate(request.getHeader(b"authorization"), needs)
        allowed = all(self.policy.allows(identity, access) for access in needs)
        if identity.anonymous and (not allowed or not needs):
            raise self.authenticator.challenge(needs)
        if not allowed:
            raise self.authenticator.refusal(identity, needs)
        return identity


@attrs.frozen
class Context:
    registry: IRegistry
    #: Authentication and access; C{None} for an open registry.
    guard: Guard | None = None
    #: registry:2's C{http.host}: the externally visible base URL.
    host: str | None = None
    #: registry:2's C{http.relativeurls}: answer C{Location} with paths only.
    relativeURLs: bool = False

    def url(self, request: Request, path: str) -> str:
        """
        The URL a client should use for C{path} (which starts with C{/v2/}).
        """
        path = quote(path, safe="/:@=&?;,+-._~")
        if self.relativeURLs:
            return path
        if self.host:
            return self.host.rstrip("/") + path
        host = request.getHeader("host")
        if not host:
            address = request.getHost()
            host = f"{address.host}:{address.port}"
        scheme = "https" if request.isSecure() else "http"
        return f"{scheme}://{host}{path}"


def parseInt(text: str | None, what: str, error: str = "PAGINATION_NUMBER_INVALID") -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        raise RegistryError(error, f"{what} must be a non-negative integer", {what: text})
    return int(text)


def query(request: Request, key: str) -> str | None:
    if not request.args:
        return None
    values = request.args.get(key.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")
