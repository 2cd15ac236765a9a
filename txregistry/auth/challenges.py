"""
The C{WWW-Authenticate} challenges a 401 carries: Basic for htpasswd,
Bearer with the scope a request needs for token auth.
"""

from __future__ import annotations

from collections.abc import Sequence

from txregistry.auth.interfaces import CATALOG, Access


def quoted(text: str) -> str:
    """
    C{text} as an HTTP quoted-string.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def basic(realm: str) -> str:
    return f"Basic realm={quoted(realm)}"


def scope(needs: Sequence[Access]) -> str:
    """
    The Docker token protocol's C{scope} for C{needs}: one
    C{repository:<name>:<actions>} for each repository, in the order
    first needed, and C{registry:catalog:*} for the catalog.
    """
    actions: dict[str, list[str]] = {}
    for access in needs:
        if access.action == CATALOG:
            key = "registry:catalog"
            wanted = ["*"]
        else:
            key = f"repository:{access.repository}"
            wanted = [access.action]
        have = actions.setdefault(key, [])
        have.extend(action for action in wanted if action not in have)
    return " ".join(f"{key}:{','.join(names)}" for key, names in actions.items())


def bearer(realm: str, service: str, needs: Sequence[Access], error: str | None = None) -> str:
    """
    The challenge for a token with C{needs} from C{realm}; C{error} is
    RFC 6750's C{invalid_token} or C{insufficient_scope}.
    """
    challenge = f"Bearer realm={quoted(realm)},service={quoted(service)}"
    wanted = scope(needs)
    if wanted:
        challenge += f",scope={quoted(wanted)}"
    if error is not None:
        challenge += f",error={quoted(error)}"
    return challenge
