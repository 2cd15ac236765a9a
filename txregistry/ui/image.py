"""
One manifest: an index's platforms, or an image's layers and config; its
annotations; and what refers to it (signatures, SBOMs, attestations), by
artifact type.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request
from twisted.web.template import Tag, tags

from txregistry.auth import Identity
from txregistry.errors import RegistryError
from txregistry.manifest import Descriptor
from txregistry.ui import format
from txregistry.ui.images import Image, image, mapping
from txregistry.ui.layout import copyable, table
from txregistry.ui.page import PullPage, pageLink, pullHost, repositoryName
from txregistry.web.context import query

_NONE = tags.p("None.", class_="empty")


class ImagePage(PullPage):
    title = "Image"

    async def content(self, request: Request, identity: Identity) -> Tag:
        name = repositoryName(request)
        reference = query(request, "reference") or ""
        if not reference:
            raise RegistryError.manifestUnknown(reference)
        repository = self.shared.context.registry.repository(name)
        found = await image(repository, reference)
        referrers = await repository.referrers(found.digest, None)
        host = pullHost(self.shared.context, request)
        body: list[Tag] = [
            tags.dl(
                tags.dt("Repository"),
                tags.dd(tags.a(name, href=pageLink("/ui/repository", name=name))),
                tags.dt("Digest"),
                tags.dd(tags.code(str(found.digest))),
                tags.dt("Media type"),
                tags.dd(found.mediaType),
                tags.dt("Pull"),
                tags.dd(copyable(f"docker pull {host}/{name}@{found.digest}")),
            )
        ]
        if found.isIndex:
            body += [tags.h2("Platforms"), _platforms(name, found)]
        else:
            body += [tags.h2("Layers"), _layers(found)]
            body += _config(found.config)
        body += [tags.h2("Annotations"), _pairs(mapping(found.document.get("annotations")))]
        body += [tags.h2("Referrers"), _referrers(name, referrers)]
        return tags.div(*body)


def _platforms(name: str, found: Image) -> Tag:
    rows = [
        tags.tr(
            tags.td(format.platform(child.get("platform"))),
            tags.td(
                tags.a(child["digest"], href=pageLink("/ui/image", name=name, reference=child["digest"]))
            ),
            tags.td(str(child.get("mediaType", ""))),
            tags.td(format.size(_int(child.get("size"))), class_="number"),
        )
        for child in found.children
    ]
    return table(["Platform", "Digest", "Media type", "Size"], rows)


def _layers(found: Image) -> Tag:
    rows = [
        tags.tr(
            tags.td(tags.code(layer["digest"])),
            tags.td(str(layer.get("mediaType", ""))),
            tags.td(format.size(_int(layer.get("size"))), class_="number"),
        )
        for layer in found.layers
    ]
    rows.append(tags.tr(tags.td("Total (with the config)"), tags.td(""), tags.td(format.size(found.size))))
    return table(["Digest", "Media type", "Size"], rows)


def _config(config: dict[str, Any]) -> list[Tag]:
    if not config:
        return [tags.h2("Config"), tags.p("No image config could be read.", class_="empty")]
    settings = mapping(config.get("config"))
    shown = [
        ("Created", format.date(config.get("created"))),
        ("Platform", format.platform(config)),
        ("Entrypoint", _words(settings.get("Entrypoint"))),
        ("Cmd", _words(settings.get("Cmd"))),
        ("Working directory", str(settings.get("WorkingDir") or "\u2014")),
        ("User", str(settings.get("User") or "\u2014")),
        (
            "Exposed ports",
            ", ".join(sorted(str(p) for p in mapping(settings.get("ExposedPorts")))) or "\u2014",
        ),
    ]
    environment = _list(settings.get("Env"))
    history = [h for h in _list(config.get("history")) if isinstance(h, dict)]
    return [
        tags.h2("Config"),
        tags.dl(*(part for label, value in shown for part in (tags.dt(label), tags.dd(value)))),
        tags.h3("Environment"),
        tags.ul(*(tags.li(tags.code(str(e))) for e in environment)) if environment else _NONE,
        tags.h3("Labels"),
        _pairs(mapping(settings.get("Labels"))),
        tags.h3("History"),
        table(
            ["Created", "Created by", "Empty layer"],
            [
                tags.tr(
                    tags.td(format.date(h.get("created"))),
                    tags.td(tags.code(str(h.get("created_by", "")))),
                    tags.td("yes" if h.get("empty_layer") else ""),
                )
                for h in history
            ],
        )
        if history
        else _NONE,
    ]


def _referrers(name: str, referrers: list[Descriptor]) -> Tag:
    if not referrers:
        return _NONE
    byType: dict[str, list[Descriptor]] = {}
    for referrer in referrers:
        byType.setdefault(referrer.artifactType or referrer.mediaType, []).append(referrer)
    sections = []
    for artifactType in sorted(byType):
        rows = [
            tags.tr(
                tags.td(
                    tags.a(str(r.digest), href=pageLink("/ui/image", name=name, reference=str(r.digest)))
                ),
                tags.td(format.size(r.size), class_="number"),
                tags.td(", ".join(f"{k}={v}" for k, v in sorted((r.annotations or {}).items()))),
            )
            for r in byType[artifactType]
        ]
        sections += [tags.h3(artifactType), table(["Digest", "Size", "Annotations"], rows)]
    return tags.div(*sections)


def _pairs(pairs: dict[str, Any]) -> Tag:
    if not pairs:
        return _NONE
    return table(
        ["Key", "Value"], [tags.tr(tags.td(str(k)), tags.td(str(v))) for k, v in sorted(pairs.items())]
    )


def _words(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "\u2014"
    return "\u2014"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
