"""
registry:2's C{config.yml} (C{version: 0.1}) with its C{REGISTRY_*}
environment overrides, read into frozen values.

Keys we do not support yet are named in L{Config.warnings}, never silently
dropped; a file we cannot make sense of raises L{ConfigError} with one line
that names the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml

DEFAULT_ROOT = "registry-data"
DEFAULT_ADDR = ":5000"

_DRIVERS = ("filesystem", "inmemory", "s3", "azure", "gcs", "swift", "oss")
_SUPPORTED_DRIVERS = ("filesystem", "inmemory", "s3")
_MiB = 1024 * 1024
# storage.* keys that configure the registry rather than name a driver.
_STORAGE_SETTINGS = ("delete", "maintenance", "cache", "redirect", "tag")
_LOG_LEVELS = ("debug", "info", "warn", "error")


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
    driver: str = "filesystem"
    rootDirectory: str = DEFAULT_ROOT
    s3: S3 | None = None
    deleteEnabled: bool = False
    readOnly: bool = False
    uploadPurging: UploadPurging = UploadPurging()


@attrs.frozen
class HTTP:
    #: Twisted endpoint description strings to listen on.
    listen: tuple[str, ...] = ("tcp:5000",)
    host: str | None = None
    relativeURLs: bool = False
    headers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)


@attrs.frozen
class Log:
    level: str = "info"
    accessLog: bool = True


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
class Proxy:
    """
    registry:2's C{proxy} section, with more than one upstream allowed.
    """

    upstreams: tuple[Upstream, ...]
    #: How long a tag is served from cache before upstream is asked again.
    revalidate: timedelta = timedelta(seconds=60)
    #: The most bytes of blobs to keep; least recently pulled go first.
    maxSize: int | None = None
    #: Pushes to repositories that no upstream serves.
    allowPush: bool = False
    #: How often expired and surplus content is looked for.
    evictionInterval: timedelta = timedelta(minutes=10)
    #: Seconds to connect to an upstream, and to wait for its next bytes.
    timeout: float = 30.0

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


@attrs.frozen
class Config:
    storage: Storage = Storage()
    http: HTTP = HTTP()
    log: Log = Log()
    proxy: Proxy | None = None
    #: One line for each key given that is not supported (yet).
    warnings: tuple[str, ...] = ()


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parseDuration(text: str) -> timedelta:
    """
    A Go duration (C{168h}, C{1h30m}, C{10s}) as registry:2 writes them.
    """
    if text == "0":
        return timedelta(0)
    position, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration like 168h or 1h30m")
    return timedelta(seconds=seconds)


def listenEndpoint(addr: str, net: str = "tcp") -> str:
    """
    The Twisted endpoint for registry:2's C{http.addr} (C{:5000},
    C{127.0.0.1:5000}, C{[::1]:5000}) or, with C{net: unix}, a socket path.
    """
    if net == "unix":
        return "unix:" + addr.replace(":", r"\:")
    if net != "tcp":
        raise ValueError(f"net {net!r} is not tcp or unix")
    host, separator, port = addr.rpartition(":")
    if not separator or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{addr!r} is not [host]:port")
    host = host.strip("[]")
    if not host:
        return f"tcp:{port}"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{addr!r}: the host must be an IP address") from None
    if address.version == 6:
        return f"tcp6:{port}:interface={str(address).replace(':', chr(92) + ':')}"
    return f"tcp:{port}:interface={address}"


def _overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    found = []
    for key, value in environ.items():
        if not key.startswith("REGISTRY_") or len(key) == len("REGISTRY_"):
            continue
        path = key[len("REGISTRY_") :].lower().split("_")
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed = value
        found.append((path, parsed))
    # registry:2 applies parents before their children.
    return sorted(found, key=lambda item: len(item[0]))


def applyEnvironment(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """
    C{document} with registry:2's C{REGISTRY_<KEY>_<KEY>...} variables
    applied, each value read as YAML.
    """
    for path, value in _overrides(environ):
        node = document
        for part in path[:-1]:
            child = node.get(part)
            if part == "storage" and isinstance(child, str):
                child = {child: {}}
            if not isinstance(child, dict):
                child = {}
            node[part] = child
            node = child
        if path == ["storage"] and isinstance(value, str):
            # REGISTRY_STORAGE=inmemory picks the driver.
            settings = {k: v for k, v in (node.get("storage") or {}).items() if k in _STORAGE_SETTINGS}
            value = {value: {}, **settings}
        node[path[-1]] = value
    return document


class _Reader:
    """
    Reads typed values out of the parsed document, remembering every key it
    was asked about so that the rest can be warned about.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.known: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.known.add(key)
        node: Any = self.document
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        if node is None:
            return default
        if kind is bool and not isinstance(node, bool):
            raise ConfigError(f"{key}: expected true or false, got {node!r}")
        if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(f"{key}: expected {_KIND_NAMES.get(names, names)}, got {node!r}")
        return node

    def duration(self, key: str, default: timedelta) -> timedelta:
        text = self.get(key, str)
        if text is None:
            return default
        try:
            return parseDuration(text)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None

    def unknown(self) -> list[str]:
        """
        Every leaf or section of the document that was never asked about.
        """
        found: list[str] = []

        def walk(node: Any, prefix: str) -> None:
            for key, value in node.items():
                path = f"{prefix}{key}"
                if path in self.known and not isinstance(value, dict):
                    continue
                if isinstance(value, dict) and any(k.startswith(path + ".") for k in self.known):
                    walk(value, path + ".")
                elif path not in self.known:
                    found.append(path)

        walk(self.document, "")
        return found


_KIND_NAMES = {
    "str": "a string",
    "dict": "a mapping",
    "bool": "true or false",
    "int": "an integer",
    "list": "a list",
}


def _storage(reader: _Reader) -> Storage:
    section = reader.get("storage", dict)
    if section is None:
        raise ConfigError(
            "storage: no storage driver is configured (storage.filesystem.rootdirectory, for one)"
        )
    drivers = [key for key in section if key not in _STORAGE_SETTINGS]
    if len(drivers) != 1:
        named = ", ".join(str(d) for d in drivers) or "none"
        raise ConfigError(f"storage: exactly one storage driver must be configured, found {named}")
    driver = drivers[0]
    if driver not in _SUPPORTED_DRIVERS:
        supported = " and ".join(_SUPPORTED_DRIVERS)
        if driver in _DRIVERS:
            raise ConfigError(f"storage.{driver}: this storage driver is not supported yet ({supported} are)")
        raise ConfigError(f"storage.{driver}: unknown storage driver ({supported} are supported)")
    reader.get(f"storage.{driver}", dict)
    root = DEFAULT_ROOT
    if driver == "filesystem":
        root = reader.get("storage.filesystem.rootdirectory", str, "/var/lib/registry")
    s3 = _s3(reader) if driver == "s3" else None
    reader.get("storage.maintenance", dict)
    reader.get("storage.maintenance.uploadpurging", dict)
    purging = UploadPurging(
        enabled=reader.get("storage.maintenance.uploadpurging.enabled", bool, True),
        age=reader.duration("storage.maintenance.uploadpurging.age", timedelta(hours=168)),
        interval=reader.duration("storage.maintenance.uploadpurging.interval", timedelta(hours=24)),
        dryRun=reader.get("storage.maintenance.uploadpurging.dryrun", bool, False),
    )
    if purging.enabled and purging.interval <= timedelta(0):
        raise ConfigError("storage.maintenance.uploadpurging.interval: must be more than 0")
    reader.get("storage.delete", dict)
    reader.get("storage.maintenance.readonly", dict)
    reader.get("storage.redirect", dict)
    if driver != "s3":
        # registry:2 redirects only where storage can hand out URLs.
        reader.get("storage.redirect.disable", bool)
    return Storage(
        driver=driver,
        rootDirectory=root,
        s3=s3,
        deleteEnabled=reader.get("storage.delete.enabled", bool, False),
        readOnly=reader.get("storage.maintenance.readonly.enabled", bool, False),
        uploadPurging=purging,
    )


def _size(reader: _Reader, key: str, default: int, minimum: int = 1) -> int:
    value = reader.get(key, (int, str), default)
    if isinstance(value, str):
        if not value.isdigit():
            raise ConfigError(f"{key}: expected a number of bytes, got {value!r}")
        value = int(value)
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    return int(value)


def _s3(reader: _Reader) -> S3:
    bucket = reader.get("storage.s3.bucket", str)
    if not bucket:
        raise ConfigError("storage.s3.bucket: the bucket to keep the registry in is missing")
    endpoint = reader.get("storage.s3.regionendpoint", str) or None
    region = reader.get("storage.s3.region", str)
    if region is None:
        if endpoint is None:
            raise ConfigError("storage.s3.region: missing (needed unless storage.s3.regionendpoint is given)")
        region = "us-east-1"
    accessKey = reader.get("storage.s3.accesskey", str) or None
    secretKey = reader.get("storage.s3.secretkey", str) or None
    if (accessKey is None) != (secretKey is None):
        raise ConfigError("storage.s3.accesskey: give both accesskey and secretkey, or neither")
    # registry:2 addresses S3-compatible servers by path unless told otherwise.
    pathStyle = reader.get("storage.s3.forcepathstyle", bool, endpoint is not None)
    if reader.get("storage.s3.v4auth", bool, True) is False:
        raise ConfigError("storage.s3.v4auth: only SigV4 signing is supported (true, or leave it out)")
    redirectEndpoint = reader.get("storage.s3.redirectendpoint", str) or None
    disable = reader.get("storage.redirect.disable", bool)
    if disable is None:
        # A private endpoint (a NAS on the cluster's network) is seldom one
        # the registry's clients can reach: redirecting them there would
        # break pulls that work through the registry.
        redirect = redirectEndpoint is not None or endpoint is None or not isPrivate(endpoint)
    else:
        redirect = not disable
    return S3(
        redirectEndpoint=redirectEndpoint,
        redirect=redirect,
        bucket=bucket,
        region=region,
        regionEndpoint=endpoint,
        accessKey=accessKey,
        secretKey=secretKey,
        rootDirectory=reader.get("storage.s3.rootdirectory", str, ""),
        secure=reader.get("storage.s3.secure", bool, True),
        forcePathStyle=pathStyle,
        skipVerify=reader.get("storage.s3.skipverify", bool, False),
        chunkSize=_size(reader, "storage.s3.chunksize", 10 * _MiB, 5 * _MiB),
        multipartCopyThresholdSize=_size(reader, "storage.s3.multipartcopythresholdsize", 32 * _MiB),
        multipartCopyChunkSize=_size(reader, "storage.s3.multipartcopychunksize", 32 * _MiB, 5 * _MiB),
        multipartCopyMaxConcurrency=_size(reader, "storage.s3.multipartcopymaxconcurrency", 100),
        storageClass=reader.get("storage.s3.storageclass", str, "STANDARD"),
        encrypt=reader.get("storage.s3.encrypt", bool, False),
    )


def isPrivate(endpoint: str) -> bool:
    """
    Whether an endpoint's host is on a private network: a loopback,
    private or link-local address, or a name without a public domain.
    """
    host = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host or host.endswith((".local", ".lan", ".internal", ".home", ".localdomain"))
    return address.is_private or address.is_loopback or address.is_link_local


def _http(reader: _Reader) -> HTTP:
    reader.get("http", dict)
    addr = reader.get("http.addr", str, DEFAULT_ADDR)
    net = reader.get("http.net", str, "tcp")
    try:
        listen = listenEndpoint(addr, net)
    except ValueError as e:
        raise ConfigError(f"http.addr: {e}") from None
    headers = reader.get("http.headers", dict, {})
    parsed: dict[str, tuple[str, ...]] = {}
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) for v in values):
            raise ConfigError(f"http.headers.{name}: expected a string or a list of strings")
        parsed[str(name)] = tuple(str(v) for v in values)
    host = reader.get("http.host", str)
    if host is not None and not re.match(r"https?://[^/]+", host):
        raise ConfigError(f"http.host: expected a URL like https://registry.example.com, got {host!r}")
    return HTTP(
        listen=(listen,),
        host=host,
        relativeURLs=reader.get("http.relativeurls", bool, False),
        headers=parsed,
    )


def _log(reader: _Reader) -> Log:
    reader.get("log", dict)
    level = reader.get("log.level", str, "info").lower()
    if level == "warning":
        level = "warn"
    if level not in _LOG_LEVELS:
        raise ConfigError(f"log.level: expected one of {', '.join(_LOG_LEVELS)}, got {level!r}")
    reader.get("log.accesslog", dict)
    return Log(level=level, accessLog=not reader.get("log.accesslog.disabled", bool, False))


_UPSTREAM_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_UPSTREAM_KEYS = ("name", "remoteurl", "username", "password", "ttl")


def _remoteURL(key: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise ConfigError(
            f"{key}: expected a registry's URL like https://registry-1.docker.io, got {value!r}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _upstream(reader: _Reader, key: str, name: str, ttl: timedelta) -> Upstream:
    remote = reader.get(f"{key}.remoteurl", str)
    if not remote:
        raise ConfigError(f"{key}.remoteurl: the upstream registry's URL is missing")
    username = reader.get(f"{key}.username", str) or None
    password = reader.get(f"{key}.password", str) or None
    if (username is None) != (password is None):
        raise ConfigError(f"{key}.username: give both username and password, or neither")
    return Upstream(
        remoteURL=_remoteURL(f"{key}.remoteurl", remote),
        name=name,
        username=username,
        password=password,
        ttl=reader.duration(f"{key}.ttl", ttl),
    )


def _proxy(reader: _Reader) -> Proxy | None:
    if reader.get("proxy", dict) is None:
        return None
    ttl = reader.duration("proxy.ttl", timedelta(hours=168))
    upstreams = []
    if reader.get("proxy.remoteurl", str):
        upstreams.append(_upstream(reader, "proxy", "", ttl))
    else:
        for key in ("username", "password"):
            if reader.get(f"proxy.{key}", str):
                raise ConfigError(
                    f"proxy.{key}: goes with proxy.remoteurl, which is not set "
                    "(an upstream in proxy.upstreams takes its own)"
                )
    listed = reader.get("proxy.upstreams", list, [])
    for index, entry in enumerate(listed):
        key = f"proxy.upstreams[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: expected a mapping with name and remoteurl")
        unknown = sorted(str(k) for k in entry if k not in _UPSTREAM_KEYS)
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(_UPSTREAM_KEYS)})")
        # One reader per entry, so that errors name the entry's key.
        entryReader = _Reader({"proxy": {f"upstreams[{index}]": entry}})
        name = entryReader.get(f"{key}.name", str)
        if not name or not _UPSTREAM_NAME.fullmatch(name):
            raise ConfigError(
                f"{key}.name: expected a repository name component such as ghcr.io, got {name!r}"
            )
        if any(u.name == name for u in upstreams):
            raise ConfigError(f"{key}.name: {name!r} names two upstreams")
        upstreams.append(_upstream(entryReader, key, name, ttl))
    if not upstreams:
        raise ConfigError("proxy.remoteurl: a proxy needs an upstream (proxy.remoteurl or proxy.upstreams)")
    maxSize = reader.get("proxy.maxsize", (int, str))
    revalidate = reader.duration("proxy.revalidate", timedelta(seconds=60))
    interval = reader.duration("proxy.evictioninterval", timedelta(minutes=10))
    if interval <= timedelta(0):
        raise ConfigError("proxy.evictioninterval: must be more than 0")
    timeout = reader.duration("proxy.timeout", timedelta(seconds=30))
    if timeout <= timedelta(0):
        raise ConfigError("proxy.timeout: must be more than 0")
    return Proxy(
        upstreams=tuple(upstreams),
        revalidate=revalidate,
        maxSize=None if maxSize is None else parseSize("proxy.maxsize", maxSize),
        allowPush=reader.get("proxy.allowpush", bool, False),
        evictionInterval=interval,
        timeout=timeout.total_seconds(),
    )


_SIZE = re.compile(r"(\d+)\s*([kmgt]i?b?|b)?", re.IGNORECASE)


def parseSize(key: str, value: int | str) -> int:
    """
    A number of bytes: C{1073741824}, C{1GiB}, C{500MB}, C{20g}.
    """
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ConfigError(f"{key}: expected a size like 50GiB or 20000000000, got {value!r}")
        number, unit = match.group(1), (match.group(2) or "b").lower()
        size = int(number) * (1024 if "i" in unit else 1000) ** "bkmgt".index(unit[0])
    if size <= 0:
        raise ConfigError(f"{key}: must be more than 0, got {value!r}")
    return size


def parseConfig(text: str | None, environ: Mapping[str, str] | None = None) -> Config:
    """
    A configuration from the text of a C{config.yml} (C{None} for none at
    all: a filesystem registry in C{./registry-data} on port 5000) and the
    environment's C{REGISTRY_*} variables.
    """
    environ = os.environ if environ is None else environ
    if text is None:
        document: Any = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": DEFAULT_ROOT}}}
    else:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"config: not valid YAML{where}: {problem}") from None
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise ConfigError("config: expected a mapping of keys at the top level")
    document = applyEnvironment(document, environ)
    reader = _Reader(document)
    version = reader.get("version", (str, float))
    if version is None:
        raise ConfigError("version: missing (registry:2 configuration files start with 'version: 0.1')")
    if str(version) != "0.1":
        raise ConfigError(f"version: only version 0.1 is known, got {version!r}")
    config = Config(storage=_storage(reader), http=_http(reader), log=_log(reader), proxy=_proxy(reader))
    warnings = tuple(f"config key {key} is not supported yet and is ignored" for key in reader.unknown())
    return attrs.evolve(config, warnings=warnings)


def loadConfig(path: str | None, environ: Mapping[str, str] | None = None) -> Config:
    """
    L{parseConfig} of the file at C{path}.
    """
    if path is None:
        return parseConfig(None, environ)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config: {path} is not UTF-8 text") from None
    return parseConfig(text, environ)
