"""
Deadlines for the waits of the end-to-end tests.

A test that waits on real sockets or child processes for something that
never comes must fail soon, saying what did not happen, rather than hang
until trial's class timeout (60-120 s) and report only "timed out": a
broken data path is then found in seconds and the message points at it
("client 2 of port 40123 did not receive its 1,048,576 bytes within 12 s:
412,160 received, the connection still open").  Every wait of those tests
goes through L{deadline}, directly or through the waiting helpers of
L{tests.support.helpers}, L{tests.support.conditions} and
L{tests.support.e2e}, with one of the bounds below.

The bounds are generous for what they wait for (an event that takes
milliseconds gets L{EVENT} seconds) so that they do not flap on a loaded
machine; if one does, raise them all with the environment variable
C{LOCALPROXY_TEST_DEADLINE_FACTOR} (a positive number, default 1), which
multiplies every deadline and the end-to-end test classes' timeouts alike.

This module imports nothing of this project, so that the foreign test peer
(L{tests.support.foreignpeer}) can wait with it too.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = [
    "EVENT",
    "branch",
    "FACTOR",
    "FACTOR_VARIABLE",
    "RATE",
    "START",
    "deadline",
    "scaled",
    "shown",
    "tail",
    "transfer",
]

T = TypeVar("T")

#: The environment variable that multiplies every deadline (and class timeout).
FACTOR_VARIABLE = "LOCALPROXY_TEST_DEADLINE_FACTOR"


def _factor(text: Optional[str]) -> float:
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{FACTOR_VARIABLE} must be a positive number, not {text!r}")
    return value


#: What every deadline is multiplied by: C{LOCALPROXY_TEST_DEADLINE_FACTOR}, default 1.
FACTOR = _factor(os.environ.get(FACTOR_VARIABLE))

#: Seconds for what takes milliseconds on loopback: a connect, a listener,
#: an echo of a few kilobytes, a close, a session, a state change.
EVENT = 10.0
#: Seconds for a child process (a Python proxy, a daemon) to start and be
#: ready: its imports, key loading and first connection (about 1 s idle).
START = 20.0
#: Bytes per second a transfer is granted on top of L{EVENT}: loopback
#: moves 5-30 MB/s through both proxies and the service, and under 1 MB/s
#: with every core busy.  A transfer that stops moving fails sooner: see
#: C{progress} in L{deadline}.
RATE = 1_000_000


def scaled(seconds: float) -> float:
    """C{seconds} times L{FACTOR}: a deadline, or a test class's timeout, as it applies."""
    return seconds * FACTOR


def transfer(size: int, rate: float = RATE) -> float:
    """
    Seconds (before L{FACTOR}) that moving C{size} bytes may take: L{EVENT}
    plus C{size} at C{rate} bytes per second (e.g. 20 MB in 30 s).
    """
    return EVENT + size / rate


def shown(seconds: float) -> str:
    """Seconds as a message shows them: "10 s", "36 s", "2.5 s"."""
    return f"{seconds:.0f} s" if seconds >= 9.95 else f"{seconds:.1f} s"


def tail(output: bytes | str, lines: int = 15, chars: int = 2000) -> str:
    """The last C{lines} lines (at most C{chars} characters) of C{output}, for a message."""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    if len(kept) > chars:
        kept = "..." + kept[-chars:]
    return kept or "(nothing)"


def branch(d: "Deferred[Any]") -> "Deferred[Any]":
    """
    A new Deferred that fires with C{d}'s result, leaving C{d}'s own
    untouched: to wait with a L{deadline} (which cancels what it waits on)
    for a Deferred that others wait on too, or that cleanups look at.
    """
    out: Deferred[Any] = Deferred()

    def settle(result: Any) -> Any:
        if not out.called:
            out.callback(result)
        return result

    d.addBoth(settle)
    return out


def deadline(
    d: "Deferred[T]",
    seconds: float,
    what: str,
    state: Optional[Callable[[], str]] = None,
    clock: Any = None,
    progress: Optional[Callable[[], Any]] = None,
    stall: Optional[float] = EVENT,
) -> "Deferred[T]":
    """
    C{d}, failed with an C{AssertionError} if it has not fired after
    C{scaled(seconds)}: "C{what} within N s; C{state()}".

    C{what} says what did not happen ("the source did not listen on port
    4242"); C{state}, called at the deadline, adds what was seen instead
    (bytes received, the tail of a process's output).  At the deadline C{d}
    is cancelled, so whatever it waited on stops (a connect attempt is
    abandoned, a waiter leaves its list); C{d} must therefore be the
    caller's own Deferred, not one others wait on too (the waiting helpers
    hand out a new Deferred for each wait).  Once C{d} fires the timers are
    cancelled: nothing is left on the reactor.  A failure of C{d} passes
    through unchanged.

    A transfer also gives C{progress} (e.g. the bytes received so far): the
    wait then fails as soon as that has not changed for C{scaled(stall)}
    seconds ("C{what}: nothing moved for 10 s; C{state()}"), so a stalled
    transfer fails in seconds while a slow one, on a loaded machine, may
    take up to C{seconds}.
    """
    if clock is None:
        from twisted.internet import reactor as clock
    limit = scaled(seconds)
    window = scaled(stall) if stall is not None else limit
    message: list[str] = []

    def expire(reason: str) -> None:
        text = what + reason
        if state is not None:
            try:
                text += "; " + state()
            except Exception as error:  # the message must not hide the timeout
                text += f"; (its state could not be read: {error!r})"
        message.append(text)
        d.cancel()

    timers = [clock.callLater(limit, expire, f" within {shown(limit)}")]
    if progress is not None and window < limit:
        seen = [progress()]

        def watch() -> None:
            now = progress()
            if now == seen[0]:
                expire(f": nothing moved for {shown(window)}")
            else:
                seen[0] = now
                timers[1] = clock.callLater(window, watch)

        timers.append(clock.callLater(window, watch))

    def settle(result: Any) -> Any:
        for timer in timers:
            if timer.active():
                timer.cancel()
        if message and isinstance(result, Failure):
            # Whatever the cancellation made of it (CancelledError,
            # ConnectingCancelledError, a waiter's own error): the deadline's message.
            return Failure(AssertionError(message[0]))
        return result

    return d.addBoth(settle)
