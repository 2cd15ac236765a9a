"""
The pull-through cache: repositories of upstream registries, fetched once
as they are pulled, streamed to clients and storage at once, and served
from storage while the upstream is down. L{PullThroughCache} provides the
registry contract (L{txregistry.registry.IRegistry}) by wrapping a
L{txregistry.registry.Registry}.

What talks to upstreams needs treq (the proxy extra): import this package
only when a cache is configured.
"""

from txregistry.proxy.cache import CachedRepository, PullThroughCache
from txregistry.proxy.eviction import Eviction, EvictionService, evict
from txregistry.proxy.metrics import ProxyMetrics

__all__ = [
    "CachedRepository",
    "Eviction",
    "EvictionService",
    "ProxyMetrics",
    "PullThroughCache",
    "evict",
]
