"""
The UI's stylesheet, script and icon, files of the package served as they
are: the Content-Security-Policy allows no other.
"""

from __future__ import annotations

import os

from twisted.web.resource import Resource
from twisted.web.server import Request

from txregistry.ui.layout import CSP

_DIRECTORY = os.path.join(os.path.dirname(__file__), "static")
_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


class StaticFile(Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        with open(os.path.join(_DIRECTORY, name), "rb") as f:
            self.content = f.read()
        self.contentType = _TYPES[os.path.splitext(name)[1]]

    def render_GET(self, request: Request) -> bytes:
        request.setHeader("Content-Type", self.contentType)
        request.setHeader("Content-Security-Policy", CSP)
        request.setHeader("X-Content-Type-Options", "nosniff")
        request.setHeader("Cache-Control", "max-age=3600")
        return self.content

    render_HEAD = render_GET


def staticFiles() -> Resource:
    files = Resource()
    for name in sorted(os.listdir(_DIRECTORY)):
        files.putChild(name.encode(), StaticFile(name))
    return files
