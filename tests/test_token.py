"""
auth.token, the Docker token protocol: challenges that name the scope a
request needs, tokens that are accepted only when every check holds, and
real clients that fetch one from the realm and push and pull with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import pytest
import pytest_twisted
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.task import Clock

import txregistry
from tests.helpers import Client, serving, sha256
from tests.proxy import proxyConfig, proxyRegistry, upstreamRegistry
from tests.test_auth import ERRORS, paths, processWith, skopeo
from tests.test_skopeo import makeLayout
from tests.tokens import (
    ISSUER,
    SERVICE,
    Authority,
    TokenClient,
    TokenIssuer,
    bearerChallenge,
    certificate,
    claims,
    der64,
    pem,
    tokenConfig,
)
from txregistry.auth import PULL, PUSH, Access, TokenAuthenticator, keyIDs, readTrust
from txregistry.config import ConfigError
from txregistry.errors import RegistryError

SKOPEO = shutil.which("skopeo")
PUSHING = [("repository", "team/app", ["pull", "push"])]


@pytest.fixture
def authority() -> Authority:
    return Authority()


@pytest.fixture
def bundle(tmp_path: Any, authority: Authority) -> str:
    path = os.path.join(str(tmp_path), "roots.pem")
    with open(path, "wb") as f:
        f.write(pem(authority.root))
    return path


@pytest.fixture
def issuer(authority: Authority) -> Iterator[TokenIssuer]:
    with TokenIssuer(authority).running() as running:
        yield running


@pytest.fixture
def store(tmp_path: Any) -> str:
    return os.path.join(str(tmp_path), "store")


@pytest_twisted.async_yield_fixture
async def registry(store: str, bundle: str, issuer: TokenIssuer) -> AsyncIterator[Client]:
    config = txregistry.parseConfig(tokenConfig(store, issuer.realm, bundle), environ={})
    async with serving(config) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "method, path, scope",
    [
        ("GET", "/v2/", None),
        ("GET", "/v2/team/app/manifests/latest", "repository:team/app:pull"),
        ("HEAD", "/v2/team/app/blobs/" + sha256(b"x"), "repository:team/app:pull"),
        ("POST", "/v2/team/app/blobs/uploads/", "repository:team/app:pull,push"),
        (
            "POST",
            f"/v2/team/app/blobs/uploads/?mount={sha256(b'x')}&from=other/base",
            "repository:team/app:pull,push repository:other/base:pull",
        ),
        ("DELETE", "/v2/team/app/manifests/" + sha256(b"x"), "repository:team/app:delete"),
        ("GET", "/v2/_catalog", "registry:catalog:*"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_the_challenge_names_the_scope_needed(
    registry: Client, issuer: TokenIssuer, method: str, path: str, scope: str | None
) -> None:
    response = await registry.request(method, path)
    assert response.code == 401
    challenge = bearerChallenge(response.header("WWW-Authenticate"))
    expected = {"realm": issuer.realm, "service": SERVICE}
    if scope is not None:
        expected["scope"] = scope
    assert challenge == expected
    if method != "HEAD":
        assert response.errorCode() == "UNAUTHORIZED"


@pytest_twisted.ensureDeferred
async def test_every_route_asks_for_a_token(registry: Client, issuer: TokenIssuer) -> None:
    for method, path in [*paths(), *ERRORS]:
        response = await registry.request(method, path)
        assert response.code == 401, (method, path, response)
        assert bearerChallenge(response.header("WWW-Authenticate"))["realm"] == issuer.realm


@pytest_twisted.ensureDeferred
async def test_a_client_follows_the_challenge_to_push_and_pull(registry: Client, issuer: TokenIssuer) -> None:
    client = TokenClient(registry.base, ("alice", "secret"))
    try:
        manifest, digest = await client.pushImage("team/app", "1.0", [b"layer one"])
        pulled = await client.request("GET", "/v2/team/app/manifests/1.0")
        assert (pulled.code, pulled.body) == (200, manifest)
        assert (
            await client.request("GET", "/v2/team/app/blobs/" + sha256(b"layer one"))
        ).body == b"layer one"
        catalog = await client.request("GET", "/v2/_catalog")
        assert catalog.json() == {"repositories": ["team/app"]}
    finally:
        await client.close()
    # What the issuer was asked for is what each request needed.
    asked = {(a["type"], a["name"], tuple(a["actions"])) for c in issuer.issued for a in c["access"]}
    assert asked == {
        ("repository", "team/app", ("pull", "push")),
        ("repository", "team/app", ("pull",)),
        ("registry", "catalog", ("*",)),
    }
    # An anonymous client gets a token for pulls only: enough to pull,
    # not to push.
    anonymous = TokenClient(registry.base)
    try:
        assert (await anonymous.request("GET", f"/v2/team/app/manifests/{digest}")).code == 200
        response = await anonymous.request("PUT", "/v2/team/app/manifests/2.0", manifest)
        assert response.code == 401
        assert bearerChallenge(response.header("WWW-Authenticate"))["error"] == "insufficient_scope"
    finally:
        await anonymous.close()


def _segment(document: dict[str, Any]) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=")


def hmacKeyedWith(secret: bytes, authority: Authority) -> str:
    # The classic forgery: HS256 "keyed" with the signer's certificate or
    # public key, which anyone has (PyJWT will not make one: by hand).
    header = _segment({"alg": "HS256", "typ": "JWT", "x5c": [der64(authority.leaf)]})
    signing = header + b"." + _segment(claims(PUSHING))
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing, hashlib.sha256).digest()).rstrip(b"=")
    return (signing + b"." + signature).decode()


def publicPEM(authority: Authority) -> bytes:
    return authority.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def unsigned() -> str:
    return (_segment({"alg": "none", "typ": "JWT"}) + b"." + _segment(claims(PUSHING)) + b".").decode()


BAD_TOKENS: dict[str, Any] = {
    "expired beyond the leeway": lambda a: a.sign(claims(PUSHING, exp=_now() - 61)),
    "not valid yet": lambda a: a.sign(claims(PUSHING, nbf=_now() + 120)),
    "for another audience": lambda a: a.sign(claims(PUSHING, aud="another.service")),
    "from another issuer": lambda a: a.sign(claims(PUSHING, iss="someone else")),
    "without an expiry": lambda a: a.sign(claims(PUSHING, exp=None)),
    "signed by another key": lambda a: a.sign(claims(PUSHING), key=Authority("other").key),
    "with another root's chain": lambda a: Authority("other").sign(claims(PUSHING)),
    "with an unknown kid": lambda a: a.sign(claims(PUSHING), headers={"kid": "ABCD:EFGH"}),
    "with no key named": lambda a: a.sign(claims(PUSHING), headers={}),
    "alg none": lambda a: unsigned(),
    "HS256 keyed with the certificate": lambda a: hmacKeyedWith(pem(a.leaf), a),
    "HS256 keyed with the public key": lambda a: hmacKeyedWith(publicPEM(a), a),
    "a garbled x5c": lambda a: a.sign(claims(PUSHING), headers={"x5c": ["bm90IGEgY2VydA=="]}),
    "an x5c certificate of an unknown version": lambda a: a.sign(
        claims(PUSHING), headers={"x5c": [unknownVersion(a.leaf)]}
    ),
    "an x5c of self-issued intermediates": lambda a: a.sign(claims(PUSHING), headers={"x5c": circles(a)}),
    "an x5c too long": lambda a: a.sign(claims(PUSHING), headers={"x5c": [der64(a.leaf)] * 5}),
    "exp NaN": lambda a: a.sign(claims(PUSHING, exp=float("nan"))),
    "exp infinite": lambda a: a.sign(claims(PUSHING, exp=float("inf"))),
    "exp too large": lambda a: a.sign(claims(PUSHING, exp=10**400)),
    "nbf too large": lambda a: a.sign(claims(PUSHING, nbf=-(10**400))),
    "access that is not a list": lambda a: a.sign(claims([], access={"type": "repository"})),
    "not a token": lambda a: "not.a.token",
}


def unknownVersion(certificate: x509.Certificate) -> str:
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert b"\xa0\x03\x02\x01\x02" in der
    return base64.b64encode(der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x21", 1)).decode()


def circles(authority: Authority) -> list[str]:
    """
    A leaf and CA certificates that each issued themselves under the
    leaf's issuer's name: path building would go round them.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("leaf", key, "X", key, ca=False)
    loops = [certificate("X", key, "X", key, ca=True) for _ in range(3)]
    return [der64(c) for c in [leaf, *loops]]


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
@pytest_twisted.ensureDeferred
async def test_bad_tokens_are_refused_and_change_nothing(
    registry: Client, authority: Authority, store: str, case: str
) -> None:
    token = BAD_TOKENS[case](authority)
    for method, path, body in [
        ("POST", "/v2/team/app/blobs/uploads/?digest=" + sha256(b"x"), b"x"),
        ("PUT", "/v2/team/app/manifests/1.0", b"{}"),
        ("GET", "/v2/team/app/tags/list", None),
        ("GET", "/v2/", None),
    ]:
        response = await registry.request(method, path, body, bearer(token))
        assert response.code == 401, (case, method, response)
        challenge = bearerChallenge(response.header("WWW-Authenticate"))
        assert challenge["error"] == "invalid_token", (case, challenge)
    assert not os.path.exists(os.path.join(store, "docker", "registry", "v2", "repositories"))


@pytest_twisted.ensureDeferred
async def test_a_token_for_something_else_is_too_narrow(
    registry: Client, authority: Authority, store: str
) -> None:
    for granted in [
        [("repository", "team/other", ["pull", "push"])],
        [("repository", "team/app", ["pull"])],
        [("repository", "team/app", ["push"])],
        [("registry", "catalog", ["*"])],
    ]:
        token = authority.sign(claims(granted))
        response = await registry.request(
            "POST", "/v2/team/app/blobs/uploads/?digest=" + sha256(b"x"), b"x", bearer(token)
        )
        assert response.code == 401
        challenge = bearerChallenge(response.header("WWW-Authenticate"))
        assert challenge["error"] == "insufficient_scope"
        assert challenge["scope"] == "repository:team/app:pull,push"
    assert not os.path.exists(os.path.join(store, "docker", "registry", "v2", "repositories"))
    # A token for the catalog alone still says who: GET /v2/ lets it by.
    token = authority.sign(claims([("registry", "catalog", ["*"])]))
    assert (await registry.request("GET", "/v2/", headers=bearer(token))).code == 200
    assert (await registry.request("GET", "/v2/_catalog", headers=bearer(token))).code == 200


@pytest_twisted.ensureDeferred
async def test_wildcard_actions_and_the_leeway(registry: Client, authority: Authority) -> None:
    token = authority.sign(claims([("repository", "team/app", ["*"])], exp=_now() - 30, nbf=_now() + 30))
    response = await registry.request(
        "POST", "/v2/team/app/blobs/uploads/?digest=" + sha256(b"x"), b"x", bearer(token)
    )
    assert response.code == 201
    response = await registry.request("DELETE", "/v2/team/app/blobs/" + sha256(b"x"), headers=bearer(token))
    assert response.code == 202


def trustedBy(tmp_path: Any, authority: Authority, jwks: dict[str, Any] | None = None) -> TokenAuthenticator:
    bundle = os.path.join(str(tmp_path), "bundle.pem")
    with open(bundle, "wb") as f:
        f.write(pem(authority.root))
    keys = None
    if jwks is not None:
        keys = os.path.join(str(tmp_path), "jwks.json")
        with open(keys, "w") as f:
            json.dump(jwks, f)
    return TokenAuthenticator("realm", SERVICE, ISSUER, readTrust(bundle, keys), reactor, Clock())


@pytest_twisted.ensureDeferred
async def test_keys_named_by_kid(tmp_path: Any, authority: Authority) -> None:
    """
    A token without a chain names its key: a root's, by RFC 7638
    thumbprint (registry:2 3.x) or libtrust ID (2.x token servers), or a
    JWKS key by its kid. A JWK header is never trusted for its own key.
    """
    other = Authority("jwks")
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(other.key.public_key()))
    # Given with its private part, the key still only verifies.
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(authority.key))
    keys = [{**jwk, "kid": "jwks-key-1"}, {**private, "kid": "jwks-key-2"}]
    authenticator = trustedBy(tmp_path, authority, {"keys": keys})
    clock = authenticator._clock
    assert isinstance(clock, Clock)
    clock.advance(_now())
    libtrust, thumbprint = keyIDs(authority.root.public_key())
    assert len(libtrust.split(":")) == 12
    accepted = [
        authority.sign(claims(PUSHING), headers={"kid": libtrust}, key=authority.rootKey),
        authority.sign(claims(PUSHING), headers={"kid": thumbprint}, key=authority.rootKey),
        other.sign(claims(PUSHING), headers={"kid": "jwks-key-1"}),
        authority.sign(claims(PUSHING), headers={"kid": "jwks-key-2"}),
        authority.sign(claims(PUSHING), headers={"x5c": [der64(authority.leaf), der64(authority.root)]}),
    ]
    for token in accepted:
        identity = await authenticator.authenticate(f"Bearer {token}".encode())
        assert identity.name == "alice"
        assert ("repository", "team/app", "push") in identity.grants
    mallory = Authority("mallory")
    ownKey = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(mallory.key.public_key()))
    refused = [
        # Its own key in a JWK header, under a kid it does not have.
        mallory.sign(claims(PUSHING), headers={"jwk": {**ownKey, "kid": "mallory"}}),
        # A trusted kid in a JWK header carrying its own key instead.
        mallory.sign(claims(PUSHING), headers={"jwk": {**ownKey, "kid": "jwks-key-1"}}),
        # The leaf certificate as a root of its own.
        mallory.sign(claims(PUSHING), headers={"x5c": [der64(mallory.leaf), der64(authority.root)]}),
    ]
    for token in refused:
        with pytest.raises(RegistryError) as caught:
            await authenticator.authenticate(f"Bearer {token}".encode())
        assert 'error="invalid_token"' in caught.value.headers["WWW-Authenticate"]


@pytest_twisted.ensureDeferred
async def test_a_remembered_token_still_expires(tmp_path: Any, authority: Authority) -> None:
    authenticator = trustedBy(tmp_path, authority)
    clock = authenticator._clock
    assert isinstance(clock, Clock)
    clock.advance(_now())
    token = f"Bearer {authority.sign(claims(PUSHING, exp=_now() + 10))}".encode()
    needs = [Access(PULL, "team/app"), Access(PUSH, "team/app")]
    assert (await authenticator.authenticate(token, needs)).name == "alice"
    clock.advance(10 + 60 + 1)
    with pytest.raises(RegistryError):
        await authenticator.authenticate(token, needs)


@pytest.mark.parametrize(
    "token, message",
    [
        ({"rootcertbundle": None}, "auth.token: needs at least one signing key"),
        ({"rootcertbundle": "/nonexistent/roots.pem"}, "auth.token: rootcertbundle: /nonexistent/roots.pem:"),
        ({"signingalgorithms": ["HS256"]}, "auth.token: signingalgorithms: HS256 is not supported"),
        ({"signingalgorithms": ["none"]}, "auth.token: signingalgorithms: none is not supported"),
        ({"jwks": "OCT"}, "auth.token: jwks: "),
        ({"jwks": "P-999"}, "auth.token: jwks: "),
        ({"autoredirect": True}, "auth.token.autoredirect: not supported"),
        ({"rootcertbundel": "x"}, "auth.token.rootcertbundel: unknown key"),
    ],
)
def test_token_configurations_that_stop_start_up(
    tmp_path: Any, bundle: str, token: dict[str, Any], message: str
) -> None:
    section: dict[str, Any] = {"realm": "r", "service": SERVICE, "issuer": ISSUER, "rootcertbundle": bundle}
    unusable = {
        "OCT": {"kty": "oct", "k": "c2VjcmV0", "kid": "s"},
        "P-999": {"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA", "kid": "c"},
    }
    if token.get("jwks") in unusable:
        path = os.path.join(str(tmp_path), "unusable.json")
        with open(path, "w") as f:
            json.dump({"keys": [unusable[token["jwks"]]]}, f)
        token = {"jwks": path, "rootcertbundle": None}
    section.update(token)
    section = {k: v for k, v in section.items() if v is not None}
    text = "version: 0.1\nstorage: {inmemory: {}}\n" + yaml.safe_dump({"auth": {"token": section}})
    with pytest.raises(ConfigError) as caught:
        txregistry.resource(txregistry.parseConfig(text, environ={}))
    assert str(caught.value).startswith(message), caught.value
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")
def test_skopeo_gets_a_token_and_pushes_and_pulls(tmp_path: Any, bundle: str, issuer: TokenIssuer) -> None:
    process = processWith(str(tmp_path), lambda store: tokenConfig(store, issuer.realm, bundle))
    try:
        source = os.path.join(str(tmp_path), "layout")
        makeLayout(source, "1.0")
        image = f"docker://127.0.0.1:{process.port}/skopeo/test:1.0"
        # Anonymous: the issuer grants pull only, so the push is refused.
        skopeo("copy", "--dest-tls-verify=false", f"oci:{source}:1.0", image, ok=False)
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:wrong",
            f"oci:{source}:1.0",
            image,
            ok=False,
        )
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:secret", f"oci:{source}:1.0", image)
        back = os.path.join(str(tmp_path), "back")
        skopeo("copy", "--src-tls-verify=false", image, f"oci:{back}:copied")
        assert os.path.exists(os.path.join(back, "index.json"))
        scopes = {a["name"]: tuple(a["actions"]) for c in issuer.issued for a in c["access"]}
        assert scopes["skopeo/test"] in (("pull",), ("pull", "push"))
    finally:
        process.stop()


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest_twisted.ensureDeferred
async def test_the_example(tmp_path: Any, bundle: str, authority: Authority) -> None:
    environ = {
        "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE": bundle,
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": os.path.join(str(tmp_path), "store"),
    }
    config = txregistry.loadConfig(os.path.join(EXAMPLES, "token.yml"), environ)
    assert config.warnings == ()
    async with serving(config) as client:
        response = await client.request("GET", "/v2/team/app/tags/list")
        assert bearerChallenge(response.header("WWW-Authenticate")) == {
            "realm": "https://auth.example.test/token",
            "service": "txregistry",
            "scope": "repository:team/app:pull",
        }
        token = authority.sign(
            claims([("repository", "team/app", ["pull"])], iss="example-issuer", aud="txregistry")
        )
        response = await client.request("GET", "/v2/team/app/tags/list", headers=bearer(token))
        assert response.errorCode() == "NAME_UNKNOWN"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "bearer not a token",
        "Basic " + base64.b64encode(b"alice:secret").decode(),
        "Bearer " + "A" * 13000,
        "Bearer \u00e9t\u00e9",
        "Bearer ..",
        "Bearer e30.e30.",
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_authorization_headers(registry: Client, header: str) -> None:
    for method, path in [("GET", "/v2/"), ("GET", "/v2/team/app/tags/list"), ("PUT", "/v2/a/manifests/1")]:
        response = await registry.request(method, path, headers={"Authorization": header})
        assert response.code == 401, response
        assert response.errorCode() == "UNAUTHORIZED"
        assert bearerChallenge(response.header("WWW-Authenticate"))["service"] == SERVICE


@pytest_twisted.ensureDeferred
async def test_pull_through_cache_behind_token_auth(tmp_path: Any, bundle: str, issuer: TokenIssuer) -> None:
    async with upstreamRegistry(os.path.join(str(tmp_path), "upstream")) as upstream:
        manifest, _ = await upstream.client.pushImage("library/app", "1.0", [b"layer"])
        auth = tokenConfig("unused", issuer.realm, bundle).split("auth:\n", 1)[1]
        config = proxyConfig(upstream.url) + "auth:\n" + auth
        async with proxyRegistry(os.path.join(str(tmp_path), "cache"), upstream.url, config=config) as proxy:
            response = await proxy.client.request("GET", "/v2/library/app/manifests/1.0")
            assert response.code == 401
            assert upstream.counting.count("GET", "/v2/library/app/manifests/1.0") == 0
            client = TokenClient(proxy.client.base)
            try:
                response = await client.request("GET", "/v2/library/app/manifests/1.0")
                assert (response.code, response.body) == (200, manifest)
            finally:
                await client.close()
