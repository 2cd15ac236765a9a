"""
C{/v2/<name>/blobs/uploads/[<uuid>]}: starting, streaming, finishing,
checking and cancelling blob uploads, and mounting blobs from another
repository.
"""

from __future__ import annotations

import re

from twisted.web.server import Request

from txregistry.auth import PUSH
from txregistry.errors import RegistryError
from txregistry.notifications.interfaces import MOUNTED, PUSHED
from txregistry.reference import Digest, checkName
from txregistry.registry import UploadStatus
from txregistry.web.context import query
from txregistry.web.request import bodyOf
from txregistry.web.responses import RepositoryEndpoint, writeEmpty

# Clients send "<start>-<end>" as the distribution-spec shows, or the
# RFC 9110 form "bytes <start>-<end>/<total>".
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def parseContentRange(request: Request) -> int | None:
    """
    Where the chunk in a request's body starts, from its C{Content-Range};
    C{None} where the client did not say.
    """
    header = request.getHeader("content-range")
    if header is None:
        return None
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise RegistryError(
            "BLOB_UPLOAD_INVALID", "malformed Content-Range", {"Content-Range": header}, status=416
        )
    start, end = int(match.group(1)), int(match.group(2))
    length = request.getHeader("content-length")
    if end < start or (length is not None and length.isdigit() and int(length) != end - start + 1):
        raise RegistryError(
            "BLOB_UPLOAD_INVALID",
            "Content-Range does not agree with Content-Length",
            {"Content-Range": header, "Content-Length": length},
            status=416,
        )
    return start


class _Uploads(RepositoryEndpoint):
    # Cancelling an upload is part of a push, not a delete.
    deleting = PUSH

    def _location(self, request: Request, uuid: str) -> str:
        return self.context.url(request, f"/v2/{self.name}/blobs/uploads/{uuid}")

    def _progress(self, request: Request, status: int, upload: UploadStatus) -> None:
        writeEmpty(
            request,
            status,
            {
                "Location": self._location(request, upload.uuid),
                "Range": f"0-{max(upload.size - 1, 0)}",
                "Docker-Upload-UUID": upload.uuid,
                "Content-Length": "0",
            },
        )

    def _created(self, request: Request, digest: Digest) -> None:
        writeEmpty(
            request,
            201,
            {
                "Location": self.context.url(request, f"/v2/{self.name}/blobs/{digest}"),
                "Docker-Content-Digest": str(digest),
            },
        )

    def _digest(self, request: Request) -> Digest | None:
        text = query(request, "digest")
        return None if text is None else Digest.parse(text)


class StartUploadEndpoint(_Uploads):
    """
    C{/v2/<name>/blobs/uploads/}
    """

    async def post(self, request: Request) -> None:
        digest = self._digest(request)
        mount = query(request, "mount")
        source = query(request, "from")
        if mount is not None and source is not None:
            mounted = Digest.parse(mount)
            checkName(source)
            size = await self.repository.mount(mounted, source)
            if size is not None:
                self._created(request, mounted)
                self.context.notifyBlob(request, self.identity, MOUNTED, self.name, mounted, size, source)
                return
        if digest is None:
            self._progress(request, 202, await self.repository.startUpload())
            return
        size = await self.repository.pushBlob(digest, bodyOf(request))
        self._created(request, digest)
        self.context.notifyBlob(request, self.identity, PUSHED, self.name, digest, size)


class UploadEndpoint(_Uploads):
    """
    C{/v2/<name>/blobs/uploads/<uuid>}
    """

    async def patch(self, request: Request) -> None:
        start = parseContentRange(request)
        upload = await self.repository.appendUpload(self.reference, bodyOf(request), start)
        self._progress(request, 202, upload)

    async def put(self, request: Request) -> None:
        digest = self._digest(request)
        if digest is None:
            raise RegistryError("DIGEST_INVALID", "finishing an upload needs ?digest=")
        start = parseContentRange(request)
        body = bodyOf(request)
        hasBody = request.getHeader("content-length") not in (None, "0") or request.getHeader(
            "transfer-encoding"
        )
        size = await self.repository.finishUpload(self.reference, digest, body if hasBody else None, start)
        self._created(request, digest)
        self.context.notifyBlob(request, self.identity, PUSHED, self.name, digest, size)

    async def get(self, request: Request) -> None:
        upload = await self.repository.uploadStatus(self.reference)
        self._progress(request, 204, upload)

    async def delete(self, request: Request) -> None:
        await self.repository.cancelUpload(self.reference)
        writeEmpty(request, 204)
