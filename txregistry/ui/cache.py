"""
The pull-through cache: how often it answers from the store, the upstream
bytes that saved, each upstream's state, its size against C{maxsize}, and
what eviction will remove next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.web.server import Request
from twisted.web.template import Tag, tags

from txregistry.auth import Identity
from txregistry.errors import RegistryError
from txregistry.health import upstreamStatus
from txregistry.ui import format
from txregistry.ui.layout import table
from txregistry.ui.page import Page

if TYPE_CHECKING:
    from txregistry.proxy import PullThroughCache
    from txregistry.proxy.eviction import Removal


class CachePage(Page):
    title = "Cache"

    async def content(self, request: Request, identity: Identity) -> Tag:
        cache = self.shared.cache
        if cache is None:
            raise RegistryError("UNSUPPORTED", "this registry is no pull-through cache", status=404)
        metrics = cache.metrics
        requests, hits = sum(metrics.requests.values()), sum(metrics.hits.values())
        ratio = f"{100 * hits / requests:.1f}% ({hits} of {requests})" if requests else "\u2014"
        served, fetched = metrics.pushed["blob"], metrics.upstreamBytes
        size = format.size(metrics.cachedBytes)
        if cache.config.maxSize is not None:
            size += f" of {format.size(cache.config.maxSize)} (maxsize)"
        upstreams = upstreamStatus(cache)()["upstreams"]
        rows = [
            tags.tr(
                tags.td(upstream["name"] or "(default)"),
                tags.td(upstream["remoteurl"]),
                tags.td("no" if upstream["breaker"] == "open" else "yes"),
                tags.td(upstream["breaker"]),
                tags.td(upstream["lasterror"] or "\u2014"),
            )
            for upstream in upstreams
        ]
        return tags.div(
            tags.dl(
                tags.dt("Hit ratio"),
                tags.dd(ratio),
                tags.dt("Blob bytes served"),
                tags.dd(format.size(served)),
                tags.dt("Fetched from upstreams"),
                tags.dd(format.size(fetched)),
                tags.dt("Upstream bytes saved"),
                tags.dd(format.size(max(0, served - fetched))),
                tags.dt("Cache size (at the last eviction pass)"),
                tags.dd(size),
                tags.dt("Evicted"),
                tags.dd(f"{sum(metrics.evictions.values())} items, {format.size(metrics.evictedBytes)}"),
            ),
            tags.h2("Upstreams"),
            table(["Name", "URL", "Reachable", "Breaker", "Last error"], rows),
            tags.h2("Next to be evicted"),
            await _upcoming(cache),
        )


async def _upcoming(cache: PullThroughCache) -> Tag:
    # Here, not at the top: the proxy package (and treq) is imported only
    # with a cache.
    removals = await cache.evictionPreview.removals()
    if not removals:
        return tags.p("Nothing cached.", class_="empty")
    rows = [
        tags.tr(
            tags.td("manifest" if r.entry.kind == "manifests" else "blob"),
            tags.td(r.entry.name),
            tags.td(tags.code(format.shortDigest(str(r.entry.digest))), title=str(r.entry.digest)),
            tags.td(format.size(r.entry.size), class_="number"),
            tags.td(_time(r.entry.pulled)),
            tags.td(_why(r)),
        )
        for r in removals
    ]
    return table(["Kind", "Repository", "Digest", "Size", "Last pulled", "Why"], rows)


def _why(removal: Removal) -> str:
    from txregistry.proxy.eviction import MAXSIZE, TTL

    if removal.why == TTL:
        return f"ttl expired {_time(removal.at)}"
    if removal.why == MAXSIZE:
        return "over maxsize, least recently pulled"
    return f"ttl expires {_time(removal.at)}"


def _time(seconds: float) -> str:
    return f"{format.timestamp(seconds)} UTC"
