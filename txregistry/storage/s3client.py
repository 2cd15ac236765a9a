"""
Signed requests to an S3 bucket, through treq.

txaws, the Twisted S3 library, does not run on Python 3, so requests are
made with treq and signed here with SigV4: botocore's signer alone would
cost an instance some 9 MiB of modules it never uses (urllib3, dateutil,
its HTTP layer), so botocore is imported only for credentials from the AWS
environment. Bodies are bytes the caller holds, or a L{Payload} it can
produce again for each attempt (a part read back from a file).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlsplit
from xml.parsers import expat

import attrs
import treq
from twisted.internet import reactor as defaultReactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse

from txregistry.logging import logger
from txregistry.storage.interfaces import StorageUnavailable

log = logger(__name__)

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNSIGNED = "UNSIGNED-PAYLOAD"


class FrozenCredentials(Protocol):
    """
    Keys as they sign one request (botocore's C{ReadOnlyCredentials}, and
    L{Credentials}: the names are botocore's).
    """

    access_key: str
    secret_key: str
    token: str | None


@attrs.frozen
class Credentials:
    """
    Keys from the configuration, which never change: the credentials
    L{S3Client} takes, as botocore's are (its refreshable credentials from
    the AWS environment are taken as they are).
    """

    access_key: str
    secret_key: str
    token: str | None = None

    def get_frozen_credentials(self) -> Credentials:
        return self


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _host(url: str) -> str:
    # As the Host header goes: no default port, no user information.
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonicalQuery(query: str) -> str:
    # The query as encodeQuery() makes it, a bare key given an empty value.
    pairs = [pair.partition("=") for pair in query.split("&")] if query else []
    return "&".join(f"{key}={value}" for key, _, value in sorted(pairs))


@attrs.frozen
class Signer:
    """
    AWS Signature Version 4 for S3, as botocore's C{S3SigV4Auth} and
    C{S3SigV4QueryAuth} sign: the path as it is sent (S3 does not
    normalise it), every header given, the payload's SHA-256.
    """

    region: str
    service: str = "s3"

    def _scope(self, stamp: str) -> str:
        return f"{stamp[:8]}/{self.region}/{self.service}/aws4_request"

    def _signature(
        self,
        credentials: FrozenCredentials,
        stamp: str,
        method: str,
        url: str,
        headers: Mapping[str, str],
        payload: str,
    ) -> tuple[str, str]:
        parts = urlsplit(url)
        signed = {"host": _host(url)}
        signed.update((name.lower(), " ".join(value.split())) for name, value in headers.items())
        names = ";".join(sorted(signed))
        canonical = "\n".join(
            [
                method,
                parts.path or "/",
                _canonicalQuery(parts.query),
                "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
                names,
                payload,
            ]
        )
        toSign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                stamp,
                self._scope(stamp),
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        key = _hmac(f"AWS4{credentials.secret_key}".encode(), stamp[:8])
        for part in (self.region, self.service, "aws4_request"):
            key = _hmac(key, part)
        return names, hmac.new(key, toSign.encode(), hashlib.sha256).hexdigest()

    def headers(
        self,
        credentials: FrozenCredentials,
        now: float,
        method: str,
        url: str,
        headers: Mapping[str, str],
        payload: str,
    ) -> dict[str, str]:
        """
        C{headers} with those that sign the request added: its time, the
        payload's hash (C{payload}, hex), the session token, if any, and
        C{Authorization}.
        """
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        result = {**headers, "X-Amz-Date": stamp}
        if credentials.token:
            result["X-Amz-Security-Token"] = credentials.token
        result["X-Amz-Content-SHA256"] = payload
        names, signature = self._signature(credentials, stamp, method, url, result, payload)
        result["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{self._scope(stamp)}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return result

    def presign(self, credentials: FrozenCredentials, now: float, method: str, url: str, expires: int) -> str:
        """
        C{url} (which has no query) with the query that lets whoever holds
        it make this request for C{expires} seconds.
        """
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{credentials.access_key}/{self._scope(stamp)}",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": str(expires),
            "X-Amz-SignedHeaders": "host",
        }
        if credentials.token:
            query["X-Amz-Security-Token"] = credentials.token
        encoded = "&".join(f"{key}={quote(value, safe='-_.~')}" for key, value in query.items())
        _, signature = self._signature(credentials, stamp, method, f"{url}?{encoded}", {}, _UNSIGNED)
        return f"{url}?{encoded}&X-Amz-Signature={signature}"


@attrs.frozen
class Payload:
    """
    A request body that is not held in memory: its length, its SHA-256
    (hex, which signs it), and how to produce it, anew for each attempt.
    """

    length: int
    sha256: str
    producer: Callable[[], IBodyProducer]


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


class XMLElement:
    """
    An element of an S3 answer: its name without its namespace (servers
    differ in whether they give one: SeaweedFS leaves it out of some
    answers), its text, and the elements in it.
    """

    __slots__ = ("tag", "_text", "children")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._text: list[str] = []
        self.children: list[XMLElement] = []

    @property
    def text(self) -> str:
        return "".join(self._text)


def parseXML(content: bytes) -> XMLElement:
    """
    An S3 answer's XML, read with expat, which Python loads anyway:
    ElementTree would add a fifth of a MiB to an instance for the few
    elements of S3's answers that are ever read.

    @raise ExpatError: if C{content} is not XML, or declares a document
        type (S3 sends none; entities are not expanded for anyone).
    """
    parser = expat.ParserCreate(namespace_separator=" ")
    root = XMLElement("")
    enclosing = [root]

    def start(name: str, attributes: object) -> None:
        element = XMLElement(name.rpartition(" ")[2])
        enclosing[-1].children.append(element)
        enclosing.append(element)

    def refuse(*_: object) -> None:
        raise expat.ExpatError("a document type declaration in an S3 answer")

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda name: enclosing.pop()
    parser.CharacterDataHandler = lambda data: enclosing[-1]._text.append(data)
    parser.StartDoctypeDeclHandler = refuse
    parser.Parse(content, True)
    return root.children[0]


def findAll(element: XMLElement, path: str) -> list[XMLElement]:
    """
    The elements at C{path} below C{element}, by their names without
    namespaces (C{"Part"}, C{"Owner/ID"}).
    """
    found = [element]
    for name in path.split("/"):
        found = [child for parent in found for child in parent.children if child.tag == name]
    return found


def findText(element: XMLElement, path: str) -> str:
    found = findAll(element, path)
    return found[0].text if found else ""


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
        credentials: Any,
        skipVerify: bool = False,
        retries: int = 4,
        reactor: Any = None,
        timeout: float = 60,
    ) -> None:
        self.endpoint = endpoint
        #: L{Credentials}, or botocore's from the AWS environment.
        self.credentials = credentials
        self.signer = Signer(region)
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

    async def _frozenCredentials(self) -> FrozenCredentials:
        refreshNeeded = getattr(self.credentials, "refresh_needed", None)
        if refreshNeeded is not None and refreshNeeded():
            # Credentials from the AWS environment (an instance profile, a
            # credential process) refresh by asking over the network, and
            # botocore does that synchronously: not on the reactor thread.
            frozen: FrozenCredentials = await deferToThread(self.credentials.get_frozen_credentials)
            return frozen
        return self.credentials.get_frozen_credentials()

    def presign(self, key: str, expires: int, method: str = "GET") -> str:
        """
        A URL that lets whoever holds it make this one request for
        C{expires} seconds, without credentials of their own.
        """
        # Requests to S3 keep refreshable credentials fresh, off the reactor.
        return self.signer.presign(
            self.credentials.get_frozen_credentials(),
            self.reactor.seconds(),
            method,
            self.endpoint.objectURL(key),
            expires,
        )

    async def request(
        self,
        method: str,
        key: str = "",
        query: Mapping[str, str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | Payload = b"",
        ok: tuple[int, ...] = (200,),
        retry: bool | None = None,
    ) -> IResponse:
        """
        Make a request and return its response, whose status is one of
        C{ok}, with the body still to be read. A missing key raises
        L{S3Error}; S3 out of reach or refusing raises L{StorageUnavailable}.
        """
        url = self.endpoint.objectURL(key, encodeQuery(query or {}))
        if isinstance(body, Payload):
            payload = body.sha256
        else:
            payload = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        attempts = 1 + (self.retries if (method in _IDEMPOTENT if retry is None else retry) else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            self.requests[method] += 1
            try:
                credentials = await self._frozenCredentials()
                signed = self.signer.headers(
                    credentials, self.reactor.seconds(), method, url, headers or {}, payload
                )
                data = body.producer() if isinstance(body, Payload) else body or None
                # Unbuffered: treq otherwise keeps a copy of every body it
                # receives, a whole blob for a blob GET.
                response = await self.http.request(
                    method,
                    url,
                    headers=Headers({k: [v] for k, v in signed.items()}),
                    data=data,
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

    async def requestXML(self, method: str, key: str = "", **kwargs: Any) -> XMLElement:
        response = await self.request(method, key, **kwargs)
        return parseXML(await treq.content(response))

    def close(self) -> Deferred[None]:
        return self.pool.closeCachedConnections()


def _unreachable(method: str, key: str, url: str, error: Exception) -> StorageUnavailable:
    if isinstance(error, DNSLookupError):
        return StorageUnavailable(f"S3 endpoint {urlsplit(url).hostname} cannot be resolved")
    return StorageUnavailable(f"S3 {method} {key or '/'}: {error}")


def _parseError(status: int, content: bytes) -> S3Error:
    try:
        root = parseXML(content)
        return S3Error(status, findText(root, "Code") or str(status), findText(root, "Message"))
    except expat.ExpatError:
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
