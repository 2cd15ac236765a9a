"""
A page of the UI: read-only (C{GET} and C{HEAD}), let through by the API's
own guard for what it shows, rendered with C{twisted.web.template} (which
escapes every value) inside the layout and its headers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.template import Tag, flattenString, tags

from txregistry.auth import ANONYMOUS, PULL, Access, Identity
from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.reference import checkName
from txregistry.ui import layout
from txregistry.web import Context
from txregistry.web.context import query
from txregistry.web.responses import asRegistryError

if TYPE_CHECKING:
    from txregistry.proxy import PullThroughCache

log = logger(__name__)

_READING = (b"GET", b"HEAD")


@attrs.frozen
class Shared:
    """
    What every page has: the API's context (the registry contract and the
    guard), the cache when the registry is one, and what the status page
    tells.
    """

    context: Context
    cache: PullThroughCache | None = None
    #: The storage driver's name, and the failing health checks (C{None}:
    #: none are configured).
    storage: str = ""
    health: Callable[[], Mapping[str, str]] | None = None
    #: When the registry started, and what time it is now.
    started: float = 0.0
    now: Callable[[], float] = lambda: 0.0
    #: Where the metrics are served (on the debug listener), if they are on.
    metrics: str | None = None


class Page(Resource):
    """
    One page. Subclasses say what the viewer must be allowed (C{needs}) and
    build the body (C{content}); a L{RegistryError} becomes an error page
    with its status and headers (a Basic challenge makes the browser ask).
    """

    isLeaf = True
    title = ""

    def __init__(self, shared: Shared) -> None:
        super().__init__()
        self.shared = shared

    def needs(self, request: Request) -> Sequence[Access]:
        """
        What the viewer must be allowed to do; none: that it is
        authenticated, under auth.
        """
        return ()

    async def content(self, request: Request, identity: Identity) -> Tag:
        raise NotImplementedError

    def render(self, request: Request) -> Any:
        if request.method not in _READING:
            request.setHeader("Allow", "GET, HEAD")
            error = RegistryError.unsupported("the UI only shows: GET and HEAD")
            d = Deferred.fromCoroutine(self._write(request, error.status, errorContent(error), "Error"))
            d.addErrback(_failed, request)
            return NOT_DONE_YET
        Deferred.fromCoroutine(self._render(request)).addErrback(_failed, request)
        return NOT_DONE_YET

    async def _render(self, request: Request) -> None:
        try:
            identity = ANONYMOUS
            guard = self.shared.context.guard
            if guard is not None:
                identity = await guard.check(request, self.needs(request))
            body = await self.content(request, identity)
        except Exception:
            error = asRegistryError(Failure())
            for key, value in error.headers.items():
                request.setHeader(key, value)
            await self._write(request, error.status, errorContent(error), "Error")
            return
        await self._write(request, 200, body, self.title)

    async def _write(self, request: Request, status: int, body: Tag, title: str) -> None:
        html = b"<!DOCTYPE html>\n" + await flattenString(
            None, layout.document(title, body, self.shared.cache is not None)
        )
        if request.channel is None or request.finished:
            return
        request.setResponseCode(status)
        for key, value in layout.HEADERS.items():
            request.setHeader(key, value)
        request.setHeader("Content-Length", str(len(html)))
        if request.method != b"HEAD":
            request.write(html)
        request.finish()


class PullPage(Page):
    """
    A page about one repository (the query's C{name}): the viewer must
    be allowed to pull it.
    """

    def needs(self, request: Request) -> Sequence[Access]:
        return (Access(PULL, repositoryName(request)),)


def _failed(failure: Failure, request: Request) -> None:
    # Rendering itself failed: nothing sensible is left to send.
    log.failure("a UI page failed", failure)
    if request.channel is not None and not request.finished:
        request.setResponseCode(500)
        request.finish()


def errorContent(error: RegistryError) -> Tag:
    return tags.p(f"{error.status} {error.code}: {error.message}", class_="error")


def pullHost(context: Context, request: Request) -> str:
    """
    The registry's host as C{docker pull} names it: C{http.host}'s, else
    the one the browser asked.
    """
    if context.host:
        return context.host.split("://", 1)[-1].rstrip("/")
    return request.getHeader("host") or "localhost"


def repositoryName(request: Request) -> str:
    """
    The C{name} a page is asked about, checked against the name grammar.
    """
    return checkName(query(request, "name") or "")


def pageLink(path: str, **parameters: str) -> str:
    return f"{path}?{urlencode(parameters)}" if parameters else path
