"""
Webhook notifications, registry:2's: the web layer tells an L{INotifier}
of each successful push, pull, mount and delete, and L{Notifier} posts
them to the configured endpoints without the request waiting.

All but the interface and the action names are imported only when first
asked for, so only when notifications are configured: delivering needs
treq, and each event type is an attrs class to build.
"""

from typing import TYPE_CHECKING, Any

from txregistry.lazy import lazyNames
from txregistry.notifications.interfaces import ACTIONS, DELETED, MOUNTED, PULLED, PUSHED, INotifier

if TYPE_CHECKING:
    from txregistry.notifications.events import (
        EVENTS_MEDIA_TYPE,
        Event,
        RequestRecord,
        Source,
        Target,
        envelope,
    )
    from txregistry.notifications.sink import Notifier, notifierOf
    from txregistry.notifications.webhook import Webhook

_names = lazyNames(
    __name__,
    {
        "events": ("EVENTS_MEDIA_TYPE", "Event", "RequestRecord", "Source", "Target", "envelope"),
        "sink": ("Notifier", "notifierOf"),
        "webhook": ("Webhook",),
    },
)


def __getattr__(name: str) -> Any:
    return _names(name)


__all__ = [
    "ACTIONS",
    "DELETED",
    "EVENTS_MEDIA_TYPE",
    "Event",
    "INotifier",
    "MOUNTED",
    "Notifier",
    "PULLED",
    "PUSHED",
    "RequestRecord",
    "Source",
    "Target",
    "Webhook",
    "envelope",
    "notifierOf",
]
