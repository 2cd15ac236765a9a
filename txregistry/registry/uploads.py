"""
Blob uploads: bytes streamed into a file of their own, hashed on the way,
and moved into the blob store only once their digest is verified.

The hash of what an upload holds so far is kept in memory, but only as a
shortcut: when this process has none for an upload (it was restarted, or
another instance wrote to the upload) or the one it has no longer matches
the stored size, the hash is computed again from storage.
"""

from __future__ import annotations

import hashlib
import re
import uuid as uuidlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredLock

from txregistry.errors import RegistryError
from txregistry.logging import logger
from txregistry.reference import Digest
from txregistry.registry.blobs import Blobs
from txregistry.registry.cache import ContentCache
from txregistry.registry.interfaces import IBody, UploadStatus
from txregistry.registry.links import deleteIfPresent, exists
from txregistry.registry.uses import UseRecord
from txregistry.storage import IFileWriter, IStorageDriver, PathNotFound, layout
from txregistry.storage.streams import hashReader

log = logger(__name__)

# registry:2 names uploads with UUIDs; anything else we are handed must at
# least be one safe path component.
_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,127}")


def checkUUID(uuid: str) -> str:
    if _UUID.fullmatch(uuid) is None or ".." in uuid:
        raise RegistryError.uploadUnknown(uuid)
    return uuid


@attrs.define
class _Progress:
    name: str
    size: int
    hasher: Any


def _rangeInvalid(size: int) -> RegistryError:
    return RegistryError(
        "RANGE_INVALID",
        f"the upload holds {size} bytes: the next chunk must start at byte {size}",
        {"size": size},
        headers={"Range": f"0-{max(size - 1, 0)}"},
    )


async def _createUpload(driver: IStorageDriver, name: str) -> str:
    """
    A new upload area in repository C{name}, with the time it was started
    (for purging, as registry:2 keeps it); its UUID.
    """
    uuid = str(uuidlib.uuid4())
    startedAt = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    await driver.putContent(layout.uploadStartedAt(name, uuid), startedAt.encode())
    return uuid


async def _publishUpload(driver: IStorageDriver, name: str, uuid: str, digest: Digest) -> None:
    """
    Make an upload's committed and verified data blob C{digest} in the
    blob store, and remove the upload. Linking it into a repository is the
    caller's to do.
    """
    if await exists(driver, layout.blobData(digest)):
        await driver.delete(layout.upload(name, uuid))
    else:
        await driver.move(layout.uploadData(name, uuid), layout.blobData(digest))
        await deleteIfPresent(driver, layout.upload(name, uuid))


#: Uploads whose hash so far an instance keeps in memory.
PROGRESS_ENTRIES = 10_000


class Uploads:
    """
    Every upload of a registry, in all its repositories.
    """

    def __init__(self, driver: IStorageDriver, uses: UseRecord | None = None) -> None:
        self.driver = driver
        self.uses = uses
        # Only a shortcut (see the module's docstring), so bounded: an
        # upload whose progress was dropped is hashed again from storage.
        self._progress: ContentCache[str, _Progress] = ContentCache(PROGRESS_ENTRIES)
        self._locks: dict[str, DeferredLock] = {}

    @property
    def inProgress(self) -> int:
        """
        How many uploads a request is writing to, finishing or cancelling.
        """
        return len(self._locks)

    async def _locked(self, uuid: str, work: Callable[[], Any]) -> Any:
        lock = self._locks.setdefault(uuid, DeferredLock())
        await lock.acquire()
        try:
            return await work()
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(uuid, None)

    async def start(self, name: str) -> UploadStatus:
        uuid = await _createUpload(self.driver, name)
        self._progress.put(uuid, _Progress(name, 0, hashlib.sha256()), 1)
        return UploadStatus(uuid, 0)

    async def _open(self, name: str, uuid: str) -> IFileWriter:
        """
        The upload's data, opened to append to; C{BLOB_UPLOAD_UNKNOWN} where
        there is no such upload.
        """
        checkUUID(uuid)
        if not await exists(self.driver, layout.uploadStartedAt(name, uuid)):
            self._progress.discard(uuid)
            raise RegistryError.uploadUnknown(uuid)
        return await self.driver.writer(layout.uploadData(name, uuid), append=True)

    async def _hashFromStorage(self, writer: IFileWriter, algorithm: str) -> tuple[Any, IFileWriter]:
        """
        A hash of what the upload holds, read back from storage, and the
        upload opened again to append to. What a writer has written is only
        sure to be readable once committed (an unfinished S3 multipart
        upload cannot be read), so it is committed first.
        """
        await writer.commit()
        dataPath = writer.path
        hasher = await hashReader(await self.driver.reader(dataPath), algorithm)
        return hasher, await self.driver.writer(dataPath, append=True)

    async def _recover(self, name: str, uuid: str) -> tuple[_Progress, IFileWriter]:
        """
        The upload opened to append to, and what it holds: its size, as
        storage says, and a hash of it that is computed again from storage
        unless ours is known to cover exactly that.
        """
        writer = await self._open(name, uuid)
        progress = self._progress.get(uuid)
        if progress is None or progress.name != name or progress.size != writer.size:
            hasher = hashlib.sha256()
            if writer.size:
                log.info("re-hashing {size} bytes of upload {uuid} from storage", size=writer.size, uuid=uuid)
                hasher, writer = await self._hashFromStorage(writer, "sha256")
            progress = _Progress(name, writer.size, hasher)
            self._progress.put(uuid, progress, 1)
        return progress, writer

    async def status(self, name: str, uuid: str) -> UploadStatus:
        writer = await self._open(name, uuid)
        size = writer.size
        await writer.close()
        return UploadStatus(uuid, size)

    async def _write(
        self, uuid: str, progress: _Progress, writer: IFileWriter, body: IBody, start: int | None
    ) -> None:
        if start is not None and start != progress.size:
            raise _rangeInvalid(progress.size)

        def sink(data: bytes) -> Deferred[None]:
            progress.hasher.update(data)
            return writer.write(data)

        try:
            await body.deliver(sink)
        except BaseException:
            # The hash may now cover bytes that never reached storage: let
            # the next request compute it again from what is there.
            self._progress.discard(uuid)
            raise
        progress.size = writer.size

    async def append(self, name: str, uuid: str, body: IBody, start: int | None = None) -> UploadStatus:
        """
        Add a chunk. C{start}, where the client said where its chunk goes,
        must be where the upload ends (C{RANGE_INVALID} otherwise).
        """

        async def append() -> UploadStatus:
            progress, writer = await self._recover(name, uuid)
            try:
                await self._write(uuid, progress, writer, body, start)
            finally:
                await writer.close()
            return UploadStatus(uuid, writer.size)

        checkUUID(uuid)
        result: UploadStatus = await self._locked(uuid, append)
        return result

    async def finish(
        self, name: str, uuid: str, digest: Digest, body: IBody | None = None, start: int | None = None
    ) -> int:
        """
        Add the last chunk, if any, then verify the whole upload against
        C{digest} and make it a blob of the repository. A digest that does
        not match cancels the upload. The blob's size.
        """
        checkUUID(uuid)
        result: int = await self._locked(
            uuid, lambda: self._finish(name, uuid, digest, body, start, abandon=False)
        )
        return result

    async def _finish(
        self,
        name: str,
        uuid: str,
        digest: Digest,
        body: IBody | None,
        start: int | None,
        abandon: bool,
        verified: Callable[[], None] | None = None,
    ) -> int:
        progress, writer = await self._recover(name, uuid)
        if body is not None:
            try:
                await self._write(uuid, progress, writer, body, start)
            except BaseException:
                # A client may carry on an upload it was cut off from; a
                # whole blob that broke off has nobody to carry it on, and
                # what a driver keeps of an unfinished write (S3's multipart
                # upload) is thrown away with the writer alone.
                await (writer.cancel() if abandon else writer.close())
                raise
        if digest.algorithm == "sha256":
            # Hashed on the way in: known to match before it is made durable.
            await self._check(name, uuid, digest, progress.hasher, writer, verified)
        # Durable (and readable) before it is made visible.
        await writer.commit()
        if digest.algorithm != "sha256":
            hasher = await hashReader(await self.driver.reader(writer.path), digest.algorithm)
            await self._check(name, uuid, digest, hasher, None, verified)
        if self.uses is not None:
            # Before publishing looks whether the store has the blob already.
            await self.uses.use(digest)
        await _publishUpload(self.driver, name, uuid, digest)
        await Blobs(self.driver, name).link(digest)
        self._progress.discard(uuid)
        return writer.size

    async def _check(
        self,
        name: str,
        uuid: str,
        digest: Digest,
        hasher: Any,
        writer: IFileWriter | None,
        verified: Callable[[], None] | None,
    ) -> None:
        """
        Cancel the upload (and C{writer}, if still open) unless what
        C{hasher} has seen is C{digest}; else say so to C{verified}.
        """
        actual = hasher.copy().hexdigest()
        if actual != digest.hex:
            if writer is not None:
                # The open writer throws away what it wrote: no second one.
                await writer.cancel()
                self._progress.discard(uuid)
                await deleteIfPresent(self.driver, layout.upload(name, uuid))
            else:
                await self._cancel(name, uuid)
            raise RegistryError(
                "DIGEST_INVALID",
                "the uploaded content does not match the digest given",
                {"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"},
            )
        if verified is not None:
            verified()

    async def receive(
        self, name: str, uuid: str, digest: Digest, body: IBody, verified: Callable[[], None] | None = None
    ) -> int:
        """
        A whole blob from C{body} into upload C{uuid}, just L{start}ed for
        it (so that the caller knows storage takes it before the body
        comes): verified against C{digest} and made a blob of repository
        C{name}, or, if anything fails, gone without a trace. Its size.
        C{verified} is called as soon as the content is known to match its
        digest, before it is durable and visible: whoever streams it on
        meanwhile may then let its last bytes go.
        """
        try:
            result: int = await self._locked(
                uuid, lambda: self._finish(name, uuid, digest, body, None, abandon=True, verified=verified)
            )
            return result
        except BaseException:
            self._progress.discard(uuid)
            await deleteIfPresent(self.driver, layout.upload(name, uuid))
            raise

    async def _cancel(self, name: str, uuid: str) -> None:
        self._progress.discard(uuid)
        if not await exists(self.driver, layout.uploadStartedAt(name, uuid)):
            raise RegistryError.uploadUnknown(uuid)
        # What a driver keeps of an unfinished write (S3's multipart
        # uploads) is in no listing: only a writer can throw it away.
        writer = await self.driver.writer(layout.uploadData(name, uuid), append=True)
        await writer.cancel()
        await deleteIfPresent(self.driver, layout.upload(name, uuid))

    async def cancel(self, name: str, uuid: str) -> None:
        checkUUID(uuid)
        await self._locked(uuid, lambda: self._cancel(name, uuid))

    async def startedAt(self, name: str, uuid: str) -> datetime | None:
        """
        When an upload was started, from its C{startedat} file (or the
        file's own time where its content cannot be read).
        """
        path = layout.uploadStartedAt(name, uuid)
        try:
            text = (await self.driver.getContent(path)).decode("ascii", "replace").strip()
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except PathNotFound:
            return None
        except ValueError:
            info = await self.driver.stat(path)
            return datetime.fromtimestamp(info.modified, timezone.utc)
