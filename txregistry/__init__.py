"""
txregistry: a container registry (OCI distribution-spec v1.1, Docker
Registry HTTP API v2) on Twisted, a drop-in for registry:2.
"""

#: Written once: setup.py reads it from here.
__version__ = "0.1.0"

from txregistry.config import Config, ConfigError, loadConfig, parseConfig
from txregistry.service import makeService, resource, site
from txregistry.web import RegistryRequest

__all__ = [
    "Config",
    "ConfigError",
    "RegistryRequest",
    "loadConfig",
    "makeService",
    "parseConfig",
    "resource",
    "site",
]
