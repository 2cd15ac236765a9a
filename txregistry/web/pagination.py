"""
The C{n} and C{last} parameters of listings, and the C{Link} header that
leads to the next page.
"""

from __future__ import annotations

from urllib.parse import urlencode

from twisted.web.server import Request

from txregistry.errors import RegistryError
from txregistry.registry import Listing
from txregistry.web.context import parseInt, query


def pageAsked(
    request: Request, default: int | None = None, limit: int | None = None
) -> tuple[int | None, str | None]:
    """
    The page size (C{n}; C{None}: the whole listing) and the name it follows
    (C{last}) that C{request} asks for. A page is C{default} names when the
    client gives no size, and one larger than C{limit} is refused with
    C{PAGINATION_NUMBER_INVALID}, as registry:2's catalog refuses it.
    """
    n = parseInt(query(request, "n"), "n")
    if n is None:
        n = default
    elif limit is not None and n > limit:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"n must be at most {limit}", {"n": n, "max": limit})
    return n, query(request, "last")


def pageHeaders(path: str, n: int | None, page: Listing) -> dict[str, str]:
    """
    The headers to send with C{page} of C{n} names at most: a C{Link} to
    the next page, when more follow.
    """
    if n is None or not page.more or not page.names:
        return {}
    link = f"{path}?{urlencode({'n': n, 'last': page.names[-1]})}"
    return {"Link": f'<{link}>; rel="next"'}
