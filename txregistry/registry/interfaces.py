"""
The registry contract: what the web layer serves, whoever provides it.

A L{Registry} provides it over storage; the pull-through cache provides it
by wrapping a L{Registry}, deciding for itself which repositories come
from which upstream. The web layer knows only these interfaces, so no
endpoint can tell whether it serves a cache.

Every method that looks something up fails with a
L{txregistry.errors.RegistryError} that says what the client is told
(C{BLOB_UNKNOWN}, C{MANIFEST_UNKNOWN}, C{UNSUPPORTED}, ...), or with
L{txregistry.storage.StorageUnavailable} when storage cannot be reached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
from zope.interface import Attribute, Interface

from txregistry.reference import Digest
from txregistry.storage import IReader

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from txregistry.manifest import Descriptor, Manifest


class IBody(Interface):
    """
    Bytes arriving from somewhere (a request body, an upstream's
    response), delivered at the pace of whoever takes them.
    """

    def deliver(sink: Callable[[bytes], Deferred[None]]) -> Deferred[int]:
        """
        Call C{sink} with each chunk, waiting for its Deferred before taking
        in more. Fires with the number of bytes delivered once the body has
        ended; fails if it was cut short.
        """


@attrs.frozen
class BlobSource:
    """
    A blob to answer with: its size (C{None} while an upstream that did not
    say is still sending it), where storage would send a client instead,
    and how to read it from an offset (C{None} for a C{HEAD} answered
    without content at hand).
    """

    digest: Digest
    size: int | None
    open: Callable[[int], Awaitable[IReader]] | None = None
    redirect: str | None = None


@attrs.frozen
class ManifestSource:
    """
    A manifest to answer with: its content, or for a C{HEAD} answered
    without fetching it, only what describes it.
    """

    digest: Digest
    mediaType: str
    size: int
    content: bytes | None


@attrs.frozen
class Listing:
    """
    A page of a listing (the catalog, a repository's tags): its names in the
    listing's order, whether more follow, and how many the whole listing
    has where that is known without reading more of it (a repository's
    tags: one directory).
    """

    names: list[str]
    more: bool
    total: int | None = None

    @classmethod
    def of(cls, every: list[str], after: str | None = None, limit: int | None = None) -> Listing:
        """
        The page of C{every} (sorted) that follows C{after}, C{limit} names
        at most.
        """
        following = every if not after else [name for name in every if name > after]
        page = following if limit is None else following[:limit]
        return cls(page, len(following) > len(page), len(every))


@attrs.frozen
class RepositorySummary:
    """
    What a repository's last push left on record: when it was (seconds
    since the epoch, by the store's clock) and the size of the image pushed
    (its distinct blobs, configs and layers; an index's, those of all its
    manifests). Both are C{None}
    where there is no record: a repository not pushed to since the record
    was kept (or by registry:2), or a cache's.
    """

    lastPush: float | None = None
    size: int | None = None


@attrs.frozen
class UploadStatus:
    uuid: str
    size: int


class IRepository(Interface):
    """
    One repository, as a client sees it. The web layer calls L{checkWritable}
    before every request that would change something; the methods that
    change things check again, and those that delete check
    L{checkDeletable}.
    """

    name = Attribute("The repository's name, as the client gave it.")

    def checkWritable() -> None:
        """
        Raise the L{RegistryError} a push to this repository gets
        (C{UNSUPPORTED}: read-only, or a cache's), or return.
        """

    def checkDeletable() -> None:
        """
        Like L{checkWritable}, for deletes (which may be disabled).
        """

    def blob(digest: Digest, head: bool = False) -> Awaitable[BlobSource]:
        """
        A blob of the repository. C{head} says the client wants no content,
        so none need be fetched.
        """

    def deleteBlob(digest: Digest) -> Awaitable[None]:
        """
        Unlink a blob from the repository.
        """

    def mount(digest: Digest, source: str) -> Awaitable[int | None]:
        """
        Link a blob that repository C{source} has into this one; its size,
        or C{None} when C{source} does not have it.
        """

    def manifest(reference: str, head: bool = False) -> Awaitable[ManifestSource]:
        """
        The manifest a tag or digest names. A reference that is neither
        is C{MANIFEST_UNKNOWN}, as for any name not there.
        """

    def putManifest(reference: str, content: bytes, contentType: str | None) -> Awaitable[Manifest]:
        """
        Store a manifest under a tag or its digest, once it is valid and
        everything it references is here (C{TAG_INVALID} for a reference
        that is neither).
        """

    def deleteManifest(reference: str) -> Awaitable[list[str]]:
        """
        Delete a tag, or a manifest with every tag pointing at it: the tags
        deleted.
        """

    def tags() -> Awaitable[list[str]]:
        """
        Every tag, sorted.
        """

    def tagPage(after: str | None = None, limit: int | None = None) -> Awaitable[Listing]:
        """
        The tags after C{after} (every one if not given), sorted, C{limit}
        at most, with how many there are in all. Only what the page holds
        is read, beyond the one listing of the tags.
        """

    def referrers(subject: Digest, artifactType: str | None) -> Awaitable[list[Descriptor]]:
        """
        The manifests that name C{subject} as theirs, filtered by
        C{artifactType} if given.
        """

    def summary() -> Awaitable[RepositorySummary]:
        """
        The record of the last push, read at a constant cost (never by
        looking at each tag or blob) and changing nothing.
        """

    def pushBlob(digest: Digest, body: IBody) -> Awaitable[int]:
        """
        A whole blob in one request (a monolithic upload), verified against
        C{digest}; its size. Nothing of it is left if it fails.
        """

    def startUpload() -> Awaitable[UploadStatus]:
        """
        A new, empty blob upload.
        """

    def uploadStatus(uuid: str) -> Awaitable[UploadStatus]:
        """
        How much an upload holds.
        """

    def appendUpload(uuid: str, body: IBody, start: int | None) -> Awaitable[UploadStatus]:
        """
        Add a chunk, which starts at C{start} if the client said so.
        """

    def finishUpload(uuid: str, digest: Digest, body: IBody | None, start: int | None) -> Awaitable[int]:
        """
        Add the last chunk, if any, verify the whole against C{digest} and
        make it a blob of the repository; its size.
        """

    def cancelUpload(uuid: str) -> Awaitable[None]:
        """
        Throw an upload away.
        """


class IRegistry(Interface):
    """
    A registry, as its clients see it.
    """

    def repository(name: str, namespace: str | None = None) -> IRepository:
        """
        The repository C{name} (already checked against the name grammar).
        C{namespace} is the registry the client means it from, where it
        says (containerd's C{?ns=}); a registry that serves one namespace
        ignores it.
        """

    def catalog(after: str | None = None, limit: int | None = None) -> Awaitable[Listing]:
        """
        The names of the repositories after C{after} (every one if not
        given), C{limit} at most, in registry:2's catalog order: compared a
        path component at a time, so that C{a/b} comes between C{a} and
        C{a-b}. A page costs storage in proportion to itself and the depth
        of the names, never to the whole store.
        """
