"""
Which endpoint a path under C{/v2/} is for.

Repository names have any number of components, and a component may be
named like an endpoint (C{team/blobs}, C{x/manifests}), so a path is read
from its end: C{<name>/blobs/uploads/[<uuid>]}, C{<name>/blobs/<digest>},
C{<name>/manifests/<reference>}, C{<name>/referrers/<digest>},
C{<name>/tags/list}; whatever stands before is the name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import attrs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.util import Redirect

from txregistry.errors import RegistryError
from txregistry.logging import debugging, logger
from txregistry.reference import checkName
from txregistry.registry import IRegistry
from txregistry.web.base import BaseEndpoint
from txregistry.web.blobs import BlobEndpoint
from txregistry.web.catalog import CatalogEndpoint
from txregistry.web.context import Context
from txregistry.web.manifests import ManifestEndpoint
from txregistry.web.referrers import ReferrersEndpoint
from txregistry.web.responses import Endpoint, writeError
from txregistry.web.tags import TagsEndpoint
from txregistry.web.uploads import StartUploadEndpoint, UploadEndpoint

if TYPE_CHECKING:
    from txregistry.web.debug import HealthStatus

log = logger(__name__)


class ErrorEndpoint(Endpoint):
    """
    Answers every method with one error, once the guard lets the request
    through (an anonymous client learns nothing but that it must log in).
    """

    def __init__(self, error: RegistryError, context: Context) -> None:
        super().__init__(context)
        self.error = error

    def serve(self, request: Request, method: str) -> None:
        writeError(request, self.error)


class UnhealthyEndpoint(Endpoint):
    """
    Every request while a health check fails, as registry:2's: 503
    C{UNAVAILABLE}, before the guard (it is the registry that cannot serve,
    whoever asks) and before anything is read or done.
    """

    def render(self, request: Request) -> Any:
        writeError(request, _UNHEALTHY)
        return NOT_DONE_YET


_UNHEALTHY = RegistryError(
    "UNAVAILABLE", "service unavailable", "health check failed: please see /debug/health"
)


def notFound(path: str, context: Context) -> ErrorEndpoint:
    error = RegistryError("UNSUPPORTED", "no such endpoint", {"path": path}, status=404)
    return ErrorEndpoint(error, context)


@attrs.frozen
class Route:
    """
    One kind of path the router knows: an example of it (C{<name>} and
    C{<reference>} stand for a repository and a digest, tag or UUID) and
    the endpoint it goes to.
    """

    example: str
    endpoint: type[Endpoint]


#: Every route, for whoever must know them all (the tests of the guard).
ROUTES = (
    Route("/v2/", BaseEndpoint),
    Route("/v2/_catalog", CatalogEndpoint),
    Route("/v2/<name>/blobs/uploads/", StartUploadEndpoint),
    Route("/v2/<name>/blobs/uploads/<reference>", UploadEndpoint),
    Route("/v2/<name>/blobs/<reference>", BlobEndpoint),
    Route("/v2/<name>/manifests/<reference>", ManifestEndpoint),
    Route("/v2/<name>/referrers/<reference>", ReferrersEndpoint),
    Route("/v2/<name>/tags/list", TagsEndpoint),
)


def _match(segments: list[str]) -> tuple[str, list[str], str] | None:
    """
    The kind of endpoint, the name's segments and the reference (digest,
    tag or upload UUID) a path is for.
    """
    if len(segments) >= 4 and segments[-3:-1] == ["blobs", "uploads"]:
        return "uploads", segments[:-3], segments[-1]
    if len(segments) >= 3 and segments[-2:] == ["tags", "list"]:
        return "tags", segments[:-2], ""
    if len(segments) >= 3 and segments[-2] in _BY_REFERENCE and segments[-1]:
        return segments[-2], segments[:-2], segments[-1]
    return None


_BY_REFERENCE = {
    "blobs": BlobEndpoint,
    "manifests": ManifestEndpoint,
    "referrers": ReferrersEndpoint,
}


def route(context: Context, segments: Sequence[str]) -> Resource:
    """
    The endpoint for the path segments after C{/v2/}.
    """
    segments = list(segments)
    if segments in ([], [""]):
        return BaseEndpoint(context)
    if segments == ["_catalog"]:
        return CatalogEndpoint(context)
    matched = _match(segments)
    if matched is None:
        return notFound("/v2/" + "/".join(segments), context)
    kind, nameSegments, reference = matched
    try:
        name = checkName("/".join(nameSegments))
    except RegistryError as e:
        return ErrorEndpoint(e, context)
    if kind == "uploads":
        if reference:
            return UploadEndpoint(context, name, reference)
        return StartUploadEndpoint(context, name)
    if kind == "tags":
        return TagsEndpoint(context, name)
    return _BY_REFERENCE[kind](context, name, reference)


class RegistryResource(Resource):
    """
    The registry's API, to be put at C{/v2} of a L{Site}. For request bodies
    to stream rather than be read whole first, the site's C{requestFactory}
    should be L{RegistryRequest}. While C{health} names failing checks,
    every request is answered 503.
    """

    def __init__(
        self,
        registry: IRegistry,
        context: Context | None = None,
        headers: Mapping[str, Sequence[str]] | None = None,
        health: HealthStatus | None = None,
    ) -> None:
        super().__init__()
        self.context = context or Context(registry)
        self.headers = dict(headers or {})
        self.health = health

    def _prepare(self, request: Request) -> None:
        request.setHeader("Docker-Distribution-API-Version", "registry/2.0")
        for key, values in self.headers.items():
            request.responseHeaders.setRawHeaders(key, list(values))

    def unhealthy(self) -> Endpoint | None:
        """
        What answers every request instead of its route while a health
        check fails.
        """
        if self.health is not None and self.health():
            return UnhealthyEndpoint(self.context)
        return None

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        self._prepare(request)
        rest = request.postpath or []
        segments = [path, *rest]
        request.prepath = [*(request.prepath or []), *rest]
        request.postpath = []
        unhealthy = self.unhealthy()
        if unhealthy is not None:
            return unhealthy
        return _routed(route(self.context, [unquote(s.decode("utf-8", "replace")) for s in segments]))

    def render(self, request: Request) -> bytes:
        self._prepare(request)
        result: bytes = (self.unhealthy() or _routed(route(self.context, []))).render(request)
        return result


def _routed(endpoint: Resource) -> Resource:
    if debugging():
        error = getattr(endpoint, "error", None)
        log.debug(
            "routed to {endpoint}: repository {name!r}, reference {reference!r}{error}",
            endpoint=type(endpoint).__name__,
            name=getattr(endpoint, "name", None),
            reference=getattr(endpoint, "reference", None),
            error=f" ({error.code})" if isinstance(error, RegistryError) else "",
        )
    return endpoint


class RootResource(Resource):
    """
    A site's root with the registry at C{/v2}, the web UI (if given) at
    C{/ui} (and its icon at C{/favicon.ico}), and the OCI "not found" error
    everywhere else.
    """

    def __init__(self, registry: RegistryResource, ui: Resource | None = None) -> None:
        super().__init__()
        self.registry = registry
        self.ui = ui

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"v2":
            return self.registry
        if path == b"ui" and self.ui is not None:
            # Its pages pass the registry's guard themselves; not the
            # health gate, so that the status page can say what fails.
            return self.ui
        if path == b"favicon.ico" and self.ui is not None:
            # Asked for by browsers whatever a page links.
            return Redirect(b"/ui/static/favicon.svg")
        self.registry._prepare(request)
        return self.registry.unhealthy() or notFound(
            request.path.decode("utf-8", "replace"), self.registry.context
        )

    def render(self, request: Request) -> bytes:
        return self.getChild(b"", request).render(request)
