"""
The registry's domain: repositories, blobs, uploads, manifests, tags and
referrers, written against the storage interface alone.
"""

from txregistry.registry.purging import UploadPurger, purgeUploads
from txregistry.registry.registry import Registry
from txregistry.registry.uploads import IBody, UploadStatus, createUpload, publishUpload

__all__ = [
    "IBody",
    "Registry",
    "UploadPurger",
    "UploadStatus",
    "createUpload",
    "publishUpload",
    "purgeUploads",
]
