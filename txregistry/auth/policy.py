"""
Access policies.
"""

from __future__ import annotations

from zope.interface import implementer

from txregistry.auth.interfaces import Access, IAccessPolicy, Identity


@implementer(IAccessPolicy)
class AuthenticatedAccess:
    """
    registry:2's policy with htpasswd: any authenticated user may do
    everything, an anonymous client nothing.
    """

    def allows(self, identity: Identity, access: Access) -> bool:
        return not identity.anonymous
