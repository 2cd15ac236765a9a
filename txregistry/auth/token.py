"""
registry:2's C{auth.token}, the Docker token protocol: an authorization
server issues signed JWTs naming what their bearer may do, and the
registry checks each one against keys it trusts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import attrs
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification
from twisted.internet.defer import Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from txregistry.auth.challenges import bearer
from txregistry.auth.interfaces import (
    ANONYMOUS,
    CATALOG,
    Access,
    Grants,
    IAccessPolicy,
    IAuthenticator,
    Identity,
)
from txregistry.auth.remembered import Remembered
from txregistry.errors import RegistryError
from txregistry.flight import SingleFlight
from txregistry.logging import logger

log = logger(__name__)

#: Seconds of clock skew allowed either side of C{nbf} and C{exp}, as
#: registry:2 allows.
LEEWAY = 60.0
#: Longer tokens than this are refused unread.
MAX_TOKEN = 12 * 1024
#: The most certificates an C{x5c} chain may hold: a leaf and a few
#: intermediates, as token servers send; each one more is more signatures
#: for whoever sends a token to check.
MAX_CHAIN = 4

#: The public key a signature of each algorithm needs. No HMAC: a shared
#: secret is not something a registry that only holds public keys has,
#: and an HMAC "keyed" with one of those keys is a forgery anyone can make.
_KEY_TYPES: Mapping[str, tuple[type, ...]] = {
    **{f"RS{bits}": (RSAPublicKey,) for bits in (256, 384, 512)},
    **{f"PS{bits}": (RSAPublicKey,) for bits in (256, 384, 512)},
    **{f"ES{bits}": (EllipticCurvePublicKey,) for bits in (256, 384, 512)},
    "EdDSA": (Ed25519PublicKey, Ed448PublicKey),
}
#: The algorithms accepted unless C{signingalgorithms} says otherwise.
ALGORITHMS: tuple[str, ...] = tuple(_KEY_TYPES)
#: The catalog, in a token's C{access} claim.
_CATALOG = ("registry", "catalog", "*")


class TokenConfigError(Exception):
    """
    Keys that cannot be trusted as given, said in one line.
    """


class _Invalid(Exception):
    """
    A token that proves nothing; its message goes to the log, not the client.
    """


@attrs.frozen
class Trust:
    """
    What a token may be signed with: a key a certificate chain in its
    C{x5c} header leads to from one of C{roots}, or a key named by its
    C{kid} (C{keys}: from the roots' own keys and a JWKS).
    """

    roots: tuple[x509.Certificate, ...]
    keys: Mapping[str, Any]


def keyIDs(key: Any) -> list[str]:
    """
    The IDs a token's C{kid} may name C{key} by: its RFC 7638 thumbprint
    (registry:2 3.x), and the libtrust ID that registry:2 2.x and the
    token servers written for it use.
    """
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    libtrust = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    ids = [":".join(libtrust[i : i + 4] for i in range(0, len(libtrust), 4))]
    members: tuple[str, ...]
    if isinstance(key, RSAPublicKey):
        jwk, members = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True), ("e", "kty", "n")
    elif isinstance(key, EllipticCurvePublicKey):
        jwk, members = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True), ("crv", "kty", "x", "y")
    elif isinstance(key, (Ed25519PublicKey, Ed448PublicKey)):
        jwk, members = jwt.algorithms.OKPAlgorithm.to_jwk(key, as_dict=True), ("crv", "kty", "x")
    else:
        return ids
    required = {name: jwk[name] for name in members}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode()
    ids.append(base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).decode().rstrip("="))
    return ids


def readTrust(rootCertBundle: str | None, jwks: str | None) -> Trust:
    """
    The certificates of a PEM bundle and the public keys of a JWKS file.
    """
    roots: list[x509.Certificate] = []
    keys: dict[str, Any] = {}
    if rootCertBundle:
        try:
            with open(rootCertBundle, "rb") as f:
                roots = x509.load_pem_x509_certificates(f.read())
        except OSError as e:
            raise TokenConfigError(f"rootcertbundle: {rootCertBundle}: {e.strerror}") from None
        except ValueError:
            raise TokenConfigError(f"rootcertbundle: {rootCertBundle}: no PEM certificates") from None
        for root in roots:
            for kid in keyIDs(root.public_key()):
                keys[kid] = root.public_key()
    if jwks:
        try:
            with open(jwks, "rb") as f:
                document = json.load(f)
            keySet = jwt.PyJWKSet.from_dict(document)
        except OSError as e:
            raise TokenConfigError(f"jwks: {jwks}: {e.strerror}") from None
        except (ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as e:
            raise TokenConfigError(f"jwks: {jwks}: not a usable JSON Web Key Set ({e})") from None
        given = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(given, list) or len(given) != len(keySet.keys):
            raise TokenConfigError(f"jwks: {jwks}: has keys of a type or curve that is not supported")
        for jwk in keySet.keys:
            if jwk.key_type == "oct":
                raise TokenConfigError(f"jwks: {jwks}: symmetric (oct) keys are not supported")
            if not jwk.key_id:
                raise TokenConfigError(f"jwks: {jwks}: every key needs a kid")
            key = jwk.key
            # A key given with its private part: only the public one is used.
            keys[jwk.key_id] = key.public_key() if hasattr(key, "private_bytes") else key
    if not roots and not keys:
        raise TokenConfigError("needs at least one signing key: give rootcertbundle or jwks")
    return Trust(tuple(roots), keys)


def _grants(claim: Any) -> Grants:
    if claim is None:
        return frozenset()
    if not isinstance(claim, list):
        raise _Invalid("access is not a list")
    grants = set()
    for entry in claim:
        if not isinstance(entry, dict):
            raise _Invalid("an access entry is not an object")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise _Invalid("an access entry needs type, name and actions")
        for action in actions:
            if not isinstance(action, str):
                raise _Invalid("an action is not a string")
            grants.add((kind, name, action))
    return frozenset(grants)


@implementer(IAuthenticator)
class TokenAuthenticator:
    """
    Bearer tokens checked against L{Trust}: signed with an allowed
    algorithm by a trusted key, issued by C{issuer} for C{service}, and in
    date. Tokens that checked out are remembered (by their SHA-256) until
    they expire or for C{lifetime} seconds, C{size} at most, so that a
    client's next requests with the same token cost no signature check.
    """

    def __init__(
        self,
        realm: str,
        service: str,
        issuer: str,
        trust: Trust,
        reactor: IReactorThreads,
        clock: IReactorTime,
        algorithms: Sequence[str] = ALGORITHMS,
        lifetime: float = 300.0,
        size: int = 20_000,
        concurrency: int = 4,
    ) -> None:
        unknown = [a for a in algorithms if a not in _KEY_TYPES]
        if unknown:
            raise TokenConfigError(
                f"signingalgorithms: {unknown[0]} is not supported (only {', '.join(ALGORITHMS)})"
            )
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self.trust = trust
        self.algorithms = tuple(algorithms)
        self._reactor = reactor
        self._clock = clock
        # Weighed by the grants each token carries, so that large tokens
        # cannot make it large.
        self._checked: Remembered[bytes, Identity] = Remembered(clock, lifetime, size)
        self._checks = DeferredSemaphore(concurrency)
        self._flight: SingleFlight[tuple[Identity, float]] = SingleFlight()

    def challenge(self, needs: Sequence[Access], error: str | None = None) -> RegistryError:
        return RegistryError(
            "UNAUTHORIZED",
            "authentication required",
            [{"Type": _type(a), "Name": _name(a), "Action": _action(a)} for a in needs] or None,
            headers={"WWW-Authenticate": bearer(self.realm, self.service, needs, error)},
        )

    def refusal(self, identity: Identity, needs: Sequence[Access]) -> RegistryError:
        # Not 403: a client with a narrow token is to come back with one
        # for the scope asked.
        return self.challenge(needs, "insufficient_scope")

    def authenticate(self, authorization: bytes | None, needs: Sequence[Access] = ()) -> Deferred[Identity]:
        if authorization is None:
            return succeed(ANONYMOUS)
        scheme, _, token = authorization.strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return fail(self.challenge(needs))
        if len(token) > MAX_TOKEN:
            return fail(self.challenge(needs, "invalid_token"))
        key = hashlib.sha256(token).digest()
        identity = self._checked.get(key)
        if identity is not None:
            return succeed(identity)
        return Deferred.fromCoroutine(self._checkNew(key, token, needs))

    async def _checkNew(self, key: bytes, token: bytes, needs: Sequence[Access]) -> Identity:
        # Signatures and chains in threads, a few at once, once for each
        # token asked about at the same time: a client that sends tokens
        # costly to check holds up nobody whose token checked out.
        def check() -> Deferred[tuple[Identity, float]]:
            pool = self._reactor.getThreadPool()
            return self._checks.run(deferToThreadPool, self._reactor, pool, self._verify, token)

        try:
            identity, expires = await self._flight.run(key, check)
        except _Invalid as e:
            log.info("token refused: {why}", why=str(e))
            raise self.challenge(needs, "invalid_token") from None
        self._checked.put(key, identity, expires, weight=1 + len(identity.grants))
        return identity

    def _verify(self, raw: bytes) -> tuple[Identity, float]:
        """
        Who a token says its bearer is, and until when; in a thread.
        """
        try:
            return self._verified(raw)
        except _Invalid:
            raise
        except Exception as e:
            # What a client sends must never be a 500: cryptography does
            # not promise which errors malformed certificates raise.
            raise _Invalid(f"cannot be checked: {type(e).__name__}: {e}") from None

    def _verified(self, raw: bytes) -> tuple[Identity, float]:
        try:
            token = raw.decode("ascii")
            header = jwt.get_unverified_header(token)
        except (UnicodeDecodeError, jwt.PyJWTError) as e:
            raise _Invalid(f"malformed: {e}") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise _Invalid(f"algorithm {algorithm!r} is not allowed")
        key = self._signingKey(header)
        if not _signsWith(key, algorithm):
            raise _Invalid(f"the key is not one {algorithm} signs with")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.service,
                issuer=self.issuer,
                # The times are checked against our clock below.
                options={"require": ["exp"], "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise _Invalid(str(e)) from None
        now = self._clock.seconds()
        expires, notBefore = claims["exp"], claims.get("nbf", 0)
        if not _isTime(expires) or not _isTime(notBefore):
            raise _Invalid("exp and nbf must be numbers")
        if now > expires + LEEWAY:
            raise _Invalid("expired")
        if now < notBefore - LEEWAY:
            raise _Invalid("not valid yet")
        subject = claims.get("sub")
        identity = Identity(subject if isinstance(subject, str) else "", _grants(claims.get("access")))
        return identity, expires + LEEWAY

    def _signingKey(self, header: dict[str, Any]) -> Any:
        chain = header.get("x5c")
        if chain is not None:
            return self._chainedKey(chain)
        jwk = header.get("jwk")
        kid = jwk.get("kid") if isinstance(jwk, dict) else header.get("kid")
        # The key a JWK header carries is never taken on its word: only the
        # trusted key of the same ID is used.
        if not isinstance(kid, str) or kid not in self.trust.keys:
            raise _Invalid(f"signed by an untrusted key {kid!r}")
        return self.trust.keys[kid]

    def _chainedKey(self, chain: Any) -> Any:
        if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain):
            raise _Invalid("x5c is not a list of certificates")
        if len(chain) > MAX_CHAIN:
            raise _Invalid(f"x5c has more than {MAX_CHAIN} certificates")
        if not self.trust.roots:
            raise _Invalid("x5c given, but no rootcertbundle to check it against")
        try:
            certificates = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain]
        except (binascii.Error, ValueError, x509.InvalidVersion) as e:
            raise _Invalid(f"x5c: {e}") from None
        for certificate in certificates[1:]:
            # Self-issued intermediates lead path building round in
            # circles, a signature check each time; a root is not sent.
            if certificate.issuer == certificate.subject and certificate not in self.trust.roots:
                raise _Invalid("x5c holds a self-issued certificate that is not a trusted root")
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(self.trust.roots)))
            .time(datetime.fromtimestamp(self._clock.seconds(), timezone.utc))
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                # As registry:2 (ExtKeyUsageAny): a signing certificate
                # needs no particular usage.
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(certificates[0], certificates[1:])
        except (verification.VerificationError, ValueError) as e:
            raise _Invalid(f"x5c does not lead to a trusted root: {e}") from None
        return certificates[0].public_key()


def _signsWith(key: Any, algorithm: str) -> bool:
    return isinstance(key, _KEY_TYPES[algorithm])


def _isTime(value: Any) -> bool:
    # As registry:2 reads them: a number of seconds that fits an int64.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**63
    return isinstance(value, float) and math.isfinite(value) and abs(value) < 2**63


def _type(access: Access) -> str:
    return "registry" if access.action == CATALOG else "repository"


def _name(access: Access) -> str:
    return "catalog" if access.action == CATALOG else access.repository or ""


def _action(access: Access) -> str:
    return "*" if access.action == CATALOG else access.action


@implementer(IAccessPolicy)
class TokenAccess:
    """
    What a token's C{access} claim grants, with C{*} for every action; the
    catalog, whole, to a token for C{registry:catalog:*}.
    """

    def allows(self, identity: Identity, access: Access) -> bool:
        if access.action == CATALOG:
            return _CATALOG in identity.grants
        name = access.repository or ""
        grants = identity.grants
        return ("repository", name, access.action) in grants or ("repository", name, "*") in grants
