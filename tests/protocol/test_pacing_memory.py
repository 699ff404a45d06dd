"""
L{aws_localproxy.protocol.pacing}: what the pacer remembers of a path, and
for how long.

The window is the measured rate times the smallest round trip (plus
L{Pacer.TARGET_DELAY}).  Both are the best seen I{lately}: a path that slows
down (the service's cap, a congested link) or gets longer must shrink the
window once the old figures are L{Pacer.MEMORY} old, or the queue in front
of the service grows to the old path's size and an interactive byte waits
behind it.  A path that stays as it was must keep its figures.

Times here are multiples of 1/16 s (and round trips of 1/128 s) so that
every difference the pacer computes is exact and the bounds can be hit to
the tick.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.pacing import Pacer

#: Between two pongs: longer than RATE_INTERVAL, so every pong gives a rate sample.
TICK = 1 / 16
#: Round trips.
SHORT_RTT = 1 / 128
LONG_RTT = 1 / 32


class Path:
    """
    A sender and the service behind a path, on a clock the test moves: each
    L{deliver} sends C{count} bytes with a ping after them, and the service
    answers the ping C{rtt} seconds later, at the time given.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.pacer = Pacer(lambda: self.now)

    def deliver(self, at: float, count: int, rtt: float) -> None:
        self.now = at - rtt
        ping = self.pacer.on_sent(count) or self.pacer.uncovered_ping()
        assert ping is not None
        self.now = at
        self.pacer.on_pong(ping)

    def run(self, start: float, end: float, rate: float, rtt: float) -> float:
        """A pong every TICK from C{start} to C{end} (included) at C{rate}; returns the last time."""
        at = start
        while at <= end:
            self.deliver(at, int(rate * TICK), rtt)
            at += TICK
        return at - TICK

    def window_for(self, rate: float, rtt: float) -> int:
        return max(Pacer.MIN_WINDOW, int(rate * (rtt + Pacer.TARGET_DELAY)))


class RateMemoryTests(SynchronousTestCase):
    """The delivery rate: the fastest sample of the last L{Pacer.MEMORY} seconds."""

    FAST = 800_000.0
    SLOW = 200_000.0

    def test_a_slower_path_shrinks_the_window_after_memory(self) -> None:
        """
        Regression guard: a path that slows from 800 KB/s to 200 KB/s keeps
        the fast window for exactly L{Pacer.MEMORY} seconds after the last
        fast sample (a short dip does not cost throughput), then the window,
        the quantum and the bytes a bulk connection may send follow the slow
        rate: the queue in front of the service is again a few milliseconds
        of the slow path, not of the fast one.
        """
        path = Path()
        last_fast = path.run(0.0, 1.0, self.FAST, LONG_RTT)
        fast_window = path.window_for(self.FAST, LONG_RTT)
        self.assertEqual(path.pacer.window, fast_window)
        path.run(last_fast + TICK, last_fast + Pacer.MEMORY, self.SLOW, LONG_RTT)
        # The fast sample is exactly MEMORY old: still the rate.
        self.assertEqual(path.pacer.rate, self.FAST)
        self.assertEqual(path.pacer.window, fast_window)
        path.deliver(last_fast + Pacer.MEMORY + TICK, int(self.SLOW * TICK), LONG_RTT)
        slow_window = path.window_for(self.SLOW, LONG_RTT)
        self.assertEqual(path.pacer.rate, self.SLOW)
        self.assertEqual(path.pacer.window, slow_window)
        self.assertEqual(path.pacer.quantum, Pacer.MIN_QUANTUM)
        self.assertEqual(path.pacer.allowance(10**9), slow_window)
        self.assertLess(slow_window / self.SLOW, LONG_RTT + 2 * Pacer.TARGET_DELAY)

    def test_a_faster_path_widens_the_window_at_the_next_sample(self) -> None:
        """A rate that goes up is taken at the very next pong: no waiting for old samples."""
        path = Path()
        path.deliver(0.0, 1000, SHORT_RTT)
        path.deliver(TICK, int(self.SLOW * TICK), SHORT_RTT)
        self.assertEqual(path.pacer.rate, self.SLOW)
        path.deliver(2 * TICK, int(self.FAST * TICK), SHORT_RTT)
        self.assertEqual(path.pacer.rate, self.FAST)
        self.assertEqual(path.pacer.window, path.window_for(self.FAST, SHORT_RTT))

    def test_a_rate_needs_pongs_spanning_the_rate_interval(self) -> None:
        """
        Two pongs closer than L{Pacer.RATE_INTERVAL} make no rate (a burst
        is not bandwidth): the initial window stays.  Exactly that far
        apart, they do.
        """
        path = Path()
        path.deliver(0.0, 1000, SHORT_RTT)
        path.deliver(Pacer.RATE_INTERVAL / 2, 20_000, SHORT_RTT)
        self.assertIsNone(path.pacer.rate)
        self.assertEqual(path.pacer.window, Pacer.INITIAL_WINDOW)
        path.deliver(Pacer.RATE_INTERVAL, 20_000, SHORT_RTT)
        self.assertEqual(path.pacer.rate, 40_000 / Pacer.RATE_INTERVAL)


class RoundTripMemoryTests(SynchronousTestCase):
    """The path's round trip: the smallest seen, forgotten L{Pacer.MEMORY} after it was last seen."""

    RATE = 800_000.0

    def test_a_steady_round_trip_is_not_forgotten(self) -> None:
        """
        A path whose round trip stays at its minimum for longer than
        L{Pacer.MEMORY} keeps that minimum when one pong comes late (a
        moment's queue): the window does not grow with the late pong.
        """
        path = Path()
        end = path.run(0.0, 3.0, self.RATE, SHORT_RTT)
        path.deliver(end + TICK, int(self.RATE * TICK), LONG_RTT)
        self.assertEqual(path.pacer.min_rtt, SHORT_RTT)
        self.assertEqual(path.pacer.window, path.window_for(self.RATE, SHORT_RTT))

    def test_a_longer_path_is_taken_after_memory(self) -> None:
        """
        A path that got longer (a new route) is taken for what it is once
        the short round trip was last seen L{Pacer.MEMORY} ago, not before:
        the window grows to the longer path's capacity.
        """
        path = Path()
        last_short = path.run(0.0, 1.0, self.RATE, SHORT_RTT)
        end = path.run(last_short + TICK, last_short + Pacer.MEMORY, self.RATE, LONG_RTT)
        self.assertEqual(end, last_short + Pacer.MEMORY)
        self.assertEqual(path.pacer.min_rtt, SHORT_RTT)
        path.deliver(end + TICK, int(self.RATE * TICK), LONG_RTT)
        self.assertEqual(path.pacer.min_rtt, LONG_RTT)
        self.assertEqual(path.pacer.window, path.window_for(self.RATE, LONG_RTT))
