"""
The repositories of a registry, found by walking the store as registry:2
does: a repository is a directory below C{repositories/} that has
C{_manifests}; directories whose names start with C{_} are the
repositories' own and are not walked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from txregistry.storage import IStorageDriver, PathNotFound, layout


async def walk(driver: IStorageDriver, path: str, name: str = "") -> AsyncIterator[tuple[str, set[str]]]:
    """
    Each directory below C{path} not named with a leading C{_}, as the name
    of the repository it would be (C{a/b/c}) and the names in it.
    """
    try:
        children = await driver.list(path)
    except PathNotFound:
        return
    names = {layout.basename(child) for child in children}
    if name:
        yield name, names
    for child in sorted(names):
        if not child.startswith("_"):
            async for found in walk(driver, f"{path}/{child}", f"{name}/{child}" if name else child):
                yield found


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
