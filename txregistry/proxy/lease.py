"""
Leases on blobs being fetched from upstream, kept in the store the
instances of a fleet share (L{txregistry.registry.leases}): the first
instance to miss a blob takes the lease on its digest and fetches it; the
others read from the lease where to stream the download from.
"""

from txregistry.registry.leases import Holder, Lease, Leases

__all__ = ["Holder", "Lease", "Leases"]
