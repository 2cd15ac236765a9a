"""
C{/v2/<name>/blobs/<digest>}: fetching (whole or a byte range), checking
and deleting blobs.
"""

from __future__ import annotations

import re

from twisted.web.server import Request

from txregistry.errors import RegistryError
from txregistry.notifications.interfaces import PULLED
from txregistry.reference import Digest
from txregistry.storage.streams import streamTo
from txregistry.web.responses import RepositoryEndpoint, setHeaders, writeEmpty

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parseRange(header: str | None, size: int) -> tuple[int, int] | None:
    """
    The first and last byte a C{Range} header asks for, or C{None} for the
    whole blob (no header, or one we may ignore: several ranges, another
    unit). C{RANGE_INVALID} for a range that cannot be satisfied.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise _unsatisfiable(size)
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or start > end:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        "RANGE_INVALID",
        "the requested range is not satisfiable",
        {"size": size},
        status=416,
        headers={"Content-Range": f"bytes */{size}"},
    )


class BlobEndpoint(RepositoryEndpoint):
    async def _serve(self, request: Request) -> None:
        digest = Digest.parse(self.reference)
        size = await self._answer(request, digest)
        # A HEAD and a redirect are pulls too, as registry:2 tells them.
        self.context.notifyBlob(request, self.identity, PULLED, self.name, digest, size)

    async def _answer(self, request: Request, digest: Digest) -> int | None:
        """
        Answer with the blob; its size.
        """
        source = await self.repository.blob(digest, head=request.method == b"HEAD")
        size = source.size
        redirect = source.redirect if request.method == b"GET" else None
        if redirect is not None:
            writeEmpty(request, 307, {"Location": redirect, "Docker-Content-Digest": str(digest)})
            return size
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": str(digest),
            "Accept-Ranges": "bytes",
            "ETag": f'"{digest}"',
            "Cache-Control": "max-age=31536000",
        }
        start, length = 0, size
        if size is not None:
            # Ranges of a blob still arriving whose size the upstream did not
            # say are not offered: the whole blob is sent.
            span = parseRange(request.getHeader("range"), size)
            start, end = span if span is not None else (0, size - 1)
            length = end - start + 1
            headers["Content-Length"] = str(length)
            if span is not None:
                request.setResponseCode(206)
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        setHeaders(request, headers)
        if request.method == b"HEAD" or length == 0 or source.open is None:
            request.finish()
            return size
        reader = await source.open(start)
        await streamTo(reader, request, length)
        request.finish()
        return size

    get = head = _serve

    async def delete(self, request: Request) -> None:
        digest = Digest.parse(self.reference)
        await self.repository.deleteBlob(digest)
        writeEmpty(request, 202, {"Docker-Content-Digest": str(digest)})
        self.context.notifyDeleted(request, self.identity, self.name, digest=digest)
