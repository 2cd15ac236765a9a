"""
Authentication and access: who a client is, and what it may do.
"""

from txregistry.auth.htpasswd import HtpasswdAuthenticator, HtpasswdError, parseHtpasswd, readHtpasswd
from txregistry.auth.interfaces import (
    ANONYMOUS,
    CATALOG,
    DELETE,
    PULL,
    PUSH,
    Access,
    IAccessPolicy,
    IAuthenticator,
    Identity,
)
from txregistry.auth.policy import AuthenticatedAccess

__all__ = [
    "ANONYMOUS",
    "CATALOG",
    "DELETE",
    "PULL",
    "PUSH",
    "Access",
    "AuthenticatedAccess",
    "HtpasswdAuthenticator",
    "HtpasswdError",
    "IAccessPolicy",
    "IAuthenticator",
    "Identity",
    "parseHtpasswd",
    "readHtpasswd",
]
