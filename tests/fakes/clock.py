"""
L{SpinGuardClock}: Twisted's L{Clock} for code that arms timers, failing a
test at once where the code would spin.

A timer that keeps re-arming itself with no delay (a stall bound computed
as "now", a condition that never turns true) is a busy loop on a reactor,
and on L{Clock.advance} a hang: the test would wait forever instead of
failing.  This clock raises after L{SpinGuardClock.SPIN} zero-delay calls
at one instant, so such a fault fails its test in milliseconds.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock


class SpinGuardClock(Clock):
    """A L{Clock} that fails a timer re-armed without delay, again and again, at one instant."""

    SPIN = 100

    def __init__(self) -> None:
        super().__init__()
        self._instant: Optional[float] = None
        self._spins = 0

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> IDelayedCall:
        if delay <= 0:
            now = self.seconds()
            if now != self._instant:
                self._instant, self._spins = now, 0
            self._spins += 1
            if self._spins > self.SPIN:
                raise AssertionError(
                    "a timer was armed with no delay %d times at %r: a busy loop"
                    % (self._spins, now)
                )
        return super().callLater(delay, callable, *args, **kw)
