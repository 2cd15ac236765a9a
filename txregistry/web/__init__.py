"""
The registry's HTTP API as C{twisted.web} resources.
"""

from txregistry.web.context import Context
from txregistry.web.request import RegistryRequest
from txregistry.web.router import RegistryResource, RootResource

__all__ = ["Context", "RegistryRequest", "RegistryResource", "RootResource"]
