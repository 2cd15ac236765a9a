"""
The metrics in Prometheus's text format.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from twisted.web.resource import Resource
from twisted.web.server import Request


class MetricsResource(Resource):
    """
    What the collectors of L{registry} say at the moment of each scrape:
    the process's own (memory, CPU, file descriptors) and the platform's.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.registry = CollectorRegistry()
        self.registry.register(PROCESS_COLLECTOR)
        self.registry.register(PLATFORM_COLLECTOR)

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.registry)

    render_HEAD = render_GET
