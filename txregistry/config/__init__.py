"""
registry:2's C{config.yml} (C{version: 0.1}) with its C{REGISTRY_*}
environment overrides, read into frozen values.

Keys we do not support yet are named in L{Config.warnings}, never silently
dropped; a file we cannot make sense of, or one that asks for security we
do not have yet, raises L{ConfigError} with one line that names the key.
"""

from txregistry.config.environment import applyEnvironment
from txregistry.config.grammar import (
    cipherSuites,
    isPrivate,
    listenEndpoint,
    parseDuration,
    parseSize,
    remoteURL,
)
from txregistry.config.reader import loadConfig, parseConfig
from txregistry.config.schema import (
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
    Proxy,
    Storage,
    StorageCheck,
    TCPCheck,
    Token,
    UploadPurging,
    Upstream,
)

__all__ = [
    "DEFAULT_ROOT",
    "HTTP",
    "S3",
    "TLS",
    "AccessRule",
    "AccessRules",
    "Config",
    "ConfigError",
    "Debug",
    "Filesystem",
    "FileCheck",
    "Fleet",
    "GarbageCollection",
    "HTTPCheck",
    "Health",
    "Htpasswd",
    "InMemory",
    "Log",
    "Proxy",
    "Storage",
    "StorageCheck",
    "TCPCheck",
    "Token",
    "UI",
    "UploadPurging",
    "Upstream",
    "applyEnvironment",
    "cipherSuites",
    "isPrivate",
    "listenEndpoint",
    "loadConfig",
    "parseConfig",
    "parseDuration",
    "parseSize",
    "remoteURL",
]
