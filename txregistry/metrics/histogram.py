"""
Histograms kept as plain numbers: everything here runs in the reactor's
thread, so an observation needs no lock, and costs a fraction of what
prometheus_client's own takes (which is what a request's budget allows).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # One for each bound, and one for +Inf.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


def family(
    name: str, help: str, labels: list[str], histograms: Iterable[tuple[tuple[str, ...], Histogram]]
) -> HistogramMetricFamily:
    """
    C{histograms}, by their label values, as one family with cumulative
    buckets.
    """
    result = HistogramMetricFamily(name, help, labels=labels)
    for values, histogram in histograms:
        cumulative, buckets = 0, []
        for bound, count in zip(
            [*map(floatToGoString, histogram.bounds), "+Inf"], histogram.counts, strict=True
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        result.add_metric(list(values), buckets, histogram.sum)
    return result
