"""
C{/v2/<name>/manifests/<reference>}: pushing, pulling, checking and
deleting manifests by tag or by digest.
"""

from __future__ import annotations

from twisted.web.server import Request

from txregistry.manifest import MAX_MANIFEST_SIZE
from txregistry.notifications.interfaces import PULLED, PUSHED
from txregistry.reference import Digest, looksLikeDigest
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
        else:
            writeBody(request, 200, answer.content, answer.mediaType, headers)
        # A HEAD is a pull too, as registry:2 tells it.
        self._notify(request, PULLED, answer.digest, answer.mediaType, answer.size)

    def _notify(self, request: Request, action: str, digest: Digest, mediaType: str, size: int) -> None:
        tag = None if looksLikeDigest(self.reference) else self.reference
        self.context.notifyManifest(request, self.identity, action, self.name, digest, mediaType, size, tag)

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
        self._notify(request, PUSHED, manifest.digest, manifest.mediaType, len(content))

    async def delete(self, request: Request) -> None:
        untagged = await self.repository.deleteManifest(self.reference)
        writeEmpty(request, 202)
        if looksLikeDigest(self.reference):
            self.context.notifyDeleted(request, self.identity, self.name, digest=Digest.parse(self.reference))
        # Each tag by its name alone, after the manifest, as registry:2.
        for tag in untagged:
            self.context.notifyDeleted(request, self.identity, self.name, tag=tag)
