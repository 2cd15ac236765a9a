"""
Notifications: registry:2's webhook events, told to a receiving server in
the test, field for field as the reference registry tells them; endpoints
that hang, fail or are not there neither slow requests nor lose events
within their queue's bound, and are tried again as C{backoff} says.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import bcrypt
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

import txregistry
from tests.conftest import configFor
from tests.helpers import (
    Client,
    ReferenceRegistry,
    RegistryProcess,
    freePort,
    ociManifest,
    serving,
    sha256,
    withQuery,
)
from txregistry.config import ConfigError
from txregistry.manifest import OCI_MANIFEST
from txregistry.notifications import EVENTS_MEDIA_TYPE, Notifier, notifierOf

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "notifications.yml")


class Receiver(Resource):
    """
    A webhook endpoint: records every delivery; answers 200, 500
    (C{failing}) or never (C{hanging}).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.deliveries: list[tuple[Any, bytes]] = []

    def render_POST(self, request: Request) -> Any:
        assert request.content is not None
        self.deliveries.append((request.requestHeaders, request.content.read()))
        if self.mode == "hanging":
            return NOT_DONE_YET
        request.setResponseCode(500 if self.mode == "failing" else 200)
        return b""

    def events(self) -> list[dict[str, Any]]:
        return [event for _, body in self.deliveries for event in json.loads(body)["events"]]


@asynccontextmanager
async def receiving(port: int = 0) -> AsyncIterator[tuple[Receiver, str]]:
    """
    A L{Receiver} listening on loopback, and its URL.
    """
    receiver = Receiver()
    listening = await TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(Site(receiver))
    try:
        yield receiver, f"http://127.0.0.1:{listening.getHost().port}/hook"
    finally:
        await listening.stopListening()


async def waitFor(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await deferLater(reactor, 0.02, lambda: None)


async def settle(seconds: float = 0.3) -> None:
    await deferLater(reactor, seconds, lambda: None)


def endpointYAML(url: str, **keys: str) -> str:
    lines = ["notifications:", "  endpoints:", "    - name: hook", f"      url: {url}"]
    lines += [f"      {key}: {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def notifying(
    url: str, clock: Clock | None = None, extra: str = "", **keys: str
) -> AsyncIterator[tuple[Client, Notifier]]:
    """
    A registry in memory telling the endpoint at C{url}, its back-off on
    C{clock}.
    """
    config = configFor(None, extra=endpointYAML(url, **keys) + extra)
    notifier = notifierOf(config.notifications, config.http.listen, clock=clock)
    assert notifier is not None
    try:
        async with serving(None, site=txregistry.site(config, notifier=notifier)) as client:
            yield client, notifier
    finally:
        await notifier.stopService()


# --- field for field, as the reference registry ---


class AuthorizedClient(Client):
    def __init__(self, base: str, user: str, password: str) -> None:
        super().__init__(base)
        self.authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def request(self, method: str, path: str, body: Any = None, headers: Any = None) -> Any:
        given = {"Authorization": self.authorization, "User-Agent": "events-test/1.0", **(headers or {})}
        return await super().request(method, path, body, given)


async def upload(client: Client, name: str, data: bytes) -> str:
    # POST then PUT: registry:2 2.8 takes no whole blob in the POST.
    started = await client.request("POST", f"/v2/{name}/blobs/uploads/")
    assert started.code == 202, started
    location = started.header("Location")
    assert location is not None
    done = await client.request("PUT", withQuery(location, digest=sha256(data)), data)
    assert done.code == 201, done
    return sha256(data)


async def exercise(client: Client, layer: bytes) -> None:
    """
    Push, pull, mount and delete, and two requests that fail (which tell
    nothing).
    """
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    configDigest = await upload(client, "app/one", config)
    layerDigest = await upload(client, "app/one", layer)
    manifest = ociManifest(configDigest, len(config), [(layerDigest, len(layer))])
    digest = sha256(manifest)
    accept = {"Accept": OCI_MANIFEST}
    oci = {"Content-Type": OCI_MANIFEST}
    assert (await client.request("PUT", "/v2/app/one/manifests/v1", manifest, oci)).code == 201
    assert (await client.request("GET", "/v2/app/one/manifests/v1", headers=accept)).code == 200
    assert (await client.request("HEAD", "/v2/app/one/manifests/v1", headers=accept)).code == 200
    assert (await client.request("GET", f"/v2/app/one/manifests/{digest}", headers=accept)).code == 200
    assert (await client.request("GET", "/v2/app/one/manifests/nope", headers=accept)).code == 404
    assert (await client.request("GET", f"/v2/app/one/blobs/{layerDigest}")).code == 200
    assert (await client.request("HEAD", f"/v2/app/one/blobs/{layerDigest}")).code == 200
    assert (await client.request("GET", f"/v2/app/one/blobs/{sha256(b'none')}")).code == 404
    mounted = await client.request("POST", f"/v2/app/two/blobs/uploads/?mount={layerDigest}&from=app/one")
    assert mounted.code == 201, mounted
    assert (await client.request("PUT", f"/v2/app/one/manifests/{digest}", manifest, oci)).code == 201
    assert (await client.request("DELETE", f"/v2/app/two/blobs/{layerDigest}")).code == 202
    assert (await client.request("DELETE", f"/v2/app/one/manifests/{digest}")).code == 202


#: How many events L{exercise} raises: the last, the tag that the
#: manifest's delete removed.
EXERCISED = 13

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def comparable(event: dict[str, Any], host: str) -> dict[str, Any]:
    """
    C{event} with what differs between two registries (ids, times,
    addresses and ports) checked for its form, then put aside.
    """
    event = json.loads(json.dumps(event).replace(host, "HOST"))
    assert _UUID.fullmatch(event.pop("id"))
    assert _TIMESTAMP.fullmatch(event.pop("timestamp"))
    request = event["request"]
    assert _UUID.fullmatch(request.pop("id"))
    assert re.fullmatch(r"127\.0\.0\.1:\d+", request.pop("addr"))
    source = event.pop("source")
    assert set(source) == {"addr", "instanceID"}
    assert all(source.values())
    return event


class NotifyingReference(ReferenceRegistry):
    def __init__(self, root: str, htpasswd: str, url: str) -> None:
        super().__init__(root)
        self.htpasswd = htpasswd
        self.url = url

    def writeConfig(self) -> str:
        path = super().writeConfig()
        with open(path, "a") as f:
            f.write(f"auth:\n  htpasswd:\n    realm: test\n    path: {self.htpasswd}\n")
            f.write(endpointYAML(self.url, headers="{X-Hook: [secret]}", timeout="2s"))
        return path


def htpasswd(directory: str) -> str:
    path = os.path.join(directory, "htpasswd")
    with open(path, "wb") as f:
        f.write(b"alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)) + b"\n")
    return path


@pytest.mark.skipif(ReferenceRegistry.binary is None, reason="the reference registry is not installed")
@pytest_twisted.ensureDeferred
async def test_events_are_the_reference_registrys(tmp_path: object) -> None:
    users = htpasswd(str(tmp_path))
    layer = os.urandom(3000)
    async with receiving() as (theirs, url):
        reference = NotifyingReference(os.path.join(str(tmp_path), "reference"), users, url)
        reference.start()
        try:
            client = AuthorizedClient(reference.base, "alice", "wonderland")
            await exercise(client, layer)
            await client.close()
            await waitFor(lambda: len(theirs.events()) == EXERCISED)
        finally:
            reference.stop()
    async with receiving() as (ours, url):
        extra = f"auth:\n  htpasswd:\n    realm: test\n    path: {users}\n"
        async with notifying(url, extra=extra, headers="{X-Hook: [secret]}") as (plain, notifier):
            client = AuthorizedClient(plain.base, "alice", "wonderland")
            await exercise(client, layer)
            await client.close()
            await waitFor(lambda: notifier.webhooks[0].delivered == EXERCISED)
            assert len(ours.events()) == EXERCISED
    for receiver in (theirs, ours):
        for headers, _ in receiver.deliveries:
            assert headers.getRawHeaders("content-type") == [EVENTS_MEDIA_TYPE]
            assert headers.getRawHeaders("x-hook") == ["secret"]
    expected = [comparable(event, reference.base.removeprefix("http://")) for event in theirs.events()]
    assert expected[-1]["target"] == {"repository": "app/one", "tag": "v1"}
    assert [comparable(event, plain.base.removeprefix("http://")) for event in ours.events()] == expected
    assert {event["actor"]["name"] for event in expected} == {"alice"}


# --- what each event says ---


@pytest_twisted.ensureDeferred
async def test_each_action_tells_its_target() -> None:
    async with receiving() as (receiver, url), notifying(url) as (client, _):
        blob = await client.pushBlob("a/b", b"x")
        forwarded = {"X-Forwarded-For": "10.1.2.3, 10.0.0.1"}
        assert (await client.request("GET", f"/v2/a/b/blobs/{blob}", headers=forwarded)).code == 200
        manifest, digest = await client.pushImage("a/b", "v1", [])
        assert (await client.request("DELETE", "/v2/a/b/manifests/v1")).code == 202
        await waitFor(lambda: len(receiver.events()) == 5)
    pushed, pulled, _, manifestPushed, deleted = receiver.events()
    base = client.base.removeprefix("http://")
    assert pushed["action"] == "push"
    assert pushed["target"] == {
        "mediaType": "application/octet-stream",
        "size": 1,
        "digest": blob,
        "length": 1,
        "repository": "a/b",
        "url": f"{client.base}/v2/a/b/blobs/{blob}",
    }
    assert pushed["actor"] == {}
    assert pushed["request"]["method"] == "POST"
    assert pushed["request"]["useragent"] == ""
    assert pushed["request"]["host"] == base
    assert re.fullmatch(r"127\.0\.0\.1:\d+", pushed["request"]["addr"])
    assert (pulled["action"], pulled["request"]["addr"]) == ("pull", "10.1.2.3")
    assert manifestPushed["target"] == {
        "mediaType": OCI_MANIFEST,
        "size": len(manifest),
        "digest": digest,
        "length": len(manifest),
        "repository": "a/b",
        "url": f"{client.base}/v2/a/b/manifests/{digest}",
        "tag": "v1",
    }
    # A tag deleted is told by its name alone.
    assert (deleted["action"], deleted["target"]) == ("delete", {"repository": "a/b", "tag": "v1"})


@pytest_twisted.ensureDeferred
async def test_nothing_is_told_of_what_failed() -> None:
    async with receiving() as (receiver, url), notifying(url) as (client, notifier):
        wrong = await client.request("POST", f"/v2/a/b/blobs/uploads/?digest={sha256(b'other')}", b"data")
        assert wrong.code == 400
        assert (await client.request("GET", f"/v2/a/b/blobs/{sha256(b'data')}")).code == 404
        assert (await client.request("DELETE", "/v2/a/b/manifests/missing")).code == 404
        await client.pushBlob("a/b", b"data")
        await waitFor(lambda: notifier.webhooks[0].delivered == 1)
    assert [e["action"] for e in receiver.events()] == ["push"]


@pytest_twisted.ensureDeferred
async def test_ignored_actions_and_media_types_are_not_sent() -> None:
    ignore = "{actions: [pull], mediatypes: [application/octet-stream]}"
    async with receiving() as (receiver, url):
        async with notifying(url, ignore=ignore) as (client, notifier):
            blob = await client.pushBlob("a/b", b"x")
            await client.request("GET", f"/v2/a/b/blobs/{blob}")
            await client.request("DELETE", f"/v2/a/b/blobs/{blob}")
            await waitFor(lambda: len(receiver.events()) == 1)
            await settle(0.1)
    assert [(e["action"], e["target"]) for e in receiver.events()] == [
        ("delete", {"digest": blob, "repository": "a/b"})
    ]
    assert notifier.webhooks[0].dropped == 0


# --- endpoints that hang, fail, or are not there ---


@pytest.mark.parametrize("mode", ["hanging", "failing", "gone"])
@pytest_twisted.ensureDeferred
async def test_a_bad_endpoint_slows_no_request_and_loses_nothing_within_the_bound(mode: str) -> None:
    clock = Clock()
    port = freePort()
    url = f"http://127.0.0.1:{port}/hook"
    # A hanging endpoint's wait: long enough that a request waiting for it
    # would show, even on a busy machine.
    timeout = "5s" if mode == "hanging" else "200ms"
    keys = {"timeout": timeout, "threshold": "1", "backoff": "30s", "queuesize": "4"}
    async with notifying(url, clock, **keys) as (client, notifier):
        webhook = notifier.webhooks[0]
        pushed = []

        async def pushes() -> None:
            for index in range(6):
                started = time.monotonic()
                pushed.append(await client.pushBlob("a/b", b"blob %d" % index))
                assert time.monotonic() - started < 2

        if mode == "gone":
            await pushes()
            await waitFor(lambda: webhook.failed == 1)
            async with receiving(port) as (receiver, _):
                clock.advance(30)
                await waitFor(lambda: webhook.delivered == 4)
        else:
            async with receiving(port) as (receiver, _):
                receiver.mode = mode
                await pushes()
                await waitFor(lambda: webhook.failed == 1)
                receiver.mode = "ok"
                clock.advance(30)
                await waitFor(lambda: webhook.delivered == 4)
        assert (webhook.pending, webhook.dropped) == (0, 2)
    # The first four, in order, each once.
    assert [e["target"]["digest"] for e in receiver.events()][-4:] == pushed[:4]
    assert len(receiver.events()) == (5 if mode != "gone" else 4)


@pytest_twisted.ensureDeferred
async def test_retries_follow_threshold_then_backoff() -> None:
    clock = Clock()
    async with receiving() as (receiver, url):
        receiver.mode = "failing"
        async with notifying(url, clock, threshold="3", backoff="10s") as (client, notifier):
            webhook = notifier.webhooks[0]
            await client.pushBlob("a/b", b"x")
            # Tried again at once until the threshold...
            await waitFor(lambda: len(receiver.deliveries) == 3)
            await settle()
            assert len(receiver.deliveries) == 3
            # ...then once a back-off.
            clock.advance(9.9)
            await settle()
            assert len(receiver.deliveries) == 3
            clock.advance(0.1)
            await waitFor(lambda: len(receiver.deliveries) == 4)
            clock.advance(10)
            await waitFor(lambda: len(receiver.deliveries) == 5)
            receiver.mode = "ok"
            clock.advance(10)
            await waitFor(lambda: webhook.delivered == 1)
            assert (webhook.failed, webhook.pending, webhook.dropped) == (5, 0, 0)
            # Back to trying at once after a delivery.
            receiver.mode = "failing"
            await client.pushBlob("a/b", b"y")
            await waitFor(lambda: len(receiver.deliveries) == 9)
            await settle()
            assert len(receiver.deliveries) == 9
    bodies = {body for _, body in receiver.deliveries[:6]}
    assert len(bodies) == 1


@pytest_twisted.ensureDeferred
async def test_a_disabled_endpoint_is_not_told() -> None:
    async with receiving() as (receiver, url):
        config = configFor(None, extra=endpointYAML(url, disabled="true"))
        assert notifierOf(config.notifications, config.http.listen) is None
        async with serving(config) as client:
            await client.pushBlob("a/b", b"x")
            await settle(0.2)
    assert receiver.deliveries == []


@pytest_twisted.ensureDeferred
async def test_a_running_registry_tells_its_endpoints(tmp_path: object) -> None:
    config = os.path.join(str(tmp_path), "config.yml")
    async with receiving() as (receiver, url):
        with open(config, "w") as f:
            f.write("version: 0.1\nstorage:\n  inmemory: {}\n" + endpointYAML(url))
        process = RegistryProcess(os.path.join(str(tmp_path), "store"), config, overrideRoot=False)
        process.start()
        try:
            client = Client(process.base)
            blob = await client.pushBlob("a/b", b"x")
            await client.close()
            await waitFor(lambda: len(receiver.events()) == 1)
        finally:
            process.stop()
    assert receiver.events()[0]["target"]["digest"] == blob
    assert process.process is not None and process.process.returncode == 0
    assert f"notifications to hook ({url})" in process.output()


# --- configuration ---


def test_the_example_configuration_is_understood() -> None:
    with open(EXAMPLE) as f:
        config = txregistry.parseConfig(f.read(), environ={})
    assert config.warnings == ()
    (endpoint,) = config.notifications
    assert endpoint.name == "ci"
    assert endpoint.timeout == 0.5
    assert endpoint.backoff == 2.0
    assert endpoint.threshold == 5
    assert endpoint.ignoredActions == frozenset({"pull"})


def test_defaults_are_registry_2s() -> None:
    config = txregistry.parseConfig(
        "version: 0.1\nstorage: {inmemory: {}}\n"
        + endpointYAML("https://hooks.test/x", timeout="0s", threshold="0", ignoredmediatypes="[a/b]")
        + "      ignore:\n        mediatypes: [c/d]\n",
        environ={},
    )
    (endpoint,) = config.notifications
    assert (endpoint.timeout, endpoint.threshold, endpoint.backoff) == (1.0, 10, 1.0)
    assert endpoint.ignoredMediaTypes == frozenset({"a/b", "c/d"})
    assert endpoint.headers == {}
    assert not endpoint.disabled
    assert config.warnings == ()


def test_an_empty_notifications_section_is_understood() -> None:
    config = txregistry.parseConfig("version: 0.1\nstorage: {inmemory: {}}\nnotifications: {}\n", environ={})
    assert (config.notifications, config.warnings) == ((), ())


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"url": "ftp://hooks.test/x"},
            "notifications.endpoints[0].url: expected an http:// or https:// URL",
        ),
        ({"url": "http:///x"}, "notifications.endpoints[0].url: expected an http:// or https:// URL"),
        ({"ignore": "{actions: [pul]}"}, "notifications.endpoints[0].ignore.actions: 'pul' is not one of"),
        ({"ignore": "{media: [a]}"}, "notifications.endpoints[0].ignore.media: unknown key"),
        ({"treshold": "3"}, "notifications.endpoints[0].treshold: unknown key"),
        ({"timeout": "soon"}, "notifications.endpoints[0].timeout:"),
        ({"threshold": "many"}, "notifications.endpoints[0].threshold: expected an integer"),
        ({"queuesize": "0"}, "notifications.endpoints[0].queuesize: must be at least 1"),
        ({"headers": "{X: [{a: b}]}"}, "notifications.endpoints[0].headers.X: expected a string"),
    ],
)
def test_what_cannot_be_used_stops_start_up(keys: dict[str, str], message: str) -> None:
    url = keys.pop("url", "https://hooks.test/x")
    text = "version: 0.1\nstorage: {inmemory: {}}\n" + endpointYAML(url, **keys)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        txregistry.parseConfig(text, environ={})
    assert "\n" not in str(raised.value)


def test_an_endpoint_needs_a_name_of_its_own() -> None:
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.name: required"):
        txregistry.parseConfig(
            "version: 0.1\nstorage: {inmemory: {}}\nnotifications:\n  endpoints:\n    - url: http://a.test/\n",
            environ={},
        )
    twice = "version: 0.1\nstorage: {inmemory: {}}\nnotifications:\n  endpoints:\n" + (
        "    - {name: a, url: 'http://a.test/'}\n" * 2
    )
    with pytest.raises(ConfigError, match=r"endpoints\[1\]\.name: 'a' names two endpoints"):
        txregistry.parseConfig(twice, environ={})
