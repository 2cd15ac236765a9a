"""
What the pages say of a manifest, read through the registry contract: its
media type, platforms, compressed size and the image config it names.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from txregistry.errors import RegistryError
from txregistry.manifest import INDEXES
from txregistry.reference import Digest
from txregistry.registry import IRepository
from txregistry.ui import format

#: The largest image config read: it is shown, so it is read whole.
MAX_CONFIG = 1024 * 1024


@attrs.frozen
class Image:
    """
    A manifest as shown: C{document} its parsed JSON (an empty mapping for
    what is no JSON object), C{config} the image config it names, when it
    is one (C{{}} if that could not be read).
    """

    digest: Digest
    mediaType: str
    document: dict[str, Any]
    config: dict[str, Any]

    @property
    def isIndex(self) -> bool:
        return self.mediaType in INDEXES or "manifests" in self.document

    @property
    def children(self) -> list[dict[str, Any]]:
        return descriptors(self.document.get("manifests"))

    @property
    def layers(self) -> list[dict[str, Any]]:
        return descriptors(self.document.get("layers"))

    @property
    def platforms(self) -> list[str]:
        if self.isIndex:
            return [format.platform(child.get("platform")) for child in self.children]
        return [format.platform(self.config)] if self.config else []

    @property
    def size(self) -> int | None:
        """
        The compressed size of an image (its config and layers); C{None}
        for an index, whose children each have their own.
        """
        if self.isIndex:
            return None
        described = [*descriptors([self.document.get("config")]), *self.layers]
        return sum(d["size"] for d in described if isinstance(d.get("size"), int))

    @property
    def created(self) -> str:
        return format.date(self.config.get("created"))


def descriptors(value: Any) -> list[dict[str, Any]]:
    """
    The descriptors in a list, skipping whatever is not one.
    """
    if not isinstance(value, list):
        return []
    return [d for d in value if isinstance(d, dict) and isinstance(d.get("digest"), str)]


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def image(repository: IRepository, reference: str) -> Image:
    """
    The manifest C{reference} names, and for an image its config.
    """
    source = await repository.manifest(reference)
    document = _json(source.content or b"")
    config: dict[str, Any] = {}
    found = Image(source.digest, source.mediaType, document, config)
    if not found.isIndex:
        described = mapping(document.get("config"))
        digest = described.get("digest")
        if isinstance(digest, str):
            config = await readConfig(repository, digest)
    return attrs.evolve(found, config=config)


async def readConfig(repository: IRepository, digest: str) -> dict[str, Any]:
    """
    An image config, through the contract's L{BlobSource}; C{{}} for one
    that is not there, too large, or no JSON object.
    """
    try:
        source = await repository.blob(Digest.parse(digest))
    except RegistryError:
        return {}
    if source.open is None or source.size is None or source.size > MAX_CONFIG:
        return {}
    reader = await source.open(0)
    chunks, total = [], 0
    try:
        while total <= MAX_CONFIG:
            chunk = await reader.read(64 * 1024)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        reader.close()
    return {} if total > MAX_CONFIG else _json(b"".join(chunks))


def _json(content: bytes) -> dict[str, Any]:
    try:
        return mapping(json.loads(content))
    except (ValueError, RecursionError):
        return {}
