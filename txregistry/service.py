"""
From a configuration to a running registry: its storage, its resource, its
site, the endpoints it listens on and its background jobs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

import attrs
from twisted.application.service import IService, MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory, IReactorThreads, IReactorTime, IStreamServerEndpoint
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from txregistry.config import S3, Config, ConfigError, Filesystem, InMemory, Token
from txregistry.logging import accessed, logger, setLevel
from txregistry.memory import releaseFreed
from txregistry.registry import IRegistry, Registry, UploadPurger, UseRecord
from txregistry.services import Listening
from txregistry.storage import IStorageDriver
from txregistry.web import (
    Context,
    Guard,
    RegistryChannel,
    RegistryResource,
    RootResource,
    SiteRequest,
)

if TYPE_CHECKING:
    from txregistry.metrics import Metrics
    from txregistry.notifications import INotifier, Notifier
    from txregistry.proxy import PullThroughCache
    from txregistry.web.debug import HealthStatus

log = logger(__name__)


def storageDriver(config: Config) -> IStorageDriver:
    # Only the driver configured is imported (see txregistry.lazy).
    backend = config.storage.backend
    if isinstance(backend, InMemory):
        from txregistry.storage import MemoryDriver

        return MemoryDriver()
    if isinstance(backend, S3):
        return s3Driver(backend)
    root = backend.rootDirectory
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        reason = "not a directory" if isinstance(e, FileExistsError) else e.strerror
        raise ConfigError(
            f"storage: cannot keep the registry in {root}: {reason}; give a directory that can be "
            "created and written to (storage.filesystem.rootdirectory or --root)"
        ) from None
    from txregistry.storage import FilesystemDriver

    return FilesystemDriver(root)


_S3_EXTRA = "storage.s3: S3 storage needs the s3 extra (pip install 'txregistry[s3]'): {}"


def s3Driver(s3: S3) -> IStorageDriver:
    try:
        # Imported here: treq is the s3 extra's, not needed otherwise.
        from txregistry.storage.s3 import S3Driver
        from txregistry.storage.s3client import Credentials, Endpoint, S3Client
    except ImportError as e:
        raise ConfigError(_S3_EXTRA.format(e)) from None

    if s3.accessKey is not None and s3.secretKey is not None:
        credentials = Credentials(s3.accessKey, s3.secretKey)
    else:
        try:
            # The s3 extra's too, and some 9 MiB: only for keys from the AWS environment.
            from botocore.session import Session
        except ImportError as e:
            raise ConfigError(_S3_EXTRA.format(e)) from None
        found = Session().get_credentials()
        if found is None:
            raise ConfigError("storage.s3.accesskey: no keys given and none found in the AWS environment")
        credentials = found
    endpoint = Endpoint(s3.endpointURL(), s3.bucket, s3.forcePathStyle)
    client = S3Client(endpoint, s3.region, credentials, skipVerify=s3.skipVerify)
    redirect = None
    if s3.redirect:
        # Presigned for the host clients will ask, which the signature covers.
        where = attrs.evolve(s3, regionEndpoint=s3.redirectEndpoint) if s3.redirectEndpoint else s3
        redirect = S3Client(
            Endpoint(where.endpointURL(), s3.bucket, s3.forcePathStyle), s3.region, credentials
        )
    return S3Driver(
        client,
        s3.rootDirectory,
        chunkSize=s3.chunkSize,
        multipartCopyThreshold=s3.multipartCopyThresholdSize,
        multipartCopyChunkSize=s3.multipartCopyChunkSize,
        multipartCopyConcurrency=s3.multipartCopyMaxConcurrency,
        storageClass=s3.storageClass,
        encrypt=s3.encrypt,
        redirect=redirect,
    )


def registryOf(config: Config, driver: IStorageDriver | None = None) -> Registry:
    driver = driver if driver is not None else storageDriver(config)
    gc = config.storage.gc
    return Registry(
        driver,
        deleteEnabled=config.storage.deleteEnabled,
        readOnly=config.storage.readOnly,
        blobDescriptors=config.storage.blobDescriptors,
        # Pulls recorded often enough that the last is always within the
        # grace period; a read-only registry, which does not collect,
        # writes none.
        uses=(
            UseRecord(driver, gc.gracePeriod.total_seconds() / 4)
            if gc.enabled and not config.storage.readOnly
            else None
        ),
    )


def cacheOf(config: Config, registry: Registry) -> PullThroughCache | None:
    """
    The pull-through cache the configuration asks for, if any.
    """
    if config.proxy is None:
        return None
    try:
        # Imported here: treq is the proxy extra's, not needed otherwise.
        from txregistry.proxy import PullThroughCache
    except ImportError as e:
        raise ConfigError(
            f"proxy: the pull-through cache needs the proxy extra (pip install 'txregistry[proxy]'): {e}"
        ) from None
    cache = PullThroughCache(registry, config.proxy)
    if config.proxy.fleet is not None:
        assert config.http.secret is not None
        cache.joinFleet(config.proxy.fleet, config.http.secret)
    return cache


def served(config: Config, registry: Registry | None = None) -> IRegistry:
    """
    What the web layer serves: C{registry} (by default the one the
    configuration describes), wrapped by the pull-through cache when the
    configuration has one.
    """
    registry = registry if registry is not None else registryOf(config)
    cache = cacheOf(config, registry)
    return cache if cache is not None else registry


def resource(
    config: Config,
    registry: IRegistry | None = None,
    health: HealthStatus | None = None,
    notifier: INotifier | None = None,
) -> RegistryResource:
    """
    The registry's API as a resource to put at C{/v2} of a L{Site}:
    C{registry}'s, or by default L{served}'s, telling C{notifier} (by
    default L{notifierOf}'s) what requests did; 503 to every request while
    C{health} names failing checks. Give the site
    C{requestFactory=RegistryRequest} so that uploads stream instead of
    being read whole first.
    """
    registry = registry if registry is not None else served(config)
    context = Context(
        registry,
        guard=guardOf(config),
        host=config.http.host,
        relativeURLs=config.http.relativeURLs,
        notifier=notifier if notifier is not None else notifierOf(config),
    )
    return RegistryResource(registry, context, config.http.headers, health)


def notifierOf(config: Config) -> Notifier | None:
    """
    What tells the configuration's notification endpoints, if it has any
    enabled.
    """
    if not any(not endpoint.disabled for endpoint in config.notifications):
        return None
    try:
        # Imported here: treq, for delivering, is needed only with endpoints.
        from txregistry.notifications import notifierOf as webhooksOf
    except ImportError as e:
        raise ConfigError(
            "notifications: delivering them needs the notifications extra "
            f"(pip install 'txregistry[notifications]'): {e}"
        ) from None
    return webhooksOf(config.notifications, config.http.listen)


def guardOf(config: Config) -> Guard | None:
    """
    What every request passes, from C{auth}: C{None} for an open registry.
    The htpasswd file is read here, so that one that cannot be used stops
    start-up.
    """
    auth = config.auth
    clock = cast(IReactorTime, reactor)
    if auth is None:
        return None
    if isinstance(auth, Token):
        return _tokenGuard(auth, clock)
    from txregistry.auth import AuthenticatedAccess, HtpasswdAuthenticator, HtpasswdError, RuleAccess

    try:
        htpasswd = HtpasswdAuthenticator(auth.path, auth.realm, cast(IReactorThreads, reactor), clock)
    except HtpasswdError as e:
        raise ConfigError(f"auth.htpasswd.path: {e}") from None
    policy = AuthenticatedAccess() if config.access is None else RuleAccess(config.access)
    return Guard(htpasswd, policy)


def _tokenGuard(auth: Token, clock: IReactorTime) -> Guard:
    try:
        from txregistry.auth import token
    except ImportError:
        raise ConfigError(
            "auth.token: token auth needs PyJWT and cryptography (pip install 'txregistry[token]')"
        ) from None
    try:
        trust = token.readTrust(auth.rootCertBundle, auth.jwks)
        authenticator = token.TokenAuthenticator(
            auth.realm,
            auth.service,
            auth.issuer,
            trust,
            cast(IReactorThreads, reactor),
            clock,
            auth.algorithms or token.ALGORITHMS,
        )
    except token.TokenConfigError as e:
        raise ConfigError(f"auth.token: {e}") from None
    return Guard(authenticator, token.TokenAccess())


class _Site(Site):
    # A plain HTTP/1.1 channel: Twisted's default wraps one to negotiate
    # HTTP/2, which needs the h2 package we do not depend on.
    protocol = RegistryChannel  # type: ignore[assignment]

    def __init__(self, root: IResource, accessLog: bool, noisy: bool) -> None:
        super().__init__(root)
        self.requestFactory = SiteRequest
        self._accessLog = accessLog
        # Its "Starting factory" and "Stopping factory" lines, which twistd's
        # observers would write whatever log.level says.
        self.noisy = noisy

    def log(self, request: SiteRequest) -> None:  # type: ignore[override]
        # Every request of this site is a SiteRequest.
        if self._accessLog:
            line = self._logFormatter(self._logDateTime, request)
            accessed(line, request.requestId, request.elapsed(), request.sentLength)


def site(
    config: Config,
    registry: IRegistry | None = None,
    health: HealthStatus | None = None,
    notifier: INotifier | None = None,
    metrics: Metrics | None = None,
) -> Site:
    """
    A site that serves the registry (as L{resource} does) at C{/v2/}, and
    OCI errors elsewhere; each of its requests observed by C{metrics}, if
    given.
    """
    registry = registry if registry is not None else served(config)
    api = resource(config, registry, health, notifier)
    root = RootResource(api, uiOf(config, api.context, health) if config.ui.enabled else None)
    if config.proxy is not None and config.proxy.fleet is not None and config.http.secret is not None:
        from txregistry.proxy import PullThroughCache
        from txregistry.web import FleetResource

        if isinstance(registry, PullThroughCache):
            # Outside /v2/ and its guard: the fleet's requests are signed.
            secret = config.http.secret.encode()
            root.putChild(
                b"_txregistry", FleetResource(Context(registry), registry.inProgress, secret, reactor)
            )
    top = root if metrics is None else metrics.instrument(root)
    return _Site(top, config.log.accessLog, noisy=config.log.level in ("debug", "info"))


def uiOf(config: Config, context: Context, health: HealthStatus | None) -> Resource:
    """
    The web UI (C{ui.enabled}), over the API's own context: its guard, and
    its registry (for a cache, the store under it) without the record of
    uses.
    """
    # Imported here: an instance without the UI carries none of its modules.
    from txregistry.ui import Shared, UIResource

    clock = cast(IReactorTime, reactor)
    debug = config.http.debug
    metrics = None
    if debug is not None and debug.metricsPath is not None:
        metrics = f"{debug.listen}{debug.metricsPath} (the debug listener)"
    cache, store = None, context.registry
    if config.proxy is not None:
        from txregistry.proxy import PullThroughCache

        if isinstance(context.registry, PullThroughCache):
            cache, store = context.registry, context.registry.registry
    if isinstance(store, Registry):
        # A page view is no pull: it records no use for garbage collection
        # and, of a cached repository, shows what is cached, asking no
        # upstream and moving no eviction.
        store = store.viewer()
    return UIResource(
        Shared(
            attrs.evolve(context, registry=store),
            cache=cache,
            storage=type(config.storage.backend).__name__.lower(),
            health=health,
            started=clock.seconds(),
            now=clock.seconds,
            metrics=metrics,
        )
    )


class _CannotStart(SystemExit, Exception):
    """
    Start-up cannot go on, for the reason in one line. An L{Exception}, so
    that twistd's daemon runner passes it to the parent waiting in the
    foreground (in at most 100 bytes, after the class's name) and removes
    the pid file; a L{SystemExit}, so that it then ends the process with
    that line rather than a traceback.
    """


@contextmanager
def _listening() -> Iterator[None]:
    """
    A port that cannot be bound ends start-up with one line, under twistd
    (daemon or not) as under C{txregistry serve}.
    """
    try:
        yield
    except CannotListenError as e:
        where = f"{e.interface or '*'}:{e.port}" if isinstance(e.port, int) else str(e.port)
        reason = getattr(e.socketError, "strerror", None) or e.socketError
        raise _CannotStart(f"cannot listen on {where}: {reason}") from None
    except (OSError, OverflowError) as e:
        # What Twisted leaves unwrapped: a port out of range, a socket's
        # lock file that cannot be made.
        raise _CannotStart(f"cannot listen: {e}") from None


class _RegistryService(MultiService):
    def __init__(self, config: Config, registry: Registry, cache: PullThroughCache | None) -> None:
        super().__init__()
        self.config = config
        self.registry = registry
        self.cache = cache

    def stopService(self) -> Deferred[None]:
        d: Deferred[None] = Deferred.fromCoroutine(self._stop())
        return d

    async def _stop(self) -> None:
        await super().stopService()
        if self.cache is not None:
            await self.cache.close()
        await self.registry.driver.close()

    def privilegedStartService(self) -> None:
        with _listening():
            super().privilegedStartService()

    def startService(self) -> None:
        for warning in self.config.warnings:
            log.warn("{warning}", warning=warning)
        backend = self.config.storage.backend
        if isinstance(backend, Filesystem):
            storage = f"filesystem storage in {os.path.abspath(backend.rootDirectory)}"
        elif isinstance(backend, S3):
            storage = f"s3 storage in bucket {backend.bucket}"
        else:
            storage = "inmemory storage"
        log.info(
            "txregistry: {storage}, listening on {listen}{tls}",
            storage=storage,
            listen=", ".join(self.config.http.listen),
            tls=" with TLS" if self.config.http.tls is not None else "",
        )
        if self.config.proxy is not None:
            for upstream in self.config.proxy.upstreams:
                log.info(
                    "txregistry: pull-through cache of {url}{prefix}",
                    url=upstream.remoteURL,
                    prefix=f" for {upstream.name}/..." if upstream.name else "",
                )
        for endpoint in self.config.notifications:
            log.info(
                "txregistry: notifications to {name} ({url}){disabled}",
                name=endpoint.name,
                url=endpoint.url,
                disabled=", disabled" if endpoint.disabled else "",
            )
        with _listening():
            super().startService()
        # Once all that starting up made and dropped is garbage.
        reactor.callLater(0, releaseFreed)


def _endpoint(description: str, key: str = "--listen") -> IStreamServerEndpoint:
    try:
        return serverFromString(reactor, description)
    except ImportError as e:
        # pyOpenSSL, which ssl: endpoints need, is the tls extra's.
        need = "TLS needs pyOpenSSL (pip install 'txregistry[tls]')" if description.startswith("ssl:") else e
        raise ConfigError(f"{key} {description}: {need}") from None
    except OSError as e:
        raise ConfigError(f"{key} {description}: {e.strerror}: {e.filename}") from None
    except (ValueError, TypeError) as e:
        hint = f"tcp:{description}" if description.isdigit() else "tcp:5000:interface=127.0.0.1"
        raise ConfigError(
            f"{key} {description}: not a Twisted endpoint ({e}); give one such as {hint}"
        ) from None


def metricsOf(config: Config) -> Metrics | None:
    """
    The metrics, when the configuration turns them on.
    """
    debug = config.http.debug
    if debug is None or debug.metricsPath is None:
        return None
    try:
        # Imported here: prometheus_client is the metrics extra's, and costs memory.
        from txregistry.metrics import Metrics
    except ImportError as e:
        raise ConfigError(
            "http.debug.prometheus: the metrics need the metrics extra "
            f"(pip install 'txregistry[metrics]'): {e}"
        ) from None
    return Metrics()


def debugSite(
    config: Config,
    health: HealthStatus,
    cache: PullThroughCache | None = None,
    metrics: Metrics | None = None,
) -> Site:
    """
    The site of the debug listener (C{http.debug}): health, C{metrics} when
    they are on, and a cache's upstreams.
    """
    debug = config.http.debug
    assert debug is not None
    from txregistry.health import upstreamStatus
    from txregistry.web.debug import DebugResource

    scraped = None if metrics is None else metrics.resource()
    upstreams = None if cache is None else upstreamStatus(cache)
    return _Site(
        DebugResource(health, scraped, debug.metricsPath, upstreams),
        accessLog=False,
        noisy=config.log.level in ("debug", "info"),
    )


def makeService(config: Config) -> IService:
    """
    The registry as a service: its listening endpoints, its health checks
    and, when enabled, the purging of old uploads.
    """
    setLevel(config.log.level)
    for description in config.http.listen:
        if config.http.tls is not None and description.startswith("ssl:"):
            # It would be TLS in TLS.
            raise ConfigError(
                f"--listen {description}: http.tls makes every listener TLS; listen with tcp: instead"
            )
    # Before anything is made on disk: a listener that cannot be is known now.
    endpoints = [_endpoint(description) for description in config.http.listen]
    tls = None
    if config.http.tls is not None:
        from txregistry.web import contextFactory

        tls = contextFactory(config.http.tls)
    metrics = metricsOf(config)
    driver = storageDriver(config)
    registry = registryOf(config, driver if metrics is None else metrics.time(driver))
    cache = cacheOf(config, registry)
    service = _RegistryService(config, registry, cache)
    failing: HealthStatus | None = None
    if config.health.checked:
        from txregistry.health import healthChecks

        checks = healthChecks(config, registry.driver, reactor)
        checks.setServiceParent(service)
        failing = checks.failing
    notifier = notifierOf(config)
    if notifier is not None:
        # Stopped with the service: deliveries end with it.
        notifier.setServiceParent(service)
    gc = config.storage.gc
    clock = cast(IReactorTime, reactor)
    collector = None
    if gc.enabled and not registry.readOnly:
        from txregistry.registry import GarbageCollector

        collector = GarbageCollector(registry, clock, gc.gracePeriod.total_seconds())
    if metrics is not None:
        metrics.watch(registry, cache, None if collector is None else collector.counters, notifier)
    factory: IProtocolFactory = site(
        config,
        cache if cache is not None else registry,
        failing,
        notifier,
        metrics,
    )
    if tls is not None:
        from txregistry.web import behindTLS

        factory = behindTLS(tls, factory)
    for endpoint in endpoints:
        Listening(endpoint, factory).setServiceParent(service)
    if config.http.debug is not None:
        debug = _endpoint(config.http.debug.listen, "http.debug.addr")
        Listening(debug, debugSite(config, failing or dict, cache, metrics)).setServiceParent(service)
    purging = config.storage.uploadPurging
    if purging.enabled and not registry.readOnly:
        UploadPurger(registry, purging.age, purging.interval, purging.dryRun).setServiceParent(service)
    if collector is not None:
        before, everyBefore = None, None
        if cache is not None:
            from txregistry.proxy import Eviction, evict

            # One job walks the store for both.
            eviction = Eviction(cache)
            before, everyBefore = lambda: evict(eviction), cache.config.evictionInterval.total_seconds()
        from txregistry.registry import CollectionService

        CollectionService(
            collector, gc.interval.total_seconds(), clock, before, everyBefore
        ).setServiceParent(service)
    elif cache is not None and not registry.readOnly:
        from txregistry.proxy import EvictionService

        EvictionService(cache).setServiceParent(service)
    return service
