"""
The repositories the viewer may pull, a page at a time, with a filter; for
a pull-through cache, our own apart from the cached, with each one's
upstream.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.web.server import Request
from twisted.web.template import Tag, tags

from txregistry.auth import CATALOG, Access, Identity
from txregistry.errors import RegistryError
from txregistry.registry import RepositorySummary
from txregistry.ui import format
from txregistry.ui.concurrently import concurrently
from txregistry.ui.layout import table
from txregistry.ui.origin import upstreamOf
from txregistry.ui.page import Page, pageLink
from txregistry.web.context import query

PAGE_SIZE = 50


class RepositoriesPage(Page):
    title = "Repositories"

    def needs(self, request: Request) -> Sequence[Access]:
        return (Access(CATALOG),)

    async def content(self, request: Request, identity: Identity) -> Tag:
        wanted = query(request, "q") or ""
        listing = await self.shared.context.catalog(
            identity, query(request, "last"), PAGE_SIZE, (lambda name: wanted in name) if wanted else None
        )
        page = listing.names
        rows = await concurrently(self._row(name) for name in page)
        body = [_filterForm(wanted)]
        if self.shared.cache is None:
            body.append(_rows([row for _, row in rows], ["Repository", "Tags"]))
        else:
            own = [row for upstream, row in rows if upstream is None]
            cached = [row for upstream, row in rows if upstream is not None]
            body += [tags.h2("Own"), _rows(own, ["Repository", "Tags"])]
            body += [tags.h2("Cached"), _rows(cached, ["Repository", "Tags", "Upstream"])]
        if listing.more:
            body.append(
                tags.p(tags.a("Next page", href=pageLink("/ui/", q=wanted, last=page[-1]), rel="next"))
            )
        return tags.div(*body)

    async def _row(self, name: str) -> tuple[str | None, Tag]:
        link = tags.a(name, href=pageLink("/ui/repository", name=name))
        cache = self.shared.cache
        upstream = None if cache is None else await upstreamOf(cache, name)
        repository = self.shared.context.registry.repository(name)
        summary = _summaryCells(await repository.summary())
        # For a cache, the UI's registry is the store under it: a cached
        # repository's count is of the tags cached, asking no upstream.
        try:
            count = str(len(await repository.tags()))
        except RegistryError:
            count = "\u2014"
        cells = [tags.td(link), tags.td(count, class_="number")]
        if upstream is not None:
            cells.append(tags.td(upstream))
        return upstream, tags.tr(*cells, *summary, **{"data-name": name})


#: The columns every table of repositories ends with, from L{_summaryCells}.
SUMMARY_HEADINGS = ["Last push (UTC)", "Size"]

_SIZE_MEANS = (
    "the blobs (config and layers) of the image last pushed, each counted once;"
    " an index's, of all its platforms"
)


def _summaryCells(summary: RepositorySummary) -> list[Tag]:
    return [
        tags.td(format.timestamp(summary.lastPush)),
        tags.td(format.size(summary.size), class_="number", title=_SIZE_MEANS),
    ]


def _filterForm(wanted: str) -> Tag:
    return tags.form(
        tags.input(
            type="search",
            name="q",
            value=wanted,
            placeholder="Filter repositories",
            **{"data-filter": "repositories", "aria-label": "Filter repositories"},
        ),
        tags.button("Filter", type="submit"),
        method="get",
        action="/ui/",
    )


def _rows(rows: list[Tag], headings: list[str]) -> Tag:
    if not rows:
        return tags.p("None.", class_="empty")
    return table([*headings, *SUMMARY_HEADINGS], rows, **{"data-filtered": "repositories"})
