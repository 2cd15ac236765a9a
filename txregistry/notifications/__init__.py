"""
Webhook notifications, registry:2's: the web layer tells an L{INotifier}
of each successful push, pull, mount and delete, and L{Notifier} posts
them to the configured endpoints without the request waiting.

Delivering needs treq: L{Notifier}, L{notifierOf} and L{Webhook} are
imported only when first asked for, so only when notifications are
configured.
"""

from typing import TYPE_CHECKING, Any

from txregistry.lazy import lazyNames
from txregistry.notifications.events import EVENTS_MEDIA_TYPE, Event, RequestRecord, Source, Target, envelope
from txregistry.notifications.interfaces import INotifier

if TYPE_CHECKING:
    from txregistry.notifications.sink import Notifier, notifierOf
    from txregistry.notifications.webhook import Webhook

_names = lazyNames(__name__, {"sink": ("Notifier", "notifierOf"), "webhook": ("Webhook",)})


def __getattr__(name: str) -> Any:
    return _names(name)


__all__ = [
    "EVENTS_MEDIA_TYPE",
    "Event",
    "INotifier",
    "Notifier",
    "RequestRecord",
    "Source",
    "Target",
    "Webhook",
    "envelope",
    "notifierOf",
]
