"""
Who a client is, and what it may do: the two questions every request's
guard (C{web/}) asks before any handler runs. htpasswd answers them here;
token auth and access rules are other providers of the same interfaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

from txregistry.errors import RegistryError

#: The actions on a repository; C{catalog} is listing every repository.
PULL, PUSH, DELETE, CATALOG = "pull", "push", "delete", "catalog"


@attrs.frozen
class Identity:
    """
    Who a client is: a user's name, or C{None} for an anonymous client.
    """

    name: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.name is None


ANONYMOUS = Identity()


@attrs.frozen
class Access:
    """
    An action a request needs: C{pull}, C{push} or C{delete} on
    C{repository}, or C{catalog} (with no repository).
    """

    action: str
    repository: str | None = None


class IAuthenticator(Interface):
    def authenticate(authorization: bytes | None) -> Deferred[Identity]:
        """
        Who the client that sent a request is, from the value of its
        C{Authorization} header (C{None} without one: L{ANONYMOUS}).

        Fails with a L{RegistryError} C{UNAUTHORIZED} carrying the
        C{WWW-Authenticate} challenge if the header is there but does not
        prove an identity (malformed, unknown user, wrong password). Never
        blocks the reactor: slow checks run in threads, bounded in number.
        """

    def challenge(needs: Sequence[Access]) -> RegistryError:
        """
        The C{UNAUTHORIZED} error, with its C{WWW-Authenticate} challenge,
        for an anonymous client whose request needs C{needs} (empty: any
        authenticated identity).
        """


class IAccessPolicy(Interface):
    def allows(identity: Identity, access: Access) -> bool:
        """
        Whether C{identity} may do C{access}. Called on the reactor for
        every request: answers at once.
        """
