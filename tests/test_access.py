"""
auth.access: per-repository rights for htpasswd users, groups, any signed
in user and anonymous clients, on globs of repository names; the catalog
shows each caller what it may pull, and a mount needs pull on its source.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted

import txregistry
from tests.helpers import Client, Response, serving, sha256
from tests.test_auth import REALM, basic, entry, writeUsers
from txregistry.auth import globMatcher
from txregistry.config import ConfigError

USERS = {"alice": "a-secret", "bob": "b-secret", "carol": "c-secret", "root": "r-secret"}

RULES = """
  access:
    groups:
      developers: [alice, bob]
      operators: [carol]
    rules:
      - repositories: ["public/**"]
        actions: [pull]
        anonymous: true
      - repositories: ["team/*"]
        actions: [push]
        groups: [developers]
      - repositories: ["team/*"]
        actions: [delete]
        users: [alice]
      - repositories: ["secret/**"]
        actions: [pull]
        users: [carol]
      - repositories: [shared/**, "tools/app-?"]
        actions: [pull]
        authenticated: true
      - repositories: ["ops/**"]
        actions: [pull, push, delete]
        groups: [operators]
      - repositories: ["**"]
        actions: [pull, push, delete]
        users: [root]
"""


def rulesConfig(root: str, users: str, rules: str = RULES) -> str:
    return (
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"auth:\n  htpasswd:\n    realm: {REALM}\n    path: {users}\n{rules}"
    )


@pytest_twisted.async_yield_fixture
async def registry(tmp_path: Any) -> AsyncIterator[Client]:
    users = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(users, *(entry(user, password) for user, password in USERS.items()))
    config = txregistry.parseConfig(rulesConfig(os.path.join(str(tmp_path), "store"), users), environ={})
    async with serving(config) as client:
        yield client


def credentials(who: str) -> dict[str, str]:
    return {} if who == "anonymous" else basic(who, USERS[who])


class Root(Client):
    """
    A client that is always C{root}, whom every rule lets by.
    """

    async def request(self, method: str, path: str, body: Any = None, headers: Any = None) -> Response:
        return await super().request(method, path, body, {**credentials("root"), **(headers or {})})


#: How each action is tried: a request that is refused with 401 or 403
#: when the action is not allowed, and answers otherwise.
REQUESTS = {
    "pull": ("GET", "/v2/{}/tags/list"),
    "push": ("POST", "/v2/{}/blobs/uploads/"),
    "delete": ("DELETE", "/v2/{}/manifests/" + sha256(b"nothing")),
}

ALLOWED, LOGIN, DENIED = "allowed", 401, 403

TABLE = [
    # Anonymous clients pull what is public, and that alone.
    ("anonymous", "pull", "public/app", ALLOWED),
    ("anonymous", "pull", "public/deep/er/app", ALLOWED),
    ("anonymous", "push", "public/app", LOGIN),
    ("anonymous", "pull", "team/app", LOGIN),
    ("anonymous", "pull", "shared/app", LOGIN),
    ("anonymous", "delete", "public/app", LOGIN),
    # What anonymous clients may, everyone may.
    ("carol", "pull", "public/app", ALLOWED),
    ("carol", "push", "public/app", DENIED),
    # Groups; push includes pull; * stays within one component.
    ("alice", "push", "team/app", ALLOWED),
    ("alice", "pull", "team/app", ALLOWED),
    ("bob", "push", "team/app", ALLOWED),
    ("alice", "push", "team/app/nested", DENIED),
    ("alice", "push", "teams/app", DENIED),
    ("carol", "push", "team/app", DENIED),
    ("carol", "pull", "team/app", DENIED),
    # Users, on their own.
    ("alice", "delete", "team/app", ALLOWED),
    ("bob", "delete", "team/app", DENIED),
    ("carol", "pull", "secret/keys", ALLOWED),
    ("alice", "pull", "secret/keys", DENIED),
    ("carol", "push", "secret/keys", DENIED),
    # Any signed in user; ? is one character.
    ("alice", "pull", "shared/app", ALLOWED),
    ("carol", "pull", "shared/a/b", ALLOWED),
    ("bob", "pull", "tools/app-1", ALLOWED),
    ("bob", "pull", "tools/app-10", DENIED),
    ("bob", "push", "shared/app", DENIED),
    # What no rule grants is refused.
    ("alice", "pull", "elsewhere/app", DENIED),
    ("root", "delete", "elsewhere/app", ALLOWED),
]


@pytest_twisted.ensureDeferred
async def test_rules_grant_actions(registry: Client) -> None:
    for who, action, repository, expected in TABLE:
        method, path = REQUESTS[action]
        response = await registry.request(method, path.format(repository), headers=credentials(who))
        outcome = ALLOWED if response.code not in (401, 403) else response.code
        assert outcome == expected, (who, action, repository, response)
        if outcome == DENIED:
            assert response.errorCode() == "DENIED"
        if outcome == LOGIN:
            assert response.header("WWW-Authenticate") == f'Basic realm="{REALM}"'


@pytest_twisted.ensureDeferred
async def test_mounts_need_pull_on_the_source(registry: Client) -> None:
    root = credentials("root")
    pusher = Root(registry.base)
    digest = await pusher.pushBlob("secret/keys", b"key material")
    await pusher.close()
    response = await registry.request("HEAD", f"/v2/secret/keys/blobs/{digest}", headers=root)
    assert response.code == 200
    mount = "/v2/{}/blobs/uploads/?mount=" + digest + "&from=secret/keys"
    response = await registry.request("POST", mount.format("team/app"), headers=credentials("alice"))
    assert (response.code, response.errorCode()) == (403, "DENIED")
    assert (await registry.request("HEAD", f"/v2/team/app/blobs/{digest}", headers=root)).code == 404
    response = await registry.request("POST", mount.format("ops/app"), headers=credentials("carol"))
    assert response.code == 201
    assert (await registry.request("HEAD", f"/v2/ops/app/blobs/{digest}", headers=root)).code == 200


@pytest_twisted.ensureDeferred
async def test_the_catalog_shows_what_the_caller_may_pull(registry: Client) -> None:
    names = ["elsewhere/app", "ops/tool", "public/app", "secret/keys", "shared/lib", "team/app"]
    pusher = Root(registry.base)
    try:
        for name in names:
            await pusher.pushImage(name, "1.0", [b"layer"])
    finally:
        await pusher.close()
    expected = {
        "anonymous": ["public/app"],
        "alice": ["public/app", "shared/lib", "team/app"],
        "carol": ["ops/tool", "public/app", "secret/keys", "shared/lib"],
        "root": names,
    }
    for who, visible in expected.items():
        response = await registry.request("GET", "/v2/_catalog", headers=credentials(who))
        assert (response.code, response.json()) == (200, {"repositories": visible}), who
    # Pages are of what the caller sees.
    response = await registry.request("GET", "/v2/_catalog?n=2", headers=credentials("alice"))
    assert response.json() == {"repositories": ["public/app", "shared/lib"]}
    assert "last=shared%2Flib" in (response.header("Link") or "")


@pytest_twisted.ensureDeferred
async def test_logging_in_still_needs_a_user(registry: Client) -> None:
    # docker login checks its credentials against /v2/: anonymous pulls
    # must not make any password look right.
    assert (await registry.request("GET", "/v2/")).code == 401
    assert (await registry.request("GET", "/v2/", headers=basic("alice", "wrong"))).code == 401
    assert (await registry.request("GET", "/v2/", headers=credentials("alice"))).code == 200


@pytest_twisted.ensureDeferred
async def test_without_anonymous_rules_nothing_is_anonymous(tmp_path: Any) -> None:
    rules = '  access:\n    rules:\n      - {repositories: ["**"], actions: [pull], authenticated: true}\n'
    users = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(users, entry("alice", "a"))
    config = txregistry.parseConfig(rulesConfig(os.path.join(str(tmp_path), "store"), users, rules), {})
    async with serving(config) as client:
        for path in ["/v2/_catalog", "/v2/a/tags/list"]:
            assert (await client.request("GET", path)).code == 401
            assert (await client.request("GET", path, headers=basic("alice", "a"))).code in (200, 404)
        response = await client.request("POST", "/v2/a/blobs/uploads/", headers=basic("alice", "a"))
        assert (response.code, response.errorCode()) == (403, "DENIED")


@pytest.mark.parametrize(
    "glob, matches, misses",
    [
        ("team/*", ["team/app", "team/a-b.c_d"], ["team", "team/a/b", "teams/app"]),
        ("team/**", ["team/app", "team/a/b/c"], ["team", "teamx/app"]),
        ("**", ["a", "a/b/c"], []),
        ("a?c/x", ["abc/x"], ["ac/x", "a/c/x", "abbc/x"]),
        ("lib.x/*", ["lib.x/y"], ["libxx/y"]),
        ("**/app", ["a/app", "a/b/app"], ["app", "a/app2"]),
        ("a/**/z", ["a/b/z", "a/b/c/z"], ["a/z", "b/b/z"]),
        # Patterns that backtrack without end in a naive regular expression.
        ("*a*a*a*a*b", ["a" * 240 + "b"], ["a" * 255]),
        ("**/**/**/**/x", ["a/b/c/d/x"], ["a/" * 100 + "y"]),
    ],
)
def test_globs(glob: str, matches: list[str], misses: list[str]) -> None:
    match = globMatcher((glob,))
    assert [m for m in matches if match(m)] == matches
    assert [m for m in misses if match(m)] == []


@pytest.mark.parametrize(
    "access, message",
    [
        ("    rules: []\n", "auth.access.rules: a list of rules is required"),
        ("    rule: []\n", "auth.access.rule: unknown key"),
        (
            "    rules:\n      - {repositories: [a], actions: [pull]}\n",
            "auth.access.rules[0]: grants to nobody",
        ),
        (
            "    rules:\n      - {repositories: [a], actions: [pull], anonymus: true}\n",
            "auth.access.rules[0].anonymus: unknown key",
        ),
        (
            "    rules:\n      - {repositories: [a], actions: [read], users: [x]}\n",
            "auth.access.rules[0].actions: 'read' is not one of pull, push, delete",
        ),
        (
            "    rules:\n      - {repositories: [A/b], actions: [pull], users: [x]}\n",
            "auth.access.rules[0].repositories: 'A/b' is not a glob",
        ),
        (
            "    rules:\n      - {repositories: [team**], actions: [pull], users: [x]}\n",
            "auth.access.rules[0].repositories: 'team**': each path component",
        ),
        (
            "    rules:\n      - {repositories: [a//b], actions: [pull], users: [x]}\n",
            "auth.access.rules[0].repositories: 'a//b': each path component",
        ),
        ("", "auth.access.rules: a list of rules is required"),
        ("    ~\n", "auth.access.rules: a list of rules is required"),
        (
            "    rules:\n      - {repositories: a, actions: [pull], users: [x]}\n",
            "auth.access.rules[0].repositories: expected a list of names",
        ),
        (
            "    rules:\n      - {repositories: [a], actions: [pull], groups: [devs]}\n",
            "auth.access.rules[0].groups: no group 'devs'",
        ),
        (
            "    rules:\n      - {repositories: [a], actions: [pull], anonymous: yes please}\n",
            "auth.access.rules[0].anonymous: expected true or false",
        ),
    ],
)
def test_rules_that_stop_start_up(access: str, message: str) -> None:
    text = (
        "version: 0.1\nstorage: {inmemory: {}}\nauth:\n  htpasswd: {realm: r, path: p}\n  access:\n" + access
    )
    with pytest.raises(ConfigError) as caught:
        txregistry.parseConfig(text, environ={})
    assert str(caught.value).startswith(message), caught.value
    assert "\n" not in str(caught.value)


def test_rules_need_htpasswd_users() -> None:
    rules = "  access:\n    rules:\n      - {repositories: [a], actions: [pull], anonymous: true}\n"
    for auth in ["", "auth:\n  token: {realm: r, service: s, issuer: i, rootcertbundle: b}\n"]:
        text = "version: 0.1\nstorage: {inmemory: {}}\n" + (auth or "auth:\n") + rules
        with pytest.raises(ConfigError) as caught:
            txregistry.parseConfig(text, environ={})
        assert str(caught.value).startswith("auth.access: works with auth.htpasswd users"), caught.value


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest_twisted.ensureDeferred
async def test_the_example(tmp_path: Any) -> None:
    users = os.path.join(str(tmp_path), "htpasswd")
    writeUsers(users, entry("alice", "secret"), entry("carol", "secret"))
    environ = {
        "REGISTRY_AUTH_HTPASSWD_PATH": users,
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": os.path.join(str(tmp_path), "store"),
    }
    config = txregistry.loadConfig(os.path.join(EXAMPLES, "access.yml"), environ)
    assert config.warnings == ()
    alice, carol = basic("alice", "secret"), basic("carol", "secret")
    async with serving(config) as client:
        assert (await client.request("GET", "/v2/public/app/tags/list")).code == 404
        assert (await client.request("POST", "/v2/public/app/blobs/uploads/")).code == 401
        assert (await client.request("POST", "/v2/team/app/blobs/uploads/", headers=alice)).code == 202
        assert (await client.request("POST", "/v2/team/app/blobs/uploads/", headers=carol)).code == 403
        assert (await client.request("GET", "/v2/tools/x/tags/list", headers=carol)).code == 404
