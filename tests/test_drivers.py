"""
The storage driver contract, which every driver must pass.
"""

import os
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from botocore.credentials import Credentials
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IConsumer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.s3server import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, SeaweedFS
from txregistry.storage import (
    FilesystemDriver,
    IFileWriter,
    IReader,
    IStorageDriver,
    MemoryDriver,
    PathNotFound,
    StorageUnavailable,
)
from txregistry.storage.s3 import S3Driver
from txregistry.storage.s3client import Endpoint, S3Client
from txregistry.storage.streams import consume, hashReader, streamTo


@pytest_twisted.async_yield_fixture(params=["filesystem", "inmemory", "s3"])
async def driver(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[IStorageDriver]:
    if request.param == "filesystem":
        yield FilesystemDriver(os.path.join(str(tmp_path), "root"))
    elif request.param == "inmemory":
        yield MemoryDriver()
    else:
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        client = S3Client(
            Endpoint(server.endpoint, BUCKET, pathStyle=True), REGION, Credentials(ACCESS_KEY, SECRET_KEY)
        )
        # Each test in a root of its own in the one bucket.
        # Small listing pages, so that listings go through several.
        yield S3Driver(client, f"/tests/{uuid.uuid4()}", chunkSize=5 * 1024 * 1024, listPageSize=5)
        await client.close()


async def readAll(driver: IStorageDriver, path: str, offset: int = 0) -> bytes:
    chunks: list[bytes] = []
    await consume(await driver.reader(path, offset), chunks.append)
    return b"".join(chunks)


async def failsWith(d: Deferred, kind: type) -> BaseException:
    try:
        await d
    except kind as e:
        return e
    raise AssertionError(f"did not fail with {kind.__name__}")


def test_provides_interface(driver: IStorageDriver) -> None:
    assert verifyObject(IStorageDriver, driver)


@pytest_twisted.ensureDeferred
async def test_healthy(driver: IStorageDriver) -> None:
    """
    A driver that works passes its health check. (An in-memory driver
    cannot be unhealthy; an S3 one on a bucket that does not exist is, in
    L{test_s3_refusals_are_unavailability}.)
    """
    await driver.putContent("/something", b"x")
    assert await driver.checkHealth() is None


@pytest_twisted.ensureDeferred
async def test_filesystem_without_its_root_is_unhealthy(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "root")
    driver = FilesystemDriver(root)
    await driver.putContent("/something", b"x")
    shutil.rmtree(root)
    missing = await failsWith(driver.checkHealth(), StorageUnavailable)
    assert str(missing) == "/: No such file or directory"
    with open(root, "w") as f:
        f.write("a file where the root was")
    notDirectory = await failsWith(driver.checkHealth(), StorageUnavailable)
    # Only the storage path: the root's own is the server's business.
    assert str(notDirectory) == "/: the storage root is not a directory"
    os.remove(root)
    await driver.putContent("/something", b"x")
    assert await driver.checkHealth() is None


@pytest_twisted.ensureDeferred
async def test_unreachable_s3_is_unhealthy_and_unavailable() -> None:
    from tests.helpers import freePort

    endpoint = Endpoint(f"http://127.0.0.1:{freePort()}", BUCKET, pathStyle=True)
    client = S3Client(endpoint, REGION, Credentials(ACCESS_KEY, SECRET_KEY), retries=1)
    driver = S3Driver(client, "/nowhere")
    try:
        await failsWith(driver.checkHealth(), StorageUnavailable)
        await failsWith(driver.getContent("/file"), StorageUnavailable)
        await failsWith(driver.putContent("/file", b"x"), StorageUnavailable)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_put_and_get_content(driver: IStorageDriver) -> None:
    await driver.putContent("/a/b/c", b"first")
    assert await driver.getContent("/a/b/c") == b"first"
    await driver.putContent("/a/b/c", b"second, longer")
    assert await driver.getContent("/a/b/c") == b"second, longer"
    await driver.putContent("/a/b/c", b"")
    assert await driver.getContent("/a/b/c") == b""


@pytest_twisted.ensureDeferred
async def test_missing_paths(driver: IStorageDriver) -> None:
    for call in (
        lambda: driver.getContent("/missing"),
        lambda: driver.reader("/missing"),
        lambda: driver.stat("/missing"),
        lambda: driver.list("/missing"),
        lambda: driver.delete("/missing"),
        lambda: driver.move("/missing", "/elsewhere"),
    ):
        error = await failsWith(call(), PathNotFound)
        assert error.path == "/missing"


@pytest_twisted.ensureDeferred
async def test_stat(driver: IStorageDriver) -> None:
    await driver.putContent("/dir/file", b"12345")
    info = await driver.stat("/dir/file")
    assert (info.path, info.size, info.isDirectory) == ("/dir/file", 5, False)
    assert info.modified > 0
    directory = await driver.stat("/dir")
    assert directory.isDirectory


@pytest_twisted.ensureDeferred
async def test_list(driver: IStorageDriver) -> None:
    for path in ("/top/a", "/top/b/one", "/top/b/two", "/top/c/deep/er", "/other/x"):
        await driver.putContent(path, b"x")
    assert sorted(await driver.list("/top")) == ["/top/a", "/top/b", "/top/c"]
    assert sorted(await driver.list("/top/")) == ["/top/a", "/top/b", "/top/c"]
    assert sorted(await driver.list("/top/b")) == ["/top/b/one", "/top/b/two"]


@pytest_twisted.ensureDeferred
async def test_list_many(driver: IStorageDriver) -> None:
    names = [f"/many/tag-{i:02d}" for i in range(13)] + [f"/many/dir-{i}/file" for i in range(4)]
    for path in names:
        await driver.putContent(path, b"x")
    expected = sorted({"/many/" + path.split("/")[2] for path in names})
    assert sorted(await driver.list("/many")) == expected
    await driver.delete("/many")
    await failsWith(driver.list("/many"), PathNotFound)


@pytest_twisted.ensureDeferred
async def test_reader_from_offset(driver: IStorageDriver) -> None:
    content = os.urandom(700_000)
    await driver.putContent("/blob", content)
    assert await readAll(driver, "/blob") == content
    assert await readAll(driver, "/blob", 123_456) == content[123_456:]
    assert await readAll(driver, "/blob", len(content)) == b""
    reader = await driver.reader("/blob", 10)
    assert verifyObject(IReader, reader)
    assert await reader.read(5) == content[10:15]
    reader.close()


@pytest_twisted.ensureDeferred
async def test_writer(driver: IStorageDriver) -> None:
    writer = await driver.writer("/upload/data")
    assert verifyObject(IFileWriter, writer)
    await writer.write(b"hello ")
    await writer.write(b"world")
    assert writer.size == 11
    await writer.close()

    # What was closed is appended to; what is committed is read.
    appender = await driver.writer("/upload/data", append=True)
    assert appender.size == 11
    await appender.write(b"!")
    await appender.commit()
    assert await driver.getContent("/upload/data") == b"hello world!"
    assert (await driver.stat("/upload/data")).size == 12

    again = await driver.writer("/upload/data", append=False)
    assert again.size == 0
    await again.write(b"new")
    await again.commit()
    assert await driver.getContent("/upload/data") == b"new"


@pytest_twisted.ensureDeferred
async def test_writer_appends_across_many_parts(driver: IStorageDriver) -> None:
    """
    Chunks of every size, each written by a writer of its own: small ones,
    ones that fill several S3 parts, ones that end in a small last part.
    """
    content = os.urandom(23 * 1024 * 1024)
    cuts = [0, 1000, 3 * 1024 * 1024, 9 * 1024 * 1024, 9 * 1024 * 1024 + 7, 21 * 1024 * 1024, len(content)]
    for start, end in zip(cuts, cuts[1:], strict=False):
        writer = await driver.writer("/big/data", append=True)
        assert writer.size == start
        for offset in range(start, end, 1024 * 1024):
            await writer.write(content[offset : min(offset + 1024 * 1024, end)])
        await writer.close()
    writer = await driver.writer("/big/data", append=True)
    assert writer.size == len(content)
    await writer.commit()
    assert await readAll(driver, "/big/data") == content


@pytest_twisted.ensureDeferred
async def test_writer_cancel(driver: IStorageDriver) -> None:
    writer = await driver.writer("/upload/data")
    await writer.write(b"doomed")
    await writer.cancel()
    await failsWith(driver.stat("/upload/data"), PathNotFound)


@pytest_twisted.ensureDeferred
async def test_appending_to_nothing_creates_nothing_until_written(driver: IStorageDriver) -> None:
    writer = await driver.writer("/upload/data", append=True)
    assert (writer.path, writer.size) == ("/upload/data", 0)
    await writer.close()
    await failsWith(driver.stat("/upload/data"), PathNotFound)
    writer = await driver.writer("/upload/data", append=True)
    await writer.write(b"now")
    await writer.close()
    again = await driver.writer("/upload/data", append=True)
    assert again.size == 3
    await again.close()


@pytest_twisted.ensureDeferred
async def test_empty_file_from_writer(driver: IStorageDriver) -> None:
    writer = await driver.writer("/empty", append=True)
    await writer.commit()
    assert await driver.getContent("/empty") == b""


@pytest_twisted.ensureDeferred
async def test_move(driver: IStorageDriver) -> None:
    await driver.putContent("/from/file", b"moving")
    await driver.putContent("/to/file", b"replaced")
    await driver.move("/from/file", "/to/file")
    assert await driver.getContent("/to/file") == b"moving"
    await failsWith(driver.getContent("/from/file"), PathNotFound)
    await driver.move("/to/file", "/new/parent/file")
    assert await driver.getContent("/new/parent/file") == b"moving"


@pytest_twisted.ensureDeferred
async def test_delete_tree(driver: IStorageDriver) -> None:
    for path in ("/tree/a", "/tree/b/c", "/treehouse/keep"):
        await driver.putContent(path, b"x")
    await driver.delete("/tree")
    await failsWith(driver.stat("/tree"), PathNotFound)
    await failsWith(driver.getContent("/tree/b/c"), PathNotFound)
    assert await driver.getContent("/treehouse/keep") == b"x"
    await driver.delete("/treehouse/keep")
    await failsWith(driver.getContent("/treehouse/keep"), PathNotFound)


@implementer(IConsumer)
class SlowConsumer:
    """
    Pauses its producer after every write, and resumes it a turn later.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.producer = None
        self.pauses = 0

    def registerProducer(self, producer: object, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        from twisted.internet import reactor

        self.received.append(data)
        self.pauses += 1
        self.producer.pauseProducing()
        reactor.callLater(0, self.producer.resumeProducing)


@pytest_twisted.ensureDeferred
async def test_stream_to_consumer_with_pauses(driver: IStorageDriver) -> None:
    content = os.urandom(2_000_000)
    await driver.putContent("/blob", content)
    consumer = SlowConsumer()
    await streamTo(await driver.reader("/blob", 1000), consumer, 1_500_000)
    assert b"".join(consumer.received) == content[1000:1_501_000]
    assert consumer.pauses > 1
    assert consumer.producer is None


@pytest_twisted.ensureDeferred
async def test_hash_reader(driver: IStorageDriver) -> None:
    import hashlib

    content = os.urandom(1_000_001)
    await driver.putContent("/blob", content)
    hasher = await hashReader(await driver.reader("/blob"), "sha512")
    assert hasher.hexdigest() == hashlib.sha512(content).hexdigest()


@pytest_twisted.ensureDeferred
async def test_paths_cannot_escape(tmp_path: object) -> None:
    driver = FilesystemDriver(os.path.join(str(tmp_path), "root"))
    for path in ("relative", "/a/../../etc/passwd", "/a/.."):
        with pytest.raises(ValueError):
            await driver.getContent(path)


@pytest_twisted.ensureDeferred
async def test_s3_that_never_answers_times_out() -> None:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.internet.protocol import Factory, Protocol

    # Accepts connections and reads requests, and never says a word.
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Protocol))
    endpoint = Endpoint(f"http://127.0.0.1:{port.getHost().port}", BUCKET, pathStyle=True)
    client = S3Client(endpoint, REGION, Credentials(ACCESS_KEY, SECRET_KEY), retries=1, timeout=0.5)
    try:
        await failsWith(S3Driver(client, "/silent").getContent("/file"), StorageUnavailable)
        assert client.requests["GET"] == 2
    finally:
        await client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_s3_refusals_are_unavailability(seaweedfs: SeaweedFS) -> None:
    wrongKeys = S3Client(
        Endpoint(seaweedfs.endpoint, BUCKET, pathStyle=True), REGION, Credentials(ACCESS_KEY, "wrong secret")
    )
    noBucket = S3Client(
        Endpoint(seaweedfs.endpoint, "no-such-bucket", pathStyle=True),
        REGION,
        Credentials(ACCESS_KEY, SECRET_KEY),
    )
    try:
        for client, code in ((wrongKeys, "SignatureDoesNotMatch"), (noBucket, "NoSuchBucket")):
            driver = S3Driver(client, "/refused")
            for attempt in (driver.getContent("/file"), driver.stat("/file"), driver.checkHealth()):
                error = await failsWith(attempt, StorageUnavailable)
                assert code in str(error) or "403" in str(error) or "404" in str(error), error
    finally:
        await wrongKeys.close()
        await noBucket.close()


@pytest_twisted.ensureDeferred
async def test_looking_at_a_file_being_written_changes_nothing(driver: IStorageDriver) -> None:
    first = os.urandom(6 * 1024 * 1024)
    writer = await driver.writer("/upload/data", append=True)
    await writer.write(first)
    await writer.close()
    client = getattr(driver, "client", None)
    before = dict(client.requests) if client is not None else {}
    for _ in range(2):
        looking = await driver.writer("/upload/data", append=True)
        assert looking.size == len(first)
        await looking.close()
    if client is not None:
        changes = {
            m: n - before.get(m, 0) for m, n in client.requests.items() if m in ("PUT", "POST", "DELETE")
        }
        assert not any(changes.values()), changes
    writer = await driver.writer("/upload/data", append=True)
    await writer.write(b"more")
    await writer.commit()
    assert await readAll(driver, "/upload/data") == first + b"more"


@pytest_twisted.ensureDeferred
async def test_s3_credentials_refresh_off_the_reactor(seaweedfs: SeaweedFS) -> None:
    import threading
    from datetime import datetime, timedelta, timezone

    from botocore.credentials import RefreshableCredentials

    refreshedIn = []

    def refresh() -> dict[str, str]:
        # What botocore does for an instance profile: ask over the network.
        refreshedIn.append(threading.current_thread())
        expiry = datetime.now(timezone.utc) + timedelta(hours=1)
        return {
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "token": "",
            "expiry_time": expiry.isoformat(),
        }

    expired = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    credentials = RefreshableCredentials.create_from_metadata(
        {"access_key": "stale", "secret_key": "stale", "token": "", "expiry_time": expired}, refresh, "test"
    )
    client = S3Client(Endpoint(seaweedfs.endpoint, BUCKET, pathStyle=True), REGION, credentials)
    try:
        driver = S3Driver(client, f"/tests/{uuid.uuid4()}")
        await driver.putContent("/file", b"signed with refreshed keys")
        assert await driver.getContent("/file") == b"signed with refreshed keys"
        assert refreshedIn and threading.main_thread() not in refreshedIn
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_exclusive_create(driver: IStorageDriver) -> None:
    path = "/a/lease"
    assert await driver.createExclusive(path, b"first")
    assert not await driver.createExclusive(path, b"second")
    assert await driver.getContent(path) == b"first"
    await driver.delete(path)
    # Of many at once, exactly one.
    results = await DeferredList([driver.createExclusive(path, b"%d" % i) for i in range(8)])
    won = [i for i, (ok, created) in enumerate(results) if ok and created]
    assert len(won) == 1
    assert await driver.getContent(path) == b"%d" % won[0]
    # Nothing else beside it (no temporaries left).
    assert await driver.list("/a") == [path]
