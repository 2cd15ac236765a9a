"""
What C{twistd registry} runs.
"""

from __future__ import annotations

from twisted.application.service import IService

from txregistry.config import ConfigError
from txregistry.options import Options, configFromOptions
from txregistry.service import makeService as _makeService

__all__ = ["Options", "makeService"]


def makeService(options: Options) -> IService:
    try:
        return _makeService(configFromOptions(options))
    except ConfigError as e:
        raise SystemExit(f"txregistry: {e}") from None
