"""
Manifest media types, and parsing of pushed manifests into what the
registry needs to know of them: the content they reference, their subject
and how they describe themselves to the referrers API.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from txregistry.errors import RegistryError
from txregistry.reference import Digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEXES

#: Layers that live elsewhere (Windows base layers): never pushed, so never
#: required to exist.
FOREIGN_LAYERS = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

#: The largest manifest accepted: the size the spec asks every registry to
#: support.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@attrs.frozen
class Descriptor:
    mediaType: str
    digest: Digest
    size: int
    artifactType: str | None = None
    annotations: dict[str, str] | None = None

    def asJSON(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "mediaType": self.mediaType,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifactType is not None:
            body["artifactType"] = self.artifactType
        if self.annotations:
            body["annotations"] = self.annotations
        return body


@attrs.frozen
class Manifest:
    """
    A parsed manifest: C{content} is exactly what was pushed.
    """

    content: bytes
    mediaType: str
    blobs: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifactType: str | None
    annotations: dict[str, str] | None

    @property
    def digest(self) -> Digest:
        return Digest.of(self.content)

    def asReferrer(self, digest: Digest) -> Descriptor:
        """
        The descriptor that the referrers API lists for this manifest.
        """
        return Descriptor(
            mediaType=self.mediaType,
            digest=digest,
            size=len(self.content),
            artifactType=self.artifactType,
            annotations=self.annotations,
        )


def _invalid(message: str, detail: Any = None) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    mediaType = value.get("mediaType")
    size = value.get("size")
    digest = value.get("digest")
    if not isinstance(mediaType, str) or not mediaType:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    try:
        parsed = Digest.parse(digest)
    except RegistryError as e:
        raise _invalid(f"{where}.digest: {e.message}", {"digest": digest}) from None
    artifactType = value.get("artifactType")
    annotations = value.get("annotations")
    _checkAnnotations(annotations, where)
    return Descriptor(
        mediaType,
        parsed,
        size,
        artifactType if isinstance(artifactType, str) else None,
        annotations,
    )


def _checkAnnotations(annotations: Any, where: str) -> None:
    if annotations is None:
        return
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise _invalid(f"{where}.annotations must map strings to strings")


def _descriptors(body: dict[str, Any], key: str) -> tuple[Descriptor, ...]:
    items = body.get(key, [])
    if not isinstance(items, list):
        raise _invalid(f"{key} must be a list of descriptors")
    return tuple(_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items))


def baseMediaType(contentType: str | None) -> str | None:
    """
    The media type of a C{Content-Type} header, without parameters.
    """
    if not contentType:
        return None
    return contentType.split(";", 1)[0].strip().lower() or None


def parseManifest(content: bytes, contentType: str | None = None) -> Manifest:
    """
    Parse and validate a manifest as pushed with the given C{Content-Type}.

    The media type is the body's own C{mediaType} field where it has one
    (it must then agree with C{Content-Type}), else the C{Content-Type},
    else what the body's shape says (OCI allows leaving the field out).
    """
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError) as e:
        raise _invalid(f"manifest is not valid JSON: {e}") from None
    except RecursionError:
        # The parser recurses once per level of nesting: a thousand levels
        # exhaust the stack, far deeper than any manifest goes.
        raise _invalid("manifest is nested too deeply") from None
    if not isinstance(body, dict):
        raise _invalid("manifest must be a JSON object")
    headerType = baseMediaType(contentType)
    if headerType in DOCKER_SCHEMA1 or body.get("schemaVersion") == 1:
        raise _invalid("Docker schema1 manifests are not supported: push schema2 or OCI manifests")
    if body.get("schemaVersion") != 2:
        raise _invalid("manifest schemaVersion must be 2")
    mediaType = body.get("mediaType")
    if mediaType is not None and not isinstance(mediaType, str):
        raise _invalid("mediaType must be a string")
    if mediaType and headerType and headerType not in ("application/json", "*/*"):
        if mediaType != headerType:
            raise _invalid(f"Content-Type {headerType} does not match the manifest's mediaType {mediaType}")
    if not mediaType:
        if headerType in MANIFEST_TYPES:
            mediaType = headerType
        else:
            mediaType = shapeMediaType(body)
    if mediaType not in MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type {mediaType!r}")

    annotations = body.get("annotations")
    _checkAnnotations(annotations, "manifest")
    artifactType = body.get("artifactType")
    if artifactType is not None and not isinstance(artifactType, str):
        raise _invalid("artifactType must be a string")
    subject = _descriptor(body["subject"], "subject") if "subject" in body else None

    if mediaType in INDEXES:
        if "manifests" not in body:
            raise _invalid("an image index needs a manifests list")
        return Manifest(
            content, mediaType, (), _descriptors(body, "manifests"), subject, artifactType, annotations
        )
    if "config" not in body:
        raise _invalid("an image manifest needs a config descriptor")
    config = _descriptor(body["config"], "config")
    layers = _descriptors(body, "layers")
    if artifactType is None:
        artifactType = config.mediaType
    return Manifest(content, mediaType, (config, *layers), (), subject, artifactType, annotations)


def shapeMediaType(body: dict[str, Any]) -> str:
    """
    The media type of a manifest body, read from its C{mediaType} field or,
    where OCI let it be left out, from its shape.
    """
    mediaType = body.get("mediaType")
    if isinstance(mediaType, str) and mediaType:
        return mediaType
    return OCI_INDEX if "manifests" in body else OCI_MANIFEST


def storedMediaType(content: bytes) -> str:
    """
    The C{Content-Type} to serve a stored manifest with. Nothing but the
    manifest itself is stored (as registry:2 does), so it is read from it.
    """
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return "application/octet-stream"
    if not isinstance(body, dict):
        return "application/octet-stream"
    if body.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[1] if "signatures" in body else DOCKER_SCHEMA1[0]
    return shapeMediaType(body)


def isForeign(descriptor: Descriptor) -> bool:
    return descriptor.mediaType in FOREIGN_LAYERS
