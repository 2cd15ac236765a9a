"""
The grammar of repository names, tags and digests (OCI distribution-spec,
"Pulling manifests" and "Workflow categories"), in one place.
"""

from __future__ import annotations

import hashlib
import re

import attrs

from txregistry.errors import RegistryError

NAME_MAX_LENGTH = 255

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")

#: Digest algorithms we can verify, with the length of their hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}


def isValidName(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and _NAME.fullmatch(name) is not None


def checkName(name: str) -> str:
    """
    Return C{name} if it is a valid repository name, else raise
    C{NAME_INVALID}.
    """
    if len(name) > NAME_MAX_LENGTH:
        raise RegistryError.nameInvalid(name, f"repository name is longer than {NAME_MAX_LENGTH} characters")
    if _NAME.fullmatch(name) is None:
        raise RegistryError.nameInvalid(name, "repository name must match the OCI name grammar")
    return name


def isValidTag(tag: str) -> bool:
    return _TAG.fullmatch(tag) is not None


def checkTag(tag: str) -> str:
    if not isValidTag(tag):
        raise RegistryError("TAG_INVALID", "manifest tag did not match the tag grammar", {"tag": tag})
    return tag


def lookupTag(reference: str) -> str:
    """
    A reference that is no digest, to look up: a tag, or, where it is not
    even that, a name that cannot be there (C{MANIFEST_UNKNOWN}, as
    registry:2 and the OCI conformance suite have it, not C{TAG_INVALID}).
    """
    if not isValidTag(reference):
        raise RegistryError.manifestUnknown(reference)
    return reference


@attrs.frozen(order=True)
class Digest:
    """
    A content digest such as C{sha256:<64 hex digits>}, for an algorithm we
    can compute.
    """

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """
        Parse a digest, raising C{DIGEST_INVALID} for text that is not one and
        C{UNSUPPORTED} for a well-formed digest of an algorithm we do not know.
        """
        match = _DIGEST.fullmatch(text)
        if match is None:
            raise RegistryError("DIGEST_INVALID", "invalid digest", {"digest": text})
        algorithm, encoded = match.groups()
        length = ALGORITHMS.get(algorithm)
        if length is None:
            # A well-formed digest we cannot check: bad input (400), not a
            # method the endpoint lacks (UNSUPPORTED's usual 405).
            raise RegistryError(
                "UNSUPPORTED",
                f"digest algorithm {algorithm!r} is not supported (use sha256 or sha512)",
                {"digest": text},
                status=400,
            )
        if len(encoded) != length or re.fullmatch("[0-9a-f]+", encoded) is None:
            raise RegistryError(
                "DIGEST_INVALID",
                f"a {algorithm} digest is {length} lowercase hex digits",
                {"digest": text},
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, content: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, content).hexdigest())


def looksLikeDigest(reference: str) -> bool:
    """
    Whether a manifest reference is meant as a digest rather than a tag: tags
    cannot contain a colon.
    """
    return ":" in reference
