"""
The C{n} and C{last} parameters of listings, and the C{Link} header that
leads to the next page.
"""

from __future__ import annotations

from urllib.parse import urlencode

from twisted.web.server import Request

from txregistry.web.context import parseInt, query


def paginate(
    request: Request, items: list[str], path: str, limit: int | None = None
) -> tuple[list[str], dict[str, str]]:
    """
    The page of the sorted C{items} that C{request} asks for, and the headers
    to send with it. C{limit} caps the page size (and is the size of a page
    when the client gives none).
    """
    n = parseInt(query(request, "n"), "n")
    last = query(request, "last")
    if last is not None:
        items = [item for item in items if item > last]
    if limit is not None:
        n = limit if n is None else min(n, limit)
    if n is None or len(items) <= n:
        return items, {}
    page = items[:n]
    if not page:
        return page, {}
    link = f"{path}?{urlencode({'n': n, 'last': page[-1]})}"
    return page, {"Link": f'<{link}>; rel="next"'}
