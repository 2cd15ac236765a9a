"""
txregistry's log: its own messages, filtered by C{log.level}, each naming
the request it was logged for; the access log; and the lines C{txregistry
serve} writes, in C{log.formatter}'s format with C{log.fields}.

Twisted's log observers belong to whoever runs us (twistd, or the program
that embeds the registry), so the level is applied where our messages enter
the log rather than by replacing any observer. Only C{txregistry serve},
which begins the log itself, writes lines of its own (L{lineObserver}).

A message's fields, beside its text, are the event's keys with a dot in
their names, as registry:2 names them (C{http.request.id}): Twisted's own
keys and a message's format arguments have none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextvars import ContextVar, copy_context
from datetime import datetime, timezone
from functools import partial
from time import time
from typing import IO, Any, TypeVar

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsText,
    formatEvent,
    globalLogPublisher,
)
from twisted.logger import LogEvent as _Event
from zope.interface import provider

_T = TypeVar("_T")

_NAMES = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}

#: The field that names the request a line was logged for, as registry:2's.
REQUEST_ID = "http.request.id"
_requestId: ContextVar[str | None] = ContextVar("txregistry.requestId", default=None)


@provider(ILogObserver)
def _identified(event: _Event) -> None:
    requestId = _requestId.get()
    if requestId is not None and REQUEST_ID not in event:
        event[REQUEST_ID] = requestId
    globalLogPublisher(event)


_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug)
# registry:2's default, until a configuration says otherwise: a program that
# embeds the registry does not get its debug lines unasked.
_levels.setLogLevelForNamespace("txregistry", LogLevel.info)
_observer = FilteringLogObserver(_identified, [_levels])
_debugging = False


class _Logger(Logger):
    def debug(self, format: str | None = None, **kwargs: object) -> None:
        # Above debug, a debug line costs this one test: no event is made.
        if _debugging:
            self.emit(LogLevel.debug, format, **kwargs)


def logger(namespace: str) -> Logger:
    return _Logger(namespace=namespace, observer=_observer)


def setLevel(level: str) -> None:
    """
    Drop txregistry's messages below C{level} (C{debug}, C{info}, C{warn},
    C{error}).
    """
    global _debugging
    _levels.setLogLevelForNamespace("txregistry", _NAMES[level])
    _debugging = level == "debug"


def debugging() -> bool:
    """
    Whether debug lines are logged: for those whose arguments cost
    something to find.
    """
    return _debugging


def forRequest(requestId: str, f: Callable[..., _T], *args: Any) -> _T:
    """
    C{f(*args)}, with what it logs naming the request C{requestId}, and
    what the coroutines it starts log (L{Deferred.fromCoroutine} runs each
    in a copy of the context it was started in). Work that a plain
    callback resumes later does not: it runs in whatever context fired it.
    """
    return copy_context().run(_called, requestId, f, args)


def _called(requestId: str, f: Callable[..., _T], args: tuple[Any, ...]) -> _T:
    _requestId.set(requestId)
    return f(*args)


ACCESS = "txregistry.access"
# Not filtered by log.level: as registry:2's access log, which only
# log.accesslog.disabled turns off.
_access = Logger(namespace=ACCESS)


def accessed(line: str, requestId: str | None, duration: float, written: int) -> None:
    """
    Log the access log's C{line} for a request answered in C{duration}
    seconds with C{written} bytes of body.
    """
    fields = {
        REQUEST_ID: requestId,
        "http.response.duration": f"{duration * 1000:.3f}ms",
        "http.response.written": written,
    }
    _access.info("{line}", line=line, **fields)


def lineObserver(out: IO[str], formatter: str, fields: Mapping[str, str], level: str) -> ILogObserver:
    """
    What C{txregistry serve} logs to: a line on C{out} for each event of
    the process at C{level} or above (the access log's at any), in the
    format of C{formatter} (C{text}, C{json} or C{logstash}) with C{fields} added.

    C{text} is Twisted's line, with the fields after the message; C{json}
    and C{logstash} are logrus's, as registry:2 writes them.
    """
    levels = LogLevelFilterPredicate(defaultLogLevel=_NAMES[level])
    levels.setLogLevelForNamespace(ACCESS, LogLevel.debug)
    formats = {"text": _text, "json": _json, "logstash": _logstash}
    return FilteringLogObserver(FileLogObserver(out, partial(formats[formatter], dict(fields))), [levels])


def _fieldsOf(event: _Event, fields: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = dict(fields)
    found.update((key, value) for key, value in event.items() if "." in key and value is not None)
    return found


def _quoted(value: object) -> str:
    text = str(value)
    if text and all(c.isascii() and (c.isalnum() or c in "-._:/@+") for c in text):
        return text
    return json.dumps(text)


def _text(fields: dict[str, str], event: _Event) -> str:
    text = eventAsText(event, includeTraceback=False)
    found = _fieldsOf(event, fields)
    text += "".join(f" {key}={_quoted(value)}" for key, value in sorted(found.items()))
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n" + failure.getTraceback()
    return text.replace("\n", "\n\t") + "\n"


# logrus's level names; Twisted's critical (an unhandled error) is an error
# there, since logrus's fatal means the process ends.
_LEVELS = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warning",
    LogLevel.error: "error",
    LogLevel.critical: "error",
}


def _document(
    fields: dict[str, str], event: _Event, timeKey: str, messageKey: str, extra: Mapping[str, str]
) -> str:
    found = _fieldsOf(event, fields)
    own = {
        timeKey: datetime.fromtimestamp(event.get("log_time") or time(), timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        messageKey: formatEvent(event),
        "level": _LEVELS.get(event.get("log_level", LogLevel.info), "info"),
        **extra,
    }
    # As logrus does, a field named like one of the line's own is kept
    # beside it.
    for key in own:
        if key in found:
            found["fields." + key] = found.pop(key)
    failure = event.get("log_failure")
    if failure is not None:
        found["error"] = failure.getTraceback()
    found.update(own)
    return json.dumps(found, sort_keys=True, separators=(",", ":"), default=str) + "\n"


def _json(fields: dict[str, str], event: _Event) -> str:
    return _document(fields, event, "time", "msg", {})


def _logstash(fields: dict[str, str], event: _Event) -> str:
    return _document(fields, event, "@timestamp", "message", {"@version": "1"})
