"""
The registry's status: version, storage driver and health, uptime, and
where the metrics are.
"""

from __future__ import annotations

from twisted.web.server import Request
from twisted.web.template import Tag, tags

import txregistry
from txregistry.auth import Identity
from txregistry.ui import format
from txregistry.ui.page import Page


class StatusPage(Page):
    title = "Status"

    async def content(self, request: Request, identity: Identity) -> Tag:
        shared = self.shared
        failing = None if shared.health is None else shared.health()
        health: Tag | str = "no health checks configured (health)"
        if failing:
            health = tags.ul(*(tags.li(f"{check}: {why}") for check, why in sorted(failing.items())))
        elif failing is not None:
            health = tags.span("healthy", class_="healthy")
        return tags.dl(
            tags.dt("Version"),
            tags.dd(f"txregistry {txregistry.__version__}"),
            tags.dt("Storage"),
            tags.dd(shared.storage),
            tags.dt("Health"),
            tags.dd(health),
            tags.dt("Uptime"),
            tags.dd(format.duration(shared.now() - shared.started)),
            tags.dt("Metrics"),
            tags.dd(shared.metrics or "off (http.debug.prometheus.enabled)"),
        )
