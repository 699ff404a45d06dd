"""
The bandwidth cap of the local tunnel service (``--bandwidth-limit``): the
token bucket, the read gate and the throttle on a fake clock, the option,
and one end-to-end measurement over TLS.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial import unittest

from aws_localproxy.protocol.wire import Message, control_message, encode_data
from aws_localproxy.tunnelservice import tap
from aws_localproxy.tunnelservice.bandwidth import (
    MIN_BURST,
    BandwidthThrottle,
    ReadGate,
    TokenBucket,
    read_size,
)
from aws_localproxy.tunnelservice.testing import start_tunnel_service
from tests.support import tunnelclient
from tests.support.helpers import sleep


class TokenBucketTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()

    def test_burst_then_debt(self) -> None:
        bucket = TokenBucket(self.clock, 1000, burst=100)
        self.assertEqual(bucket.spend(100), 0)
        self.assertAlmostEqual(bucket.spend(500), 0.5)
        self.clock.advance(0.25)
        self.assertAlmostEqual(bucket.wait(), 0.25)
        self.clock.advance(0.25)
        self.assertEqual(bucket.wait(), 0)

    def test_refill_is_capped(self) -> None:
        bucket = TokenBucket(self.clock, 1000, burst=100)
        self.clock.advance(60)
        self.assertEqual(bucket.tokens, 100)

    def test_default_burst(self) -> None:
        self.assertEqual(TokenBucket(self.clock, 1000).burst, MIN_BURST)
        self.assertEqual(TokenBucket(self.clock, 8_000_000).burst, 120_000)

    def test_read_size(self) -> None:
        self.assertEqual(read_size(800_000), 8000)
        self.assertEqual(read_size(1000), 2048)
        self.assertEqual(read_size(100_000_000), 65536)

    def test_rate_must_be_positive(self) -> None:
        self.assertRaises(ValueError, TokenBucket, self.clock, 0)


class ReadGateTests(unittest.TestCase):
    def test_reasons_are_independent(self) -> None:
        transport = StringTransport()
        gate = ReadGate(transport)
        gate.pause("a")
        gate.pause("b")
        self.assertEqual(transport.producerState, "paused")
        gate.resume("a")
        self.assertEqual(transport.producerState, "paused")
        gate.resume("a")
        self.assertEqual(transport.producerState, "paused")
        gate.resume("b")
        self.assertEqual(transport.producerState, "producing")

    def test_release(self) -> None:
        """Closing drops every reason at once (the peer's close must be read)."""
        transport = StringTransport()
        gate = ReadGate(transport)
        gate.pause("a")
        gate.pause("b")
        gate.release()
        self.assertEqual(transport.producerState, "producing")
        self.assertFalse(gate.paused)

    def test_resume_without_pause(self) -> None:
        transport = StringTransport()
        ReadGate(transport).resume("a")
        self.assertEqual(transport.producerState, "producing")


class ThrottleTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.transport = StringTransport()
        self.gate = ReadGate(self.transport)
        self.throttle = BandwidthThrottle(
            self.gate, TokenBucket(self.clock, 1000, burst=100), self.clock
        )

    def test_within_the_burst_keeps_reading(self) -> None:
        self.throttle.received(100)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_debt_pauses_until_refilled(self) -> None:
        self.throttle.received(600)  # 500 in debt: half a second
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(0.49)
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(0.02)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_more_while_paused_extends_the_pause(self) -> None:
        """Bytes already in flight when the pause began are charged too."""
        self.throttle.received(600)
        self.throttle.received(500)
        self.clock.advance(0.51)
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(0.5)
        self.assertEqual(self.transport.producerState, "producing")

    def test_back_pressure_outlasts_the_throttle(self) -> None:
        self.gate.pause("back-pressure")
        self.throttle.received(600)
        self.clock.advance(1)
        self.assertEqual(self.transport.producerState, "paused")
        self.gate.resume("back-pressure")
        self.assertEqual(self.transport.producerState, "producing")

    def test_stop_cancels_the_timer(self) -> None:
        self.throttle.received(600)
        self.throttle.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class OptionTests(unittest.TestCase):
    def test_default_unlimited(self) -> None:
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(options["bandwidth-limit"], 0)

    def test_value(self) -> None:
        options = tap.Options()
        options.parseOptions(["--bandwidth-limit", "800000", "--cert-dir", self.mktemp()])
        self.assertEqual(options["bandwidth-limit"], 800000)
        service = tap.makeService(options, reactor)
        self.assertEqual(service._settings["bandwidth_limit"], 800000)

    def test_negative_refused(self) -> None:
        self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--bandwidth-limit", "-1"])


class EndToEndTests(unittest.TestCase):
    """A real service with a cap: N bytes take about N / limit seconds, pings queue behind."""

    LIMIT = 200_000

    @inlineCallbacks
    def test_rate_and_ping_behind_data(self) -> Any:
        running = yield start_tunnel_service(reactor, self.mktemp(), bandwidth_limit=self.LIMIT)
        self.addCleanup(running.stop)
        _, source_token, destination_token = running.open_tunnel(["ssh"])
        source = yield tunnelclient.connect(reactor, running, mode="source", token=source_token)
        self.addCleanup(tunnelclient.close_client, source)
        destination = yield tunnelclient.connect(
            reactor, running, mode="destination", token=destination_token
        )
        self.addCleanup(tunnelclient.close_client, destination)
        yield source.wait_messages(1)
        yield destination.wait_messages(1)
        # Let the handshake's bytes refill the bucket before measuring.
        yield sleep(0.1)

        start_record = control_message(
            Message.STREAM_START, stream_id=1, service_id="ssh", connection_id=1
        )
        source.send_records(start_record)
        chunk = b"x" * 50_000
        count = 5  # 250 kB: (250 kB - burst) / 200 kB/s ~ 1.1 s
        started = time.monotonic()
        for _ in range(count):
            source.send_records(*encode_data("ssh", 1, 1, chunk))
        pong = source.ping(b"behind")
        yield destination.wait_messages(2 + count)
        data_time = time.monotonic() - started
        self.assertEqual(sum(len(m.payload) for m in destination.messages[2:]), count * len(chunk))
        self.assertEqual((yield pong), b"behind")
        pong_time = time.monotonic() - started
        expected = (count * len(chunk) - MIN_BURST) / self.LIMIT
        self.assertGreater(data_time, expected * 0.7)
        self.assertLess(data_time, expected * 2.5)
        # The ping was read, and answered, only after the data ahead of it.
        self.assertGreaterEqual(pong_time, data_time * 0.9)

        # The other direction has a bucket of its own, still full.
        started = time.monotonic()
        destination.send_records(*encode_data("ssh", 1, 1, b"y" * 10_000))
        yield source.wait_messages(2)
        self.assertLess(time.monotonic() - started, 0.5)
