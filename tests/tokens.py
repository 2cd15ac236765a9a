"""
A token issuer for the tests: the authorization server of the Docker token
protocol, with throwaway keys and certificates made by cryptography and
tokens signed by PyJWT, serving its realm on loopback from a thread; and a
client that follows the registry's Bearer challenges to it.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.web.iweb import IBodyProducer

from tests.helpers import Client, Response

SERVICE = "txregistry.test"
ISSUER = "test token issuer"
#: The issuer's users; anonymous clients are given pull scopes only.
USERS = {"alice": "secret"}


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def certificate(
    subject: str, key: Any, issuer: str, issuerKey: Any, ca: bool, days: float = 1.0
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuerKey.public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    return builder.sign(issuerKey, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


class Authority:
    """
    A root CA and a signing certificate it issued: what a token server
    signs with, and what the registry's C{rootcertbundle} holds.
    """

    def __init__(self, name: str = "token root") -> None:
        self.rootKey = ec.generate_private_key(ec.SECP256R1())
        self.root = certificate(name, self.rootKey, name, self.rootKey, ca=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.leaf = certificate(name + " signer", self.key, name, self.rootKey, ca=False)

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None, key: Any = None) -> str:
        """
        C{claims} signed ES256 by the signing key, its certificate chain
        in C{x5c} unless C{headers} say otherwise.
        """
        fields = {"x5c": [der64(self.leaf)]} if headers is None else headers
        return jwt.encode(claims, key if key is not None else self.key, algorithm="ES256", headers=fields)


def claims(
    granted: list[tuple[str, str, list[str]]], subject: str = "alice", **changes: Any
) -> dict[str, Any]:
    """
    A token's claims granting C{granted} as (type, name, actions), valid
    now for five minutes, for the test service; C{changes} replace or
    (as C{None}) drop claims.
    """
    now = int(time.time())
    document: dict[str, Any] = {
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 1,
        "iat": now,
        "jti": os.urandom(8).hex(),
        "access": [{"type": t, "name": n, "actions": a} for t, n, a in granted],
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not None}


def scopes(text: str) -> list[tuple[str, str, list[str]]]:
    granted = []
    for scope in text.split():
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        granted.append((kind, name, actions.split(",")))
    return granted


class TokenIssuer:
    """
    The realm: C{GET /token?service=...&scope=...}, with Basic credentials
    of L{USERS} or none, answers a token for the scopes asked (pull only,
    for anonymous clients), as Docker Hub's and docker_auth's do.
    """

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.issued: list[dict[str, Any]] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(request.path).query)
        user = None
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if USERS.get(name) != password:
                request.send_response(401)
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
            user = name
        granted = [g for scope in query.get("scope", []) for g in scopes(scope)]
        if user is None:
            granted = [(t, n, [a for a in actions if a == "pull"]) for t, n, actions in granted]
        document = claims(granted, subject=user or "", aud=query.get("service", [""])[0])
        self.issued.append(document)
        body = json.dumps({"token": self.authority.sign(document), "expires_in": 300}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    @contextmanager
    def running(self) -> Iterator[TokenIssuer]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(10)


def tokenConfig(root: str, realm: str, bundle: str) -> str:
    return (
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        f"    rootcertbundle: {bundle}\n"
    )


_PARAMETER = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def bearerChallenge(header: str | None) -> dict[str, str]:
    """
    The parameters of a C{Bearer} challenge.
    """
    assert header is not None and header.startswith("Bearer "), header
    return {key: value.replace('\\"', '"') for key, value in _PARAMETER.findall(header)}


class TokenClient(Client):
    """
    A registry client that does what Docker's does on a 401: asks the
    challenge's realm for a token with its service and scope (as
    C{credentials}, if any), and sends the request again with it.
    """

    def __init__(self, base: str, credentials: tuple[str, str] | None = None) -> None:
        super().__init__(base)
        self.credentials = credentials
        self.tokens: list[str] = []

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | IBodyProducer | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        response = await super().request(method, path, body, headers)
        if response.code != 401 or headers and "Authorization" in headers:
            return response
        challenge = bearerChallenge(response.header("WWW-Authenticate"))
        query = {"service": challenge["service"]}
        if "scope" in challenge:
            query["scope"] = challenge["scope"]
        answer = await treq.get(
            challenge["realm"] + "?" + urlencode(query), auth=self.credentials, agent=self.agent
        )
        if answer.code != 200:
            await treq.content(answer)
            return response
        token = (await treq.json_content(answer))["token"]
        self.tokens.append(token)
        return await super().request(
            method, path, body, {**(headers or {}), "Authorization": f"Bearer {token}"}
        )
