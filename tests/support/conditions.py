"""
Deferreds that wait for a condition: a test helper that imports nothing of
this project, so that the foreign test peer (L{tests.support.foreignpeer}), written
from the protocol guides, loads none of our proxy's code.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.defer import Deferred

from tests.support.deadlines import EVENT, deadline


class Conditions:
    """
    Deferreds that fire once their condition holds, checked whenever their
    owner (a child process, a test's peer) says its state changed: a test
    waits for what it needs without sleeping or polling, and fails with a
    message saying what did not happen once the wait's deadline has passed.
    """

    def __init__(self) -> None:
        self._waiters: List[Tuple[Callable[[], bool], Deferred[None]]] = []

    def when(
        self,
        condition: Callable[[], bool],
        what: str,
        within: float = EVENT,
        state: Optional[Callable[[], str]] = None,
        progress: Optional[Callable[[], Any]] = None,
    ) -> Deferred[None]:
        """
        Fires once C{condition()} holds: now, or at a later L{check}; fails
        after C{within} seconds (L{tests.support.deadlines.deadline}), or
        once C{progress()} has not changed for L{EVENT} seconds, with
        C{what} (what did not happen) and C{state()} (what is seen instead).
        """

        def forget(d: Deferred[None]) -> None:
            self._waiters = [waiter for waiter in self._waiters if waiter[1] is not d]

        d: Deferred[None] = Deferred(forget)
        if condition():
            d.callback(None)
        else:
            self._waiters.append((condition, d))
        return deadline(d, within, what, state, progress=progress)

    def check(self) -> None:
        """Fire the waiters whose condition holds now."""
        for waiter in list(self._waiters):
            if waiter[0]():
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def fail_all(self, message: str) -> None:
        """Fail every waiter left with an C{AssertionError} of C{message}: it will never hold."""
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(AssertionError(message))
