"""
L{aws_localproxy.protocol.pacing}: how many bytes a connection may send, at
the edges of the window.

The window is what the service may have unread.  A bulk connection sends
while it has room; once it is full, a connection with little queued (an
interactive one) may still go, up to a bounded overshoot, so that a
keystroke never waits for a bulk transfer's window.  Each bound is tested
on both sides of the byte where it falls.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.pacing import Pacer

#: What a bulk connection has queued: far more than any window.
BULK = 10**9


def filled(count: int) -> Pacer:
    """A pacer (before any measurement) that has sent C{count} bytes, none read yet."""
    pacer = Pacer(lambda: 0.0)
    pacer.on_sent(count)
    return pacer


class WindowEdgeTests(SynchronousTestCase):
    def test_one_byte_of_room_lets_bulk_send(self) -> None:
        pacer = filled(Pacer.INITIAL_WINDOW - 1)
        self.assertEqual(pacer.allowance(BULK), 1)

    def test_a_full_window_holds_bulk(self) -> None:
        pacer = filled(Pacer.INITIAL_WINDOW)
        self.assertEqual(pacer.allowance(BULK), 0)
        self.assertEqual(pacer.allowance(Pacer.INTERACTIVE_CREDIT + 1), 0)

    def test_interactive_credit_is_inclusive(self) -> None:
        """A connection with exactly L{Pacer.INTERACTIVE_CREDIT} bytes queued is interactive."""
        pacer = filled(Pacer.INITIAL_WINDOW)
        credit = Pacer.INTERACTIVE_CREDIT
        self.assertEqual(pacer.allowance(credit), credit)
        self.assertEqual(pacer.allowance(1), 1)

    def test_interactive_overshoot_is_bounded(self) -> None:
        """
        Small writes may go beyond the full window by less than one quantum
        plus their credit (bulk overshoots by up to a quantum); at that
        bound they wait for the service to read, like bulk.
        """
        bound = Pacer.MAX_QUANTUM + Pacer.INTERACTIVE_CREDIT
        self.assertEqual(filled(Pacer.INITIAL_WINDOW + bound - 1).allowance(1), 1)
        self.assertEqual(filled(Pacer.INITIAL_WINDOW + bound).allowance(1), 0)
        # Well inside the bound (more than a quantum less the credit over).
        self.assertEqual(filled(Pacer.INITIAL_WINDOW + Pacer.MAX_QUANTUM).allowance(64), 64)

    def test_a_smaller_quantum_lowers_the_overshoot(self) -> None:
        """At a measured slow rate the quantum, and with it the interactive overshoot, is small."""
        pacer = filled(Pacer.INITIAL_WINDOW)
        pacer.rate = 800_000.0
        bound = pacer.quantum + Pacer.INTERACTIVE_CREDIT
        self.assertLess(bound, Pacer.MAX_QUANTUM)
        pacer.on_sent(bound - 1)
        self.assertEqual(pacer.allowance(1), 1)
        pacer.on_sent(1)
        self.assertEqual(pacer.allowance(1), 0)


class ReadAccountingTests(SynchronousTestCase):
    """Each pong gives back exactly the bytes it says the service read."""

    def test_room_after_each_pong_is_window_minus_unread(self) -> None:
        now = [0.0]
        pacer = Pacer(lambda: now[0])
        pings = []
        for count in (100_000, 120_000, 90_000):
            ping = pacer.on_sent(count)
            assert ping is not None
            pings.append(ping)
            now[0] += Pacer.MIN_PING_INTERVAL
        self.assertEqual(pacer.allowance(BULK), 0)
        sent = 310_000
        for read, ping in zip((100_000, 220_000, 310_000), pings, strict=True):
            now[0] += 0.001
            pacer.on_pong(ping)
            self.assertIsNone(pacer.rate)  # pongs within RATE_INTERVAL: the initial window
            self.assertEqual(pacer.in_flight, sent - read)
            expected = Pacer.INITIAL_WINDOW - (sent - read)
            self.assertEqual(pacer.allowance(BULK), expected if expected > 0 else 0)
        self.assertEqual(pacer.allowance(BULK), Pacer.INITIAL_WINDOW)
