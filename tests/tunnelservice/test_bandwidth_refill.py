"""
The service's bandwidth gate over time, on a fake clock: a peer that sends
whenever it is read gets the cap and no more, through any number of pauses;
one refill timer at a time, none left after the connection is gone; the
bucket's answers at their edges; and the socket whose read size is set.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.tunnelservice.bandwidth import (
    BandwidthThrottle,
    ReadGate,
    TokenBucket,
    read_size,
    socket_transport,
)

#: More timers than any test here schedules: a gate that keeps rescheduling
#: (a timer due now that schedules another due now) fails instead of hanging.
TIMER_BUDGET = 10_000


class BoundedClock(MemoryReactorClock):
    """A fake clock that fails a test which schedules timers without end."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> Any:
        self.scheduled += 1
        if self.scheduled > TIMER_BUDGET:
            raise AssertionError("the bandwidth gate keeps scheduling timers")
        return super().callLater(delay, callable, *args, **kw)


class GreedyPeer:
    """
    A peer that always has bytes to send: on every tick it is read (one
    chunk) unless its transport is paused.  What a real socket with a
    sender behind it does.
    """

    def __init__(self, clock: BoundedClock, rate: float, chunk: int) -> None:
        self.clock = clock
        self.chunk = chunk
        self.transport = StringTransport()
        self.gate = ReadGate(self.transport)
        self.throttle = BandwidthThrottle(self.gate, TokenBucket(clock, rate), clock)
        self.received = 0

    def run(self, seconds: float, tick: float = 0.001) -> int:
        """Bytes read over C{seconds}."""
        before = self.received
        for _ in range(round(seconds / tick)):
            if self.transport.producerState == "producing":
                self.received += self.chunk
                self.throttle.received(self.chunk)
            self.clock.advance(tick)
        return self.received - before


class RateTests(SynchronousTestCase):
    """The rate a peer gets is the cap, measured over seconds of pauses and resumes."""

    RATE = 100_000

    def test_greedy_peer_gets_the_cap(self) -> None:
        clock = BoundedClock()
        peer = GreedyPeer(clock, self.RATE, read_size(self.RATE))
        peer.run(1.0)  # spend the initial burst
        got = peer.run(10.0)
        self.assertApproximates(got / 10.0, self.RATE, self.RATE * 0.03)

    def test_cap_holds_after_many_pauses(self) -> None:
        """Every second of a long transfer is at the cap, not twice it after a few pauses."""
        clock = BoundedClock()
        peer = GreedyPeer(clock, self.RATE, 3000)
        peer.run(1.0)
        rates = [peer.run(1.0) for _ in range(8)]
        for rate in rates:
            self.assertApproximates(rate, self.RATE, self.RATE * 0.05)

    def test_paused_peer_is_read_again(self) -> None:
        """After each pause the peer is read again (the gate never stays shut)."""
        clock = BoundedClock()
        peer = GreedyPeer(clock, 10_000, 4096)
        resumes = 0
        for _ in range(20):
            peer.throttle.received(20_000)  # two seconds of debt
            self.assertEqual(peer.transport.producerState, "paused")
            clock.advance(2.1)
            self.assertEqual(peer.transport.producerState, "producing")
            resumes += 1
        self.assertEqual(resumes, 20)


class TimerTests(SynchronousTestCase):
    """One refill timer at a time; none left once the connection is gone."""

    def setUp(self) -> None:
        self.clock = BoundedClock()
        self.transport = StringTransport()
        self.gate = ReadGate(self.transport)
        self.throttle = BandwidthThrottle(
            self.gate, TokenBucket(self.clock, 1000, burst=100), self.clock
        )

    def test_reads_while_paused_add_no_timer(self) -> None:
        """Bytes already in flight while paused extend the debt, not the number of timers."""
        self.throttle.received(600)
        for _ in range(5):
            self.throttle.received(100)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1.0)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_after_reads_while_paused_leaves_no_timer(self) -> None:
        self.throttle.received(600)
        self.throttle.received(500)
        self.throttle.received(500)
        self.throttle.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_while_rescheduled_leaves_no_timer(self) -> None:
        """Stopped after the first timer found the debt not yet repaid."""
        self.throttle.received(600)
        self.throttle.received(500)  # the first timer (0.5 s) finds 0.5 s still owed
        self.clock.advance(0.5)
        self.assertEqual(self.transport.producerState, "paused")
        self.throttle.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_paused_again_after_resuming(self) -> None:
        self.throttle.received(600)
        self.clock.advance(0.5)
        self.assertEqual(self.transport.producerState, "producing")
        self.throttle.received(300)  # 0.3 s of debt (the bucket was at zero)
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(0.29)
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(0.02)
        self.assertEqual(self.transport.producerState, "producing")

    def test_resumed_exactly_when_repaid(self) -> None:
        """Repaid at the timer: resumed, and no timer left spinning."""
        self.throttle.received(600)
        self.clock.advance(0.5)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertLess(self.clock.scheduled, 5)


class BucketEdgeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()

    def test_no_wait_while_in_credit(self) -> None:
        """Spending less than the balance costs no time: the wait is zero, never negative."""
        bucket = TokenBucket(self.clock, 1000, burst=100)
        self.assertEqual(bucket.spend(50), 0.0)
        self.assertEqual(bucket.wait(), 0.0)

    def test_less_than_a_token_left(self) -> None:
        bucket = TokenBucket(self.clock, 1000, burst=100.5)
        self.assertEqual(bucket.spend(100), 0.0)
        self.assertEqual(bucket.tokens, 0.5)

    def test_slow_rates_allowed(self) -> None:
        """A cap of one byte per second (or less) is still a cap."""
        for rate in (1, 0.5):
            bucket = TokenBucket(self.clock, rate, burst=1)
            self.assertEqual(bucket.spend(3), 2 / rate)

    def test_rate_must_be_positive(self) -> None:
        for rate in (0, -1):
            error = self.assertRaises(ValueError, TokenBucket, self.clock, rate)
            self.assertEqual(str(error), "the rate must be positive")


class GateTests(SynchronousTestCase):
    def test_holds(self) -> None:
        gate = ReadGate(StringTransport())
        gate.pause("bandwidth")
        self.assertEqual((gate.holds("bandwidth"), gate.holds("back-pressure")), (True, False))
        gate.resume("bandwidth")
        self.assertFalse(gate.holds("bandwidth"))


class _TCP:
    """A socket transport: it has a read size."""

    bufferSize = 65536


class _Wrapper:
    """A TLS transport: the socket transport under it."""

    def __init__(self, inner: Any) -> None:
        self.transport = inner


class SocketTransportTests(SynchronousTestCase):
    """Whose read size a throttled peer's reads are cut to."""

    def test_plain_tcp(self) -> None:
        tcp = _TCP()
        self.assertIs(socket_transport(tcp), tcp)

    def test_through_tls(self) -> None:
        tcp = _TCP()
        self.assertIs(socket_transport(_Wrapper(tcp)), tcp)

    def test_wrapped_transport_without_read_size(self) -> None:
        """Under the wrapper is no socket transport: the wrapper is the one to set."""
        for inner in (object(), None):
            wrapper = _Wrapper(inner)
            self.assertIs(socket_transport(wrapper), wrapper)
