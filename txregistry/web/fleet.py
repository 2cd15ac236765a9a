"""
C{/_txregistry/fleet/blobs/<digest>}: a blob this instance is fetching from
upstream, for the other instances of its fleet to stream as it arrives.

Only instances holding the fleet's shared secret may ask: each request
carries an HMAC-SHA256 of the secret over the digest and a time, good for
a short window either side of ours. Only downloads in progress here are
served, from their spool (whose last byte comes only once the digest is
verified), never the store: anything else is 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from txregistry.errors import RegistryError
from txregistry.reference import Digest
from txregistry.registry import BlobSource
from txregistry.signing import checkAuthorization
from txregistry.storage.streams import streamTo
from txregistry.web.context import Context
from txregistry.web.responses import Endpoint, setHeaders
from txregistry.web.router import notFound


class FleetBlobEndpoint(Endpoint):
    def __init__(
        self,
        context: Context,
        reference: str,
        inProgress: Callable[[Digest], Awaitable[BlobSource | None]],
        secret: bytes,
        clock: IReactorTime,
    ) -> None:
        super().__init__(context)
        self.reference = reference
        self.inProgress = inProgress
        self.secret = secret
        self.clock = clock

    async def get(self, request: Request) -> None:
        checkAuthorization(
            request.getHeader(b"authorization"), self.secret, self.reference, self.clock.seconds()
        )
        unknown = RegistryError("BLOB_UNKNOWN", "no download of this blob in progress here")
        try:
            digest = Digest.parse(self.reference)
        except RegistryError:
            raise unknown from None
        source = await self.inProgress(digest)
        if source is None or source.open is None:
            raise unknown
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": str(digest)}
        if source.size is not None:
            headers["Content-Length"] = str(source.size)
        setHeaders(request, headers)
        reader = await source.open(0)
        # A download that fails breaks the response off (the endpoint's
        # failure handling), so that no peer takes it for a whole blob.
        await streamTo(reader, request, source.size)
        request.finish()


class FleetResource(Resource):
    """
    What is put at C{/_txregistry} of a site whose cache is in a fleet.
    C{inProgress} gives the download of a digest under way here, if any.
    """

    def __init__(
        self,
        context: Context,
        inProgress: Callable[[Digest], Awaitable[BlobSource | None]],
        secret: bytes,
        clock: IReactorTime,
    ) -> None:
        super().__init__()
        self.context = context
        self.inProgress = inProgress
        self.secret = secret
        self.clock = clock

    def getChild(self, path: bytes, request: Request) -> Resource:
        segments = [
            path.decode("utf-8", "replace"),
            *(s.decode("utf-8", "replace") for s in request.postpath or []),
        ]
        request.prepath = [*(request.prepath or []), *(request.postpath or [])]
        request.postpath = []
        if len(segments) == 3 and segments[:2] == ["fleet", "blobs"]:
            return FleetBlobEndpoint(self.context, segments[2], self.inProgress, self.secret, self.clock)
        return notFound(request.path.decode("utf-8", "replace"), self.context)

    def render(self, request: Request) -> bytes:
        result: bytes = self.getChild(b"", request).render(request)
        return result
