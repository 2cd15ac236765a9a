"""
Where a repository of a pull-through cache comes from: an upstream, or
this registry (a repository no upstream serves, or one a push made ours).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from txregistry.proxy import PullThroughCache


async def upstreamOf(cache: PullThroughCache, name: str) -> str | None:
    """
    The URL of the upstream C{name} is cached from; C{None} for our own.
    """
    route = cache.route(name)
    if route is None:
        return None
    if cache.config.allowPush and route.client is cache.clients.get("") and await cache.own.isOwn(name):
        return None
    return route.client.upstream.remoteURL
