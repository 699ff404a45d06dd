"""
A result that happens once and that any number of callers can wait for.

It lives with the local sides, the lowest layer that waits on one (a
source's listening addresses, its stop); the proxy above uses it from here.
"""

from __future__ import annotations

from typing import Any, Generic, List, Optional, Tuple, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["Outcome"]

T = TypeVar("T")


class Outcome(Generic[T]):
    """A result that happens once and that any number of callers can wait for."""

    def __init__(self) -> None:
        self._result: Optional[Tuple[bool, Any]] = None
        self._waiters: List[Deferred[T]] = []

    def wait(self) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        if self._result is None:
            self._waiters.append(d)
        elif self._result[0]:
            d.callback(self._result[1])
        else:
            d.errback(self._result[1])
        return d

    def succeed(self, value: T) -> None:
        self._settle((True, value))

    def fail(self, error: BaseException | Failure) -> None:
        self._settle((False, error))

    def _settle(self, result: Tuple[bool, Any]) -> None:
        if self._result is not None:
            return
        self._result = result
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if result[0]:
                d.callback(result[1])
            else:
                d.errback(result[1])
