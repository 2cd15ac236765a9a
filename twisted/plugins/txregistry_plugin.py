"""
C{twistd registry}: a container registry.
"""

from twisted.application.service import ServiceMaker

registry = ServiceMaker(
    "txregistry",
    "txregistry.tap",
    "A container registry (OCI distribution, Docker Registry HTTP API v2)",
    "registry",
)
