"""
What every endpoint of one registry shares: the registry itself, the
guard every request passes, how to tell clients where things are, and
where to tell what requests did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import attrs
from twisted.web.server import Request

from txregistry.auth import CATALOG, Access, IAccessPolicy, IAuthenticator, Identity
from txregistry.errors import RegistryError
from txregistry.notifications.interfaces import BLOB_MEDIA_TYPE, DELETED, INotifier
from txregistry.reference import Digest
from txregistry.registry import IRegistry, Listing


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
    #: Where the events of successful requests go; C{None}: nowhere.
    notifier: INotifier | None = None

    async def catalog(
        self,
        identity: Identity,
        after: str | None = None,
        limit: int | None = None,
        matching: Callable[[str], bool] | None = None,
    ) -> Listing:
        """
        The repositories C{identity} may see in the catalog (under access
        rules, those it may pull) and C{matching} picks, a page as
        L{IRegistry.catalog} gives one: the registry's pages are read, a
        page's worth at a time, until this one is full and one more name
        says whether more follow, or the catalog ends.
        """
        policy = None if self.guard is None else self.guard.policy
        if policy is None and matching is None:
            return await self.registry.catalog(after, limit)

        def shown(name: str) -> bool:
            if policy is not None and not policy.allows(identity, Access(CATALOG, name)):
                return False
            return matching is None or matching(name)

        found: list[str] = []
        while True:
            page = await self.registry.catalog(after, None if limit is None else limit + 1)
            for name in filter(shown, page.names):
                if limit is not None and len(found) == limit:
                    return Listing(found, more=True)
                found.append(name)
            if not page.more:
                return Listing(found, more=False)
            after = page.names[-1]

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

    def notifyBlob(
        self,
        request: Request,
        who: Identity,
        action: str,
        name: str,
        digest: Digest,
        size: int | None,
        source: str | None = None,
    ) -> None:
        """
        Tell of a blob of repository C{name} pulled, pushed, or mounted
        from repository C{source}.
        """
        if self.notifier is not None:
            url = self.url(request, f"/v2/{name}/blobs/{digest}")
            target = {"size": size, "digest": str(digest), "fromRepository": source, "url": url}
            self._tell(request, who, action, name, mediaType=BLOB_MEDIA_TYPE, **target)

    def notifyManifest(
        self,
        request: Request,
        who: Identity,
        action: str,
        name: str,
        digest: Digest,
        mediaType: str,
        size: int,
        tag: str | None,
    ) -> None:
        """
        Tell of a manifest pulled or pushed, by C{tag} if named by one.
        """
        if self.notifier is not None:
            url = self.url(request, f"/v2/{name}/manifests/{digest}")
            self._tell(
                request,
                who,
                action,
                name,
                mediaType=mediaType,
                size=size,
                digest=str(digest),
                url=url,
                tag=tag,
            )

    def notifyDeleted(
        self, request: Request, who: Identity, name: str, digest: Digest | None = None, tag: str | None = None
    ) -> None:
        """
        Tell of a manifest or blob (by C{digest}) or a tag deleted.
        """
        if self.notifier is not None:
            self._tell(request, who, DELETED, name, digest=None if digest is None else str(digest), tag=tag)

    def _tell(self, request: Request, who: Identity, action: str, name: str, **target: Any) -> None:
        # The event types are imported with the first event, so only when
        # notifications are configured: a registry without pays nothing.
        from txregistry.notifications.events import RequestRecord, Target

        assert self.notifier is not None
        self.notifier.notify(action, Target(name, **target), RequestRecord.of(request), who.name)


def parseInt(text: str | None, what: str, error: str = "PAGINATION_NUMBER_INVALID") -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise RegistryError(error, f"{what} must be a non-negative integer", {what: text})
    return int(text)


def query(request: Request, key: str) -> str | None:
    if not request.args:
        return None
    values = request.args.get(key.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")
