"""
A circuit breaker for one upstream: once it cannot be reached, requests
fail at once instead of each waiting for a connect timeout, until a
back-off has passed and one request is let through to try again.
"""

from __future__ import annotations

from collections.abc import Callable

#: Seconds the first failure holds requests back, and the longest back-off.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class CircuitOpen(Exception):
    """
    The upstream failed recently; it is not asked again before C{retryAt}.
    """

    def __init__(self, reason: str, retryIn: float) -> None:
        super().__init__(reason, retryIn)
        self.reason = reason
        self.retryIn = retryIn


class CircuitBreaker:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._backoff = 0.0
        self._retryAt = 0.0
        self._reason = ""

    @property
    def isOpen(self) -> bool:
        return self._retryAt > self._clock()

    @property
    def lastFailure(self) -> str | None:
        """
        Why the upstream last failed (it may have recovered since); C{None}
        if it never did.
        """
        return self._reason or None

    def check(self) -> None:
        """
        Raise L{CircuitOpen} while the upstream is held back. Once the
        back-off has passed, one caller goes through and the others are
        held back again until it succeeds or fails.
        """
        now = self._clock()
        if self._retryAt > now:
            raise CircuitOpen(self._reason, self._retryAt - now)
        if self._backoff:
            self._retryAt = now + self._backoff

    def succeeded(self) -> None:
        self._backoff = 0.0
        self._retryAt = 0.0

    def failed(self, reason: str) -> None:
        self._backoff = min(MAX_BACKOFF, self._backoff * 2 or FIRST_BACKOFF)
        self._retryAt = self._clock() + self._backoff
        self._reason = reason

    def hold(self, reason: str, seconds: float) -> None:
        """
        Hold requests back for as long as the upstream asked (C{Retry-After}).
        """
        self._retryAt = max(self._retryAt, self._clock() + seconds)
        self._reason = reason
