"""
The registry's failures, as the OCI error codes that clients see.
"""

from __future__ import annotations

from typing import Any

#: Each error code with the HTTP status it answers with unless told otherwise.
STATUS: dict[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "TAG_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "RANGE_INVALID": 416,
    "PAGINATION_NUMBER_INVALID": 400,
    "UNAVAILABLE": 503,
    "UNKNOWN": 500,
}


class RegistryError(Exception):
    """
    A failure a client is told about: an OCI error code, a message for
    people, optional detail for programs, and the HTTP status to answer
    with.
    """

    def __init__(
        self,
        code: str,
        message: str,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = STATUS[code] if status is None else status
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"RegistryError({self.code!r}, {self.message!r}, {self.detail!r})"

    def asJSON(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return body

    @classmethod
    def nameInvalid(cls, name: str, why: str) -> RegistryError:
        return cls("NAME_INVALID", why, {"name": name})

    @classmethod
    def nameUnknown(cls, name: str) -> RegistryError:
        return cls("NAME_UNKNOWN", "repository name not known to registry", {"name": name})

    @classmethod
    def blobUnknown(cls, digest: object) -> RegistryError:
        return cls("BLOB_UNKNOWN", "blob unknown to registry", {"digest": str(digest)})

    @classmethod
    def manifestUnknown(cls, reference: str) -> RegistryError:
        return cls("MANIFEST_UNKNOWN", "manifest unknown", {"reference": reference})

    @classmethod
    def uploadUnknown(cls, uuid: str) -> RegistryError:
        return cls("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": uuid})

    @classmethod
    def unsupported(cls, message: str) -> RegistryError:
        return cls("UNSUPPORTED", message)

    @classmethod
    def unavailable(cls, message: str) -> RegistryError:
        return cls("UNAVAILABLE", message)
