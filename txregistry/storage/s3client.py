"""
Signed requests to an S3 bucket, through treq.

txaws, the Twisted S3 library, does not run on Python 3, so requests are
made with treq and signed with botocore's SigV4 signer alone (no other part
of botocore, and no boto3). Bodies are bytes the caller already holds: one
part of a multipart upload at most, never a whole blob.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import attrs
import treq
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from twisted.internet import reactor as defaultReactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from txregistry.logging import logger
from txregistry.storage.interfaces import StorageUnavailable

log = logger(__name__)

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


class S3Error(Exception):
    """
    S3 said there is no such key. Every other refusal (a missing bucket,
    wrong keys, no permission) is L{StorageUnavailable}: the registry can
    do nothing about it but say so.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message


@attrs.frozen
class Endpoint:
    """
    Where a bucket is reached: C{https://s3.eu-west-1.amazonaws.com} in
    virtual-host style, or a MinIO/SeaweedFS-like C{http://nas:9000} with
    the bucket in the path.
    """

    url: str
    bucket: str
    pathStyle: bool

    def objectURL(self, key: str = "", query: str = "") -> str:
        parts = urlsplit(self.url)
        encoded = quote(key, safe="/~")
        if self.pathStyle:
            path = f"/{self.bucket}/{encoded}" if key else f"/{self.bucket}"
            host = parts.netloc
        else:
            path = f"/{encoded}"
            host = f"{self.bucket}.{parts.netloc}"
        return f"{parts.scheme}://{host}{path}" + (f"?{query}" if query else "")


def encodeQuery(query: Mapping[str, str | None]) -> str:
    """
    A query string as S3 signs it: keys sorted, values percent-encoded
    (C{%20}, never C{+}); a C{None} value gives a bare key (C{?uploads}).
    """
    items = []
    for key in sorted(query):
        value = query[key]
        items.append(quote(key, safe="-_.~") + ("" if value is None else "=" + quote(value, safe="-_.~")))
    return "&".join(items)


def findAll(element: ET.Element, path: str) -> list[ET.Element]:
    """
    The elements at C{path} (C{"{}Part"}, C{"{}Owner/{}ID"}), in the S3
    namespace or in none: servers differ (SeaweedFS answers some requests
    without it).
    """
    found = element.findall(path.replace("{}", _NS))
    return found or element.findall(path.replace("{}", ""))


def findText(element: ET.Element, path: str) -> str:
    found = findAll(element, path)
    return found[0].text or "" if found else ""


class S3Client:
    """
    Requests to one bucket: signed, retried with back-off when S3 fails in
    a way that may pass (5xx, timeouts, dropped connections, a host name
    that does not resolve) and the request may be repeated, and failing
    with L{StorageUnavailable} when it does not pass. Redirects are not
    followed: they are refusals.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        region: str,
        credentials: Credentials,
        skipVerify: bool = False,
        retries: int = 4,
        reactor: Any = None,
        timeout: float = 60,
    ) -> None:
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.retries = retries
        #: Seconds S3 has to start answering a request before it is given up
        #: (and, where it may be, tried again).
        self.timeout = timeout
        self.reactor = reactor if reactor is not None else defaultReactor
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.pool.maxPersistentPerHost = 32
        policy = _InsecurePolicy() if skipVerify else BrowserLikePolicyForHTTPS()
        agent = Agent(self.reactor, contextFactory=policy, pool=self.pool, connectTimeout=10)
        self.http = treq.client.HTTPClient(agent)
        #: Requests made, by method: for metrics, and to keep the cost of
        #: each registry operation in S3 requests in view.
        self.requests: Counter[str] = Counter()

    def _signed(
        self, credentials: ReadOnlyCredentials, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        S3SigV4Auth(credentials, "s3", self.region).add_auth(request)
        return dict(request.headers.items())

    async def _frozenCredentials(self) -> ReadOnlyCredentials:
        refreshNeeded = getattr(self.credentials, "refresh_needed", None)
        if refreshNeeded is not None and refreshNeeded():
            # Credentials from the AWS environment (an instance profile, a
            # credential process) refresh by asking over the network, and
            # botocore does that synchronously: not on the reactor thread.
            frozen: ReadOnlyCredentials = await deferToThread(self.credentials.get_frozen_credentials)
            return frozen
        return self.credentials.get_frozen_credentials()

    def presign(self, key: str, expires: int, method: str = "GET") -> str:
        """
        A URL that lets whoever holds it make this one request for
        C{expires} seconds, without credentials of their own.
        """
        url = self.endpoint.objectURL(key)
        request = AWSRequest(method=method, url=url)
        # Requests to S3 keep refreshable credentials fresh, off the reactor.
        S3SigV4QueryAuth(
            self.credentials.get_frozen_credentials(), "s3", self.region, expires=expires
        ).add_auth(request)
        return str(request.url)

    async def request(
        self,
        method: str,
        key: str = "",
        query: Mapping[str, str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        ok: tuple[int, ...] = (200,),
        retry: bool | None = None,
    ) -> IResponse:
        """
        Make a request and return its response, whose status is one of
        C{ok}, with the body still to be read. A missing key raises
        L{S3Error}; S3 out of reach or refusing raises L{StorageUnavailable}.
        """
        url = self.endpoint.objectURL(key, encodeQuery(query or {}))
        attempts = 1 + (self.retries if (method in _IDEMPOTENT if retry is None else retry) else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            self.requests[method] += 1
            try:
                signed = self._signed(await self._frozenCredentials(), method, url, headers or {}, body)
                # Unbuffered: treq otherwise keeps a copy of every body it
                # receives, a whole blob for a blob GET.
                response = await self.http.request(
                    method,
                    url,
                    headers=Headers({k: [v] for k, v in signed.items()}),
                    data=body or None,
                    unbuffered=True,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except (
                ConnectError,
                ConnectionLost,
                DNSLookupError,
                ResponseFailed,
                TimeoutError,
                CancelledError,
            ) as e:
                if last:
                    raise _unreachable(method, key, url, e) from None
                log.warn("S3 {method} {key} failed ({error}), trying again", method=method, key=key, error=e)
            else:
                if response.code in ok:
                    return response
                content = await treq.content(response)
                error = _parseError(response.code, content)
                if response.code == 404 and error.code != "NoSuchBucket":
                    raise error
                if 300 <= response.code < 400:
                    # A bucket in another region, a proxy in the way: not
                    # followed, as the signature is for this endpoint alone.
                    location = response.headers.getRawHeaders("location", ["nowhere given"])[0]
                    raise StorageUnavailable(
                        f"S3 {method} {key or '/'}: redirected with {response.code} to {location}, not"
                        " followed (are storage.s3.region and regionendpoint the bucket's?)"
                    )
                if response.code < 500 and response.code != 429:
                    raise StorageUnavailable(f"S3 {method} {key or '/'}: {error.code}: {error.message}")
                if last:
                    raise StorageUnavailable(
                        f"S3 {method} {key or '/'}: {error.status} {error.code}: {error.message}"
                    )
                log.warn(
                    "S3 {method} {key} answered {status} {code}, trying again",
                    method=method,
                    key=key,
                    status=error.status,
                    code=error.code,
                )
            await deferLater(self.reactor, 0.1 * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def requestXML(self, method: str, key: str = "", **kwargs: Any) -> ET.Element:
        response = await self.request(method, key, **kwargs)
        return ET.fromstring(await treq.content(response))

    def close(self) -> Deferred[None]:
        return self.pool.closeCachedConnections()


def _unreachable(method: str, key: str, url: str, error: Exception) -> StorageUnavailable:
    if isinstance(error, DNSLookupError):
        return StorageUnavailable(f"S3 endpoint {urlsplit(url).hostname} cannot be resolved")
    return StorageUnavailable(f"S3 {method} {key or '/'}: {error}")


def _parseError(status: int, content: bytes) -> S3Error:
    try:
        root = ET.fromstring(content)
        return S3Error(status, root.findtext("Code") or str(status), root.findtext("Message") or "")
    except ET.ParseError:
        return S3Error(
            status, "NoSuchKey" if status == 404 else str(status), content[:200].decode("utf-8", "replace")
        )


class _InsecurePolicy(BrowserLikePolicyForHTTPS):
    """
    storage.s3.skipverify: TLS without checking the server's certificate.
    """

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        from twisted.internet.ssl import CertificateOptions

        return CertificateOptions(verify=False)
