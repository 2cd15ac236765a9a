"""
C{auth.access}: per-repository rights for htpasswd users, without a token
server. Rules only grant, so their order never matters: what no rule
grants is refused.
"""

from __future__ import annotations

import re

from zope.interface import implementer

from txregistry.auth.interfaces import CATALOG, PULL, Access, IAccessPolicy, Identity
from txregistry.config import AccessRule, AccessRules


def globPattern(globs: tuple[str, ...]) -> re.Pattern[str]:
    """
    One pattern for repository names matching any of C{globs}: C{**} for
    any run of characters, C{*} for one within a path component, C{?} for
    one character other than C{/}.
    """
    alternatives = []
    for glob in globs:
        parts = re.split(r"(\*\*|\*|\?)", glob)
        wildcards = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
        alternatives.append("".join(wildcards.get(part) or re.escape(part) for part in parts))
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


class _Rule:
    def __init__(self, rule: AccessRule, groups: dict[str, tuple[str, ...]]) -> None:
        self.actions = rule.actions
        self.repositories = globPattern(rule.repositories)
        self.anonymous = rule.anonymous
        self.authenticated = rule.authenticated or rule.anonymous
        self.users = frozenset(rule.users).union(*(groups[g] for g in rule.groups))

    def covers(self, identity: Identity) -> bool:
        if identity.anonymous:
            return self.anonymous
        return self.authenticated or identity.name in self.users

    def grants(self, identity: Identity, action: str, repository: str) -> bool:
        if action not in self.actions or not self.covers(identity):
            return False
        return self.repositories.fullmatch(repository) is not None


@implementer(IAccessPolicy)
class RuleAccess:
    """
    The grants of L{AccessRules}. The catalog may be listed by any signed
    in user, and by anonymous clients where some rule lets them pull; it
    shows each only the repositories they may pull.
    """

    def __init__(self, rules: AccessRules) -> None:
        groups = dict(rules.groups)
        self._rules = [_Rule(rule, groups) for rule in rules.rules]
        self._anonymousPulls = any(rule.anonymous and PULL in rule.actions for rule in rules.rules)

    def allows(self, identity: Identity, access: Access) -> bool:
        if access.action == CATALOG:
            if access.repository is None:
                return not identity.anonymous or self._anonymousPulls
            access = Access(PULL, access.repository)
        name = access.repository or ""
        return any(rule.grants(identity, access.action, name) for rule in self._rules)
