"""
The repositories of a registry, found by walking the store as registry:2
does: a repository is a directory below C{repositories/} that has
C{_manifests}; directories whose names start with C{_} are the
repositories' own and are not walked.

registry:2's walk goes depth first, a directory before what it holds and
siblings in the order of their names, so that its catalog is in the order
of names compared a path component at a time (its C{lessPath}): C{a},
C{a/b}, C{a-b}. The catalog's pages follow that order, and a page is
walked from where the last one ended.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from txregistry.registry.interfaces import Listing
from txregistry.storage import IStorageDriver, PathNotFound, layout


async def walk(
    driver: IStorageDriver, path: str, name: str = "", after: Sequence[str] = ()
) -> AsyncGenerator[tuple[str, set[str]], None]:
    """
    Each directory below C{path} not named with a leading C{_}, in the
    catalog's order, as the name of the repository it would be (C{a/b/c})
    and the names in it. Given C{after} (a name's components below
    C{path}), directories whose every name comes before it are not listed:
    only those on the way to it, and all that follow.
    """
    try:
        children = await driver.list(path)
    except PathNotFound:
        return
    names = {layout.basename(child) for child in children}
    if name:
        yield name, names
    bound = after[0] if after else None
    for child in sorted(names):
        if child.startswith("_") or (bound is not None and child < bound):
            continue
        below = after[1:] if child == bound else ()
        async for found in walk(driver, f"{path}/{child}", f"{name}/{child}" if name else child, below):
            yield found


async def catalogPage(driver: IStorageDriver, after: str | None = None, limit: int | None = None) -> Listing:
    """
    The repositories that follow C{after} in the catalog's order, C{limit}
    at most. The walk stops at the first repository past the page, which
    says whether more follow.
    """
    bound = tuple(after.split("/")) if after else ()
    found: list[str] = []
    async with aclosing(walk(driver, layout.REPOSITORIES, after=bound)) as directories:
        async for name, children in directories:
            if "_manifests" in children and tuple(name.split("/")) > bound:
                if limit is not None and len(found) == limit:
                    return Listing(found, more=True)
                found.append(name)
    return Listing(found, more=False)


async def repositories(driver: IStorageDriver, withManifests: bool = True) -> list[str]:
    """
    The names of the repositories in the store, sorted. With
    C{withManifests=False}, also those that only have blobs or uploads.
    """
    found = []
    async for name, children in walk(driver, layout.REPOSITORIES):
        if "_manifests" in children or (not withManifests and children & {"_layers", "_uploads"}):
            found.append(name)
    return sorted(found)
