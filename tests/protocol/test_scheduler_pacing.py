"""
L{aws_localproxy.protocol.scheduler} with its L{Pacer}: where pings go, what
a shut window lets through, the stall timer, and how
L{OutboundSettings} builds each session's scheduler.

A pacing ping says "the service has read everything before me" when its
pong comes back.  It must therefore leave after the frame that holds the
bytes it covers (before it, the pong would open the window for bytes still
unsent) and right after it (later, the window would wait longer than the
path needs) -- also when several records share one WebSocket frame.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from typing import Any, Dict, List, Tuple

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.pacing import Pacer
from aws_localproxy.protocol.scheduler import OutboundScheduler, OutboundSettings
from aws_localproxy.protocol.wire import DataFields, decode_all
from tests.fakes.clock import SpinGuardClock
from tests.fakes.local import Reader
from tests.support.payloads import assert_same_bytes, unique_payload

FRAME_LIMIT = 131076


class Link:
    """
    The WebSocket as the scheduler sees it: frames and pings in the order
    they were sent, and the service on the other end answering the pings.
    """

    def __init__(self, frame_limit: int = 0, max_payload: int = 64512) -> None:
        self.clock = SpinGuardClock()
        self.pacer = Pacer(self.clock.seconds)
        self.events: List[Tuple[str, bytes]] = []
        self.answered = 0
        self.scheduler = OutboundScheduler(
            lambda frame: self.events.append(("frame", frame)),
            pacer=self.pacer,
            send_ping=lambda ping: self.events.append(("ping", ping)),
            frame_limit=frame_limit,
            max_payload=max_payload,
            clock=self.clock,
        )

    def lane(self, connection_id: int) -> Any:
        return self.scheduler.open_lane(DataFields("s", 1, connection_id), Reader())

    def pings(self) -> List[bytes]:
        return [data for kind, data in self.events if kind == "ping"]

    def answer(self) -> None:
        """The service read everything sent so far: it answers every ping not yet answered."""
        pending = [data for kind, data in self.events[self.answered :] if kind == "ping"]
        self.answered = len(self.events)
        for ping in pending:
            self.scheduler.pong(ping)

    def received(self) -> Dict[int, bytes]:
        """The DATA payload each connection sent, joined."""
        out: Dict[int, bytearray] = defaultdict(bytearray)
        for kind, data in self.events:
            if kind == "frame":
                for message in decode_all(data):
                    out[message.connectionId] += message.payload
        return {key: bytes(value) for key, value in out.items()}

    def data_bytes(self) -> int:
        return sum(len(payload) for payload in self.received().values())


class PingPlacementTests(SynchronousTestCase):
    def run_transfer(self, frame_limit: int) -> Link:
        """
        Three bulk connections through a pacer whose service answers every
        ping a millisecond later; the WebSocket's transport also fills and
        drains (pause, resume) once a millisecond.
        """
        link = Link(frame_limit)
        data = {n: unique_payload(600_000 + 7_777 * n, seed=20 + n) for n in (1, 2, 3)}
        for n, payload in data.items():
            link.lane(n).write(payload)
        for _ in range(500):
            if link.scheduler.idle:
                break
            link.clock.advance(0.001)
            link.scheduler.pauseProducing()
            link.scheduler.resumeProducing()
            link.answer()
        self.assertTrue(link.scheduler.idle)
        received = link.received()
        for n, payload in data.items():
            assert_same_bytes(self, received[n], payload)
        return link

    def assert_each_ping_right_after_its_bytes(self, link: Link) -> None:
        written = 0
        seqs = []
        for kind, data in link.events:
            if kind == "frame":
                written += len(data)
                continue
            self.assertTrue(Pacer.is_ours(data), data)
            (_, seq) = struct.unpack(">4sQ", data)
            self.assertEqual(seq, written, "a ping must follow the frame of the bytes it covers")
            seqs.append(seq)
        self.assertGreater(len(seqs), 10)
        self.assertEqual(seqs, sorted(set(seqs)), "each ping covers new bytes")

    def test_ping_after_the_frame_of_its_bytes(self) -> None:
        """Records batched into shared frames: every ping leaves right after the frame it covers."""
        link = self.run_transfer(FRAME_LIMIT)
        frames = [d for kind, d in link.events if kind == "frame"]
        self.assertGreater(max(len(decode_all(f)) for f in frames), 1)  # frames were shared
        self.assert_each_ping_right_after_its_bytes(link)

    def test_ping_after_its_record(self) -> None:
        self.assert_each_ping_right_after_its_bytes(self.run_transfer(0))


class ShutWindowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.link = Link()
        self.bulk = self.link.lane(1)
        self.bulk.write(unique_payload(Pacer.INITIAL_WINDOW * 2, seed=30))
        self.sent = self.link.data_bytes()
        self.assertLess(self.sent, Pacer.INITIAL_WINDOW * 2)  # the window stopped it

    def test_a_window_exactly_full_holds_bulk(self) -> None:
        """Not one byte of room: bulk waits (a measured rate made the window what is unread)."""
        self.link.pacer.window = self.link.pacer.in_flight
        self.link.scheduler.pauseProducing()
        self.link.scheduler.resumeProducing()
        self.assertEqual(self.link.data_bytes(), self.sent)

    def test_a_keystroke_beside_a_full_window(self) -> None:
        """One byte typed while bulk fills the window goes out at once."""
        echo = self.link.lane(2)
        echo.write(b"k")
        self.assertEqual(self.link.received()[2], b"k")

    def test_no_new_ping_without_new_bytes(self) -> None:
        """The transport pausing and resuming the scheduler while the window is shut adds no ping."""
        pings = self.link.pings()
        for _ in range(3):
            self.link.scheduler.pauseProducing()
            self.link.scheduler.resumeProducing()
        self.assertEqual(self.link.pings(), pings)

    def test_stall_timer_armed_again_after_pacing_resumes(self) -> None:
        """
        The stall timer opened the window; late pongs then turn pacing back
        on; the next time the window shuts, a new timer reopens it after
        L{Pacer.STALL}: the transfer never waits on a pong alone.
        """
        self.link.clock.advance(Pacer.STALL)
        self.assertEqual(self.link.data_bytes(), Pacer.INITIAL_WINDOW * 2)
        self.link.answer()
        self.assertIsNone(self.link.pacer.stall_in())  # paced again
        more = unique_payload(Pacer.INITIAL_WINDOW * 2, seed=31)
        self.bulk.write(more)
        shut_at = self.link.data_bytes()
        self.assertLess(shut_at, Pacer.INITIAL_WINDOW * 4)
        self.link.clock.advance(Pacer.STALL)
        self.assertEqual(self.link.data_bytes(), Pacer.INITIAL_WINDOW * 4)
        self.link.scheduler.close()
        self.assertEqual(self.link.clock.getDelayedCalls(), [])


class UnpacedTests(SynchronousTestCase):
    def test_inbound_back_pressure_without_pacing(self) -> None:
        """Inbound flow control tells an unpaced session's scheduler too: nothing changes."""
        frames: List[bytes] = []
        scheduler = OutboundScheduler(frames.append, max_payload=1000)
        lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
        scheduler.reading_paused(True)
        lane.write(b"still sent")
        scheduler.reading_paused(False)
        self.assertEqual([m.payload for f in frames for m in decode_all(f)], [b"still sent"])


class FrameLimitTests(SynchronousTestCase):
    def test_records_that_fill_the_frame_exactly_share_it(self) -> None:
        fields = DataFields("s", 1, 1)
        record_size = fields.record_parts([b"x" * 1000], 1000)[1]
        frames: List[bytes] = []
        scheduler = OutboundScheduler(frames.append, max_payload=1000, frame_limit=2 * record_size)
        lane = scheduler.open_lane(fields, Reader())
        scheduler.pauseProducing()
        data = unique_payload(4000, seed=40)
        lane.write(data)
        scheduler.resumeProducing()
        self.assertEqual([len(f) for f in frames], [2 * record_size] * 2)
        assert_same_bytes(self, b"".join(m.payload for f in frames for m in decode_all(f)), data)


class SettingsTests(SynchronousTestCase):
    """L{OutboundSettings}: every setting reaches each session's scheduler."""

    def build(
        self, settings: OutboundSettings, max_payload: int = 1000
    ) -> Tuple[OutboundScheduler, List[bytes], List[bytes]]:
        frames: List[bytes] = []
        pings: List[bytes] = []
        return settings.scheduler(frames.append, pings.append, max_payload), frames, pings

    def test_pings_go_to_the_session(self) -> None:
        """With a clock the session is paced: its pings go to the C{send_ping} given."""
        scheduler, frames, pings = self.build(OutboundSettings(clock=Clock()), 64512)
        lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
        lane.write(b"x" * Pacer.INITIAL_WINDOW)
        self.assertTrue(pings)
        self.assertTrue(all(Pacer.is_ours(p) for p in pings))

    def test_paced_with_a_clock(self) -> None:
        clock = SpinGuardClock()
        scheduler, frames, pings = self.build(OutboundSettings(clock=clock))
        lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
        lane.write(unique_payload(Pacer.INITIAL_WINDOW * 2, seed=50))
        self.assertTrue(pings)
        self.assertTrue(all(Pacer.is_ours(p) for p in pings))
        messages = [m for f in frames for m in decode_all(f)]
        self.assertTrue(all(len(m.payload) <= 1000 for m in messages))
        self.assertLess(sum(len(m.payload) for m in messages), Pacer.INITIAL_WINDOW * 2)
        clock.advance(Pacer.STALL)  # the stall timer runs on the settings' clock
        self.assertEqual(sum(len(m.payload) for f in frames for m in decode_all(f)), 2**19)

    def test_unpaced(self) -> None:
        for settings in (OutboundSettings(clock=Clock(), pacing=False), OutboundSettings()):
            scheduler, frames, pings = self.build(settings)
            lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
            lane.write(unique_payload(Pacer.INITIAL_WINDOW * 2, seed=51))
            self.assertEqual(pings, [])
            self.assertEqual(sum(len(m.payload) for f in frames for m in decode_all(f)), 2**19)

    def test_lane_limit(self) -> None:
        scheduler, _, _ = self.build(OutboundSettings(lane_limit=100))
        reader = Reader()
        lane = scheduler.open_lane(DataFields("s", 1, 1), reader)
        scheduler.pauseProducing()
        lane.write(b"x" * 100)
        self.assertTrue(reader.paused)

    def test_max_payload_and_frame_limit(self) -> None:
        scheduler, frames, _ = self.build(OutboundSettings(frame_limit=FRAME_LIMIT), 2000)
        lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
        scheduler.pauseProducing()
        lane.write(unique_payload(10_000, seed=52))
        scheduler.resumeProducing()
        (frame,) = frames
        self.assertEqual([len(m.payload) for m in decode_all(frame)], [2000] * 5)
