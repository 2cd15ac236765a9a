"""
Writing responses: OCI error bodies, JSON documents, empty answers, and
the endpoint base class that turns a handler's outcome into one of them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.proxy.sources import Route
from txregistry.storage import StorageUnavailable
from txregistry.storage.streams import ConsumerGone
from txregistry.web.context import Context, query
from txregistry.web.request import BodyTooLarge

log = logger(__name__)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_READING = frozenset({"GET", "HEAD"})


def setHeaders(request: Request, headers: dict[str, str]) -> None:
    for key, value in headers.items():
        request.setHeader(key, value)


def writeBody(
    request: Request,
    status: int,
    body: bytes,
    contentType: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    request.setResponseCode(status)
    if contentType is not None:
        request.setHeader("Content-Type", contentType)
    setHeaders(request, headers or {})
    request.setHeader("Content-Length", str(len(body)))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def writeJSON(
    request: Request,
    status: int,
    document: Any,
    contentType: str = "application/json",
    headers: dict[str, str] | None = None,
) -> None:
    writeBody(request, status, json.dumps(document).encode(), contentType, headers)


def writeEmpty(request: Request, status: int, headers: dict[str, str] | None = None) -> None:
    writeBody(request, status, b"", None, headers)


def writeError(request: Request, error: RegistryError) -> None:
    request.responseHeaders.removeHeader("Docker-Content-Digest")
    writeJSON(request, error.status, {"errors": [error.asJSON()]}, headers=error.headers)


def asRegistryError(failure: Failure) -> RegistryError:
    """
    What a client is told about a failure.
    """
    if failure.check(RegistryError):
        assert isinstance(failure.value, RegistryError)
        return failure.value
    if failure.check(BodyTooLarge):
        assert isinstance(failure.value, BodyTooLarge)
        limit = failure.value.limit
        return RegistryError(
            "SIZE_INVALID",
            f"the request body is larger than the {limit // (1024 * 1024)} MiB allowed",
            {"limit": limit},
            status=413,
        )
    if failure.check(StorageUnavailable):
        log.failure("storage is unavailable", failure)
        return RegistryError.unavailable(f"storage is unavailable: {failure.value}")
    log.failure("request failed", failure)
    return RegistryError("UNKNOWN", "internal server error")


def gone(request: Request) -> bool:
    return bool(getattr(request, "_disconnected", False)) or bool(request.finished)


class Endpoint(Resource):
    """
    A family of registry endpoints at one path: async handler methods named
    for HTTP methods (C{get}, C{put}, ...) write the response, or raise a
    L{RegistryError} for the client to be told about.
    """

    isLeaf = True
    _methods: list[str] | None = None

    def __init__(self, readOnly: bool = False) -> None:
        super().__init__()
        self.readOnly = readOnly

    @classmethod
    def methods(cls) -> list[str]:
        allowed = cls.__dict__.get("_methods")
        if allowed is None:
            allowed = [m for m in METHODS if callable(getattr(cls, m.lower(), None))]
            cls._methods = allowed
        return allowed

    def render(self, request: Request) -> Any:
        method = request.method.decode("ascii", "replace").upper()
        allowed = self.methods()
        handler: Callable[[Request], Awaitable[None]] | None = (
            getattr(self, method.lower()) if method in allowed else None
        )
        if handler is None:
            request.setHeader("Allow", ", ".join(allowed))
            writeError(request, RegistryError.unsupported(f"method {method} is not allowed here"))
            return NOT_DONE_YET
        if method not in _READING:
            try:
                self.checkWritable(request)
            except RegistryError as e:
                writeError(request, e)
                return NOT_DONE_YET
        d: Deferred[None] = Deferred.fromCoroutine(handler(request))  # type: ignore[arg-type]
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def checkWritable(self, request: Request) -> None:
        """
        Raise the error a request that would change something gets.
        """
        if self.readOnly:
            raise RegistryError.unsupported("the registry is in read-only mode")

    def _failed(self, failure: Failure, request: Request) -> None:
        if failure.check(ConsumerGone) or gone(request):
            return
        if getattr(request, "startedWriting", False):
            # Too late for an error body: cut the response short so the
            # client cannot mistake it for a whole one.
            log.failure("response failed after it started", failure)
            transport: Any = request.channel.transport
            transport.abortConnection()
            return
        writeError(request, asRegistryError(failure))


class RepositoryEndpoint(Endpoint):
    """
    An endpoint about one repository, or one thing in it (C{reference}: a
    digest, a tag or an upload's UUID).
    """

    def __init__(self, context: Context, name: str, reference: str = "") -> None:
        super().__init__(context.registry.readOnly)
        self.context = context
        self.name = name
        self.reference = reference

    def checkWritable(self, request: Request) -> None:
        super().checkWritable(request)
        if self.context.proxy is not None:
            self.context.proxy.checkWritable(self.name, query(request, "ns"))

    def route(self, request: Request) -> Route | None:
        """
        The upstream this repository is served from, if it is.
        """
        if self.context.proxy is None:
            return None
        return self.context.proxy.route(self.name, query(request, "ns"))
