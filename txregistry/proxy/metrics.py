"""
What the pull-through cache counts, kept in memory as plain numbers for
the metrics endpoint (C{txregistry.metrics}) to read when it is scraped.
"""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define
class ProxyMetrics:
    #: Upstream requests by (upstream, kind, status): the upstream's name
    #: or URL; kind is C{manifest}, C{blob}, C{tags} or C{token}; status is
    #: the HTTP status or C{error}.
    upstreams: Counter[tuple[str, str, str]] = attrs.field(factory=Counter)
    #: Bytes of content fetched from upstreams, by (upstream, kind).
    pulled: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    #: Requests for content of cached repositories, by kind (C{manifest},
    #: C{blob}); of those, content served from the cache, and content
    #: fetched for it.
    requests: Counter[str] = attrs.field(factory=Counter)
    hits: Counter[str] = attrs.field(factory=Counter)
    misses: Counter[str] = attrs.field(factory=Counter)
    #: Bytes served to clients, by kind: as registry:2 counts them, a
    #: manifest's size each time one is answered; for blobs, what clients
    #: read, from the store or from a download in progress.
    pushed: Counter[str] = attrs.field(factory=Counter)
    #: Cached content evicted, by kind (a manifest or a blob, from one
    #: repository), and the bytes of content removed from the store.
    evictions: Counter[str] = attrs.field(factory=Counter)
    evictedBytes: int = 0
    #: The bytes of cached blobs, as the last pass of eviction found them.
    cachedBytes: int | None = None

    def upstream(self, upstream: str, kind: str, status: str) -> None:
        self.upstreams[upstream, kind, status] += 1

    @property
    def upstreamRequests(self) -> Counter[tuple[str, str]]:
        """
        Upstream requests by (kind, status), of all upstreams.
        """
        total: Counter[tuple[str, str]] = Counter()
        for (_, kind, status), count in self.upstreams.items():
            total[kind, status] += count
        return total

    @property
    def upstreamBytes(self) -> int:
        """
        Bytes of blobs fetched from all upstreams.
        """
        return sum(count for (_, kind), count in self.pulled.items() if kind == "blob")
