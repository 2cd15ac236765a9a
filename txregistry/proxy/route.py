"""
Where a cached repository's content comes from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

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
