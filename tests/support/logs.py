"""
Log capture for tests that check the lines a component logs.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List

from twisted.logger import LogLevel, capturedLogs, formatEvent


@contextmanager
def logs() -> Iterator[List[tuple[LogLevel, str]]]:
    """Capture log events as (level, text) pairs."""
    captured: List[tuple[LogLevel, str]] = []
    with capturedLogs() as events:
        yield captured
        captured.extend((event["log_level"], formatEvent(event)) for event in events)


def texts(captured: List[tuple[LogLevel, str]], level: LogLevel | None = None) -> List[str]:
    return [text for lvl, text in captured if level is None or lvl == level]
