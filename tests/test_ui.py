"""
The web UI at /ui/ (ui.enabled), over HTTP against a registry on loopback:
each page shows what the registry holds, through the API's access rules,
with every pusher's value escaped, under a strict Content-Security-Policy,
changing nothing.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

import txregistry
from tests.conftest import configFor
from tests.helpers import Client, Response, serving, sha256
from tests.proxy import proxyConfig, proxyRegistry, upstreamRegistry
from tests.test_access import RULES, USERS, rulesConfig
from tests.test_access import credentials as basicFor
from tests.test_auth import REALM, basic, entry, writeUsers
from txregistry.config import ConfigError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"

UI = "ui:\n  enabled: true\n"
INMEMORY = "version: 0.1\nstorage:\n  inmemory:\n"

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>']

PAGES = ["/ui/", "/ui/repository?name=app", "/ui/image?name=app&reference=v1", "/ui/status"]


@pytest_twisted.async_yield_fixture
async def ui(tmp_path: Any) -> AsyncIterator[Client]:
    async with serving(configFor(str(tmp_path), extra=UI)) as client:
        yield client


async def pushImage(
    client: Client,
    name: str,
    tag: str,
    config: dict[str, Any],
    layers: list[bytes],
    **extra: Any,
) -> tuple[str, int]:
    """
    An OCI image of C{config} and C{layers} under C{tag}: its manifest's
    digest and size.
    """
    configBody = json.dumps(config).encode()
    described = [
        {"mediaType": OCI_CONFIG, "digest": await client.pushBlob(name, configBody), "size": len(configBody)}
    ]
    for layer in layers:
        described.append(
            {"mediaType": LAYER, "digest": await client.pushBlob(name, layer), "size": len(layer)}
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": described[0],
        "layers": described[1:],
        **extra,
    }
    body = json.dumps(manifest).encode()
    response = await client.pushManifest(name, tag, body)
    assert response.code == 201, response
    return sha256(body), len(body)


async def pushReferrer(
    client: Client, name: str, subject: tuple[str, int], artifactType: str, data: bytes
) -> str:
    empty = b"{}"
    emptyDigest = await client.pushBlob(name, empty)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifactType,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": emptyDigest, "size": 2},
        "layers": [
            {"mediaType": artifactType, "digest": await client.pushBlob(name, data), "size": len(data)}
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]},
        "annotations": {"org.example.kind": artifactType},
    }
    body = json.dumps(manifest).encode()
    digest = sha256(body)
    response = await client.pushManifest(name, digest, body)
    assert response.code == 201, response
    return digest


def platformConfig(os_: str, architecture: str) -> dict[str, Any]:
    return {
        "architecture": architecture,
        "os": os_,
        "created": "2024-05-06T07:08:09Z",
        "config": {
            "Entrypoint": ["/bin/serve"],
            "Cmd": ["--port", "8080"],
            "Env": ["PATH=/usr/bin", "MODE=production"],
            "Labels": {"org.opencontainers.image.title": "the app"},
            "ExposedPorts": {"8080/tcp": {}},
            "WorkingDir": "/srv",
        },
        "history": [{"created": "2024-05-06T07:08:09Z", "created_by": "COPY serve /bin/serve"}],
        "rootfs": {"type": "layers", "diff_ids": []},
    }


async def pushIndex(client: Client, name: str, tag: str) -> str:
    children = []
    for architecture in ("amd64", "arm64"):
        digest, size = await pushImage(
            client,
            name,
            f"only-{architecture}",
            platformConfig("linux", architecture),
            [architecture.encode() * 100],
        )
        children.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": architecture},
            }
        )
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    response = await client.pushManifest(name, tag, body, OCI_INDEX)
    assert response.code == 201, response
    return sha256(body)


async def page(client: Client, path: str, **headers: str) -> str:
    response = await client.request("GET", path, headers=headers)
    assert response.code == 200, (path, response.code, response.body[:500])
    return response.body.decode()


def text(body: str) -> str:
    """
    What a page says, its markup and character references undone.
    """
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def nextLink(body: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', body)
    return None if found is None else html.unescape(found.group(1))


@pytest_twisted.ensureDeferred
async def test_off_by_default(tmp_path: Any) -> None:
    # registry:2 serves nothing outside /v2/, and neither does a registry
    # that was not asked for the UI.
    async with serving(configFor(str(tmp_path))) as client:
        response = await client.request("GET", "/ui/")
        assert response.code == 404
        assert response.errorCode() == "UNSUPPORTED"


def test_config_takes_true_or_false() -> None:
    assert txregistry.parseConfig(INMEMORY + UI, environ={}).ui.enabled
    assert not txregistry.parseConfig(INMEMORY, environ={}).ui.enabled
    with pytest.raises(ConfigError, match="ui.enabled: expected true or false"):
        txregistry.parseConfig(INMEMORY + "ui:\n  enabled: sometimes\n", environ={})


@pytest_twisted.ensureDeferred
async def test_repositories_page(ui: Client) -> None:
    await pushIndex(ui, "app", "v1")
    await pushImage(ui, "tools/lint", "1.0", platformConfig("linux", "amd64"), [b"lint"])
    body = await page(ui, "/ui/")
    shown = text(body)
    assert "tools/lint" in shown
    # app: v1, only-amd64, only-arm64.
    assert re.search(r"app\s+3\b", shown)
    assert re.search(r"tools/lint\s+1\b", shown)
    assert 'href="/ui/repository?name=tools%2Flint"' in body


@pytest_twisted.ensureDeferred
async def test_the_filter_narrows_the_list(ui: Client) -> None:
    for name in ("team/api", "team/web", "other/db"):
        await pushImage(ui, name, "v1", platformConfig("linux", "amd64"), [name.encode()])
    shown = text(await page(ui, "/ui/?q=team"))
    assert "team/api" in shown and "team/web" in shown
    assert "other/db" not in shown


@pytest_twisted.ensureDeferred
async def test_repository_page(ui: Client) -> None:
    index = await pushIndex(ui, "app", "v1")
    body = await page(ui, "/ui/repository?name=app")
    shown = text(body)
    assert OCI_INDEX in shown and OCI_MANIFEST in shown
    assert "linux/amd64, linux/arm64" in shown
    assert index[:19] in shown
    assert "2024-05-06 07:08:09" in shown
    host = ui.base.removeprefix("http://")
    assert f'data-copy="docker pull {host}/app:v1"' in body
    assert f'data-copy="docker pull {host}/app:only-arm64"' in body


@pytest_twisted.ensureDeferred
async def test_index_page_shows_its_platforms(ui: Client) -> None:
    index = await pushIndex(ui, "app", "v1")
    shown = text(await page(ui, "/ui/image?name=app&reference=v1"))
    assert index in shown
    assert "linux/amd64" in shown and "linux/arm64" in shown
    shown = text(await page(ui, f"/ui/image?name=app&reference={index}"))
    assert "linux/arm64" in shown


@pytest_twisted.ensureDeferred
async def test_image_page_shows_layers_config_and_referrers(ui: Client) -> None:
    subject = await pushImage(
        ui,
        "app",
        "v1",
        platformConfig("linux", "amd64"),
        [b"a" * 1000, b"b" * 3000],
        annotations={"org.opencontainers.image.source": "https://example.invalid/app"},
    )
    signature = await pushReferrer(ui, "app", subject, SIGNATURE, b"signed")
    sbom = await pushReferrer(ui, "app", subject, SBOM, b'{"spdxVersion": "SPDX-2.3"}')
    body = await page(ui, "/ui/image?name=app&reference=v1")
    shown = text(body)
    for expected in (
        sha256(b"a" * 1000),
        sha256(b"b" * 3000),
        "1000 B",
        "2.9 KiB",
        "/bin/serve",
        "--port 8080",
        "MODE=production",
        "org.opencontainers.image.title",
        "the app",
        "8080/tcp",
        "/srv",
        "COPY serve /bin/serve",
        "org.opencontainers.image.source",
        "https://example.invalid/app",
        SIGNATURE,
        SBOM,
        signature,
        sbom,
    ):
        assert expected in shown, expected
    # Each referrer under its artifact type.
    assert shown.index(SBOM) < shown.index(sbom) < shown.index(SIGNATURE) < shown.index(signature)
    # And a referrer is a page of its own.
    assert "signed" not in text(await page(ui, f"/ui/image?name=app&reference={signature}"))


@pytest_twisted.ensureDeferred
async def test_two_thousand_tags_paginated_and_fast(ui: Client) -> None:
    digest, size = await pushImage(ui, "big", "seed", platformConfig("linux", "amd64"), [b"big"])
    manifest = (await ui.request("GET", f"/v2/big/manifests/{digest}")).body
    tags = [f"t{i:04d}" for i in range(2000)]
    limit = DeferredSemaphore(16)

    async def tag(name: str) -> None:
        response = await ui.pushManifest("big", name, manifest)
        assert response.code == 201

    await gatherResults([limit.run(lambda n=n: Deferred.fromCoroutine(tag(n))) for n in tags])
    seen: list[str] = []
    path: str | None = "/ui/repository?name=big"
    pages = 0
    while path is not None:
        body = await page(ui, path)
        seen += re.findall(r'<tr data-name="([^"]+)">', body)
        path = nextLink(body)
        pages += 1
    assert seen == sorted([*tags, "seed"])
    assert pages == 41
    # The first page and the last, each the best of three: the time of a
    # page is its 50 manifests and configs, not the 2,000 tags.
    for path in ("/ui/repository?name=big", "/ui/repository?name=big&last=t1990"):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            await page(ui, path)
            times.append(time.perf_counter() - started)
        assert min(times) < 0.2, (path, times)


@pytest_twisted.ensureDeferred
async def test_pusher_values_are_escaped(ui: Client) -> None:
    config = platformConfig("linux", "amd64")
    config["config"]["Labels"] = {f"label{i}": value for i, value in enumerate(HOSTILE)}
    config["config"]["Env"] = [f"X={value}" for value in HOSTILE]
    config["history"] = [{"created_by": value} for value in HOSTILE]
    annotations = {f"note{i}": value for i, value in enumerate(HOSTILE)}
    subject = await pushImage(ui, "app", "v1", config, [b"x"], annotations=annotations)
    await pushReferrer(ui, "app", subject, SIGNATURE, b"signed")
    body = await page(ui, "/ui/image?name=app&reference=v1")
    for value in HOSTILE:
        assert value not in body
        assert html.escape(value, quote=False) in body or html.escape(value) in body
    assert "<script>alert" not in body and "<img" not in body
    # The only script is the UI's own file.
    assert re.findall(r"<script[^>]*>", body) == ['<script src="/ui/static/ui.js" defer="defer">']


@pytest_twisted.ensureDeferred
async def test_content_security_policy(ui: Client) -> None:
    await pushImage(ui, "app", "v1", platformConfig("linux", "amd64"), [b"x"])
    for path in [*PAGES, "/ui/static/ui.js", "/ui/static/ui.css", "/ui/nothing-here"]:
        response = await ui.request("GET", path)
        policy = response.header("content-security-policy") or ""
        assert "default-src 'none'" in policy, path
        assert "script-src 'self';" in policy and "style-src 'self';" in policy, path
        assert "unsafe-inline" not in policy
        assert response.header("x-content-type-options") == "nosniff"
    css = await ui.request("GET", "/ui/static/ui.css")
    assert css.code == 200 and css.header("content-type") == "text/css; charset=utf-8"
    body = await page(ui, "/ui/")
    assert " style=" not in body and " on" not in re.sub(r'"[^"]*"', '""', body)


@pytest_twisted.ensureDeferred
async def test_no_page_changes_anything(ui: Client) -> None:
    await pushImage(ui, "app", "v1", platformConfig("linux", "amd64"), [b"x"])
    before = (await ui.request("GET", "/v2/app/tags/list")).json()
    for path in PAGES:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = await ui.request(method, path, b"tag=v2")
            assert response.code == 405, (method, path)
            assert response.header("allow") == "GET, HEAD"
        head = await ui.request("HEAD", path)
        assert head.code == 200 and head.body == b""
    assert (await ui.request("GET", "/v2/app/tags/list")).json() == before
    assert (await ui.request("GET", "/v2/_catalog")).json() == {"repositories": ["app"]}


@pytest_twisted.ensureDeferred
async def test_bad_names_and_references(ui: Client) -> None:
    for path, status in (
        ("/ui/repository?name=UPPER", 400),
        ("/ui/repository", 400),
        ("/ui/repository?name=absent", 404),
        ("/ui/image?name=absent&reference=v1", 404),
        ("/ui/image?name=app&reference=%3Cscript%3E", 404),
    ):
        response = await ui.request("GET", path)
        assert response.code == status, (path, response.code)
        assert "<script>" not in response.body.decode()


@pytest_twisted.async_yield_fixture
async def ruled(tmp_path: Any) -> AsyncIterator[Client]:
    users = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(users, *(entry(user, password) for user, password in USERS.items()))
    config = rulesConfig(os.path.join(str(tmp_path), "store"), users, RULES + UI)
    async with serving(txregistry.parseConfig(config, environ={})) as client:
        for name in ("public/app", "secret/app"):
            await pushImageAs(client, basicFor("root"), name)
        yield client


@pytest_twisted.ensureDeferred
async def test_a_repository_the_viewer_may_not_pull_is_absent(ruled: Client) -> None:
    shown = text(await page(ruled, "/ui/"))
    assert "public/app" in shown and "secret/app" not in shown
    assert "secret/app" in text(await page(ruled, "/ui/", **basicFor("carol")))
    for path in ("/ui/repository?name=secret/app", "/ui/image?name=secret/app&reference=v1"):
        response = await ruled.request("GET", path)
        assert response.code == 401
        assert response.header("www-authenticate") == f'Basic realm="{REALM}"'
        assert "secret/app" not in text(response.body.decode()).replace("secret/app&", "")
        assert (await ruled.request("GET", path, headers=basicFor("carol"))).code == 200
    denied = await ruled.request("GET", "/ui/repository?name=secret/app", headers=basicFor("alice"))
    assert denied.code == 403


@pytest_twisted.ensureDeferred
async def test_under_htpasswd_nothing_without_credentials(tmp_path: Any) -> None:
    users = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(users, entry("alice", "a-secret"))
    config = f"auth:\n  htpasswd:\n    realm: {REALM}\n    path: {users}\n" + UI
    async with serving(configFor(str(tmp_path / "store"), extra=config)) as client:
        alice = basic("alice", "a-secret")
        await pushImageAs(client, alice, "app")
        for path in [*PAGES, "/ui/cache", "/ui/nothing-here"]:
            response = await client.request("GET", path)
            assert response.code == 401, path
            assert response.header("www-authenticate") == f'Basic realm="{REALM}"'
            assert "app" not in text(response.body.decode()).split("Error", 1)[1], path
        for path in PAGES:
            assert (await client.request("GET", path, headers=alice)).code == 200, path


async def pushImageAs(client: Client, credentials: dict[str, str], name: str) -> None:
    original = client.request

    async def signedIn(method: str, path: str, body: Any = None, headers: Any = None) -> Response:
        return await original(method, path, body, {**credentials, **(headers or {})})

    client.request = signedIn  # type: ignore[method-assign]
    try:
        await pushImage(client, name, "v1", platformConfig("linux", "amd64"), [name.encode()])
    finally:
        client.request = original  # type: ignore[method-assign]


@pytest_twisted.ensureDeferred
async def test_cache_pages(tmp_path: Any) -> None:
    async with upstreamRegistry(str(tmp_path / "upstream")) as upstream:
        await pushImage(upstream.client, "library/app", "v1", platformConfig("linux", "amd64"), [b"x" * 5000])
        config = proxyConfig(upstream.url, "  allowpush: true\n") + UI
        async with proxyRegistry(str(tmp_path / "proxy"), upstream.url, config=config) as proxy:
            client = proxy.client
            for _ in range(2):
                manifest = await client.request("GET", "/v2/library/app/manifests/v1")
                assert manifest.code == 200
                # The UI shows what is cached: the config too, for the platform.
                document = json.loads(manifest.body)
                for blob in (document["layers"][0], document["config"]):
                    assert (
                        await client.request("GET", f"/v2/library/app/blobs/{blob['digest']}")
                    ).code == 200
            await proxy.cache.settled()
            await pushImage(client, "mine/tool", "v1", platformConfig("linux", "amd64"), [b"mine"])
            shown = text(await page(client, "/ui/"))
            own, cached = shown.split("Cached", 1)
            assert "mine/tool" in own and "library/app" not in own
            assert "library/app" in cached and upstream.url in cached
            shown = text(await page(client, "/ui/cache"))
            assert upstream.url in shown
            assert re.search(r"Hit ratio\s+\d+\.\d% \(\d+ of \d+\)", shown)
            assert "closed" in shown
            assert "Upstream bytes saved" in shown
            assert "linux/amd64" in text(await page(client, "/ui/image?name=library/app&reference=v1"))


@pytest_twisted.ensureDeferred
async def test_status_page(ui: Client) -> None:
    shown = text(await page(ui, "/ui/status"))
    assert f"txregistry {txregistry.__version__}" in shown
    assert "filesystem" in shown
    assert "Uptime" in shown
