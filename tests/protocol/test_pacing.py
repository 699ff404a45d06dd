"""
L{aws_localproxy.protocol.pacing}: the ping ack clock, the rate and RTT it measures,
and the window it derives, on a fake clock.
"""

from __future__ import annotations

from typing import List

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.pacing import Pacer


class FakeService:
    """
    A bottleneck in front of the pacer: it reads C{rate} bytes per second,
    in order, and answers each ping when it has read the bytes before it.
    """

    #: Unread bytes no path here justifies (the fastest is 500 MB/s on a
    #: sub-millisecond round trip): a window beyond it is a broken
    #: measurement, failed at once rather than simulated byte by byte.
    WINDOW_BOUND = 16 * 1024 * 1024

    def __init__(self, pacer: Pacer, rate: float, base_rtt: float) -> None:
        self.pacer = pacer
        self.rate = rate
        self.base_rtt = base_rtt
        self.now = 0.0
        self.read = 0.0
        self.queue: List[tuple[int, bytes]] = []  # (bytes before the ping, ping)

    def clock(self) -> float:
        return self.now

    def run(self, seconds: float, step: float = 0.0005) -> int:
        """Keep the sender busy for C{seconds}; returns the bytes read by the service."""
        end = self.now + seconds
        start_read = self.read
        while self.now < end:
            while self.pacer.allowance(10**9) > 0:
                if self.pacer.in_flight > self.WINDOW_BOUND:
                    raise AssertionError("the window let %d bytes go unread" % self.pacer.in_flight)
                ping = self.pacer.on_sent(2048)
                if ping is not None:
                    self.queue.append((self.pacer.sent, ping))
            ping = self.pacer.uncovered_ping()  # blocked: what the scheduler does
            if ping is not None:
                self.queue.append((self.pacer.sent, ping))
            self.now += step
            self.read = min(self.pacer.sent, self.read + self.rate * step)
            while self.queue and self.queue[0][0] <= self.read:
                _, ping = self.queue.pop(0)
                self.pacer.on_pong(ping)
        return int(self.read - start_read)


class PacerTests(SynchronousTestCase):
    def make(self, rate: float, base_rtt: float = 0.0005) -> tuple[Pacer, FakeService]:
        holder: List[FakeService] = []
        pacer = Pacer(lambda: holder[0].now)
        service = FakeService(pacer, rate, base_rtt)
        holder.append(service)
        return pacer, service

    def test_initial_window_before_any_measurement(self) -> None:
        pacer = Pacer(lambda: 0.0)
        self.assertEqual(pacer.allowance(10**6), Pacer.INITIAL_WINDOW)
        self.assertEqual(pacer.quantum, Pacer.MAX_QUANTUM)

    def test_pings_are_spaced_in_time(self) -> None:
        """At full speed a byte count alone would ask for thousands of pings a second."""
        now = [0.0]
        pacer = Pacer(lambda: now[0])
        pings = [pacer.on_sent(pacer.ping_spacing) for _ in range(10)]
        self.assertEqual(sum(p is not None for p in pings), 1)
        now[0] += Pacer.MIN_PING_INTERVAL
        self.assertIsNotNone(pacer.on_sent(pacer.ping_spacing))

    def test_pings_carry_the_byte_count(self) -> None:
        pacer = Pacer(lambda: 0.0)
        self.assertIsNone(pacer.on_sent(100))
        ping = pacer.on_sent(pacer.ping_spacing)
        self.assertIsNotNone(ping)
        assert ping is not None
        self.assertTrue(pacer.is_ours(ping))
        self.assertFalse(pacer.is_ours(b"\x00" * 12))
        pacer.on_pong(ping)
        self.assertEqual(pacer.acked, pacer.sent)
        self.assertEqual(pacer.in_flight, 0)

    def test_capped_service_keeps_the_queue_short(self) -> None:
        """At 800 KB/s the unread bytes settle at a few milliseconds' worth, at full rate."""
        pacer, service = self.make(rate=800_000)
        service.run(1.0)
        read = service.run(2.0)
        self.assertGreater(read, 0.9 * 2 * 800_000)
        queue_delay = pacer.in_flight / 800_000
        self.assertLess(queue_delay, 0.030)
        self.assertLessEqual(pacer.quantum, 4096)

    def test_capped_window_is_a_few_milliseconds(self) -> None:
        """
        At 800 KB/s on a short path the window is its floor, and the floor is
        about 5 ms of data: an echo behind a full window waits that long (the
        floor was 10 ms of data, and the capped echo p50 with it).
        """
        now = [0.0]
        pacer = Pacer(lambda: now[0])
        for step in range(100):  # 8,000 bytes every 10 ms, each answered 0.5 ms later
            now[0] = step * 0.010
            ping = pacer.on_sent(8000) or pacer.uncovered_ping()
            assert ping is not None
            now[0] += 0.0005
            pacer.on_pong(ping)
        self.assertAlmostEqual(pacer.rate or 0, 800_000, delta=1)
        self.assertEqual(pacer.window, Pacer.MIN_WINDOW)
        self.assertLess(pacer.window / 800_000, 0.006)

    def test_fast_path_queue_is_a_millisecond(self) -> None:
        """
        At 400 MB/s on a 0.2 ms path the window lets about 1 ms of data wait
        in front of the service: an echo sent behind a full window waits that
        long (it was 4 ms, and the echo's p99 beside a bulk upload 10 ms).
        """
        now = [0.0]
        pacer = Pacer(lambda: now[0])
        for step in range(100):  # 400 MB/s: 4 MB every 10 ms, each answered 0.2 ms later
            now[0] = step * 0.010
            ping = pacer.on_sent(4_000_000) or pacer.uncovered_ping()
            assert ping is not None
            now[0] += 0.0002
            pacer.on_pong(ping)
        assert pacer.rate is not None and pacer.min_rtt is not None
        queue_delay = pacer.window / pacer.rate - pacer.min_rtt
        self.assertLess(queue_delay, 0.0015)
        self.assertGreater(queue_delay, 0.0005)

    def test_fast_path_gets_a_wide_window(self) -> None:
        """Without a cap the window grows far beyond the initial one and does not bind."""
        pacer, service = self.make(rate=500_000_000)
        service.run(0.5)
        self.assertGreater(pacer.window, Pacer.INITIAL_WINDOW)
        self.assertEqual(pacer.quantum, Pacer.MAX_QUANTUM)

    def test_stalled_service_stops_pacing(self) -> None:
        """No pong for longer than STALL: data is no longer held back on a guess."""
        now = [0.0]
        pacer = Pacer(lambda: now[0])
        while pacer.allowance(10**6) > 0:
            pacer.on_sent(4096)
        self.assertEqual(pacer.allowance(10**6), 0)
        now[0] = Pacer.STALL + 0.1
        self.assertGreater(pacer.allowance(10**6), 0)

    def test_stale_pong_changes_nothing(self) -> None:
        now = [0.0]
        pacer = Pacer(lambda: now[0])
        first = pacer.on_sent(pacer.ping_spacing)
        now[0] += Pacer.MIN_PING_INTERVAL
        second = pacer.on_sent(pacer.ping_spacing)
        assert first is not None and second is not None
        pacer.on_pong(second)
        acked = pacer.acked
        pacer.on_pong(first)
        self.assertEqual(pacer.acked, acked)


class StallTests(SynchronousTestCase):
    """When pongs are late or never come, the pacer says when it will stop waiting."""

    def test_stall_in_counts_down_from_the_oldest_ping(self) -> None:
        now = [0.0]
        pacer = Pacer(lambda: now[0])
        self.assertIsNone(pacer.stall_in())
        self.assertIsNotNone(pacer.on_sent(pacer.ping_spacing))
        now[0] = 0.2
        self.assertAlmostEqual(pacer.stall_in() or 0.0, Pacer.STALL - 0.2)
        now[0] = Pacer.STALL
        self.assertEqual(pacer.stall_in(), 0.0)
        self.assertTrue(pacer.stalled)  # at the bound exactly: a timer set for it finds it so

    def test_deaf_pacer_does_not_hold_data(self) -> None:
        """While our side is not reading the WebSocket, no pong can come: the window is open."""
        pacer = Pacer(lambda: 0.0)
        while pacer.allowance(10**6) > 0:
            pacer.on_sent(4096)
        pacer.deaf = True
        self.assertGreater(pacer.allowance(10**6), 0)
        pacer.deaf = False
        self.assertEqual(pacer.allowance(10**6), 0)
