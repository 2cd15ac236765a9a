"""
Reading a C{config.yml} document into a L{Config}: a walker that remembers
the keys it was asked about, and one parser for each section. A key left
out takes the default of the schema's class (read from an instance made
without it), so that each default is written once, there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs

from txregistry.config.environment import STORAGE_SETTINGS, applyEnvironment
from txregistry.config.grammar import (
    cipherSuites,
    isPrivate,
    listenEndpoint,
    parseDuration,
    parseSize,
    remoteURL,
)
from txregistry.config.schema import (
    DEFAULT_METRICS_PATH,
    DEFAULT_ROOT,
    HTTP,
    S3,
    TLS,
    UI,
    AccessRule,
    AccessRules,
    Config,
    ConfigError,
    Debug,
    FileCheck,
    Filesystem,
    Fleet,
    GarbageCollection,
    Health,
    Htpasswd,
    HTTPCheck,
    InMemory,
    Log,
    NotificationEndpoint,
    Proxy,
    Storage,
    StorageCheck,
    TCPCheck,
    Token,
    UploadPurging,
    Upstream,
)
from txregistry.notifications.interfaces import ACTIONS as EVENT_ACTIONS

_DRIVERS = ("filesystem", "inmemory", "s3", "azure", "gcs", "swift", "oss")
_SUPPORTED_DRIVERS = ("filesystem", "inmemory", "s3")
_LOG_LEVELS = ("debug", "info", "warn", "error")
_LOG_FORMATTERS = ("text", "json", "logstash")

T = TypeVar("T")


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

    def duration(self, key: str, default: timedelta, positive: bool = False) -> timedelta:
        """
        A duration (C{90s}, C{10m}); with C{positive}, one that is more than 0.
        """
        text = self.get(key, str)
        if text is None:
            return default
        try:
            value = parseDuration(text)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
        if positive and value <= timedelta(0):
            raise ConfigError(f"{key}: must be more than 0")
        return value

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

    def nearest(self, key: str) -> str | None:
        """
        The known key beside C{key} that it is most likely a misspelling of.
        """
        import difflib  # Only for a configuration with a key we do not know.

        section, _, name = key.rpartition(".")
        siblings = [k.rpartition(".")[2] for k in self.known if k.rpartition(".")[0] == section]
        close = difflib.get_close_matches(name, siblings, n=1)
        if not close:
            return None
        return f"{section}.{close[0]}" if section else close[0]

    def warning(self, key: str) -> str:
        nearest = self.nearest(key)
        if nearest is None:
            return f"config key {key} is not supported yet and is ignored"
        return f"config key {key} is not supported and is ignored (did you mean {nearest}?)"


_KIND_NAMES = {
    "str": "a string",
    "dict": "a mapping",
    "bool": "true or false",
    "int": "an integer",
    "list": "a list",
}


_AUTH_KINDS = ("htpasswd", "token")
_TOKEN_KEYS = ("realm", "service", "issuer", "rootcertbundle", "jwks", "signingalgorithms")
_ACTIONS = ("pull", "push", "delete")
_RULE_KEYS = ("repositories", "actions", "users", "groups", "authenticated", "anonymous")
_GLOB = re.compile(r"[a-z0-9._/*?-]+")
_ACCESS_NEEDS = "works with auth.htpasswd users (a token's own access claims say what it grants)"


def _auth(reader: _Reader) -> Htpasswd | Token | None:
    """
    C{auth.htpasswd} or C{auth.token}. Any other kind, or a key of theirs
    we do not act on, stops start-up rather than leave the registry more
    open than the configuration asks.
    """
    auth = reader.get("auth", (dict, str))
    if not auth:
        return None
    # Any key at all (an empty or null one beside htpasswd, too): closed
    # on doubt.
    kinds = list(auth) if isinstance(auth, dict) else [auth]
    others = [k for k in kinds if k not in (*_AUTH_KINDS, "access")]
    if others:
        kind = next((k for k in others if isinstance(k, str) and k), repr(others[0]))
        raise ConfigError(
            f"auth.{kind}: not supported (auth.htpasswd or auth.token); refusing to start an open registry"
        )
    chosen = [k for k in kinds if k in _AUTH_KINDS]
    if not chosen:
        raise ConfigError(f"auth.access: {_ACCESS_NEEDS}; refusing to start an open registry")
    if len(chosen) > 1:
        raise ConfigError("auth: give auth.htpasswd or auth.token, not both; refusing to start")
    if chosen[0] == "token":
        return _token(reader)
    reader.get("auth.htpasswd", dict)
    return Htpasswd(
        realm=_required(reader, "auth.htpasswd.realm"), path=_required(reader, "auth.htpasswd.path")
    )


def _required(reader: _Reader, key: str, why: str = "refusing to start an open registry") -> str:
    value = reader.get(key, str)
    if not value:
        raise ConfigError(f"{key}: required" + (f"; {why}" if why else ""))
    return str(value)


def _token(reader: _Reader) -> Token:
    section = reader.get("auth.token", dict) or {}
    for name in section:
        if name in ("autoredirect", "autoredirectpath"):
            raise ConfigError(f"auth.token.{name}: not supported; give auth.token.realm in full")
        if name not in _TOKEN_KEYS:
            raise ConfigError(f"auth.token.{name}: unknown key (known: {', '.join(_TOKEN_KEYS)})")
    algorithms = reader.get("auth.token.signingalgorithms", list, [])
    if not all(isinstance(a, str) for a in algorithms):
        raise ConfigError("auth.token.signingalgorithms: expected a list of algorithm names")
    return Token(
        realm=_required(reader, "auth.token.realm"),
        service=_required(reader, "auth.token.service"),
        issuer=_required(reader, "auth.token.issuer"),
        rootCertBundle=reader.get("auth.token.rootcertbundle", str) or None,
        jwks=reader.get("auth.token.jwks", str) or None,
        algorithms=tuple(algorithms),
    )


def _access(reader: _Reader, auth: Htpasswd | Token | None) -> AccessRules | None:
    """
    C{auth.access}, ours: grants to htpasswd users. A key it does not know
    stops start-up, since a misspelt one would grant other than meant.
    """
    section = reader.get("auth.access", dict)
    if section is None:
        given = reader.document.get("auth")
        if isinstance(given, dict) and "access" in given:
            # Left empty, it would leave every user every right: not what
            # writing it down asked for.
            raise ConfigError("auth.access.rules: a list of rules is required (see the README)")
        return None
    if not isinstance(auth, Htpasswd):
        raise ConfigError(f"auth.access: {_ACCESS_NEEDS}")
    for name in section:
        if name not in ("groups", "rules"):
            raise ConfigError(f"auth.access.{name}: unknown key (known: groups, rules)")
    groups: dict[str, tuple[str, ...]] = {}
    for group, members in (reader.get("auth.access.groups", dict) or {}).items():
        groups[str(group)] = _names(f"auth.access.groups.{group}", members)
    rules = reader.get("auth.access.rules", list)
    if not rules:
        raise ConfigError("auth.access.rules: a list of rules is required (see the README)")
    parsed = tuple(_rule(f"auth.access.rules[{i}]", rule, groups) for i, rule in enumerate(rules))
    return AccessRules(parsed, groups)


def _names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: expected a list of names, got {value!r}")
    return tuple(value)


def _rule(key: str, rule: Any, groups: Mapping[str, tuple[str, ...]]) -> AccessRule:
    if not isinstance(rule, dict):
        raise ConfigError(f"{key}: expected a mapping (repositories, actions, and who), got {rule!r}")
    for name in rule:
        if name not in _RULE_KEYS:
            raise ConfigError(f"{key}.{name}: unknown key (known: {', '.join(_RULE_KEYS)})")
    repositories = _names(f"{key}.repositories", rule.get("repositories"))
    for glob in repositories:
        if not _GLOB.fullmatch(glob):
            raise ConfigError(
                f"{key}.repositories: {glob!r} is not a glob of repository names (a-z 0-9 . _ - / * ?)"
            )
        for part in glob.split("/"):
            if not part or ("**" in part and part != "**"):
                raise ConfigError(
                    f"{key}.repositories: {glob!r}: each path component is a name, a pattern with * and ?, "
                    "or ** alone"
                )
    actions = set(_names(f"{key}.actions", rule.get("actions")))
    for action in actions:
        if action not in _ACTIONS:
            raise ConfigError(f"{key}.actions: {action!r} is not one of {', '.join(_ACTIONS)}")
    if "push" in actions:
        actions.add("pull")
    users = _names(f"{key}.users", rule.get("users", []))
    members = _names(f"{key}.groups", rule.get("groups", []))
    for group in members:
        if group not in groups:
            raise ConfigError(f"{key}.groups: no group {group!r} in auth.access.groups")
    flags = {}
    for flag in ("authenticated", "anonymous"):
        value = rule.get(flag, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{key}.{flag}: expected true or false, got {value!r}")
        flags[flag] = value
    if not (users or members or flags["authenticated"] or flags["anonymous"]):
        raise ConfigError(f"{key}: grants to nobody (give users, groups, authenticated or anonymous)")
    return AccessRule(repositories, frozenset(actions), users, members, **flags)


_TLS_KEYS = ("certificate", "key", "clientcas", "minimumtls", "ciphersuites")
_TLS_VERSIONS = ("tls1.2", "tls1.3")


def _tls(reader: _Reader) -> TLS | None:
    """
    C{http.tls}. Every key we do not act on stops start-up: ignored, it
    could leave TLS weaker than the configuration asks.
    """
    section = reader.get("http.tls", dict)
    if not section:
        return None
    for name in section:
        if name == "letsencrypt":
            raise ConfigError(
                "http.tls.letsencrypt: certificates from Let's Encrypt (ACME) are not supported; "
                "give http.tls.certificate and http.tls.key"
            )
        if name not in _TLS_KEYS:
            raise ConfigError(f"http.tls.{name}: unknown TLS key (known: {', '.join(_TLS_KEYS)})")
    certificate = reader.get("http.tls.certificate", str)
    key = reader.get("http.tls.key", str)
    if not certificate:
        raise ConfigError("http.tls.certificate: missing; TLS needs a certificate and its key (PEM files)")
    if not key:
        raise ConfigError("http.tls.key: missing; TLS needs a certificate and its key (PEM files)")
    clientCAs = reader.get("http.tls.clientcas", list, [])
    for index, path in enumerate(clientCAs):
        if not isinstance(path, str) or not path:
            raise ConfigError(f"http.tls.clientcas[{index}]: expected the path of a PEM file, got {path!r}")
    defaults = TLS(certificate="", key="")
    minimum = reader.get("http.tls.minimumtls", str, defaults.minimumTLS)
    if minimum in ("tls1.0", "tls1.1"):
        raise ConfigError(f"http.tls.minimumtls: {minimum} is insecure and not offered (tls1.2 or tls1.3)")
    if minimum not in _TLS_VERSIONS:
        raise ConfigError(f"http.tls.minimumtls: expected tls1.2 or tls1.3, got {minimum!r}")
    # None named (an empty list too) is registry:2's default.
    names = reader.get("http.tls.ciphersuites", list)
    ciphers = cipherSuites("http.tls.ciphersuites", names) if names else defaults.ciphers
    if not ciphers and minimum == "tls1.2":
        raise ConfigError(
            "http.tls.ciphersuites: names no TLS 1.2 cipher suite; "
            "name one, or set http.tls.minimumtls to tls1.3"
        )
    return TLS(
        certificate=certificate,
        key=key,
        clientCAs=tuple(clientCAs),
        minimumTLS=minimum,
        ciphers=ciphers,
    )


def _storage(reader: _Reader) -> Storage:
    section = reader.get("storage", dict)
    if section is None:
        raise ConfigError(
            "storage: no storage driver is configured (storage.filesystem.rootdirectory, for one)"
        )
    drivers = [key for key in section if key not in STORAGE_SETTINGS]
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
    backend: Filesystem | S3 | InMemory
    if driver == "filesystem":
        root = reader.get("storage.filesystem.rootdirectory", str, Filesystem().rootDirectory)
        backend = Filesystem(root)
    elif driver == "s3":
        backend = _s3(reader)
    else:
        backend = InMemory()
    reader.get("storage.maintenance", dict)
    reader.get("storage.maintenance.uploadpurging", dict)
    defaults = UploadPurging()
    enabled = reader.get("storage.maintenance.uploadpurging.enabled", bool, defaults.enabled)
    purging = UploadPurging(
        enabled=enabled,
        age=reader.duration("storage.maintenance.uploadpurging.age", defaults.age),
        interval=reader.duration(
            "storage.maintenance.uploadpurging.interval", defaults.interval, positive=enabled
        ),
        dryRun=reader.get("storage.maintenance.uploadpurging.dryrun", bool, defaults.dryRun),
    )
    gc = _garbageCollection(reader)
    reader.get("storage.delete", dict)
    reader.get("storage.maintenance.readonly", dict)
    reader.get("storage.redirect", dict)
    if driver != "s3":
        # registry:2 redirects only where storage can hand out URLs.
        reader.get("storage.redirect.disable", bool)
    settings = Storage()
    return Storage(
        backend=backend,
        deleteEnabled=reader.get("storage.delete.enabled", bool, settings.deleteEnabled),
        readOnly=reader.get("storage.maintenance.readonly.enabled", bool, settings.readOnly),
        uploadPurging=purging,
        gc=gc,
        blobDescriptors=_blobDescriptors(reader, settings.blobDescriptors),
    )


def _garbageCollection(reader: _Reader) -> GarbageCollection:
    reader.get("storage.maintenance.gc", dict)
    defaults = GarbageCollection()
    enabled = reader.get("storage.maintenance.gc.enabled", bool, defaults.enabled)
    return GarbageCollection(
        enabled=enabled,
        interval=reader.duration("storage.maintenance.gc.interval", defaults.interval, positive=enabled),
        gracePeriod=reader.duration(
            "storage.maintenance.gc.graceperiod", defaults.gracePeriod, positive=enabled
        ),
    )


def _blobDescriptors(reader: _Reader, default: int) -> int:
    """
    registry:2's C{storage.cache}: C{inmemory} is what txregistry always
    does (blob sizes kept in memory, bounded); C{redis} is not offered.
    """
    reader.get("storage.cache", dict)
    kind = reader.get("storage.cache.blobdescriptor", str) or reader.get("storage.cache.layerinfo", str)
    if kind == "redis":
        raise ConfigError(
            "storage.cache.blobdescriptor: redis is not supported; "
            "use inmemory (each instance keeps its own, bounded) or leave it out"
        )
    if kind not in (None, "inmemory"):
        raise ConfigError(f"storage.cache.blobdescriptor: expected inmemory or redis, got {kind!r}")
    size = reader.get("storage.cache.blobdescriptorsize", int, 0)
    if size < 0:
        raise ConfigError("storage.cache.blobdescriptorsize: must be 0 or more")
    # registry:2's 0 is no limit; here every cache has one, so 0 is ours.
    return size or default


def _size(reader: _Reader, key: str, default: int, minimum: int = 1) -> int:
    value = reader.get(key, (int, str), default)
    if isinstance(value, str):
        if not value.isdigit():
            raise ConfigError(f"{key}: expected a number of bytes, got {value!r}")
        value = int(value)
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    return int(value)


# S3's smallest multipart part, but for the last.
_MIN_PART = 5 * 1024 * 1024


def _s3(reader: _Reader) -> S3:
    defaults = S3(bucket="")
    bucket = reader.get("storage.s3.bucket", str)
    if not bucket:
        raise ConfigError("storage.s3.bucket: the bucket to keep the registry in is missing")
    endpoint = reader.get("storage.s3.regionendpoint", str) or None
    region = reader.get("storage.s3.region", str)
    if region is None:
        if endpoint is None:
            raise ConfigError("storage.s3.region: missing (needed unless storage.s3.regionendpoint is given)")
        region = defaults.region
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
        rootDirectory=reader.get("storage.s3.rootdirectory", str, defaults.rootDirectory),
        secure=reader.get("storage.s3.secure", bool, defaults.secure),
        forcePathStyle=pathStyle,
        skipVerify=reader.get("storage.s3.skipverify", bool, defaults.skipVerify),
        chunkSize=_size(reader, "storage.s3.chunksize", defaults.chunkSize, _MIN_PART),
        multipartCopyThresholdSize=_size(
            reader, "storage.s3.multipartcopythresholdsize", defaults.multipartCopyThresholdSize
        ),
        multipartCopyChunkSize=_size(
            reader, "storage.s3.multipartcopychunksize", defaults.multipartCopyChunkSize, _MIN_PART
        ),
        multipartCopyMaxConcurrency=_size(
            reader, "storage.s3.multipartcopymaxconcurrency", defaults.multipartCopyMaxConcurrency
        ),
        storageClass=reader.get("storage.s3.storageclass", str, defaults.storageClass),
        encrypt=reader.get("storage.s3.encrypt", bool, defaults.encrypt),
    )


def _headers(key: str, headers: dict[Any, Any]) -> dict[str, tuple[str, ...]]:
    parsed: dict[str, tuple[str, ...]] = {}
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) for v in values):
            raise ConfigError(f"{key}.{name}: expected a string or a list of strings")
        parsed[str(name)] = tuple(str(v) for v in values)
    return parsed


def _http(reader: _Reader) -> HTTP:
    defaults = HTTP()
    reader.get("http", dict)
    addr = reader.get("http.addr", str)
    net = reader.get("http.net", str)
    if addr is None:
        if net is not None:
            raise ConfigError("http.addr: missing (http.net is given)")
        listen = defaults.listen
    else:
        try:
            listen = (listenEndpoint(addr) if net is None else listenEndpoint(addr, net),)
        except ValueError as e:
            raise ConfigError(f"http.addr: {e}") from None
    parsed = _headers("http.headers", reader.get("http.headers", dict, {}))
    host = reader.get("http.host", str)
    if host is not None and not re.match(r"https?://[^/]+", host):
        raise ConfigError(f"http.host: expected a URL like https://registry.example.com, got {host!r}")
    return HTTP(
        listen=listen,
        tls=_tls(reader),
        host=host,
        relativeURLs=reader.get("http.relativeurls", bool, defaults.relativeURLs),
        headers=parsed,
        secret=reader.get("http.secret", str) or None,
        debug=_debug(reader),
    )


def _debug(reader: _Reader) -> Debug | None:
    if reader.get("http.debug", dict) is None:
        return None
    reader.get("http.debug.prometheus", dict)
    enabled = reader.get("http.debug.prometheus.enabled", bool, False)
    path = reader.get("http.debug.prometheus.path", str, DEFAULT_METRICS_PATH)
    addr = reader.get("http.debug.addr", str)
    if not addr:
        if enabled:
            # registry:2 would quietly serve no metrics.
            raise ConfigError("http.debug.addr: missing: the metrics are served on the debug listener")
        return None
    try:
        listen = listenEndpoint(addr)
    except ValueError as e:
        raise ConfigError(f"http.debug.addr: {e}") from None
    if not enabled:
        return Debug(listen=listen)
    if not path.startswith("/") or path.rstrip("/") in ("", "/debug", "/debug/health", "/debug/upstreams"):
        raise ConfigError(f"http.debug.prometheus.path: expected a path like /metrics, got {path!r}")
    return Debug(listen=listen, metricsPath=path)


def _log(reader: _Reader) -> Log:
    reader.get("log", dict)
    level = reader.get("log.level", str, Log().level).lower()
    if level == "warning":
        level = "warn"
    if level not in _LOG_LEVELS:
        raise ConfigError(f"log.level: expected one of {', '.join(_LOG_LEVELS)}, got {level!r}")
    reader.get("log.accesslog", dict)
    disabled = reader.get("log.accesslog.disabled", bool, not Log().accessLog)
    # An empty formatter is the default one, as in registry:2.
    formatter = reader.get("log.formatter", str) or Log().formatter
    if formatter not in _LOG_FORMATTERS:
        raise ConfigError(f"log.formatter: expected one of {', '.join(_LOG_FORMATTERS)}, got {formatter!r}")
    fields = reader.get("log.fields", dict, {})
    for name, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"log.fields.{name}: expected a string, got {value!r}")
    return Log(
        level=level,
        accessLog=not disabled,
        formatter=formatter,
        fields={str(name): str(value) for name, value in fields.items()},
    )


_UPSTREAM_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_UPSTREAM_KEYS = ("name", "remoteurl", "username", "password", "ttl")


def _upstream(reader: _Reader, key: str, name: str, ttl: timedelta) -> Upstream:
    remote = reader.get(f"{key}.remoteurl", str)
    if not remote:
        raise ConfigError(f"{key}.remoteurl: the upstream registry's URL is missing")
    username = reader.get(f"{key}.username", str) or None
    password = reader.get(f"{key}.password", str) or None
    if (username is None) != (password is None):
        raise ConfigError(f"{key}.username: give both username and password, or neither")
    return Upstream(
        remoteURL=remoteURL(f"{key}.remoteurl", remote),
        name=name,
        username=username,
        password=password,
        ttl=reader.duration(f"{key}.ttl", ttl),
    )


def _proxy(reader: _Reader) -> Proxy | None:
    if reader.get("proxy", dict) is None:
        return None
    defaults = Proxy(upstreams=())
    ttl = reader.duration("proxy.ttl", Upstream(remoteURL="").ttl)
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
    revalidate = reader.duration("proxy.revalidate", defaults.revalidate)
    interval = reader.duration("proxy.evictioninterval", defaults.evictionInterval, positive=True)
    timeout = reader.duration("proxy.timeout", timedelta(seconds=defaults.timeout), positive=True)
    revalidateTimeout = reader.duration(
        "proxy.revalidatetimeout", timedelta(seconds=defaults.revalidateTimeout), positive=True
    )
    return Proxy(
        upstreams=tuple(upstreams),
        revalidate=revalidate,
        maxSize=None if maxSize is None else parseSize("proxy.maxsize", maxSize),
        allowPush=reader.get("proxy.allowpush", bool, defaults.allowPush),
        evictionInterval=interval,
        timeout=timeout.total_seconds(),
        revalidateTimeout=revalidateTimeout.total_seconds(),
        fleet=_fleet(reader),
    )


#: The shortest http.secret a fleet's requests are signed with.
_MIN_SECRET = 16


def _fleet(reader: _Reader) -> Fleet | None:
    if reader.get("proxy.fleet", dict) is None:
        return None
    advertise = reader.get("proxy.fleet.advertise", str)
    if not advertise:
        raise ConfigError(
            "proxy.fleet.advertise: missing: the http://host:port other instances reach this one at"
        )
    advertise = remoteURL("proxy.fleet.advertise", advertise, "a URL like http://10.0.0.5:5000")
    secret = reader.get("http.secret", str)
    if not secret:
        raise ConfigError(
            "http.secret: the instances of proxy.fleet sign their requests to each other with it: "
            "give every instance the same secret"
        )
    if len(secret) < _MIN_SECRET:
        raise ConfigError(f"http.secret: must be at least {_MIN_SECRET} characters for proxy.fleet")
    lease = reader.duration("proxy.fleet.lease", Fleet(advertise="").lease)
    if lease < timedelta(seconds=3):
        raise ConfigError("proxy.fleet.lease: must be at least 3s")
    return Fleet(advertise=advertise, lease=lease)


_CHECK_KEYS = {
    "file": ("file", "interval", "threshold"),
    "http": ("uri", "headers", "statuscode", "timeout", "interval", "threshold"),
    "tcp": ("addr", "timeout", "interval", "threshold"),
}


def _health(reader: _Reader) -> Health:
    """
    registry:2's C{health}: the storage driver's check, and lists of file,
    HTTP and TCP checks.
    """
    reader.get("health", dict)
    reader.get("health.storagedriver", dict)
    storage = StorageCheck(
        enabled=reader.get("health.storagedriver.enabled", bool, StorageCheck().enabled),
        interval=reader.duration("health.storagedriver.interval", StorageCheck().interval, positive=True),
        threshold=_threshold(reader, "health.storagedriver.threshold"),
    )
    return Health(
        storageDriver=storage,
        files=tuple(_checks(reader, "file", _fileCheck)),
        http=tuple(_checks(reader, "http", _httpCheck)),
        tcp=tuple(_checks(reader, "tcp", _tcpCheck)),
    )


def _checks(reader: _Reader, kind: str, parse: Callable[[_Reader], T]) -> list[T]:
    """
    The entries of the list C{health.<kind>}, each parsed from a reader of
    its own; errors name the entry (C{health.http[0].uri}).
    """
    key = f"health.{kind}"
    checks = []
    for i, entry in enumerate(reader.get(key, list, [])):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping, got {entry!r}")
        for name in entry:
            if name not in _CHECK_KEYS[kind]:
                raise ConfigError(f"{where}.{name}: unknown key (known: {', '.join(_CHECK_KEYS[kind])})")
        try:
            checks.append(parse(_Reader(entry)))
        except ConfigError as e:
            raise ConfigError(f"{where}.{e}") from None
    return checks


def _threshold(reader: _Reader, key: str) -> int:
    threshold: int = reader.get(key, int, 0)
    if threshold < 0:
        raise ConfigError(f"{key}: must be 0 or more")
    return threshold


def _fileCheck(entry: _Reader) -> FileCheck:
    return FileCheck(
        file=_required(entry, "file", ""),
        interval=entry.duration("interval", FileCheck("").interval, positive=True),
        threshold=_threshold(entry, "threshold"),
    )


def _httpCheck(entry: _Reader) -> HTTPCheck:
    defaults = HTTPCheck("")
    uri = _required(entry, "uri", "")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"uri: expected an http:// or https:// URL, got {uri!r}")
    headers = _headers("headers", entry.get("headers", dict, {}))
    status = entry.get("statuscode", int, defaults.statusCode)
    if not 100 <= status <= 599:
        raise ConfigError(f"statuscode: expected an HTTP status code, got {status}")
    return HTTPCheck(
        uri=uri,
        headers=headers,
        statusCode=status,
        # registry:2's 0, for none: here the interval, as when left out.
        timeout=entry.duration("timeout", timedelta(0)) or defaults.timeout,
        interval=entry.duration("interval", defaults.interval, positive=True),
        threshold=_threshold(entry, "threshold"),
    )


def _tcpCheck(entry: _Reader) -> TCPCheck:
    addr = _required(entry, "addr", "")
    host, _, port = addr.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"addr: expected host:port, got {addr!r}")
    defaults = TCPCheck(addr, host, int(port))
    return TCPCheck(
        addr=addr,
        host=host,
        port=int(port),
        timeout=entry.duration("timeout", timedelta(0)) or defaults.timeout,
        interval=entry.duration("interval", defaults.interval, positive=True),
        threshold=_threshold(entry, "threshold"),
    )


_ENDPOINT_KEYS = (
    "name",
    "disabled",
    "url",
    "headers",
    "timeout",
    "threshold",
    "backoff",
    "ignoredmediatypes",
    "ignore",
    "queuesize",
)


def _notifications(reader: _Reader) -> tuple[NotificationEndpoint, ...]:
    """
    registry:2's C{notifications.endpoints}. A key of an endpoint we do not
    know stops start-up, as one that is there but unusable does: either
    would leave the endpoint told other than meant.
    """
    reader.get("notifications", dict)
    listed = reader.get("notifications.endpoints", list, [])
    endpoints: list[NotificationEndpoint] = []
    for index, entry in enumerate(listed):
        key = f"notifications.endpoints[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: expected a mapping with name and url")
        unknown = sorted(str(k) for k in entry if k not in _ENDPOINT_KEYS)
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(_ENDPOINT_KEYS)})")
        endpoint = _endpoint(_Reader({"notifications": {f"endpoints[{index}]": entry}}), key)
        if any(e.name == endpoint.name for e in endpoints):
            raise ConfigError(f"{key}.name: {endpoint.name!r} names two endpoints")
        endpoints.append(endpoint)
    return tuple(endpoints)


def _endpoint(reader: _Reader, key: str) -> NotificationEndpoint:
    defaults = NotificationEndpoint(name="", url="")
    name = reader.get(f"{key}.name", str)
    if not name:
        raise ConfigError(f"{key}.name: required: what the endpoint is called in logs and metrics")
    url = reader.get(f"{key}.url", str)
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}.url: expected an http:// or https:// URL, got {url!r}")
    ignored = set(_strings(reader, f"{key}.ignoredmediatypes"))
    ignored.update(_strings(reader, f"{key}.ignore.mediatypes"))
    actions = _strings(reader, f"{key}.ignore.actions")
    for action in actions:
        if action not in EVENT_ACTIONS:
            raise ConfigError(f"{key}.ignore.actions: {action!r} is not one of {', '.join(EVENT_ACTIONS)}")
    for ignoring in reader.get(f"{key}.ignore", dict, {}):
        if ignoring not in ("mediatypes", "actions"):
            raise ConfigError(f"{key}.ignore.{ignoring}: unknown key (known: mediatypes, actions)")
    # As registry:2 has it: 0 (or less) is the default.
    threshold = reader.get(f"{key}.threshold", int, 0)
    queueSize = reader.get(f"{key}.queuesize", int, defaults.queueSize)
    if queueSize < 1:
        raise ConfigError(f"{key}.queuesize: must be at least 1, got {queueSize}")
    return NotificationEndpoint(
        name=name,
        url=url,
        headers=_headers(f"{key}.headers", reader.get(f"{key}.headers", dict, {})),
        timeout=_seconds(reader, f"{key}.timeout", defaults.timeout),
        threshold=threshold if threshold > 0 else defaults.threshold,
        backoff=_seconds(reader, f"{key}.backoff", defaults.backoff),
        ignoredMediaTypes=frozenset(ignored),
        ignoredActions=frozenset(actions),
        disabled=reader.get(f"{key}.disabled", bool, defaults.disabled),
        queueSize=queueSize,
    )


def _strings(reader: _Reader, key: str) -> tuple[str, ...]:
    values = reader.get(key, list, [])
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{key}: expected a list of strings, got {values!r}")
    return tuple(values)


def _seconds(reader: _Reader, key: str, default: float) -> float:
    seconds = reader.duration(key, timedelta(seconds=default)).total_seconds()
    return seconds if seconds > 0 else default


def _ui(reader: _Reader) -> UI:
    reader.get("ui", dict)
    return UI(enabled=reader.get("ui.enabled", bool, UI().enabled))


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
        # Imported here, not at the top: txregistry serve lets PyYAML go
        # once the configuration is read (txregistry.memory.usedOnce).
        import yaml

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
    auth = _auth(reader)
    config = Config(
        storage=_storage(reader),
        http=_http(reader),
        log=_log(reader),
        proxy=_proxy(reader),
        auth=auth,
        access=_access(reader, auth),
        health=_health(reader),
        notifications=_notifications(reader),
        ui=_ui(reader),
    )
    return attrs.evolve(config, warnings=tuple(reader.warning(key) for key in reader.unknown()))


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
