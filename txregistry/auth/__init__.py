"""
Authentication and access: who a client is, and what it may do.
"""

from txregistry.auth.access import RuleAccess, globPattern
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
from txregistry.auth.token import (
    ALGORITHMS,
    TokenAccess,
    TokenAuthenticator,
    TokenConfigError,
    Trust,
    keyIDs,
    readTrust,
)

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
    "globPattern",
    "keyIDs",
    "parseHtpasswd",
    "readHtpasswd",
    "readTrust",
]
