"""
The pull-through cache: repositories of upstream registries, fetched once
as they are pulled, streamed to clients and storage at once, and served
from storage while the upstream is down.

What talks to upstreams needs treq (the proxy extra), so it is loaded only
when first asked for: a registry that is not a cache never imports it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from txregistry.proxy.metrics import ProxyMetrics
from txregistry.proxy.sources import BlobSource, ManifestAnswer, Route

if TYPE_CHECKING:
    from txregistry.proxy.cache import PullThroughCache
    from txregistry.proxy.eviction import Eviction, EvictionService

_LAZY = {
    "PullThroughCache": "txregistry.proxy.cache",
    "Eviction": "txregistry.proxy.eviction",
    "EvictionService": "txregistry.proxy.eviction",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BlobSource",
    "Eviction",
    "EvictionService",
    "ManifestAnswer",
    "ProxyMetrics",
    "PullThroughCache",
    "Route",
]
