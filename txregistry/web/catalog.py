"""
C{/v2/_catalog}: the registry's repositories, a page at a time.
"""

from __future__ import annotations

from twisted.web.server import Request

from txregistry.auth import CATALOG, Access
from txregistry.web.pagination import pageAsked, pageHeaders
from txregistry.web.responses import Endpoint, writeJSON

#: registry:2's (2.8) page when a client asks for no size, and its
#: C{catalog.maxentries} default: the largest page it serves.
DEFAULT_ENTRIES = 100
MAX_ENTRIES = 1000


class CatalogEndpoint(Endpoint):
    access = (Access(CATALOG),)

    async def get(self, request: Request) -> None:
        n, last = pageAsked(request, DEFAULT_ENTRIES, MAX_ENTRIES)
        page = await self.context.catalog(self.identity, last, n)
        headers = pageHeaders("/v2/_catalog", n, page)
        writeJSON(request, 200, {"repositories": page.names}, headers=headers)

    head = get
