"""
C{/ui/}: which page a path is for.

Pages take what they are about (a repository's C{name}, a manifest's
C{reference}) from the query, so that names with any number of components
need no routing of their own.
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.template import Tag
from twisted.web.util import Redirect

from txregistry.auth import Identity
from txregistry.errors import RegistryError
from txregistry.ui.cache import CachePage
from txregistry.ui.image import ImagePage
from txregistry.ui.page import Page, Shared
from txregistry.ui.repositories import RepositoriesPage
from txregistry.ui.repository import RepositoryPage
from txregistry.ui.static import staticFiles
from txregistry.ui.status import StatusPage

_PAGES: dict[bytes, type[Page]] = {
    b"": RepositoriesPage,
    b"repository": RepositoryPage,
    b"image": ImagePage,
    b"cache": CachePage,
    b"status": StatusPage,
}


class MissingPage(Page):
    title = "Not found"

    async def content(self, request: Request, identity: Identity) -> Tag:
        raise RegistryError("UNSUPPORTED", "no such page", status=404)


class UIResource(Resource):
    """
    The UI, to be put at C{/ui} of the API's site.
    """

    def __init__(self, shared: Shared) -> None:
        super().__init__()
        self.shared = shared
        self.static = staticFiles()

    def getChild(self, path: bytes, request: Request) -> Resource:
        rest = request.postpath or []
        if path == b"static" and len(rest) == 1 and rest[0] in self.static.children:
            request.postpath = []
            return self.static.children[rest[0]]
        page = _PAGES.get(path) if not rest else None
        return (page or MissingPage)(self.shared)

    def render(self, request: Request) -> bytes:
        # /ui: the pages' links are relative to /ui/.
        result: bytes = Redirect(b"/ui/").render(request)
        return result
