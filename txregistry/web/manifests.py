"""
C{/v2/<name>/manifests/<reference>}: pushing, pulling, checking and
deleting manifests by tag or by digest.
"""

from __future__ import annotations

from twisted.web.server import Request

from txregistry.manifest import MAX_MANIFEST_SIZE
from txregistry.reference import looksLikeDigest
from txregistry.web.request import bodyOf, readBody
from txregistry.web.responses import RepositoryEndpoint, writeBody, writeEmpty


class ManifestEndpoint(RepositoryEndpoint):
    async def _serve(self, request: Request) -> None:
        stored = await self.context.registry.manifests(self.name).get(self.reference)
        headers = {"Docker-Content-Digest": str(stored.digest), "ETag": f'"{stored.digest}"'}
        writeBody(request, 200, stored.content, stored.mediaType, headers)

    get = head = _serve

    async def put(self, request: Request) -> None:
        content = await readBody(bodyOf(request), MAX_MANIFEST_SIZE)
        manifests = self.context.registry.manifests(self.name)
        manifest = await manifests.put(self.reference, content, request.getHeader("content-type"))
        digest = self.reference if looksLikeDigest(self.reference) else manifest.digest
        headers = {
            "Location": self.context.url(request, f"/v2/{self.name}/manifests/{digest}"),
            "Docker-Content-Digest": str(digest),
        }
        if manifest.subject is not None:
            headers["OCI-Subject"] = str(manifest.subject.digest)
        writeEmpty(request, 201, headers)

    async def delete(self, request: Request) -> None:
        self.context.registry.checkDeletable()
        await self.context.registry.manifests(self.name).delete(self.reference)
        writeEmpty(request, 202)
