"""
Authentication and access: who a client is, and what it may do.
"""

from typing import TYPE_CHECKING, Any

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
from txregistry.lazy import lazyNames

if TYPE_CHECKING:
    from txregistry.auth.access import RuleAccess, globMatcher
    from txregistry.auth.htpasswd import HtpasswdAuthenticator, HtpasswdError, parseHtpasswd, readHtpasswd
    from txregistry.auth.policy import AuthenticatedAccess
    from txregistry.auth.remembered import Remembered
    from txregistry.auth.token import (
        ALGORITHMS,
        TokenAccess,
        TokenAuthenticator,
        TokenConfigError,
        Trust,
        keyIDs,
        readTrust,
    )

# What an open registry never asks for (and token auth's module needs the
# token extra, PyJWT and cryptography): loaded when first named.
_names = lazyNames(
    __name__,
    {
        "access": ("RuleAccess", "globMatcher"),
        "htpasswd": ("HtpasswdAuthenticator", "HtpasswdError", "parseHtpasswd", "readHtpasswd"),
        "policy": ("AuthenticatedAccess",),
        "remembered": ("Remembered",),
        "token": (
            "ALGORITHMS",
            "TokenAccess",
            "TokenAuthenticator",
            "TokenConfigError",
            "Trust",
            "keyIDs",
            "readTrust",
        ),
    },
)


def __getattr__(name: str) -> Any:
    return _names(name)


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
