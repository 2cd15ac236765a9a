"""
C{/v2/}: the version check every client starts with.
"""

from __future__ import annotations

from twisted.web.server import Request

from txregistry.web.responses import Endpoint, writeJSON


class BaseEndpoint(Endpoint):
    async def get(self, request: Request) -> None:
        writeJSON(request, 200, {})

    head = get
