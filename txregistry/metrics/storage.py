"""
registry:2's C{registry_storage_action_seconds}: how long each call to the
storage driver takes, by driver and action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred
from zope.interface import directlyProvides, providedBy

from txregistry.metrics.histogram import Histogram, family
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


#: Go's prometheus.DefBuckets, which registry:2's storage timer takes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class StorageActions(Collector):
    def __init__(self) -> None:
        self.histograms: dict[tuple[str, str], Histogram] = {}

    def of(self, driver: str, action: str) -> Histogram:
        return self.histograms.setdefault((driver, action), Histogram(BUCKETS))

    def collect(self) -> Iterator[Metric]:
        yield family(
            "registry_storage_action_seconds",
            "The number of seconds that the storage action takes",
            ["driver", "action"],
            sorted(self.histograms.items()),
        )


class TimedDriver:
    """
    C{driver}, every call of which is timed into C{actions}: the
    actions of L{IStorageDriver} from the call to the result (or failure)
    of its L{Deferred}, and C{redirectURL}. It provides what C{driver}
    provides, and passes everything else through untouched.
    """

    def __init__(self, driver: IStorageDriver, actions: StorageActions) -> None:
        self._driver = driver
        self.name = driver.name
        label = _DRIVERS.get(driver.name, driver.name)
        directlyProvides(self, providedBy(driver))
        for method, action in _ACTIONS.items():
            setattr(self, method, _timed(getattr(driver, method), actions.of(label, action).observe))
        if hasattr(driver, "redirectURL"):
            self.redirectURL = _timedCall(driver.redirectURL, actions.of(label, "RedirectURL").observe)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)


def _timed(method: Callable[..., Deferred[Any]], observe: Callable[[float], None]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Deferred[Any]:
        started = perf_counter()
        result = method(*args, **kwargs)
        if result.called:
            # Answered at once (a filesystem's stat, from the page cache):
            # no callback to add to a request's cost.
            observe(perf_counter() - started)
            return result

        def done(outcome: object) -> object:
            observe(perf_counter() - started)
            return outcome

        return result.addBoth(done)

    return timed


def _timedCall(method: Callable[..., Any], observe: Callable[[float], None]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            observe(perf_counter() - started)

    return timed
