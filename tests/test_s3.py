"""
The S3 driver where S3 is not where it should be: an endpoint that
redirects, a host name that does not resolve; copies made of parts; and
how S3's XML answers are read.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from xml.parsers.expat import ExpatError

import pytest
import pytest_twisted
from botocore.credentials import Credentials
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

import txregistry
from tests.helpers import ReactorWithoutDNS, serving
from tests.s3server import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, SeaweedFS
from tests.test_drivers import failsWith
from txregistry.pump import Pump
from txregistry.reference import Digest
from txregistry.registry import Registry
from txregistry.storage import PathNotFound, StorageUnavailable, layout
from txregistry.storage.s3 import MultipartUpload, S3Driver
from txregistry.storage.s3client import Endpoint, S3Client, S3Error, findAll, findText, parseXML

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)


class Answering(Resource):
    """
    A web server that counts the requests it is sent, and answers them
    all with C{code}, and a Location if given one.
    """

    isLeaf = True

    def __init__(self, code: int, location: str | None = None) -> None:
        super().__init__()
        self.code = code
        self.location = location
        self.requests = 0

    def render(self, request: Request) -> bytes:
        self.requests += 1
        request.setResponseCode(self.code)
        if self.location is not None:
            request.setHeader("Location", self.location + request.uri.decode())
        return b"content from elsewhere"


@asynccontextmanager
async def listening(resource: Resource) -> AsyncIterator[str]:
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(resource))
    try:
        yield f"http://127.0.0.1:{port.getHost().port}"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_s3_redirect_is_unavailability_and_not_followed() -> None:
    elsewhere = Answering(200)
    async with listening(elsewhere) as elsewhereURL:
        async with listening(Answering(307, elsewhereURL)) as s3URL:
            client = S3Client(Endpoint(s3URL, BUCKET, pathStyle=True), REGION, CREDENTIALS, retries=1)
            driver = S3Driver(client, "/redirected")
            try:
                for attempt in (driver.getContent("/file"), driver.stat("/file")):
                    error = await failsWith(attempt, StorageUnavailable)
                    assert "307" in str(error), error
                    assert f"{elsewhereURL}/{BUCKET}/redirected/file" in str(error), error
                # A redirect does not pass: asked once, not again.
                assert dict(client.requests) == {"GET": 1, "HEAD": 1}
            finally:
                await client.close()
    assert elsewhere.requests == 0


def unresolvable() -> S3Client:
    endpoint = Endpoint("http://nosuch.invalid:9000", BUCKET, pathStyle=True)
    return S3Client(endpoint, REGION, CREDENTIALS, retries=1, reactor=ReactorWithoutDNS())


@pytest_twisted.ensureDeferred
async def test_s3_host_that_does_not_resolve_is_unavailability() -> None:
    client = unresolvable()
    driver = S3Driver(client, "/nowhere")
    try:
        for attempt in (driver.getContent("/file"), driver.checkHealth()):
            error = await failsWith(attempt, StorageUnavailable)
            assert str(error) == "S3 endpoint nosuch.invalid cannot be resolved"
        # Tried again, as a refused connection is.
        assert client.requests["GET"] == 4
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_registry_on_s3_host_that_does_not_resolve_answers_unavailable() -> None:
    client = unresolvable()
    config = txregistry.parseConfig("version: 0.1\nstorage:\n  inmemory:\n", environ={})
    site = txregistry.site(config, Registry(S3Driver(client, "/nowhere")))
    try:
        async with serving(None, site) as http:
            response = await http.request("GET", f"/v2/some/name/blobs/sha256:{'0' * 64}")
            assert response.code == 503, response
            assert response.errorCode() == "UNAVAILABLE"
            assert "nosuch.invalid cannot be resolved" in response.json()["errors"][0]["message"]
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_move_copies_a_large_file_in_parts(seaweedfs: SeaweedFS) -> None:
    client = S3Client(Endpoint(seaweedfs.endpoint, BUCKET, pathStyle=True), REGION, CREDENTIALS)
    part = 5 * 1024 * 1024
    driver = S3Driver(
        client,
        f"/tests/{uuid.uuid4()}",
        multipartCopyThreshold=part,
        multipartCopyChunkSize=part,
        multipartCopyConcurrency=2,
    )
    try:
        content = os.urandom(2 * part + 12345)
        await driver.putContent("/from", content)
        before = client.requests["PUT"]
        await driver.move("/from", "/to")
        # Three parts copied within S3.
        assert client.requests["PUT"] - before == 3
        assert await driver.getContent("/to") == content
        await failsWith(driver.getContent("/from"), PathNotFound)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_a_copy_whose_part_fails_leaves_no_upload(seaweedfs: SeaweedFS) -> None:
    client = S3Client(Endpoint(seaweedfs.endpoint, BUCKET, pathStyle=True), REGION, CREDENTIALS)
    part = 5 * 1024 * 1024
    root = f"/tests/{uuid.uuid4()}"
    driver = S3Driver(client, root, multipartCopyThreshold=part, multipartCopyChunkSize=part)
    try:
        # The source is gone by the time its parts are copied, as when
        # another instance removed it between the look and the copy.
        with pytest.raises(S3Error):
            await driver._copy("/gone", "/to", 2 * part)
        assert await MultipartUpload.latest(client, driver.key("/to")) is None
        await failsWith(driver.stat("/to"), PathNotFound)
    finally:
        await client.close()


def bodyOf(data: bytes, broken: bool = False) -> Pump:
    """
    A body that has all of C{data} and then ends, or breaks off.
    """
    pump = Pump(limit=len(data))
    pump.received(data)
    if broken:
        pump.fail(Failure(ConnectionLost("cut off")))
    else:
        pump.end()
    return pump


@pytest_twisted.ensureDeferred
async def test_uploads_that_end_leave_no_multipart_upload(seaweedfs: SeaweedFS) -> None:
    client = S3Client(Endpoint(seaweedfs.endpoint, BUCKET, pathStyle=True), REGION, CREDENTIALS)
    part = 5 * 1024 * 1024
    driver = S3Driver(client, f"/tests/{uuid.uuid4()}", chunkSize=part)
    uploads = Registry(driver).uploads
    try:
        # Cancelled, with a part in S3 already: parts are in no listing.
        cancelled = await uploads.start("team/app")
        await uploads.append("team/app", cancelled.uuid, bodyOf(os.urandom(part + 1000)))
        key = driver.key(layout.uploadData("team/app", cancelled.uuid))
        assert await MultipartUpload.latest(client, key) is not None
        await uploads.cancel("team/app", cancelled.uuid)
        assert await MultipartUpload.latest(client, key) is None

        # A whole blob whose body broke off after a part had gone to S3.
        broken = await uploads.start("team/app")
        data = os.urandom(2 * part)
        with pytest.raises(ConnectionLost):
            await uploads.receive("team/app", broken.uuid, Digest.of(data), bodyOf(data, broken=True))
        key = driver.key(layout.uploadData("team/app", broken.uuid))
        assert await MultipartUpload.latest(client, key) is None
        await failsWith(driver.stat(layout.upload("team/app", broken.uuid)), PathNotFound)
    finally:
        await client.close()


def test_answers_read_with_or_without_a_namespace() -> None:
    """
    Elements are found by their names whether the server puts them in S3's
    namespace or in none, and text that comes in pieces is whole.
    """
    for namespace in (' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', ""):
        root = parseXML(
            f"<ListBucketResult{namespace}><IsTruncated>false</IsTruncated>"
            "<Contents><Key>a/b&amp;c</Key></Contents><Contents><Key>d</Key></Contents>"
            "<CommonPrefixes><Prefix>e/</Prefix></CommonPrefixes></ListBucketResult>".encode()
        )
        assert root.tag == "ListBucketResult"
        assert [findText(c, "Key") for c in findAll(root, "Contents")] == ["a/b&c", "d"]
        assert findText(root, "CommonPrefixes/Prefix") == "e/"
        assert findText(root, "NextContinuationToken") == ""


def test_answers_with_a_document_type_are_refused() -> None:
    """
    S3 sends no document type: one that declares entities (a "billion
    laughs") is refused, not expanded; what is not XML is refused too.
    """
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<Error><Code>&lol2;</Code></Error>"
    )
    for content in (laughs, b"", b"<Error><Code>", b"not xml"):
        with pytest.raises(ExpatError):
            parseXML(content)
