"""
C{/v2/<name>/manifests/<reference>}: pushing, pulling, checking and
deleting manifests by tag or by digest.
"""

from __future__ import annotations

from twisted.web.server import Request

from txregistry.manifest import MAX_MANIFEST_SIZE
from txregistry.reference import looksLikeDigest
from txregistry.web.request import bodyOf, readBody
from txregistry.web.responses import RepositoryEndpoint, setHeaders, writeBody, writeEmpty


class ManifestEndpoint(RepositoryEndpoint):
    async def _serve(self, request: Request) -> None:
        answer = await self.repository.manifest(self.reference, head=request.method == b"HEAD")
        headers = {"Docker-Content-Digest": str(answer.digest), "ETag": f'"{answer.digest}"'}
        if answer.content is None:
            # A HEAD the upstream answered: nothing was fetched to serve.
            headers.update({"Content-Type": answer.mediaType, "Content-Length": str(answer.size)})
            setHeaders(request, headers)
            request.finish()
            return
        writeBody(request, 200, answer.content, answer.mediaType, headers)

    get = head = _serve

    async def put(self, request: Request) -> None:
        content = await readBody(bodyOf(request), MAX_MANIFEST_SIZE)
        contentType = request.getHeader("content-type")
        manifest = await self.repository.putManifest(self.reference, content, contentType)
        digest = self.reference if looksLikeDigest(self.reference) else manifest.digest
        headers = {
            "Location": self.context.url(request, f"/v2/{self.name}/manifests/{digest}"),
            "Docker-Content-Digest": str(digest),
        }
        if manifest.subject is not None:
            headers["OCI-Subject"] = str(manifest.subject.digest)
        writeEmpty(request, 201, headers)

    async def delete(self, request: Request) -> None:
        await self.repository.deleteManifest(self.reference)
        writeEmpty(request, 202)
