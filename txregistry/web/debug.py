"""
The debug listener's site (C{http.debug.addr}), registry:2's: the health
of the registry at C{/debug/health}, and its Prometheus metrics at
C{http.debug.prometheus.path} when they are on; ours beside them, for a
pull-through cache, the state of its upstreams at C{/debug/upstreams}.
Nothing of the API is here, nor anything of this on the API's port; it has
no guard, so it is meant to be bound where only operators and their
scrapers reach.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

#: The failing checks, by name, each with its error; none when healthy.
HealthStatus = Callable[[], Mapping[str, str]]

#: A JSON document about a pull-through cache's upstreams.
UpstreamStatus = Callable[[], Mapping[str, Any]]


class DebugResource(Resource):
    """
    Answers C{GET} and C{HEAD} of C{/debug/health} with registry:2's
    status document (200 and C{{}}, or 503 and each failing check with its
    error), of C{metricsPath} with C{metrics}, and of C{/debug/upstreams}
    with C{upstreams} (always 200: what it says is no failure); 404
    elsewhere.
    """

    isLeaf = True

    def __init__(
        self,
        health: HealthStatus,
        metrics: IResource | None = None,
        metricsPath: str | None = None,
        upstreams: UpstreamStatus | None = None,
    ) -> None:
        super().__init__()
        self._health = health
        self._metrics = metrics
        self._metricsPath = None if metricsPath is None else metricsPath.encode()
        self._upstreams = upstreams

    def render(self, request: Request) -> bytes:
        path = request.path
        upstreamsPath = None if self._upstreams is None else b"/debug/upstreams"
        if path not in (b"/debug/health", self._metricsPath, upstreamsPath):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"404 page not found\n"
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return b""
        if path == b"/debug/health":
            failing = self._health()
            request.setResponseCode(503 if failing else 200)
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
            return json.dumps(dict(failing)).encode()
        if path == upstreamsPath:
            assert self._upstreams is not None
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
            return json.dumps(self._upstreams()).encode()
        assert self._metrics is not None
        return self._metrics.render(request)
