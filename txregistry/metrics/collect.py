"""
L{Metrics}: every collector of one registry, in one C{CollectorRegistry}.
Most of what is measured is kept as plain numbers by what it measures
(the pull-through cache's L{ProxyMetrics}, the uploads), so that it costs
nothing without metrics; the collectors here read those when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import IResource

from txregistry.metrics.http import Instrumented, RequestMetrics
from txregistry.metrics.resource import MetricsResource
from txregistry.metrics.storage import StorageActions, TimedDriver
from txregistry.registry import Registry
from txregistry.storage import IStorageDriver

if TYPE_CHECKING:
    from txregistry.notifications import Notifier
    from txregistry.proxy import PullThroughCache
    from txregistry.registry import Counters

#: The kinds of content registry:2's proxy counters always show.
_KINDS = ("blob", "manifest")


class Metrics:
    """
    The metrics of one registry: L{instrument} its site's root and L{time}
    its storage driver as they are made, L{watch} the registry (and its
    cache) once made, and serve L{resource}.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(PROCESS_COLLECTOR)
        self.registry.register(PLATFORM_COLLECTOR)
        self.requests = RequestMetrics()
        self.registry.register(self.requests)
        self._storage = StorageActions()
        self.registry.register(self._storage)

    def instrument(self, root: IResource) -> IResource:
        return Instrumented(root, self.requests)

    def time(self, driver: IStorageDriver) -> IStorageDriver:
        timed: IStorageDriver = TimedDriver(driver, self._storage)  # type: ignore[assignment]
        return timed

    def watch(
        self,
        registry: Registry,
        cache: PullThroughCache | None,
        collection: Counters | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.registry.register(_RegistryCollector(registry))
        if cache is not None:
            self.registry.register(_CacheCollector(cache))
        if collection is not None:
            self.registry.register(_CollectionCollector(collection))
        if notifier is not None:
            self.registry.register(_NotificationCollector(notifier))

    def resource(self) -> IResource:
        return MetricsResource(self.registry)


class _RegistryCollector(Collector):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "txregistry_uploads_in_progress",
            "Uploads a request is writing to, finishing or cancelling.",
            self._registry.uploads.inProgress,
        )
        # The blob descriptor cache (blob sizes), by registry:2's names:
        # 2.8's one family by type, and 3.x's three.
        sizes = self._registry.blobSizes
        requests = sizes.hits + sizes.misses
        cache = CounterMetricFamily(
            "registry_storage_cache", "The number of cache request received", labels=["type"]
        )
        for kind, count in (("Request", requests), ("Hit", sizes.hits), ("Miss", sizes.misses), ("Error", 0)):
            cache.add_metric([kind], count)
        yield cache
        yield CounterMetricFamily(
            "registry_storage_cache_requests", "The number of cache request received", requests
        )
        yield CounterMetricFamily(
            "registry_storage_cache_hits", "The number of cache request received", sizes.hits
        )
        yield CounterMetricFamily("registry_storage_cache_errors", "The number of cache request errors", 0)


class _CollectionCollector(Collector):
    """
    Garbage collection's runs and what they reclaimed (registry:2 has no
    metrics for it).
    """

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        counters = self._counters
        yield CounterMetricFamily("txregistry_gc_runs", "Garbage collection runs.", counters.runs)
        yield CounterMetricFamily(
            "txregistry_gc_reclaimed_bytes",
            "Bytes of blobs garbage collection removed.",
            counters.bytesReclaimed,
        )
        removed = CounterMetricFamily(
            "txregistry_gc_removed", "Blobs and manifests garbage collection removed.", labels=["type"]
        )
        removed.add_metric(["blob"], counters.blobsReclaimed)
        removed.add_metric(["manifest"], counters.manifestsReclaimed)
        yield removed


class _NotificationCollector(Collector):
    """
    Each notification endpoint: registry:2's event counts (C{Events}
    accepted, C{Successes} delivered, C{Failures}, each attempt that
    failed) and queue depth, and ours: events dropped because the queue
    was full.
    """

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "registry_notifications_events", "The number of total events", labels=["type", "endpoint"]
        )
        pending = GaugeMetricFamily(
            "registry_notifications_pending_total",
            "The gauge of pending events in queue",
            labels=["endpoint"],
        )
        dropped = CounterMetricFamily(
            "txregistry_notifications_dropped",
            "Events not queued for an endpoint because its queue was full.",
            labels=["endpoint"],
        )
        for webhook in self._notifier.webhooks:
            name = webhook.endpoint.name
            events.add_metric(["Events", name], webhook.delivered + webhook.pending)
            events.add_metric(["Successes", name], webhook.delivered)
            events.add_metric(["Failures", name], webhook.failed)
            pending.add_metric([name], webhook.pending)
            dropped.add_metric([name], webhook.dropped)
        yield events
        yield pending
        yield dropped


class _CacheCollector(Collector):
    """
    The pull-through cache: registry:2's proxy counters (3.x), by type of
    content; and ours: upstream requests and bytes by upstream, the hit
    ratio, downloads in progress and their readers, breakers, eviction and
    the cache's size.
    """

    def __init__(self, cache: PullThroughCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        cache = self._cache
        counts = cache.metrics
        for name, help, values in [
            ("requests", "The number of total incoming proxy request received", counts.requests),
            ("hits", "The number of total proxy request hits", counts.hits),
            ("misses", "The number of total proxy request misses", counts.misses),
            ("pushed_bytes", "The size of total bytes pushed to the client", counts.pushed),
        ]:
            family = CounterMetricFamily(f"registry_proxy_{name}", help, labels=["type"])
            for kind in _KINDS:
                family.add_metric([kind], values[kind])
            yield family
        pulled = CounterMetricFamily(
            "registry_proxy_pulled_bytes", "The size of total bytes pulled from the upstream", labels=["type"]
        )
        for kind in _KINDS:
            pulled.add_metric([kind], sum(n for (_, k), n in counts.pulled.items() if k == kind))
        yield pulled

        ratio = GaugeMetricFamily(
            "txregistry_proxy_hit_ratio",
            "Of the content asked for, the share served from the cache, since start.",
            labels=["type"],
        )
        for kind in _KINDS:
            total = counts.hits[kind] + counts.misses[kind]
            if total:
                ratio.add_metric([kind], counts.hits[kind] / total)
        yield ratio

        requests = CounterMetricFamily(
            "txregistry_upstream_requests",
            "Requests to upstreams, by upstream, kind and status (or error).",
            labels=["upstream", "kind", "code"],
        )
        for (upstream, kind, status), n in sorted(counts.upstreams.items()):
            requests.add_metric([upstream, kind, status], n)
        yield requests
        received = CounterMetricFamily(
            "txregistry_upstream_bytes",
            "Bytes of content fetched from upstreams, by upstream and kind.",
            labels=["upstream", "kind"],
        )
        for (upstream, kind), n in sorted(counts.pulled.items()):
            received.add_metric([upstream, kind], n)
        yield received
        breakers = GaugeMetricFamily(
            "txregistry_upstream_breaker_open",
            "1 while an upstream's circuit breaker holds requests back.",
            labels=["upstream"],
        )
        for client in cache.clients.values():
            breakers.add_metric([client.label], 1 if client.breaker.isOpen else 0)
        yield breakers

        downloads = cache.downloads
        yield GaugeMetricFamily(
            "txregistry_proxy_downloads", "Blobs being fetched from upstream.", len(downloads)
        )
        yield GaugeMetricFamily(
            "txregistry_proxy_download_clients",
            "Clients reading blobs as they arrive from upstream.",
            sum(d.clients for d in downloads),
        )

        evictions = CounterMetricFamily(
            "txregistry_proxy_evictions",
            "Cached content evicted: manifests and blobs, from each repository.",
            labels=["type"],
        )
        for kind in _KINDS:
            evictions.add_metric([kind], counts.evictions[kind])
        yield evictions
        yield CounterMetricFamily(
            "txregistry_proxy_evicted_bytes", "Bytes of content evicted from the store.", counts.evictedBytes
        )
        if counts.cachedBytes is not None:
            yield GaugeMetricFamily(
                "txregistry_proxy_size_bytes",
                "Bytes of cached blobs, as the last pass of eviction found them.",
                counts.cachedBytes,
            )
        if cache.config.maxSize is not None:
            yield GaugeMetricFamily(
                "txregistry_proxy_maxsize_bytes", "proxy.maxsize: the cache's limit.", cache.config.maxSize
            )
