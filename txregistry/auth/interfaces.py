"""
Who a client is, and what it may do: the two questions every request's
guard (C{web/}) asks before any handler runs. htpasswd and token auth
say who; access rules, or a token's own claims, say what they may do.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

from txregistry.errors import RegistryError

#: The actions on a repository; C{catalog} is listing every repository.
PULL, PUSH, DELETE, CATALOG = "pull", "push", "delete", "catalog"


#: What a token grants: (type, name, action) triples, as its C{access}
#: claim lists them (C{("repository", "a/b", "pull")}).
Grants = frozenset[tuple[str, str, str]]


@attrs.frozen
class Identity:
    """
    Who a client is: a user's name, or C{None} for an anonymous client;
    and, for a token's bearer, what the token grants.
    """

    name: str | None = None
    grants: Grants = frozenset()

    @property
    def anonymous(self) -> bool:
        return self.name is None


ANONYMOUS = Identity()


@attrs.frozen
class Access:
    """
    An action a request needs: C{pull}, C{push} or C{delete} on
    C{repository}; or C{catalog}: listing the catalog at all (with no
    repository), or seeing C{repository} in it.
    """

    action: str
    repository: str | None = None


class IAuthenticator(Interface):
    def authenticate(authorization: bytes | None, needs: Sequence[Access]) -> Deferred[Identity]:
        """
        Who the client that sent a request is, from the value of its
        C{Authorization} header (C{None} without one: L{ANONYMOUS}).

        Fails with a L{RegistryError} C{UNAUTHORIZED} carrying the
        C{WWW-Authenticate} challenge for C{needs} if the header is there
        but does not prove an identity (malformed, unknown user, wrong
        password, a token that does not verify). Never blocks the reactor:
        slow checks run in threads, bounded in number.
        """

    def challenge(needs: Sequence[Access]) -> RegistryError:
        """
        The C{UNAUTHORIZED} error, with its C{WWW-Authenticate} challenge,
        for an anonymous client whose request needs C{needs} (empty: any
        authenticated identity).
        """

    def refusal(identity: Identity, needs: Sequence[Access]) -> RegistryError:
        """
        The error for C{identity}, not anonymous, whose request needs
        C{needs} that it may not do: C{DENIED}, or for a token, the
        challenge to come back with a wider one.
        """


class IAccessPolicy(Interface):
    def allows(identity: Identity, access: Access) -> bool:
        """
        Whether C{identity} may do C{access}. Called on the reactor for
        every request: answers at once.
        """
