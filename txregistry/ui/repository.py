"""
One repository: its tags a page at a time, each with what its manifest and
image config say, and the C{docker pull} line for it.
"""

from __future__ import annotations

from twisted.web.server import Request
from twisted.web.template import Tag, tags

from txregistry.auth import Identity
from txregistry.ui import format
from txregistry.ui.concurrently import concurrently
from txregistry.ui.images import image
from txregistry.ui.layout import copyable, table
from txregistry.ui.page import PullPage, pageLink, pullHost, repositoryName
from txregistry.web.context import query

#: Tags shown at once: each costs a manifest and an image config read.
PAGE_SIZE = 50

HEADINGS = ["Tag", "Digest", "Media type", "Platforms", "Size", "Created", "Pull"]


class RepositoryPage(PullPage):
    title = "Repository"

    async def content(self, request: Request, identity: Identity) -> Tag:
        name = repositoryName(request)
        repository = self.shared.context.registry.repository(name)
        listing = await repository.tagPage(query(request, "last"), PAGE_SIZE)
        page = listing.names
        images = await concurrently(image(repository, tag) for tag in page)
        host = pullHost(self.shared.context, request)
        rows = []
        for tag, found in zip(page, images, strict=True):
            rows.append(
                tags.tr(
                    tags.td(tags.a(tag, href=pageLink("/ui/image", name=name, reference=tag))),
                    tags.td(
                        tags.a(
                            format.shortDigest(str(found.digest)),
                            href=pageLink("/ui/image", name=name, reference=str(found.digest)),
                            title=str(found.digest),
                        )
                    ),
                    tags.td(found.mediaType),
                    tags.td(", ".join(found.platforms) or "\u2014"),
                    tags.td(format.size(found.size), class_="number"),
                    tags.td(found.created),
                    tags.td(copyable(f"docker pull {host}/{name}:{tag}")),
                    **{"data-name": tag},
                )
            )
        body: list[Tag] = [
            tags.p(tags.strong(name), f" \u2014 {listing.total} tags"),
            tags.input(
                type="search",
                placeholder="Filter this page's tags",
                **{"data-filter": "tags", "aria-label": "Filter tags"},
            ),
            table(HEADINGS, rows, **{"data-filtered": "tags"})
            if rows
            else tags.p("No tags.", class_="empty"),
        ]
        if listing.more:
            body.append(
                tags.p(
                    tags.a("Next page", href=pageLink("/ui/repository", name=name, last=page[-1]), rel="next")
                )
            )
        return tags.div(*body)
