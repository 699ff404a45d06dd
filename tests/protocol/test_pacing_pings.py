"""
L{aws_localproxy.protocol.pacing}: the pings the pacer asks for and the
pongs it takes.

A ping costs a frame each way in both proxies and in the service, so the
pacer asks for few: one per L{Pacer.ping_spacing} bytes, at most
L{Pacer.MAX_OUTSTANDING_PINGS} unanswered, and none that covers no new
byte.  Pongs come from a peer we do not control: the service may answer
only the latest of several pings (RFC 6455 allows it), repeat one, or send
a pong that looks like ours for a ping never sent; none of these may
corrupt the window or the round trip the proxy reports.
"""

from __future__ import annotations

import struct
from typing import List, Optional

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.pacing import Pacer


class Sender:
    """A pacer on a clock the test moves, and the pings it asked for."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pacer = Pacer(lambda: self.now)
        self.pings: List[bytes] = []

    def send(self, count: int) -> Optional[bytes]:
        ping = self.pacer.on_sent(count)
        if ping is not None:
            self.pings.append(ping)
        return ping

    def later(self, seconds: float = Pacer.MIN_PING_INTERVAL) -> None:
        self.now += seconds


def covered(ping: bytes) -> int:
    """The bytes a pacer ping says were sent before it."""
    return struct.unpack(">4sQ", ping)[1]


class PingTests(SynchronousTestCase):
    def test_pings_are_spaced_by_bytes(self) -> None:
        """After a ping, the next comes only once another L{Pacer.ping_spacing} bytes went out."""
        sender = Sender()
        spacing = sender.pacer.ping_spacing
        self.assertIsNotNone(sender.send(spacing))
        sender.later(1.0)
        self.assertIsNone(sender.send(spacing - 1))
        self.assertIsNotNone(sender.send(1))
        self.assertEqual([covered(p) for p in sender.pings], [spacing, 2 * spacing])

    def test_at_most_eight_pings_unanswered(self) -> None:
        """A service that answers no ping gets L{Pacer.MAX_OUTSTANDING_PINGS} of them, no more."""
        sender = Sender()
        for _ in range(20):
            sender.send(sender.pacer.ping_spacing)
            sender.later()
            ping = sender.pacer.uncovered_ping()
            if ping is not None:
                sender.pings.append(ping)
        self.assertEqual(len(sender.pings), Pacer.MAX_OUTSTANDING_PINGS)
        sender.pacer.on_pong(sender.pings[0])
        self.assertIsNotNone(sender.send(sender.pacer.ping_spacing))

    def test_no_ping_covers_nothing_new(self) -> None:
        """
        The ping a shut window asks for covers the bytes after the last
        ping; right after a ping there are none, and none is asked for.
        """
        sender = Sender()
        self.assertIsNone(sender.pacer.uncovered_ping())  # nothing sent yet
        sender.send(100)
        ping = sender.pacer.uncovered_ping()
        assert ping is not None
        self.assertEqual(covered(ping), 100)
        self.assertIsNone(sender.pacer.uncovered_ping())
        sender.later(1.0)
        self.assertIsNone(sender.pacer.uncovered_ping())

    def test_no_uncovered_ping_beyond_eight_unanswered(self) -> None:
        sender = Sender()
        for _ in range(Pacer.MAX_OUTSTANDING_PINGS):
            sender.send(10)
            self.assertIsNotNone(sender.pacer.uncovered_ping())
        sender.send(10)
        self.assertIsNone(sender.pacer.uncovered_ping())


class PongTests(SynchronousTestCase):
    def test_round_trip_is_ping_to_pong(self) -> None:
        """The round trip reported (the tunnel's last ping RTT) is the time from ping to pong."""
        sender = Sender()
        sender.now = 100.0
        ping = sender.send(sender.pacer.ping_spacing)
        assert ping is not None
        sender.later(0.25)
        sender.pacer.on_pong(ping)
        self.assertEqual(sender.pacer.last_rtt, 0.25)
        self.assertEqual(sender.pacer.min_rtt, 0.25)

    def test_pong_for_the_latest_ping_only(self) -> None:
        """
        A service may answer only the latest of several pings: that pong
        covers the earlier ones too.  No ping is left waiting (so pacing is
        not turned off as stalled later), and the round trip is the latest
        ping's.
        """
        sender = Sender()
        first = sender.send(sender.pacer.ping_spacing)
        sender.later(0.010)
        latest = sender.send(sender.pacer.ping_spacing)
        assert first is not None and latest is not None
        sender.later(0.003)
        sender.pacer.on_pong(latest)
        self.assertEqual(sender.pacer.in_flight, 0)
        self.assertAlmostEqual(sender.pacer.last_rtt or 0.0, 0.003)
        self.assertIsNone(sender.pacer.stall_in())
        sender.later(Pacer.STALL * 2)
        self.assertFalse(sender.pacer.stalled)

    def test_a_repeated_pong_changes_nothing(self) -> None:
        """A pong answered twice leaves the later pings waiting for their own pongs."""
        sender = Sender()
        first = sender.send(sender.pacer.ping_spacing)
        sender.later()
        second = sender.send(sender.pacer.ping_spacing)
        assert first is not None and second is not None
        sender.later()
        sender.pacer.on_pong(first)
        sender.pacer.on_pong(first)
        self.assertEqual(sender.pacer.in_flight, sender.pacer.ping_spacing)
        self.assertIsNotNone(sender.pacer.stall_in())
        sender.pacer.on_pong(second)
        self.assertEqual(sender.pacer.in_flight, 0)
        self.assertIsNone(sender.pacer.stall_in())

    def test_pong_for_a_ping_never_sent_is_ignored(self) -> None:
        """
        A pong in our format while no ping waits (a confused or hostile
        service) changes nothing: it would open the window for bytes the
        service was never asked about, or end the session on a bad round trip.
        """
        sender = Sender()
        self.assertIsNone(sender.send(1000))
        forged = struct.pack(">4sQ", b"lpq1", 1000)
        self.assertTrue(sender.pacer.is_ours(forged))
        sender.pacer.on_pong(forged)
        self.assertEqual(sender.pacer.in_flight, 1000)
        self.assertIsNone(sender.pacer.last_rtt)
        self.assertEqual(sender.pacer.allowance(10**9), Pacer.INITIAL_WINDOW - 1000)
