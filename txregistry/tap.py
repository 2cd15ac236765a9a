"""
What C{twistd registry} runs.
"""

from __future__ import annotations

from twisted.application.service import IService

from txregistry.config import ConfigError, Log
from txregistry.logging import logger
from txregistry.options import Options, configFromOptions
from txregistry.service import makeService as _makeService

__all__ = ["Options", "makeService"]

log = logger(__name__)


def makeService(options: Options) -> IService:
    try:
        config = configFromOptions(options)
        service = _makeService(config)
    except ConfigError as e:
        raise SystemExit(f"txregistry: {e}") from None
    if config.log.formatter != Log().formatter or config.log.fields:
        # twistd's observers write the lines, in twistd's format: ours are
        # txregistry serve's.
        log.warn(
            "log.formatter and log.fields apply under txregistry serve; twistd writes its own lines "
            "(log.level and log.accesslog apply)"
        )
    return service
