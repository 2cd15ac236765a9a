"""
What the pull-through cache counts, kept in memory for the metrics
endpoint to expose.
"""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define
class ProxyMetrics:
    #: Upstream requests by (kind, status): kind is C{manifest}, C{blob},
    #: C{tags} or C{token}; status is the HTTP status or C{error}.
    upstreamRequests: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    upstreamBytes: int = 0
    cacheBytes: int = 0
    #: Content served from the cache and content fetched for it, by kind
    #: (C{manifest}, C{blob}).
    hits: Counter[str] = attrs.field(factory=Counter)
    misses: Counter[str] = attrs.field(factory=Counter)

    def upstream(self, kind: str, status: str) -> None:
        self.upstreamRequests[kind, status] += 1
