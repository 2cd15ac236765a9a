"""
C{/v2/<name>/tags/list}: a repository's tags, a page at a time.
"""

from __future__ import annotations

from twisted.web.server import Request

from txregistry.web.pagination import pageAsked, pageHeaders
from txregistry.web.responses import RepositoryEndpoint, writeJSON


class TagsEndpoint(RepositoryEndpoint):
    async def get(self, request: Request) -> None:
        n, last = pageAsked(request)
        page = await self.repository.tagPage(last, n)
        headers = pageHeaders(f"/v2/{self.name}/tags/list", n, page)
        writeJSON(request, 200, {"name": self.name, "tags": page.names}, headers=headers)

    head = get
