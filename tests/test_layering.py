"""
The layers of the design, kept: storage knows no registry, the registry
knows no web or proxy, the web serves the registry's contract without
knowing what provides it, and the proxy reaches storage only through the
registry.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from importlib.util import resolve_name
from pathlib import Path

import pytest

import txregistry

PACKAGE = Path(txregistry.__file__).parent

#: Under each package, the modules none of its modules may import (nor
#: anything under them).
FORBIDDEN = {
    "txregistry.web": ("txregistry.proxy", "txregistry.ui"),
    # The UI reads through the registry contract, as the API does.
    "txregistry.ui": ("txregistry.storage.layout", "txregistry.registry.registry"),
    "txregistry.proxy": ("txregistry.storage.layout", "txregistry.web"),
    "txregistry.storage": ("txregistry.registry", "txregistry.web", "txregistry.proxy"),
    "txregistry.registry": ("txregistry.web", "txregistry.proxy"),
    "txregistry.notifications": (
        "txregistry.web",
        "txregistry.registry",
        "txregistry.proxy",
        "txregistry.storage",
    ),
}


def moduleName(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[str]:
    """
    Every module name an import in C{path} may mean, absolute: for C{from
    a import b}, both C{a} and C{a.b} (C{b} may be a module).
    """
    module = moduleName(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = resolve_name("." * node.level + (node.module or ""), package)
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def modulesOf(package: str) -> list[Path]:
    return sorted((PACKAGE.parent / package.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    modules = modulesOf(package)
    assert modules, package
    violations = [
        f"{moduleName(path)} imports {name}"
        for path in modules
        for name in sorted(set(imported(path)))
        if any(within(name, forbidden) for forbidden in FORBIDDEN[package])
    ]
    assert violations == []


def test_imports_are_seen() -> None:
    # An import the walk could not see would make the rules above pass for
    # nothing.
    names = set(imported(PACKAGE / "web" / "responses.py"))
    assert {"json", "txregistry.errors", "txregistry.errors.RegistryError", "twisted.web.server"} <= names
