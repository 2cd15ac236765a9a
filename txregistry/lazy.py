"""
Names a package offers from modules it imports only when one of the names
is first asked for, so that what a configuration does not use is never
loaded: an instance's memory is a small job's budget.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazyNames(package: str, modules: Mapping[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """
    A module C{__getattr__} for C{package} that finds each name of
    C{modules}' values in the submodule named by its key.
    """
    where = {name: module for module, names in modules.items() for name in names}

    def find(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return find
