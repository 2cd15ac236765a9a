"""
C{auth.access}: per-repository rights for htpasswd users, without a token
server. Rules only grant, so their order never matters: what no rule
grants is refused.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from functools import cache

from zope.interface import implementer

from txregistry.auth.interfaces import CATALOG, PULL, Access, IAccessPolicy, Identity
from txregistry.config import AccessRule, AccessRules


def globMatcher(globs: Sequence[str]) -> Callable[[str], bool]:
    """
    Whether a repository name matches any of C{globs}: in each, a path
    component C{**} stands for one or more components, and within a
    component C{*} for any run of characters and C{?} for one.

    Matched a component at a time, each with the atomic patterns of
    C{fnmatch}, so that no glob costs more than a few passes over a name,
    however many wildcards it has.
    """
    compiled = [
        [None if part == "**" else re.compile(fnmatch.translate(part)) for part in glob.split("/")]
        for glob in globs
    ]

    def matches(name: str) -> bool:
        components = tuple(name.split("/"))
        return any(_match(tuple(parts), components) for parts in compiled)

    return matches


def _match(parts: tuple[re.Pattern[str] | None, ...], components: tuple[str, ...]) -> bool:
    if None not in parts:
        # No **: a component for each part, as most globs are.
        return len(parts) == len(components) and all(
            part is not None and part.match(component) is not None
            for part, component in zip(parts, components, strict=True)
        )

    @cache
    def at(p: int, c: int) -> bool:
        if p == len(parts):
            return c == len(components)
        part = parts[p]
        if part is None:
            return any(at(p + 1, end) for end in range(c + 1, len(components) + 1))
        return c < len(components) and part.match(components[c]) is not None and at(p + 1, c + 1)

    return at(0, 0)


class _Rule:
    def __init__(self, rule: AccessRule, groups: dict[str, tuple[str, ...]]) -> None:
        self.actions = rule.actions
        self.repositories = globMatcher(rule.repositories)
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
        return self.repositories(repository)


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
