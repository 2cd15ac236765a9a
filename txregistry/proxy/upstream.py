"""
Requests to an upstream registry, through treq: pooled connections,
timeouts, the auth dance, redirects for blobs, and a circuit breaker.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import treq
from twisted.internet import reactor as defaultReactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from txregistry.config import Upstream
from txregistry.logging import debugging, logger
from txregistry.manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from txregistry.proxy.breaker import CircuitBreaker, CircuitOpen
from txregistry.proxy.challenge import Challenge, TokenCache, parseChallenges
from txregistry.proxy.metrics import ProxyMetrics

log = logger(__name__)

MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])
_MAX_REDIRECTS = 5
#: The most bytes of an error, token or tag list body read from upstream.
SMALL_BODY = 4 * 1024 * 1024


class UpstreamError(Exception):
    """
    The upstream could not give what was asked for.
    """


class UpstreamUnavailable(UpstreamError):
    """
    The upstream cannot be reached, timed out or failed (5xx), or is held
    back by the circuit breaker.
    """


class UpstreamRateLimited(UpstreamError):
    def __init__(self, message: str, retryAfter: int) -> None:
        super().__init__(message)
        self.retryAfter = retryAfter


class UpstreamNotFound(UpstreamError):
    """
    The upstream does not have it (404).
    """


class UpstreamRefused(UpstreamError):
    """
    The upstream refused access: wrong credentials, or none where some are
    needed.
    """


class BodyTooLarge(UpstreamError):
    pass


def _retryAfter(response: IResponse) -> int:
    value = response.headers.getRawHeaders(b"retry-after", [b""])[0]
    try:
        return max(int(value), 1)
    except ValueError:
        return 60


def remoteName(upstream: Upstream, name: str) -> str:
    """
    The name the upstream knows a repository by: Docker Hub keeps official
    images under C{library/}, which clients may leave out.
    """
    host = urlsplit(upstream.remoteURL).hostname or ""
    if "/" not in name and (host == "docker.io" or host.endswith(".docker.io")):
        return f"library/{name}"
    return name


class _Collect(Protocol):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            transport: Any = self.transport
            transport.stopProducing()
            if not self.done.called:
                self.done.errback(BodyTooLarge(f"more than {self.limit} bytes"))
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


def readBody(response: IResponse, limit: int = SMALL_BODY) -> Deferred[bytes]:
    """
    A small body, whole; L{BodyTooLarge} past C{limit} bytes.
    """
    protocol = _Collect(limit)
    response.deliverBody(protocol)
    return protocol.done


def discard(response: IResponse) -> None:
    """
    Let go of a response whose body is not wanted.
    """
    # Read to its end (error bodies are small), so that the connection
    # can be used again.
    protocol = _Collect(SMALL_BODY)
    protocol.done.addErrback(lambda _: None)
    response.deliverBody(protocol)


class UpstreamClient:
    """
    The requests one proxy makes to one upstream registry.

    @param reactor: what connects, resolves names and times out requests: an
        L{IReactorTCP}, L{IReactorTime} and L{IReactorPluggableNameResolver}
        (Twisted's typing has no way to say all three).
    @param clock: what the circuit breaker's back-off and the tokens'
        expiry are measured by; the reactor unless given.
    """

    def __init__(
        self,
        upstream: Upstream,
        timeout: float,
        metrics: ProxyMetrics | None = None,
        reactor: Any = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.upstream = upstream
        self.timeout = timeout
        self.metrics = metrics if metrics is not None else ProxyMetrics()
        self.reactor: Any = reactor if reactor is not None else defaultReactor
        self.clock: IReactorTime = clock if clock is not None else self.reactor
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.pool.maxPersistentPerHost = 16
        self.http = treq.client.HTTPClient(Agent(self.reactor, pool=self.pool, connectTimeout=timeout))
        self.breaker = CircuitBreaker(self.clock.seconds)
        self.tokens = TokenCache(self.clock.seconds)
        # What the upstream asked for last time, so that later requests
        # come with credentials instead of first being refused.
        self._challenge: Challenge | None = None

    @property
    def label(self) -> str:
        return self.upstream.name or self.upstream.remoteURL

    def close(self) -> Deferred[None]:
        return self.pool.closeCachedConnections()

    async def _send(
        self, kind: str, method: str, url: str, headers: dict[str, str], breaker: bool = True
    ) -> IResponse:
        if breaker:
            try:
                self.breaker.check()
            except CircuitOpen as e:
                raise UpstreamUnavailable(
                    f"upstream {self.label} failed recently ({e.reason}); trying again in {e.retryIn:.0f} s"
                ) from None
        started = self.clock.seconds()
        # Without the query wherever it is shown (logs, /debug/upstreams): a
        # redirect's may hold a signature.
        shown = url.partition("?")[0]
        try:
            response: IResponse = await self.http.request(
                method,
                url,
                headers=Headers({k: [v] for k, v in headers.items()}),
                unbuffered=True,
                timeout=self.timeout,
                reactor=self.reactor,
                # Followed in request(), which decides what goes with each hop.
                allow_redirects=False,
            )
        except DNSLookupError:
            reason = f"cannot resolve host {urlsplit(url).hostname}"
            self.metrics.upstream(self.label, kind, "error")
            if breaker:
                self.breaker.failed(reason)
            raise UpstreamUnavailable(f"upstream {self.label} cannot be reached: {reason}") from None
        except (ConnectError, ConnectionLost, ResponseFailed, TimeoutError, CancelledError) as e:
            reason = f"{method} {shown}: {e.__class__.__name__}: {e}"
            self.metrics.upstream(self.label, kind, "error")
            if breaker:
                self.breaker.failed(reason)
            raise UpstreamUnavailable(f"upstream {self.label} cannot be reached ({reason})") from None
        self.metrics.upstream(self.label, kind, str(response.code))
        if debugging():
            log.debug(
                "upstream {method} {url}: {status} in {ms:.1f} ms",
                method=method,
                url=shown,
                status=response.code,
                ms=(self.clock.seconds() - started) * 1000,
            )
        if breaker:
            if response.code >= 500:
                self.breaker.failed(f"{method} {shown} answered {response.code}")
            elif response.code == 429:
                self.breaker.hold(f"{method} {shown} answered 429", _retryAfter(response))
            else:
                self.breaker.succeeded()
        return response

    def _credentials(self) -> str | None:
        if self.upstream.username is None or self.upstream.password is None:
            return None
        pair = f"{self.upstream.username}:{self.upstream.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    async def _token(self, challenge: Challenge, scope: str) -> str:
        cached = self.tokens.get(scope)
        if cached is not None:
            return cached
        realm = challenge.realm
        if not realm or urlsplit(realm).scheme not in ("http", "https"):
            raise UpstreamRefused(f"upstream {self.label} asked for a token without a usable realm")
        query = {"scope": scope}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        headers = {}
        basic = self._credentials()
        if basic is not None:
            headers["Authorization"] = basic
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        response = await self._send("token", "GET", url, headers)
        if response.code in (401, 403):
            discard(response)
            raise self._refused("the token service")
        if response.code != 200:
            discard(response)
            raise UpstreamUnavailable(f"the token service of upstream {self.label} answered {response.code}")
        try:
            document = json.loads(await readBody(response))
            token = document.get("token") or document.get("access_token")
            lifetime = float(document.get("expires_in") or 0)
        except (ValueError, AttributeError, TypeError, RecursionError, BodyTooLarge):
            token = None
        if not isinstance(token, str) or not token:
            raise UpstreamUnavailable(f"the token service of upstream {self.label} gave no token")
        self.tokens.put(scope, token, lifetime)
        return token

    def _refused(self, who: str) -> UpstreamRefused:
        if self._credentials() is None:
            return UpstreamRefused(
                f"{who} of upstream {self.label} refused anonymous access: "
                "set proxy.username and proxy.password"
            )
        return UpstreamRefused(
            f"{who} of upstream {self.label} refused the configured credentials "
            f"(user {self.upstream.username!r})"
        )

    async def _authorization(self, challenge: Challenge | None, scope: str) -> str | None:
        if challenge is None:
            return None
        if challenge.scheme == "bearer":
            return "Bearer " + await self._token(challenge, scope)
        if challenge.scheme == "basic":
            basic = self._credentials()
            if basic is None:
                raise self._refused("the registry")
            return basic
        raise UpstreamRefused(f"upstream {self.label} asks for {challenge.scheme} authentication")

    async def request(
        self,
        kind: str,
        method: str,
        name: str,
        path: str,
        headers: dict[str, str] | None = None,
        follow: bool = False,
        deadline: float | None = None,
    ) -> IResponse:
        """
        Ask the upstream about repository C{name} (as the upstream names
        it) at C{/v2/<name>/<path>}: anonymously first, then as its
        challenge asks. Redirects are followed when C{follow} is set,
        without our credentials once they leave the upstream's host, and
        are the answer otherwise. The response's status is the caller's to
        read.

        @param deadline: the most seconds the whole exchange (tokens and
            redirects included) may take, where C{timeout} would be too
            long to wait; past it the exchange is given up as a failure of
            the upstream (L{UpstreamUnavailable}, the breaker told).
        """
        exchange = Deferred.fromCoroutine(self._exchange(kind, method, name, path, headers or {}, follow))
        if deadline is None:
            return await exchange
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            exchange.cancel()

        call = self.reactor.callLater(deadline, expire)
        try:
            return await exchange
        except (UpstreamUnavailable, CancelledError) as e:
            if not expired:
                raise
            if isinstance(e, CancelledError):
                # Cancelled between requests: _send did not count it.
                self.breaker.failed(f"{method} {name}/{path}: no answer within {deadline:g} s")
            raise UpstreamUnavailable(f"upstream {self.label} did not answer within {deadline:g} s") from None
        finally:
            if call.active():
                call.cancel()

    async def _exchange(
        self, kind: str, method: str, name: str, path: str, headers: dict[str, str], follow: bool
    ) -> IResponse:
        url = f"{self.upstream.remoteURL}/v2/{name}/{path}"
        scope = f"repository:{name}:pull"
        # The last challenge's realm and service, for this repository's scope:
        # another repository's token would only be refused.
        challenge = self._challenge
        for attempt in range(2):
            sent = dict(headers)
            if attempt == 1 and challenge is not None:
                scope = challenge.params.get("scope") or scope
            authorization = await self._authorization(challenge, scope)
            if authorization is not None:
                sent["Authorization"] = authorization
            response = await self._send(kind, method, url, sent)
            if response.code != 401:
                break
            values = response.headers.getRawHeaders(b"www-authenticate", [])
            found = parseChallenges(",".join(v.decode("latin-1") for v in values))
            discard(response)
            usable = [c for c in found if c.scheme in ("bearer", "basic")]
            if not usable:
                raise UpstreamRefused(f"upstream {self.label} refused access without saying how to log in")
            if attempt == 1:
                if challenge is not None and challenge.scheme == "basic":
                    raise self._refused("the registry")
                # Docker Hub answers so for repositories it does not have.
                raise UpstreamNotFound(f"upstream {self.label} refused access to {name}")
            challenge = self._challenge = usable[0]
        for _ in range(_MAX_REDIRECTS):
            if not (follow and response.code in (301, 302, 303, 307, 308)):
                break
            location = response.headers.getRawHeaders(b"location", [b""])[0].decode("latin-1")
            discard(response)
            target = urljoin(url, location)
            sent = dict(headers)
            if urlsplit(target).netloc == urlsplit(self.upstream.remoteURL).netloc:
                authorization = await self._authorization(challenge, scope)
                if authorization is not None:
                    sent["Authorization"] = authorization
            # Storage behind a redirect is not the upstream: its failures do
            # not open the upstream's breaker.
            response = await self._send(kind, method, target, sent, breaker=False)
            url = target
        return response

    def check(self, response: IResponse, what: str) -> None:
        """
        Raise what a response other than 200 or 206 means for the proxy.
        """
        code = response.code
        if code in (200, 206):
            return
        discard(response)
        if code == 404:
            raise UpstreamNotFound(f"upstream {self.label} does not have {what}")
        if code == 429:
            raise UpstreamRateLimited(f"upstream {self.label} is rate-limiting us", _retryAfter(response))
        if code in (401, 403):
            raise self._refused("the registry")
        raise UpstreamUnavailable(f"upstream {self.label} answered {code} for {what}")
