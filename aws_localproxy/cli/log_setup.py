# -*- test-case-name: tests.cli.test_log_setup -*-
"""
The local proxy's log output: the reference's line format and ``-v`` levels.

Every line is::

    [2024-05-01 12:00:00.123456] (0x00007f3c2a1b4740) [info] <message>

local time with microseconds, the emitting thread, the reference's severity
name.  ``-v``: 0 = nothing, 1 = fatal, 2 = +error, 3 = +warning, 4 = +info
(default), 5 = +debug, 6 = +trace.  Twisted's ``critical`` is the
reference's ``fatal``; a debug event carrying ``txaio_trace=True`` (what
txaio emits for Autobahn's trace level, and what our own trace lines use) is
``trace``.

Only the console script starts logging (twistd owns logging there): libraries
just use C{twisted.logger.Logger}.  Lines from other libraries (Twisted,
Autobahn) below ``warning`` are shown only from ``-v 5``: their "Starting
factory" chatter is not the proxy's story.  As a last line of defence, every
configured secret (access token, client token, proxy password) is replaced by
``***`` in every line, whoever logged it.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, Set, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogBeginner,
    LogLevel,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

__all__ = [
    "LineFormatObserver",
    "make_observer",
    "start_logging",
    "severity_name",
    "MIN_SECRET_LENGTH",
    "OWN_NAMESPACE",
]

#: Secrets shorter than this are not redacted: replacing "a" everywhere would
#: make every line unreadable, and no real token is that short.
MIN_SECRET_LENGTH = 4

#: Log namespaces of this project; everything else is "a library".
OWN_NAMESPACE = "aws_localproxy"

REDACTED = "***"

#: A twisted.logger event.
LogEvent = Dict[str, Any]


def severity_name(event: LogEvent) -> str:
    """The reference's name for an event's level (``fatal``, ``trace``, ...)."""
    level = event.get("log_level", LogLevel.info)
    if level == LogLevel.debug and event.get("txaio_trace"):
        return "trace"
    return {
        LogLevel.critical: "fatal",
        LogLevel.error: "error",
        LogLevel.warn: "warning",
        LogLevel.info: "info",
        LogLevel.debug: "debug",
    }.get(level, "info")


# The rank of each severity; -v N shows ranks <= N.
_RANK = {"fatal": 1, "error": 2, "warning": 3, "info": 4, "debug": 5, "trace": 6}


@implementer(ILogObserver)
class LineFormatObserver:
    """
    Writes each event as one reference-format line to a text stream, with secrets redacted.

    It does not filter by level: L{make_observer} puts the filter in front.
    """

    def __init__(
        self,
        stream: IO[str],
        secrets: Iterable[str] = (),
        *,
        show_tracebacks: bool = False,
    ) -> None:
        self._stream = stream
        self._secrets: Set[str] = set()
        self._show_tracebacks = show_tracebacks
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: Optional[str]) -> None:
        """Redact C{secret} from every later line (ignored when empty or very short)."""
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        """C{text} with every known secret replaced by ``***``, longest first."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def format(self, event: LogEvent) -> str:
        """The line for C{event}, without the newline."""
        when = datetime.fromtimestamp(event.get("log_time") or 0.0)
        message = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            if self._show_tracebacks:
                message = f"{message}\n{failure.getTraceback().rstrip()}"
            else:
                message = f"{message}: {failure.getErrorMessage()}"
        line = (
            f"[{when:%Y-%m-%d %H:%M:%S.%f}] (0x{threading.get_ident():016x})"
            f" [{severity_name(event)}] {message}"
        )
        return self.redact(line)

    def __call__(self, event: LogEvent) -> None:
        try:
            self._stream.write(self.format(event) + "\n")
            self._stream.flush()
        except Exception:
            # An observer must never raise: the logging system would drop it.
            pass


def _level_predicate(verbosity: int) -> Callable[[LogEvent], PredicateResult]:
    def predicate(event: LogEvent) -> PredicateResult:
        rank = _RANK[severity_name(event)]
        namespace = event.get("log_namespace", "") or ""
        if not namespace.startswith(OWN_NAMESPACE) and rank > _RANK["warning"]:
            # A library's info/debug lines count as debug/trace.
            rank = min(max(rank + 1, _RANK["debug"]), _RANK["trace"])
        result: PredicateResult = PredicateResult.maybe if rank <= verbosity else PredicateResult.no
        return result

    return predicate


def make_observer(
    verbosity: int,
    stream: IO[str],
    secrets: Iterable[str] = (),
) -> tuple[ILogObserver, LineFormatObserver]:
    """
    The filtering observer for ``-v verbosity`` and the line observer behind it
    (keep the latter to call C{add_secret} later).
    """
    verbosity = max(0, min(int(verbosity), 6))
    lines = LineFormatObserver(stream, secrets, show_tracebacks=verbosity >= 5)
    # Casts: mypy cannot see zope's @implementer, nor that a function is a predicate.
    predicate = cast(ILogFilterPredicate, _level_predicate(verbosity))
    filtered = FilteringLogObserver(cast(ILogObserver, lines), [predicate])
    return cast(ILogObserver, filtered), lines


def _set_library_levels(verbosity: int) -> None:
    # txaio (Autobahn's logging) drops events below its own global level
    # before they reach any observer; open it up as far as -v asks.
    try:
        import txaio
    except ImportError:  # pragma: no cover - autobahn always brings it
        return
    txaio.use_twisted()  # type: ignore[no-untyped-call]
    level = "trace" if verbosity >= 6 else "debug" if verbosity >= 5 else "info"
    txaio.set_global_log_level(level)  # type: ignore[attr-defined]


def start_logging(
    verbosity: int,
    stream: Optional[IO[str]] = None,
    secrets: Iterable[str] = (),
    *,
    beginner: LogBeginner = globalLogBeginner,
) -> Optional[LineFormatObserver]:
    """
    Begin logging for the console script: reference-format lines on C{stream}
    (default: stderr, as the reference's C{std::clog}) at ``-v verbosity``.

    Events logged before this call (while parsing options) are replayed
    through the filter.  With verbosity 0 nothing is written and C{None} is
    returned; otherwise the line observer (for L{LineFormatObserver.add_secret}).
    Call once per process, never under twistd.
    """
    observers: List[ILogObserver] = []
    lines: Optional[LineFormatObserver] = None
    if verbosity > 0:
        filtered, lines = make_observer(
            verbosity, stream if stream is not None else sys.stderr, secrets
        )
        observers.append(filtered)
        _set_library_levels(verbosity)
    # No stdio redirection: -h/-V and usage errors are printed, not logged.
    beginner.beginLoggingTo(observers, discardBuffer=False, redirectStandardIO=False)
    return lines
