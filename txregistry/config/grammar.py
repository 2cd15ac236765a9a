"""
The forms of registry:2's values: Go durations, sizes, listen addresses,
upstream URLs, which S3 endpoints are private, and TLS cipher suites.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from urllib.parse import urlsplit

from txregistry.config.schema import ConfigError

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


def remoteURL(
    key: str, value: str, expected: str = "a registry's URL like https://registry-1.docker.io"
) -> str:
    """
    A registry's base URL (C{https://ghcr.io}), without a trailing slash.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


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


# registry:2's TLS 1.0-1.2 cipher suites (Go's names, which are IANA's) by
# their OpenSSL names.
_TLS12_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
# Always on in TLS 1.3, in Go as in OpenSSL: named, they change nothing.
_TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# registry:2 takes these too; 3DES is broken (Sweet32).
_INSECURE_SUITES = ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA")


def cipherSuites(key: str, names: list[object]) -> tuple[str, ...]:
    """
    The OpenSSL names of the TLS 1.2 cipher suites among registry:2's
    C{names} (C{TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}).
    """
    ciphers = []
    for index, name in enumerate(names):
        where = f"{key}[{index}]"
        if name in _INSECURE_SUITES:
            raise ConfigError(f"{where}: {name} is insecure and not offered")
        if not isinstance(name, str) or (name not in _TLS12_SUITES and name not in _TLS13_SUITES):
            raise ConfigError(
                f"{where}: unknown cipher suite {name!r} (expected Go's names, such as "
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
            )
        if name in _TLS12_SUITES:
            ciphers.append(_TLS12_SUITES[name])
    return tuple(ciphers)
