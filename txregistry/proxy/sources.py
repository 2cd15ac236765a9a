"""
What the pull-through cache answers with, as values the web layer can
use without loading the upstream client (treq is the proxy extra's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from txregistry.reference import Digest
from txregistry.storage import IReader

if TYPE_CHECKING:
    from txregistry.proxy.upstream import UpstreamClient


@attrs.frozen
class Route:
    """
    Where a repository's content comes from: C{name} is the repository
    here, C{remote} the same repository as the upstream knows it.
    """

    client: UpstreamClient
    name: str
    remote: str


@attrs.frozen
class ManifestAnswer:
    """
    A manifest to answer with: its content, or for a C{HEAD} that the
    upstream answered, only what describes it.
    """

    digest: Digest
    mediaType: str
    size: int
    content: bytes | None


@attrs.frozen
class BlobSource:
    """
    A blob to answer with: its size (C{None} while an upstream that did not
    say is still sending it), where storage would send a client instead,
    and how to read it from an offset.
    """

    digest: Digest
    size: int | None
    open: Callable[[int], Awaitable[IReader]] | None = None
    redirect: str | None = None
