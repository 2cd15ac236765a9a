"""
Values as the pages show them: sizes, dates, digests, platforms.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def size(value: int | None) -> str:
    if value is None:
        return "\u2014"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{value} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def shortDigest(digest: str) -> str:
    algorithm, _, hexadecimal = digest.partition(":")
    return f"{algorithm}:{hexadecimal[:12]}"


def date(value: Any) -> str:
    """
    An RFC 3339 time from an image config, to the second; pushers write
    anything there, so what is no string shows as nothing.
    """
    if not isinstance(value, str) or not value:
        return "\u2014"
    return value[:19].replace("T", " ")


def timestamp(seconds: float | None) -> str:
    """
    A time in seconds since the epoch, in UTC to the second, as L{date}
    shows a config's.
    """
    if seconds is None:
        return "\u2014"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def platform(value: Any) -> str:
    """
    C{os/architecture[/variant]} of an index's platform or an image config.
    """
    if not isinstance(value, dict):
        return "\u2014"
    parts = [value.get("os"), value.get("architecture"), value.get("variant")]
    return "/".join(str(p) for p in parts if isinstance(p, str) and p) or "\u2014"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m {secs}s" if days else f"{hours}h {minutes}m {secs}s"
