"""
The registry's HTTP API as C{twisted.web} resources.
"""

from typing import TYPE_CHECKING, Any

from txregistry.lazy import lazyNames
from txregistry.web.channel import RegistryChannel
from txregistry.web.context import Context, Guard
from txregistry.web.request import RegistryRequest, SiteRequest
from txregistry.web.router import RegistryResource, RootResource

if TYPE_CHECKING:
    from txregistry.web.fleet import FleetResource
    from txregistry.web.tls import behindTLS, contextFactory

# Only with http.tls, and only in a fleet.
_names = lazyNames(__name__, {"fleet": ("FleetResource",), "tls": ("behindTLS", "contextFactory")})


def __getattr__(name: str) -> Any:
    return _names(name)


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
