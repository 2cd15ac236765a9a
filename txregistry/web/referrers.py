"""
C{/v2/<name>/referrers/<digest>}: the manifests that name a manifest as
their subject, as an image index.
"""

from __future__ import annotations

from twisted.web.server import Request

from txregistry.manifest import OCI_INDEX
from txregistry.reference import Digest
from txregistry.web.context import query
from txregistry.web.responses import RepositoryEndpoint, writeJSON


class ReferrersEndpoint(RepositoryEndpoint):
    async def get(self, request: Request) -> None:
        subject = Digest.parse(self.reference)
        artifactType = query(request, "artifactType")
        found = await self.repository.referrers(subject, artifactType)
        headers = {} if artifactType is None else {"OCI-Filters-Applied": "artifactType"}
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor.asJSON() for descriptor in found],
        }
        writeJSON(request, 200, index, OCI_INDEX, headers)

    head = get
