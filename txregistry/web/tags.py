"""
C{/v2/<name>/tags/list}: a repository's tags, a page at a time.
"""

from __future__ import annotations

from twisted.web.server import Request

from txregistry.web.pagination import paginate
from txregistry.web.responses import RepositoryEndpoint, writeJSON


class TagsEndpoint(RepositoryEndpoint):
    async def get(self, request: Request) -> None:
        path = f"/v2/{self.name}/tags/list"
        every = await self.repository.tags()
        tags, headers = paginate(request, every, path)
        writeJSON(request, 200, {"name": self.name, "tags": tags}, headers=headers)

    head = get
