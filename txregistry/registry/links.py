"""
Link files: registry:2's way of saying "this repository has that content".
Each holds a digest as text, with no newline.
"""

from __future__ import annotations

from txregistry.errors import RegistryError
from txregistry.reference import Digest
from txregistry.storage import IStorageDriver, PathNotFound


async def readLink(driver: IStorageDriver, path: str) -> Digest | None:
    """
    The digest a link file holds, or C{None} where there is no link.
    """
    try:
        content = await driver.getContent(path)
    except PathNotFound:
        return None
    try:
        return Digest.parse(content.decode("ascii").strip())
    except (UnicodeDecodeError, RegistryError):
        return None


async def writeLink(driver: IStorageDriver, path: str, digest: Digest) -> None:
    await driver.putContent(path, str(digest).encode("ascii"))


async def deleteIfPresent(driver: IStorageDriver, path: str) -> bool:
    try:
        await driver.delete(path)
    except PathNotFound:
        return False
    return True


async def exists(driver: IStorageDriver, path: str) -> bool:
    try:
        await driver.stat(path)
    except PathNotFound:
        return False
    return True
