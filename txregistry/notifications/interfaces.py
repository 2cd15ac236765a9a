"""
What the web layer tells of what requests did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Interface

if TYPE_CHECKING:
    from txregistry.notifications.events import RequestRecord, Target


#: What an event says a request did, by registry:2's names.
PULLED = "pull"
PUSHED = "push"
MOUNTED = "mount"
DELETED = "delete"
ACTIONS = (PULLED, PUSHED, MOUNTED, DELETED)

#: What a blob is said to be: registry:2 keeps no media type for blobs.
BLOB_MEDIA_TYPE = "application/octet-stream"


class INotifier(Interface):
    """
    Where the events of successful requests go.
    """

    def notify(action: str, target: Target, request: RequestRecord, actor: str | None) -> None:
        """
        Tell of C{action} (one of L{ACTIONS}) on C{target} by C{request}, which C{actor} made
        (C{None}: an anonymous client), once it succeeded. Returns at once:
        whatever delivering the event takes, or however it fails, the
        request never waits for it.
        """
