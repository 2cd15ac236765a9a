"""
Authentication and access: who a client is, and what it may do.
"""

from typing import Any

from txregistry.auth.access import RuleAccess, globMatcher
from txregistry.auth.htpasswd import HtpasswdAuthenticator, HtpasswdError, parseHtpasswd, readHtpasswd
from txregistry.auth.interfaces import (
    ANONYMOUS,
    CATALOG,
    DELETE,
    PULL,
    PUSH,
    Access,
    Grants,
    IAccessPolicy,
    IAuthenticator,
    Identity,
)
from txregistry.auth.policy import AuthenticatedAccess
from txregistry.auth.remembered import Remembered

#: Token auth's names, from a module that needs the C{token} extra (PyJWT,
#: cryptography): imported when first asked for, so that a registry
#: without token auth neither loads nor needs them.
_TOKEN = (
    "ALGORITHMS",
    "TokenAccess",
    "TokenAuthenticator",
    "TokenConfigError",
    "Trust",
    "keyIDs",
    "readTrust",
)


def __getattr__(name: str) -> Any:
    if name in _TOKEN:
        from txregistry.auth import token

        return getattr(token, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALGORITHMS",
    "ANONYMOUS",
    "CATALOG",
    "DELETE",
    "PULL",
    "PUSH",
    "Access",
    "AuthenticatedAccess",
    "Grants",
    "HtpasswdAuthenticator",
    "HtpasswdError",
    "IAccessPolicy",
    "IAuthenticator",
    "Identity",
    "Remembered",
    "RuleAccess",
    "TokenAccess",
    "TokenAuthenticator",
    "TokenConfigError",
    "Trust",
    "globMatcher",
    "keyIDs",
    "parseHtpasswd",
    "readHtpasswd",
    "readTrust",
]
