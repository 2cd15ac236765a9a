"""
The web UI's cache page and what viewing any page leaves alone, over HTTP
against registries on loopback: the eviction preview shows what a pass then
removes, in its order; no page view writes to the store (use records, pull
records) or asks an upstream; and the UI's icon is served.
"""

from __future__ import annotations

import html
import os
import re
from typing import Any

import pytest_twisted

from tests.helpers import Client, sha256
from tests.proxy import proxyConfig, proxyRegistry, upstreamRegistry
from tests.test_proxy import wallClock
from txregistry.proxy import Eviction

UI = "ui:\n  enabled: true\n"
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
