"""
The registry's domain: repositories, blobs, uploads, manifests, tags and
referrers, written against the storage interface alone, and the contract
(L{IRegistry}, L{IRepository}) the web layer serves.
"""

from typing import TYPE_CHECKING, Any

from txregistry.lazy import lazyNames
from txregistry.registry.interfaces import (
    BlobSource,
    IBody,
    IRegistry,
    IRepository,
    Listing,
    ManifestSource,
    RepositorySummary,
    UploadStatus,
)
from txregistry.registry.pulls import Entry, PullRecord
from txregistry.registry.purging import UploadPurger, purgeUploads
from txregistry.registry.registry import Registry
from txregistry.registry.repository import Repository
from txregistry.registry.uses import UseRecord

if TYPE_CHECKING:
    from txregistry.registry.collection import CollectionService, Counters, GarbageCollector, Sweep

# Only with garbage collection: storage.maintenance.gc, or the command.
_names = lazyNames(__name__, {"collection": ("CollectionService", "Counters", "GarbageCollector", "Sweep")})


def __getattr__(name: str) -> Any:
    return _names(name)


__all__ = [
    "BlobSource",
    "Counters",
    "Entry",
    "CollectionService",
    "GarbageCollector",
    "IBody",
    "IRegistry",
    "IRepository",
    "Listing",
    "ManifestSource",
    "PullRecord",
    "Registry",
    "Repository",
    "RepositorySummary",
    "Sweep",
    "UploadPurger",
    "UploadStatus",
    "UseRecord",
    "purgeUploads",
]
