"""
Writing responses: OCI error bodies, JSON documents, empty answers, and
the endpoint base class that turns a handler's outcome into one of them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from txregistry.auth import ANONYMOUS, DELETE, PULL, PUSH, Access, Identity
from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.pump import Overflow
from txregistry.reference import checkName
from txregistry.registry import IRepository
from txregistry.storage import StorageUnavailable
from txregistry.storage.streams import ConsumerGone
from txregistry.web.context import Context, Guard, query
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
    requestId = getattr(request, "requestId", None)
    if requestId is not None:
        # What the request's lines in the log are found by, for whoever is
        # told of the error. A header, which clients ignore: they parse the
        # body, as registry:2 writes it.
        request.setHeader("X-Request-Id", requestId)
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
    if failure.check(Overflow):
        return RegistryError("SIZE_INVALID", "the request body is not taken here", status=413)
    if failure.check(StorageUnavailable):
        # Said once, in one line: a traceback per request would only bury it.
        log.error("storage is unavailable: {why}", why=failure.getErrorMessage())
        return RegistryError.unavailable(f"storage is unavailable: {failure.value}")
    log.failure("request failed", failure)
    return RegistryError("UNKNOWN", "internal server error")


class Endpoint(Resource):
    """
    A family of registry endpoints at one path: async handler methods named
    for HTTP methods (C{get}, C{put}, ...) write the response, or raise a
    L{RegistryError} for the client to be told about.
    """

    isLeaf = True
    _methods: list[str] | None = None

    def __init__(self, context: Context) -> None:
        super().__init__()
        self.context = context

    @classmethod
    def methods(cls) -> list[str]:
        allowed = cls.__dict__.get("_methods")
        if allowed is None:
            allowed = [m for m in METHODS if callable(getattr(cls, m.lower(), None))]
            cls._methods = allowed
        return allowed

    #: What every request here needs (none: that it is authenticated).
    access: Sequence[Access] = ()
    #: Who the guard let through.
    identity: Identity = ANONYMOUS

    def render(self, request: Request) -> Any:
        # Every route passes here: nothing is read or done for a request
        # before its guard lets it through.
        method = request.method.decode("ascii", "replace").upper()
        guard = self.context.guard
        if guard is None:
            self.serve(request, method)
            return NOT_DONE_YET
        Deferred.fromCoroutine(self._guarded(guard, request, method)).addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _guarded(self, guard: Guard, request: Request, method: str) -> None:
        # One coroutine from the check to the handler, so that what the
        # handler logs keeps the request's id when the check had to wait.
        identity = await guard.check(request, self.needs(request, method))
        self._passed(identity, request, method)

    def needs(self, request: Request, method: str) -> Sequence[Access]:
        """
        What a request must be allowed to do; none: that it is
        authenticated.
        """
        return self.access

    def _passed(self, identity: Identity, request: Request, method: str) -> None:
        if request.channel is None or request.finished:
            return
        self.identity = identity
        self.serve(request, method)

    def serve(self, request: Request, method: str) -> None:
        """
        Answer a request that the guard let through.
        """
        allowed = self.methods()
        handler: Callable[[Request], Awaitable[None]] | None = (
            getattr(self, method.lower()) if method in allowed else None
        )
        if handler is None:
            request.setHeader("Allow", ", ".join(allowed))
            writeError(request, RegistryError.unsupported(f"method {method} is not allowed here"))
            return
        try:
            self.prepare(request, method not in _READING)
        except RegistryError as e:
            writeError(request, e)
            return
        d: Deferred[None] = Deferred.fromCoroutine(handler(request))  # type: ignore[arg-type]
        d.addErrback(self._failed, request)

    def prepare(self, request: Request, writing: bool) -> None:
        """
        Get ready for a request, raising the error it gets instead if it
        cannot be served; C{writing} says whether it would change something.
        """

    def _failed(self, failure: Failure, request: Request) -> None:
        # Finished, or the client has gone (Request.connectionLost lets go
        # of its channel): either way nobody is left to tell, but what
        # failed after the answer (telling notifications) is logged.
        if failure.check(ConsumerGone) or request.channel is None:
            return
        if request.finished:
            log.failure("failed after the response was sent", failure)
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

    repository: IRepository
    #: What a C{DELETE} needs: cancelling an upload is part of a push.
    deleting = DELETE

    def __init__(self, context: Context, name: str, reference: str = "") -> None:
        super().__init__(context)
        self.name = name
        self.reference = reference

    def needs(self, request: Request, method: str) -> Sequence[Access]:
        if method in _READING:
            return (Access(PULL, self.name),)
        if method == "DELETE":
            return (Access(self.deleting, self.name),)
        # As registry:2 asks: a client that writes reads too (which layers
        # are there already, what it wrote), and token servers grant the
        # two together.
        needs = [Access(PULL, self.name), Access(PUSH, self.name)]
        source = query(request, "from")
        if method == "POST" and source is not None and query(request, "mount") is not None:
            # A mount reads the source: pull on it, if it is a name at all
            # (the handler refuses one that is not).
            try:
                needs.append(Access(PULL, checkName(source)))
            except RegistryError:
                pass
        return needs

    def prepare(self, request: Request, writing: bool) -> None:
        # containerd names the registry it means with ?ns=.
        self.repository = self.context.registry.repository(self.name, query(request, "ns"))
        if writing:
            self.repository.checkWritable()
