"""
registry:2's C{REGISTRY_<KEY>_<KEY>...} environment overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: storage.* keys that configure the registry rather than name a driver.
STORAGE_SETTINGS = ("delete", "maintenance", "cache", "redirect", "tag")
# Sections that registry:2 also takes as a bare name (storage: inmemory,
# auth: silly): a kind without parameters.
_NAMED_KINDS = ("storage", "auth")


def _overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    # As in the reader, imported where it is used, so it can be let go.
    import yaml

    found = []
    for key, value in environ.items():
        if not key.startswith("REGISTRY_") or len(key) == len("REGISTRY_"):
            continue
        path = key[len("REGISTRY_") :].lower().split("_")
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed = value
        found.append((path, parsed))
    # registry:2 applies parents before their children.
    return sorted(found, key=lambda item: len(item[0]))


def applyEnvironment(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """
    C{document} with registry:2's C{REGISTRY_<KEY>_<KEY>...} variables
    applied, each value read as YAML.
    """
    for path, value in _overrides(environ):
        node = document
        for part in path[:-1]:
            child = node.get(part)
            if part in _NAMED_KINDS and isinstance(child, str):
                child = {child: {}}
            if not isinstance(child, dict):
                child = {}
            node[part] = child
            node = child
        if path == ["storage"] and isinstance(value, str):
            # REGISTRY_STORAGE=inmemory picks the driver.
            settings = {k: v for k, v in (node.get("storage") or {}).items() if k in STORAGE_SETTINGS}
            value = {value: {}, **settings}
        node[path[-1]] = value
    return document
