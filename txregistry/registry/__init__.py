"""
The registry's domain: repositories, blobs, uploads, manifests, tags and
referrers, written against the storage interface alone, and the contract
(L{IRegistry}, L{IRepository}) the web layer serves.
"""

from txregistry.registry.collection import CollectionService, Counters, GarbageCollector, Sweep
from txregistry.registry.interfaces import (
    BlobSource,
    IBody,
    IRegistry,
    IRepository,
    ManifestSource,
    UploadStatus,
)
from txregistry.registry.pulls import Entry, PullRecord
from txregistry.registry.purging import UploadPurger, purgeUploads
from txregistry.registry.registry import Registry
from txregistry.registry.repository import Repository
from txregistry.registry.uses import UseRecord

__all__ = [
    "BlobSource",
    "Counters",
    "Entry",
    "CollectionService",
    "GarbageCollector",
    "IBody",
    "IRegistry",
    "IRepository",
    "ManifestSource",
    "PullRecord",
    "Registry",
    "Repository",
    "Sweep",
    "UploadPurger",
    "UploadStatus",
    "UseRecord",
    "purgeUploads",
]
