"""
The registry's Prometheus metrics (the metrics extra: prometheus_client),
served on the debug listener with C{http.debug.prometheus.enabled}; this
package is imported only then.
"""

from txregistry.metrics.collect import Metrics
from txregistry.metrics.resource import MetricsResource

__all__ = ["Metrics", "MetricsResource"]
