"""
The web UI's cache page and what viewing any page leaves alone, over HTTP
against registries on loopback: the eviction preview shows what a pass then
removes, in its order; no page view writes to the store (use records, pull
records) or asks an upstream; and the UI's icon is served.
"""

from __future__ import annotations

import html
import json
import os
import re
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.conftest import configFor
from tests.helpers import Client, serving, sha256
from tests.proxy import proxyConfig, proxyRegistry, upstreamRegistry
from tests.test_proxy import wallClock
from txregistry.proxy import Eviction

UI = "ui:\n  enabled: true\n"
#: Garbage collection on, with pulls recorded every quarter of a second.
GC = "  maintenance:\n    gc:\n      enabled: true\n      graceperiod: 1s\n"
HOUR = 3600


async def page(client: Client, path: str) -> str:
    response = await client.request("GET", path)
    assert response.code == 200, (path, response.code, response.body[:300])
    return response.body.decode()


def upcoming(body: str) -> list[tuple[str, str, str, str]]:
    """
    The cache page's eviction preview: (kind, repository, digest, why) in
    the order shown.
    """
    section = body.split("Next to be evicted", 1)[1]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", section, re.S)[1:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        cells = [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in cells]
        digest = html.unescape(re.findall(r'title="([^"]+)"', row)[0])
        rows.append((cells[0], cells[1], digest, cells[5]))
    return rows


def due(why: str) -> bool:
    return why.startswith("ttl expired") or why.startswith("over maxsize")


@pytest_twisted.ensureDeferred
async def test_the_cache_page_shows_what_eviction_removes_next(tmp_path: Any) -> None:
    old, new = os.urandom(100_000), os.urandom(100_000)
    first, second = os.urandom(100_000), os.urandom(100_000)
    async with upstreamRegistry(str(tmp_path / "upstream")) as upstream:
        _, oldDigest = await upstream.client.pushImage("team/old", "v1", [old])
        _, newDigest = await upstream.client.pushImage("team/new", "v1", [new])
        for blob in (first, second):
            await upstream.client.pushBlob("team/blobs", blob)
        clock = wallClock()
        config = proxyConfig(upstream.url, "  ttl: 1h\n  maxsize: 150000\n") + UI
        async with proxyRegistry(str(tmp_path / "proxy"), upstream.url, config=config, clock=clock) as proxy:
            client = proxy.client

            async def pull(path: str, later: float) -> None:
                assert (await client.request("GET", path)).code == 200, path
                await proxy.cache.settled()
                clock.advance(later)

            await pull("/v2/team/old/manifests/v1", 0)
            await pull(f"/v2/team/old/blobs/{sha256(old)}", 3000)
            await pull(f"/v2/team/blobs/blobs/{sha256(first)}", 10)
            await pull(f"/v2/team/blobs/blobs/{sha256(second)}", 10)
            await pull("/v2/team/new/manifests/v1", 0)
            await pull(f"/v2/team/new/blobs/{sha256(new)}", 600)
            # Now team/old's manifest is past its ttl, and so its layer,
            # which no other manifest references; of the 300,000 bytes of
            # blobs left, the least recently pulled go until 150,000 are.
            shown = upcoming(await page(client, "/ui/cache"))
            assert [row[:3] for row in shown] == [
                ("manifest", "team/old", oldDigest),
                ("blob", "team/old", sha256(old)),
                ("blob", "team/blobs", sha256(first)),
                ("blob", "team/blobs", sha256(second)),
                ("manifest", "team/new", newDigest),
                ("blob", "team/new", sha256(new)),
            ]
            whys = [row[3] for row in shown]
            assert [w.split(" 2")[0] for w in whys] == [
                "ttl expired",
                "ttl expired",
                "over maxsize, least recently pulled",
                "over maxsize, least recently pulled",
                "ttl expires",
                "ttl expires",
            ]
            # team/new's layer goes with the manifest that references it.
            assert whys[4] == whys[5]
            before = await proxy.cache.record.entries()
            assert await Eviction(proxy.cache).run() == len([w for w in whys if due(w)])
            after = await proxy.cache.record.entries()
            kept = [(e.name, str(e.digest)) for e in after]
            removed = {(e.name, str(e.digest)) for e in before} - set(kept)
            assert removed == {(name, digest) for _, name, digest, why in shown if due(why)}
            assert sorted(kept) == sorted((name, digest) for _, name, digest, why in shown if not due(why))
            assert [row[:3] for row in upcoming(await page(client, "/ui/cache"))] == [
                ("manifest", "team/new", newDigest),
                ("blob", "team/new", sha256(new)),
            ]


@pytest_twisted.ensureDeferred
async def test_the_preview_is_read_once_however_often_it_is_viewed(tmp_path: Any) -> None:
    """
    Views of the cache page within half a minute share one reading of the
    pull record: what is pulled meanwhile shows once that time is up.
    """
    async with upstreamRegistry(str(tmp_path / "upstream")) as upstream:
        await upstream.client.pushImage("team/a", "v1", [b"a" * 100])
        await upstream.client.pushImage("team/b", "v1", [b"b" * 100])
        clock = wallClock()
        config = proxyConfig(upstream.url, "  ttl: 1h\n") + UI
        async with proxyRegistry(str(tmp_path / "proxy"), upstream.url, config=config, clock=clock) as proxy:
            client = proxy.client
            assert (await client.request("GET", "/v2/team/a/manifests/v1")).code == 200
            await proxy.cache.settled()
            first = upcoming(await page(client, "/ui/cache"))
            assert [row[1] for row in first] == ["team/a"]
            assert (await client.request("GET", "/v2/team/b/manifests/v1")).code == 200
            await proxy.cache.settled()
            clock.advance(20)
            assert upcoming(await page(client, "/ui/cache")) == first
            clock.advance(11)
            assert [row[1] for row in upcoming(await page(client, "/ui/cache"))] == ["team/a", "team/b"]


def files(root: str) -> dict[str, tuple[int, int]]:
    """
    Every file below C{root}, with its size and modification time.
    """
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            info = os.stat(path)
            found[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns)
    return found


@pytest_twisted.ensureDeferred
async def test_viewing_pages_writes_nothing_and_asks_no_upstream(tmp_path: Any) -> None:
    async with upstreamRegistry(str(tmp_path / "upstream")) as upstream:
        cachedManifest, cachedDigest = await upstream.client.pushImage("library/app", "v1", [b"x" * 5000])
        cachedConfig = json.loads(cachedManifest)["config"]["digest"]
        root = str(tmp_path / "proxy")
        clock = wallClock()
        config = GC + proxyConfig(upstream.url, "  allowpush: true\n") + UI
        async with proxyRegistry(root, upstream.url, config=config, clock=clock) as proxy:
            client = proxy.client
            for path in ("/v2/library/app/manifests/v1", f"/v2/library/app/blobs/{cachedConfig}"):
                assert (await client.request("GET", path)).code == 200
            await proxy.cache.settled()
            _, ownDigest = await client.pushImage("mine/tool", "v1", [b"mine"])
            # Past when a pull would be recorded again (uses, pull records)
            # and a tag revalidated upstream.
            clock.advance(2 * HOUR)
            await deferLater(reactor, 0.3, lambda: None)
            upstream.counting.seen.clear()
            before, counted = files(root), dict(proxy.cache.metrics.requests)
            useOfOwn = os.path.join("docker", "registry", "v2", "_gc", "uses", "sha256", ownDigest[7:])
            assert useOfOwn in before
            for name, digest in (("mine/tool", ownDigest), ("library/app", cachedDigest)):
                for path in (
                    f"/ui/repository?name={name}",
                    f"/ui/image?name={name}&reference=v1",
                    f"/ui/image?name={name}&reference={digest}",
                ):
                    await page(client, path)
            shown = await page(client, "/ui/image?name=library/app&reference=v1")
            assert "linux/amd64" in shown and cachedDigest in shown
            for path in ("/ui/", "/ui/cache", "/ui/status"):
                await page(client, path)
            await proxy.cache.settled()
            assert files(root) == before
            assert sum(upstream.counting.seen.values()) == 0
            # Nor are page views counted among the cache's requests.
            assert dict(proxy.cache.metrics.requests) == counted
            # Requests to the API record their pulls: the check above can fail.
            assert (await client.request("GET", "/v2/mine/tool/manifests/v1")).code == 200
            assert files(root)[useOfOwn] != before[useOfOwn]


@pytest_twisted.ensureDeferred
async def test_the_icon(tmp_path: Any) -> None:
    async with serving(configFor(str(tmp_path / "ui"), extra=UI)) as client:
        icon = await client.request("GET", "/ui/static/favicon.svg")
        assert icon.code == 200 and icon.header("content-type") == "image/svg+xml"
        assert icon.body.startswith(b"<svg ") and len(icon.body) < 1000
        assert "default-src 'none'" in (icon.header("content-security-policy") or "")
        assert icon.header("x-content-type-options") == "nosniff"
        asked = await client.request("GET", "/favicon.ico")
        assert (asked.code, asked.header("location")) == (302, "/ui/static/favicon.svg")
        shown = (await client.request("GET", "/ui/")).body.decode()
        assert '<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml"' in shown
    async with serving(configFor(str(tmp_path / "plain"))) as client:
        assert (await client.request("GET", "/favicon.ico")).code == 404
