"""
What a configuration says, as frozen values. Each default is written here
and nowhere else: the reader takes its defaults from these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import attrs

#: Where the data lives when there is no configuration at all.
DEFAULT_ROOT = "registry-data"

_MiB = 1024 * 1024


class ConfigError(Exception):
    """
    The configuration cannot be used; C{str()} of it is one line for people.
    """


@attrs.frozen
class UploadPurging:
    enabled: bool = True
    age: timedelta = timedelta(hours=168)
    interval: timedelta = timedelta(hours=24)
    dryRun: bool = False


@attrs.frozen
class GarbageCollection:
    """
    Ours, C{storage.maintenance.gc}: garbage collection while the registry
    runs. Content used within C{gracePeriod} of a run is never swept.
    """

    enabled: bool = False
    interval: timedelta = timedelta(hours=24)
    gracePeriod: timedelta = timedelta(hours=1)


@attrs.frozen
class Filesystem:
    """
    registry:2's C{storage.filesystem}.
    """

    rootDirectory: str = "/var/lib/registry"


@attrs.frozen
class InMemory:
    """
    registry:2's C{storage.inmemory}: gone when the registry stops.
    """


@attrs.frozen
class S3:
    """
    registry:2's C{storage.s3}.
    """

    bucket: str
    region: str = "us-east-1"
    #: The endpoint's URL, for S3-compatible servers (MinIO, SeaweedFS).
    regionEndpoint: str | None = None
    #: Without keys, the standard AWS environment variables and files.
    accessKey: str | None = None
    secretKey: str | None = None
    rootDirectory: str = ""
    secure: bool = True
    forcePathStyle: bool = False
    skipVerify: bool = False
    chunkSize: int = 10 * _MiB
    multipartCopyThresholdSize: int = 32 * _MiB
    multipartCopyChunkSize: int = 32 * _MiB
    multipartCopyMaxConcurrency: int = 100
    storageClass: str = "STANDARD"
    encrypt: bool = False
    #: Where clients are sent for blobs: presigned URLs for this endpoint
    #: (storage.s3.redirectendpoint, else the endpoint itself), or no
    #: redirects at all.
    redirectEndpoint: str | None = None
    redirect: bool = True

    def endpointURL(self) -> str:
        scheme = "https" if self.secure else "http"
        if self.regionEndpoint is None:
            return f"{scheme}://s3.{self.region}.amazonaws.com"
        if "://" in self.regionEndpoint:
            return self.regionEndpoint.rstrip("/")
        return f"{scheme}://{self.regionEndpoint.rstrip('/')}"


@attrs.frozen
class Storage:
    #: Where the content is kept: the one storage driver configured.
    backend: Filesystem | S3 | InMemory = Filesystem(DEFAULT_ROOT)
    deleteEnabled: bool = False
    readOnly: bool = False
    uploadPurging: UploadPurging = UploadPurging()
    gc: GarbageCollection = GarbageCollection()
    #: How many blob sizes are kept in memory (registry:2's
    #: C{storage.cache.blobdescriptorsize}, for its C{inmemory} cache).
    blobDescriptors: int = 100_000


#: registry:2's TLS 1.2 cipher suites when none are named, in OpenSSL's
#: names (its TLS 1.3 suites are not configurable, in Go as here).
DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
)


@attrs.frozen
class TLS:
    """
    registry:2's C{http.tls}: the paths of PEM files, read when the service
    is made rather than here.
    """

    certificate: str
    key: str
    #: CA certificates that clients must present a certificate signed by.
    clientCAs: tuple[str, ...] = ()
    #: C{tls1.2} or C{tls1.3}.
    minimumTLS: str = "tls1.2"
    #: The TLS 1.2 cipher suites offered, in OpenSSL's names.
    ciphers: tuple[str, ...] = DEFAULT_CIPHERS


@attrs.frozen
class Htpasswd:
    """
    registry:2's C{auth.htpasswd}: users in a file of bcrypt hashes, read
    when the service is made and again when it changes.
    """

    #: The realm of the C{WWW-Authenticate: Basic} challenge.
    realm: str
    path: str


@attrs.frozen
class Token:
    """
    registry:2's C{auth.token}: Bearer tokens from an authorization server
    (the Docker token protocol), checked against the certificates of
    C{rootCertBundle} and the keys of C{jwks}.
    """

    #: Where clients get tokens.
    realm: str
    #: The token's audience (C{aud}), and the C{service} clients ask for.
    service: str
    #: The token's C{iss}.
    issuer: str
    rootCertBundle: str | None = None
    jwks: str | None = None
    #: C{signingalgorithms}; empty for every asymmetric algorithm.
    algorithms: tuple[str, ...] = ()


@attrs.frozen
class AccessRule:
    """
    One grant of C{auth.access}: C{actions} on the repositories matching
    any of C{repositories}, to whoever the rest names.
    """

    #: Globs of repository names: C{*} within a path component, C{**}
    #: across them.
    repositories: tuple[str, ...]
    #: Of C{pull}, C{push}, C{delete}; C{push} includes C{pull}.
    actions: frozenset[str]
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    #: Every user the authenticator knows.
    authenticated: bool = False
    #: Every client, signed in or not.
    anonymous: bool = False


@attrs.frozen
class AccessRules:
    """
    C{auth.access}: who may do what, as grants that add up; what no rule
    grants is refused.
    """

    rules: tuple[AccessRule, ...]
    #: Named sets of users, for rules to grant to at once.
    groups: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)


@attrs.frozen
class Debug:
    """
    registry:2's C{http.debug}: a second listener, for operators, with none
    of the API on it.
    """

    #: A Twisted endpoint description string.
    listen: str
    #: Where the Prometheus metrics are served on it, if they are.
    metricsPath: str | None = None


#: registry:2's C{http.debug.prometheus.path}.
DEFAULT_METRICS_PATH = "/metrics"


@attrs.frozen
class HTTP:
    #: Twisted endpoint description strings to listen on.
    listen: tuple[str, ...] = ("tcp:5000",)
    #: When given, every listener speaks TLS and only TLS.
    tls: TLS | None = None
    host: str | None = None
    relativeURLs: bool = False
    headers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: registry:2's key for what it signs; what instances of a fleet sign
    #: their requests to each other with.
    secret: str | None = None
    debug: Debug | None = None


@attrs.frozen
class Log:
    level: str = "info"
    accessLog: bool = True
    #: How C{txregistry serve} writes its lines: C{text}, C{json} or C{logstash}.
    formatter: str = "text"
    #: Added to every line C{txregistry serve} writes.
    fields: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Upstream:
    """
    A registry that the proxy pulls through from. The default upstream
    (registry:2's C{proxy.remoteurl}) has no name and serves every
    repository no named upstream claims.
    """

    remoteURL: str
    name: str = ""
    username: str | None = None
    password: str | None = None
    #: How long content stays cached after its last pull.
    ttl: timedelta = timedelta(hours=168)


@attrs.frozen
class Fleet:
    """
    C{proxy.fleet}: instances sharing a store fetch each blob from upstream
    once between them (the others stream it from the one fetching).
    """

    #: How other instances reach this one: C{http://host:port}.
    advertise: str
    #: How long a lease on a blob being fetched lasts unless renewed.
    lease: timedelta = timedelta(minutes=2)


@attrs.frozen
class Proxy:
    """
    registry:2's C{proxy} section, with more than one upstream allowed.
    """

    upstreams: tuple[Upstream, ...]
    #: How long a tag is served from cache before upstream is asked again.
    revalidate: timedelta = timedelta(seconds=10)
    #: The most bytes of blobs to keep; least recently pulled go first.
    maxSize: int | None = None
    #: Pushes to repositories that no upstream serves.
    allowPush: bool = False
    #: How often expired and surplus content is looked for.
    evictionInterval: timedelta = timedelta(minutes=10)
    #: Seconds to connect to an upstream, and to wait for its next bytes.
    timeout: float = 30.0
    #: Seconds a cached tag's revalidation may take before the cached
    #: copy is served instead.
    revalidateTimeout: float = 3.0
    #: Fetching blobs once for all instances sharing the store.
    fleet: Fleet | None = None

    @property
    def default(self) -> Upstream | None:
        for upstream in self.upstreams:
            if not upstream.name:
                return upstream
        return None

    def named(self, name: str) -> Upstream | None:
        for upstream in self.upstreams:
            if upstream.name and upstream.name == name:
                return upstream
        return None


#: registry:2's interval between two runs of a health check.
DEFAULT_CHECK_INTERVAL = timedelta(seconds=10)


@attrs.frozen
class StorageCheck:
    """
    C{health.storagedriver}: the storage driver reached every C{interval};
    failing once it has failed C{threshold} times in a row (0 and 1 alike:
    at the first failure).
    """

    enabled: bool = False
    interval: timedelta = DEFAULT_CHECK_INTERVAL
    threshold: int = 0


@attrs.frozen
class FileCheck:
    """
    An entry of C{health.file}: failing while a file is at C{file}.
    """

    file: str
    interval: timedelta = DEFAULT_CHECK_INTERVAL
    threshold: int = 0


@attrs.frozen
class HTTPCheck:
    """
    An entry of C{health.http}: a C{HEAD} of C{uri} that must answer
    C{statusCode}.
    """

    uri: str
    headers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    statusCode: int = 200
    #: How long to wait for the answer; C{None}: the interval (registry:2
    #: waits without end).
    timeout: timedelta | None = None
    interval: timedelta = DEFAULT_CHECK_INTERVAL
    threshold: int = 0


@attrs.frozen
class TCPCheck:
    """
    An entry of C{health.tcp}: a connection to C{host}:C{port} that must
    be made.
    """

    #: C{host:port} as given: the check's name.
    addr: str
    host: str
    port: int
    #: How long to wait for the connection; C{None}: the interval.
    timeout: timedelta | None = None
    interval: timedelta = DEFAULT_CHECK_INTERVAL
    threshold: int = 0


@attrs.frozen
class Health:
    """
    registry:2's C{health} section. While any check fails, the API answers
    503 to every request.
    """

    storageDriver: StorageCheck = StorageCheck()
    files: tuple[FileCheck, ...] = ()
    http: tuple[HTTPCheck, ...] = ()
    tcp: tuple[TCPCheck, ...] = ()

    @property
    def checked(self) -> bool:
        """
        Whether anything is checked at all.
        """
        return self.storageDriver.enabled or bool(self.files or self.http or self.tcp)


@attrs.frozen
class NotificationEndpoint:
    """
    One of registry:2's C{notifications.endpoints}: a webhook that is sent
    each event, one at a time, in order.
    """

    name: str
    url: str
    headers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: Seconds one delivery may take, from connecting to the answer's end.
    timeout: float = 1.0
    #: Failures in a row delivered again at once; after them, one try per
    #: C{backoff}.
    threshold: int = 10
    backoff: float = 1.0
    #: Events of these target media types, or of these actions, are not sent.
    ignoredMediaTypes: frozenset[str] = frozenset()
    ignoredActions: frozenset[str] = frozenset()
    disabled: bool = False
    #: Events kept for delivery at most; more are dropped, and counted.
    queueSize: int = 1000


@attrs.frozen
class UI:
    """
    The built-in web UI, at C{/ui/}. Off unless asked for: registry:2
    serves nothing outside C{/v2/}, and an instance that is a 128 MB job
    should not carry the templates' modules it does not use.
    """

    enabled: bool = False


@attrs.frozen
class Config:
    storage: Storage = Storage()
    http: HTTP = HTTP()
    log: Log = Log()
    proxy: Proxy | None = None
    #: Who clients are; C{None} for an open registry.
    auth: Htpasswd | Token | None = None
    #: What htpasswd users may do; C{None}: everything, once signed in.
    access: AccessRules | None = None
    health: Health = Health()
    #: Webhooks told of pushes, pulls, mounts and deletes.
    notifications: tuple[NotificationEndpoint, ...] = ()
    ui: UI = UI()
    #: One line for each key given that is not supported (yet).
    warnings: tuple[str, ...] = ()
