"""
The HTTP metrics of registry:2 (docker/go-metrics' handler instrumentation,
namespace C{registry}, subsystem C{http}), with its names, labels, buckets
and route names, so that its dashboards work; and the bytes a site took in
and sent out, over all its requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from time import perf_counter
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import Request

from txregistry.metrics.histogram import Histogram, family
from txregistry.web.base import BaseEndpoint
from txregistry.web.blobs import BlobEndpoint
from txregistry.web.catalog import CatalogEndpoint
from txregistry.web.manifests import ManifestEndpoint
from txregistry.web.referrers import ReferrersEndpoint
from txregistry.web.tags import TagsEndpoint
from txregistry.web.uploads import StartUploadEndpoint, UploadEndpoint

#: registry:2's route names (registry/api/v2/routes.go, with "_" for "-"),
#: by the endpoint serving the route; what is no route is "other".
HANDLERS: dict[type[Any], str] = {
    BaseEndpoint: "base",
    BlobEndpoint: "blob",
    StartUploadEndpoint: "blob_upload",
    UploadEndpoint: "blob_upload_chunk",
    CatalogEndpoint: "catalog",
    ManifestEndpoint: "manifest",
    ReferrersEndpoint: "referrers",
    TagsEndpoint: "tags",
}

#: Methods as Go's promhttp labels them; any other is "other", so that
#: clients cannot make labels without end.
_METHODS = {m.encode(): m.lower() for m in ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS")}

#: go-metrics' defaultDurationBuckets, and its size buckets: 1 KiB to 2 GiB.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60)
SIZE_BUCKETS = tuple(1024.0 * 2**i for i in range(22))


class RequestMetrics(Collector):
    """
    What each request of a site comes to, observed when it is finished (or
    its connection lost): counted by code, handler and method; its duration
    by handler and method; the sizes of its body and its answer's by
    handler; and those in flight by handler. Kept as plain numbers, read
    when scraped.
    """

    def __init__(self) -> None:
        # By the status code as a number: made a label only when scraped.
        self._counts: dict[tuple[int, str, str], int] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._requestSizes: dict[str, Histogram] = {}
        self._responseSizes: dict[str, Histogram] = {}
        self._inFlight: dict[str, int] = {}
        self.received = 0
        self.sent = 0

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "registry_http_requests",
            "Total number of HTTP requests made.",
            labels=["code", "handler", "method"],
        )
        for (code, handler, method), count in sorted(self._counts.items()):
            requests.add_metric([str(code), handler, method], count)
        yield requests
        yield family(
            "registry_http_request_duration_seconds",
            "The HTTP request latencies in seconds.",
            ["handler", "method"],
            sorted(self._durations.items()),
        )
        for name, help, histograms in [
            ("request", "The HTTP request sizes in bytes: their bodies, as received.", self._requestSizes),
            ("response", "The HTTP response sizes in bytes: their bodies, as sent.", self._responseSizes),
        ]:
            yield family(
                f"registry_http_{name}_size_bytes",
                help,
                ["handler"],
                (((handler,), h) for handler, h in sorted(histograms.items())),
            )
        inFlight = GaugeMetricFamily(
            "registry_http_in_flight_requests", "The in-flight HTTP requests", labels=["handler"]
        )
        for handler, count in sorted(self._inFlight.items()):
            inFlight.add_metric([handler], count)
        yield inFlight
        yield CounterMetricFamily(
            "txregistry_http_received_bytes", "Bytes of request bodies received.", self.received
        )
        yield CounterMetricFamily("txregistry_http_sent_bytes", "Bytes of response bodies sent.", self.sent)

    def started(self, request: Request, handler: str) -> None:
        """
        Observe C{request}, for C{handler}, from now until it is finished.
        """
        method = _METHODS.get(request.method, "other")
        duration = self._durations.get((handler, method))
        if duration is None:
            duration = self._durations[handler, method] = Histogram(DURATION_BUCKETS)
            self._requestSizes[handler] = self._requestSizes.get(handler) or Histogram(SIZE_BUCKETS)
            self._responseSizes[handler] = self._responseSizes.get(handler) or Histogram(SIZE_BUCKETS)
        inFlight = self._inFlight
        inFlight[handler] = inFlight.get(handler, 0) + 1
        requestSizes, responseSizes = self._requestSizes[handler], self._responseSizes[handler]
        counts = self._counts
        began = perf_counter()

        def finished(_: object) -> None:
            inFlight[handler] -= 1
            duration.observe(perf_counter() - began)
            body = getattr(request, "body", None)
            received = body.delivered if body is not None else 0
            sent = request.sentLength
            self.received += received
            self.sent += sent
            requestSizes.observe(received)
            responseSizes.observe(sent)
            key = (request.code, handler, method)
            counts[key] = counts.get(key, 0) + 1

        request.notifyFinish().addBoth(finished)


class Instrumented(Resource):
    """
    A site's root, C{root}, each request through which C{metrics} observe,
    with the handler of the endpoint it reaches.
    """

    def __init__(self, root: IResource, metrics: RequestMetrics) -> None:
        super().__init__()
        self._root = root
        self._metrics = metrics

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        # The rest of the way to the endpoint, taken here, to learn which it is.
        endpoint = getChildForRequest(self._root.getChildWithDefault(path, request), request)
        self._metrics.started(request, HANDLERS.get(type(endpoint), "other"))
        return endpoint

    def render(self, request: Request) -> bytes:
        # Only for a request without a path; twisted.web gives every other one a child.
        self._metrics.started(request, "other")
        result: bytes = self._root.render(request)
        return result
