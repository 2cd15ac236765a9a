"""
The registry's HTTP API as C{twisted.web} resources.
"""

from txregistry.web.channel import RegistryChannel
from txregistry.web.context import Context, Guard
from txregistry.web.fleet import FleetResource
from txregistry.web.request import RegistryRequest, SiteRequest
from txregistry.web.router import RegistryResource, RootResource
from txregistry.web.tls import behindTLS, contextFactory

__all__ = [
    "Context",
    "FleetResource",
    "Guard",
    "RegistryChannel",
    "RegistryRequest",
    "RegistryResource",
    "RootResource",
    "SiteRequest",
    "behindTLS",
    "contextFactory",
]
