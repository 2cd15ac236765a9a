"""
txregistry's own log messages, filtered by C{log.level}.

Twisted's log observers belong to whoever runs us (twistd, or the program
that embeds the registry), so the level is applied where our messages enter
the log rather than by replacing any observer.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug)
_observer = FilteringLogObserver(globalLogPublisher, [_levels])

_NAMES = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}


def logger(namespace: str) -> Logger:
    return Logger(namespace=namespace, observer=_observer)


def setLevel(level: str) -> None:
    """
    Drop txregistry's messages below C{level} (C{debug}, C{info}, C{warn},
    C{error}).
    """
    _levels.setLogLevelForNamespace("txregistry", _NAMES[level])
