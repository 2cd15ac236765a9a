"""
Listings a page at a time all the way down to storage: the catalog (in
registry:2's order, walked only as far as a page needs) and tags, for the
API and the web UI, under access rules too.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from zope.interface import implementer

import txregistry
from tests.conftest import configFor
from tests.helpers import Client, ReferenceRegistry, Response, SyncClient, serving
from tests.proxy import proxyRegistry, upstreamRegistry
from tests.test_access import rulesConfig
from tests.test_auth import basic, entry, writeUsers
from txregistry.service import registryOf, served, storageDriver
from txregistry.storage import IStorageDriver

UI = "ui:\n  enabled: true\n"

#: Names whose order tells registry:2's (a path component at a time) from
#: a plain sort of the strings: C{a/b} comes before C{a-b}.
NESTED = [
    "a",
    "a/a",
    "a/b",
    "a/b/c",
    "a/b/c-d",
    "a/b-c",
    "a-b",
    "a-b/c",
    "a.b",
    "a0",
    "a_b",
    "ab",
    "b",
    "b/a",
    "z",
]


def catalogOrder(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: name.split("/"))


async def seed(client: Client, names: list[str]) -> None:
    """
    Push a small image to each of C{names}, a few at a time.
    """
    limit = DeferredSemaphore(8)

    def push(name: str) -> Deferred[Any]:
        return Deferred.fromCoroutine(client.pushImage(name, "v1", [b"layer"]))

    await gatherResults([limit.run(push, name) for name in names])


class SignedIn(Client):
    """
    A client that sends C{headers} (credentials) with every request.
    """

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        super().__init__(base)
        self.headers = headers

    async def request(self, method: str, path: str, body: Any = None, headers: Any = None) -> Response:
        return await super().request(method, path, body, {**self.headers, **(headers or {})})


async def walkPages(
    client: Client, path: str, key: str, headers: dict[str, str] | None = None
) -> list[list[str]]:
    """
    Every page of an API listing, following its C{Link} headers.
    """
    pages: list[list[str]] = []
    next: str | None = path
    while next is not None:
        response = await client.request("GET", next, headers=headers)
        assert response.code == 200, response
        pages.append(response.json()[key])
        link = response.header("Link")
        next = None if link is None else link[1 : link.index(">")]
        assert len(pages) < 1000
    return pages


async def walkUI(client: Client, path: str, headers: dict[str, str] | None = None) -> list[list[str]]:
    """
    The rows of every page of a UI listing, following its Next links.
    """
    pages: list[list[str]] = []
    next: str | None = path
    while next is not None:
        response = await client.request("GET", next, headers=headers)
        assert response.code == 200, response
        body = response.body.decode()
        pages.append([html.unescape(n) for n in re.findall(r'<tr data-name="([^"]+)">', body)])
        found = re.search(r'<a href="([^"]+)" rel="next">', body)
        next = None if found is None else html.unescape(found.group(1))
        assert len(pages) < 1000
    return pages


@pytest_twisted.ensureDeferred
async def test_catalog_pages_in_registry2_order(registry: Client) -> None:
    await seed(registry, NESTED)
    expected = catalogOrder(NESTED)
    assert expected != sorted(NESTED)
    for n in (1, 2, 4, 15, 100):
        pages = await walkPages(registry, f"/v2/_catalog?n={n}", "repositories")
        assert [name for page in pages for name in page] == expected, n
        assert all(len(page) == n for page in pages[:-1]), n
        # A Link only while more follow: the last page is never empty.
        assert pages[-1], n
    whole = await registry.request("GET", "/v2/_catalog")
    assert whole.json() == {"repositories": expected}
    for last in ("a", "a/b", "a/b/c", "a-", "b/", "a/b/c/d", "zz", "0"):
        response = await registry.request("GET", f"/v2/_catalog?n=3&last={quote(last, safe='')}")
        following = [n for n in expected if n.split("/") > last.split("/")]
        assert response.json()["repositories"] == following[:3], last


@pytest.mark.skipif(ReferenceRegistry.binary is None, reason="the reference registry is not installed")
@pytest_twisted.ensureDeferred
async def test_catalog_pages_as_the_reference_gives_them(fsRegistry: Client) -> None:
    await seed(fsRegistry, NESTED)
    root = fsRegistry.root  # type: ignore[attr-defined]
    reference = ReferenceRegistry(root)
    reference.start()
    try:
        theirs = SyncClient(reference.port)
        for n in (1, 3, 100):
            for last in ("", "a", "a/b", "a/b/c", "a-", "a-b", "b/", "a/b/c/d", "zz"):
                path = f"/v2/_catalog?n={n}&last={quote(last, safe='')}"
                expected = json.loads(theirs.request("GET", path).body)["repositories"]
                assert (await fsRegistry.request("GET", path)).json()["repositories"] == expected, path
    finally:
        reference.stop()


@implementer(IStorageDriver)
class CountedLists:
    """
    A real driver, with every directory it is asked to list recorded: the
    storage edge, counted.
    """

    def __init__(self, driver: IStorageDriver) -> None:
        self.driver = driver
        self.listed: list[str] = []

    def list(self, path: str) -> Any:
        self.listed.append(path)
        return self.driver.list(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.driver, name)

    def repositoriesListed(self) -> list[str]:
        """
        The repository directories listed since the last call (C{""}: the
        root of the repositories).
        """
        found = [p.split("/repositories", 1)[1].strip("/") for p in self.listed if "/repositories" in p]
        self.listed.clear()
        return [p for p in found if "/_" not in p and not p.startswith("_")]


@pytest.fixture(params=["filesystem", "inmemory"])
def countedDriver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_twisted.async_yield_fixture
async def counted(countedDriver: str, tmp_path: Any) -> AsyncIterator[tuple[Client, CountedLists]]:
    """
    A registry with the UI, whose driver counts what it lists.
    """
    root = os.path.join(str(tmp_path), "store") if countedDriver == "filesystem" else None
    config = configFor(root, extra=UI)
    driver = CountedLists(storageDriver(config))
    site = txregistry.site(config, served(config, registryOf(config, driver)))
    async with serving(config, site) as client:
        yield client, driver


#: 20 teams of 15 repositories, and a few a level deeper.
TEAMS = [f"team{t:02d}" for t in range(20)]
MANY = [f"{team}/app{a:02d}" for team in TEAMS for a in range(15)]
MANY += [f"team05/app03/sub{s}" for s in range(5)]


def before(listed: list[str], bound: str) -> list[str]:
    """
    The directories of C{listed} whose whole subtree comes before C{bound}.
    """
    return [p for p in listed if p and p.split("/") < bound.split("/")[: len(p.split("/"))]]


@pytest_twisted.ensureDeferred
async def test_a_catalog_page_lists_storage_for_the_page_alone(counted: tuple[Client, CountedLists]) -> None:
    client, driver = counted
    await seed(client, MANY)
    ordered = catalogOrder(MANY)
    driver.repositoriesListed()
    response = await client.request("GET", "/v2/_catalog?n=10&last=team10/app05")
    assert response.json()["repositories"] == ordered[ordered.index("team10/app05") + 1 :][:10]
    listed = driver.repositoriesListed()
    # The way down to where the page starts, its 10 repositories and the
    # one after that says more follow; never the 150 before, nor the rest.
    assert len(listed) <= 10 + 6, listed
    assert before(listed, "team10/app05") == []
    response = await client.request("GET", "/v2/_catalog?n=5")
    assert response.json()["repositories"] == ordered[:5]
    assert len(driver.repositoriesListed()) <= 5 + 4
    # The last page: from its start to the end of the store.
    response = await client.request("GET", "/v2/_catalog?n=10&last=team19/app10")
    assert (response.json()["repositories"], response.header("Link")) == (ordered[-4:], None)
    assert len(driver.repositoriesListed()) <= 4 + 4


@pytest_twisted.ensureDeferred
async def test_the_ui_repositories_page_lists_storage_for_the_page_alone(
    counted: tuple[Client, CountedLists],
) -> None:
    client, driver = counted
    await seed(client, MANY)
    driver.repositoriesListed()
    pages = await walkUI(client, "/ui/?last=team10/app05")
    ordered = catalogOrder(MANY)
    assert [n for page in pages for n in page] == ordered[ordered.index("team10/app05") + 1 :]
    # Each of its 50 rows lists the repository's tags too: one listing
    # more each, besides the walk's.
    driver.repositoriesListed()
    response = await client.request("GET", "/ui/?last=team10/app05")
    assert response.code == 200
    listed = driver.repositoriesListed()
    assert before(listed, "team10/app05") == []
    assert len(listed) <= 50 + 1 + 50 + 6, len(listed)
    # A filter walks until its page is full: app0x is in 10 of each team's
    # 15, so 50 of them are found within the first six teams.
    response = await client.request("GET", "/ui/?q=app0")
    shown = re.findall(r'<tr data-name="([^"]+)">', response.body.decode())
    assert shown == [n for n in ordered if "app0" in n][:50]
    listed = driver.repositoriesListed()
    assert [p for p in listed if p.split("/")[0] > "team06"] == []


@pytest_twisted.ensureDeferred
async def test_tags_pages(registry: Client) -> None:
    body, _ = await registry.pushImage("team/app", "seed", [b"x"])
    tags = [f"v{i}" for i in range(25)] + ["a-1", "a.1", "A", "latest"]
    for tag in tags:
        assert (await registry.pushManifest("team/app", tag, body)).code == 201
    expected = sorted([*tags, "seed"])
    for n in (1, 4, 7, 29, 30):
        pages = await walkPages(registry, f"/v2/team/app/tags/list?n={n}", "tags")
        assert [t for page in pages for t in page] == expected, n
        assert all(len(page) == n for page in pages[:-1]) and pages[-1], n
    after = await registry.request("GET", "/v2/team/app/tags/list?n=3&last=v2")
    assert after.json()["tags"] == [t for t in expected if t > "v2"][:3]


@pytest_twisted.ensureDeferred
async def test_ui_pages_walk_in_catalog_order_and_filter(tmp_path: Any) -> None:
    names = [f"r{i:03d}{suffix}" for i in range(50) for suffix in ("", "/x", "-x")]
    async with serving(configFor(os.path.join(str(tmp_path), "store"), extra=UI)) as client:
        await seed(client, names)
        pages = await walkUI(client, "/ui/")
        assert [len(page) for page in pages] == [50, 50, 50]
        assert [n for page in pages for n in page] == catalogOrder(names)
        pages = await walkUI(client, "/ui/?q=x")
        assert [len(page) for page in pages] == [50, 50]
        assert [n for page in pages for n in page] == [n for n in catalogOrder(names) if "x" in n]
        pages = await walkUI(client, "/ui/?q=nothing")
        assert pages == [[]]
        # The tags page: its count is of every tag, whichever page.
        body, _ = await client.pushImage("tagged", "t00", [b"x"])
        for i in range(1, 60):
            await client.pushManifest("tagged", f"t{i:02d}", body)
        pages = await walkUI(client, "/ui/repository?name=tagged")
        assert [n for page in pages for n in page] == [f"t{i:02d}" for i in range(60)]
        last = await client.request("GET", "/ui/repository?name=tagged&last=t55")
        assert "60 tags" in last.body.decode()


USERS = {"alice": "a-secret", "root": "r-secret"}
RULES = """
  access:
    rules:
      - repositories: ["*/keep"]
        actions: [pull]
        users: [alice]
      - repositories: ["**"]
        actions: [pull, push, delete]
        users: [root]
"""


@pytest_twisted.ensureDeferred
async def test_access_rules_hide_and_pages_stay_full(tmp_path: Any) -> None:
    users = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(users, *(entry(user, password) for user, password in USERS.items()))
    config = rulesConfig(os.path.join(str(tmp_path), "store"), users, RULES + UI)
    names = [f"r{i:03d}/{what}" for i in range(60) for what in ("hide", "keep", "other")]
    alice, root = basic("alice", USERS["alice"]), basic("root", USERS["root"])
    async with serving(txregistry.parseConfig(config, environ={})) as client:
        pusher = SignedIn(client.base, root)
        try:
            await seed(pusher, names)
        finally:
            await pusher.close()
        visible = [n for n in catalogOrder(names) if n.endswith("/keep")]
        for n in (1, 7, 60):
            pages = await walkPages(client, f"/v2/_catalog?n={n}", "repositories", alice)
            assert [name for page in pages for name in page] == visible, n
            assert all(len(page) == n for page in pages[:-1]) and pages[-1], n
        response = await client.request("GET", "/v2/_catalog?n=7", headers=alice)
        assert response.header("Link") == f'</v2/_catalog?n=7&last={quote(visible[6], safe="")}>; rel="next"'
        pages = await walkUI(client, "/ui/", alice)
        assert [len(page) for page in pages] == [50, 10]
        assert [name for page in pages for name in page] == visible
        pages = await walkUI(client, "/ui/?q=r01", alice)
        assert [name for page in pages for name in page] == [n for n in visible if "r01" in n]
        pages = await walkUI(client, "/ui/", root)
        assert [len(page) for page in pages] == [50, 50, 50, 30]
        assert (await client.request("GET", "/ui/")).code == 401


@pytest_twisted.ensureDeferred
async def test_a_cached_repository_pages_its_one_tag_list(tmp_path: Any) -> None:
    async with upstreamRegistry(os.path.join(str(tmp_path), "upstream")) as upstream:
        body, _ = await upstream.client.pushImage("team/app", "t0", [b"x"])
        for i in range(1, 9):
            await upstream.client.pushManifest("team/app", f"t{i}", body)
        async with proxyRegistry(os.path.join(str(tmp_path), "cache"), upstream.url) as proxy:
            pages = await walkPages(proxy.client, "/v2/team/app/tags/list?n=2", "tags")
            assert pages == [["t0", "t1"], ["t2", "t3"], ["t4", "t5"], ["t6", "t7"], ["t8"]]
            assert upstream.counting.count("GET", "/v2/team/app/tags/list") == 1


@pytest.mark.skipif(ReferenceRegistry.binary is None, reason="the reference registry is not installed")
@pytest_twisted.ensureDeferred
async def test_catalog_page_sizes_as_the_reference_has_them(fsRegistry: Client) -> None:
    """
    Asked for no size, a catalog page is 100 names with a Link to the next,
    as registry:2's; more than catalog.maxentries (1,000) is refused.
    """
    await seed(fsRegistry, [f"r{i:03d}" for i in range(130)])
    reference = ReferenceRegistry(fsRegistry.root)  # type: ignore[attr-defined]
    reference.start()
    try:
        theirs = SyncClient(reference.port)
        expected = theirs.request("GET", "/v2/_catalog")
        ours = await fsRegistry.request("GET", "/v2/_catalog")
        assert ours.json() == json.loads(expected.body) and len(ours.json()["repositories"]) == 100
        assert ours.header("link") == '</v2/_catalog?n=100&last=r099>; rel="next"'
        assert theirs.request("GET", "/v2/_catalog?n=1001").status == 400
        refused = await fsRegistry.request("GET", "/v2/_catalog?n=1001")
        assert (refused.code, refused.errorCode()) == (400, "PAGINATION_NUMBER_INVALID")
        assert len((await fsRegistry.request("GET", "/v2/_catalog?n=1000")).json()["repositories"]) == 130
    finally:
        reference.stop()
