"""
The HTML around every page: the head (the UI's own stylesheet and script,
never inline ones), the navigation and the headers that keep a pusher's
text from ever running in a viewer's browser.
"""

from __future__ import annotations

from twisted.web.template import Tag, tags

#: No inline script or style, nothing from elsewhere, no framing, no
#: forms sent anywhere else.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_NAVIGATION = (("Repositories", "/ui/"), ("Cache", "/ui/cache"), ("Status", "/ui/status"))


def document(title: str, body: Tag, withCache: bool) -> Tag:
    links = [tags.a(label, href=href) for label, href in _NAVIGATION if withCache or href != "/ui/cache"]
    return tags.html(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(title, " \u2014 txregistry"),
            tags.link(rel="stylesheet", href="/ui/static/ui.css"),
            tags.link(rel="icon", href="/ui/static/favicon.svg", type="image/svg+xml"),
            tags.script(src="/ui/static/ui.js", defer="defer"),
        ),
        tags.body(
            tags.header(tags.strong("txregistry"), tags.nav(*links)),
            # Twisted's tags predate <main>.
            Tag("main")(tags.h1(title), body),
        ),
        lang="en",
    )


def table(headings: list[str], rows: list[Tag], **attributes: str) -> Tag:
    return tags.table(tags.thead(tags.tr(*(tags.th(h) for h in headings))), tags.tbody(*rows), **attributes)


def copyable(text: str) -> Tag:
    """
    C{text} with a button that puts it on the clipboard (C{ui.js}).
    """
    return tags.span(
        tags.code(text), " ", tags.button("Copy", type="button", **{"class": "copy", "data-copy": text})
    )
