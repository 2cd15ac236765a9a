"""
registry:2's C{registry_storage_action_seconds}: how long each call to the
storage driver takes, by driver and action.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from twisted.internet.defer import Deferred
from zope.interface import directlyProvides, providedBy

from txregistry.storage import IStorageDriver

#: registry:2's action names (the methods of its driver interface); ours
#: beside them for what it has not.
_ACTIONS = {
    "getContent": "GetContent",
    "putContent": "PutContent",
    "createExclusive": "CreateExclusive",
    "reader": "Reader",
    "writer": "Writer",
    "stat": "Stat",
    "list": "List",
    "move": "Move",
    "delete": "Delete",
}

#: registry:2's names of drivers, where they differ from ours.
_DRIVERS = {"s3": "s3aws"}


def storageActions(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "registry_storage_action_seconds",
        "The number of seconds that the storage action takes",
        ["driver", "action"],
        registry=registry,
    )


class TimedDriver:
    """
    C{driver}, every call of which is timed into C{histogram}: the
    actions of L{IStorageDriver} from the call to the result (or failure)
    of its L{Deferred}, and C{redirectURL}. It provides what C{driver}
    provides, and passes everything else through untouched.
    """

    def __init__(self, driver: IStorageDriver, histogram: Histogram) -> None:
        self._driver = driver
        self.name = driver.name
        label = _DRIVERS.get(driver.name, driver.name)
        directlyProvides(self, providedBy(driver))
        for method, action in _ACTIONS.items():
            setattr(self, method, _timed(getattr(driver, method), histogram.labels(label, action).observe))
        if hasattr(driver, "redirectURL"):
            self.redirectURL = _timedCall(driver.redirectURL, histogram.labels(label, "RedirectURL").observe)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)


def _timed(method: Callable[..., Deferred[Any]], observe: Callable[[float], None]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Deferred[Any]:
        started = perf_counter()

        def done(result: object) -> object:
            observe(perf_counter() - started)
            return result

        return method(*args, **kwargs).addBoth(done)

    return timed


def _timedCall(method: Callable[..., Any], observe: Callable[[float], None]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            observe(perf_counter() - started)

    return timed
