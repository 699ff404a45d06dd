"""
L{aws_localproxy.protocol.scheduler}: ordering and quanta on a StringTransport.

The scheduler is what makes one tunnel fair: these tests pin that control
records go first, that a reset follows its connection's last byte, that
busy connections take turns one quantum at a time, and that each lane
pauses only its own socket.
"""

from __future__ import annotations

import struct
from typing import List

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.pacing import Pacer
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.wire import DataFields, Message, control_message, decode_all
from tests.fakes.clock import SpinGuardClock
from tests.fakes.local import Reader
from tests.support.payloads import assert_same_bytes, unique_payload

#: What the lanes write: no block repeats, so a record sent twice, dropped,
#: or sent out of order changes the bytes that arrive.
BULK = unique_payload(Pacer.INITIAL_WINDOW * 3 + 64512 * 5, seed=1)
OTHER = unique_payload(64 * 1024, seed=2)


class Wire:
    """The WebSocket: records land on a StringTransport, which can say 'full'."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.records: List[bytes] = []

    def send(self, record: bytes) -> None:
        self.records.append(record)
        self.transport.write(record)

    def messages(self) -> List[Message]:
        out = [m for r in self.records for m in decode_all(r)]
        self.records.clear()
        return out


def reset(connection_id: int) -> bytes:
    return control_message(
        Message.CONNECTION_RESET, stream_id=1, service_id="s", connection_id=connection_id
    )


class OrderingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.wire = Wire()
        self.scheduler = OutboundScheduler(self.wire.send, max_payload=1000)
        self.wire.transport.registerProducer(self.scheduler, True)

    def lane(self, connection_id: int):  # type: ignore[no-untyped-def]
        return self.scheduler.open_lane(DataFields("s", 1, connection_id), Reader())

    def test_sends_at_once_when_not_paused(self) -> None:
        lane = self.lane(1)
        lane.write(b"hello")
        (message,) = self.wire.messages()
        self.assertEqual(
            (message.type, message.connectionId, message.payload), (Message.DATA, 1, b"hello")
        )

    def test_controls_go_before_queued_data(self) -> None:
        lane = self.lane(1)
        self.scheduler.pauseProducing()
        lane.write(b"x" * 10)
        self.scheduler.control(
            control_message(Message.CONNECTION_START, stream_id=1, service_id="s", connection_id=2)
        )
        self.scheduler.resumeProducing()
        types = [m.type for m in self.wire.messages()]
        self.assertEqual(types, [Message.CONNECTION_START, Message.DATA])

    def test_reset_follows_the_last_byte(self) -> None:
        lane = self.lane(1)
        self.scheduler.pauseProducing()
        lane.write(BULK[:2500])
        lane.finish(reset(1))
        lane.write(b"after close is dropped")
        self.scheduler.resumeProducing()
        messages = self.wire.messages()
        self.assertEqual(
            [m.type for m in messages], [Message.DATA] * 3 + [Message.CONNECTION_RESET]
        )
        assert_same_bytes(self, b"".join(m.payload for m in messages), BULK[:2500])

    def test_abort_drops_queued_and_sends_at_once(self) -> None:
        lane = self.lane(1)
        self.scheduler.pauseProducing()
        lane.write(b"a" * 2500)
        lane.abort(reset(1))
        self.scheduler.resumeProducing()
        self.assertEqual([m.type for m in self.wire.messages()], [Message.CONNECTION_RESET])

    def test_withdraw_drops_a_tags_queued_records(self) -> None:
        """
        C{withdraw} drops what is queued under its tag (control records,
        drained DATA, a closing lane's bytes and reset) and nothing else: an
        open lane of the tag keeps its bytes, other tags are untouched.
        """
        old = self.scheduler.open_lane(DataFields("s", 1, 1), Reader(), tag="old")
        drained = self.scheduler.open_lane(DataFields("s", 1, 2), Reader(), tag="old")
        live = self.scheduler.open_lane(DataFields("s", 1, 3), Reader(), tag="old")
        other = self.scheduler.open_lane(DataFields("s", 1, 4), Reader(), tag="other")
        self.scheduler.pauseProducing()
        old.write(b"old bytes")
        old.finish(reset(1))
        drained.write(b"drained bytes")
        drained.finish(reset(2))
        self.scheduler.drain([drained])
        self.scheduler.control(reset(5), "old")
        live.write(b"live")
        other.write(b"other")
        other.finish(reset(4))
        self.scheduler.control(reset(6), "other")
        self.scheduler.withdraw("old")
        self.scheduler.resumeProducing()
        self.assertEqual(
            sorted((m.type, m.connectionId, m.payload) for m in self.wire.messages()),
            [
                (Message.DATA, 3, b"live"),
                (Message.DATA, 4, b"other"),
                (Message.CONNECTION_RESET, 4, b""),
                (Message.CONNECTION_RESET, 6, b""),
            ],
        )
        self.assertTrue(self.scheduler.idle)

    def test_drain_puts_lanes_before_the_stream_reset(self) -> None:
        one, two = self.lane(1), self.lane(2)
        self.scheduler.pauseProducing()
        one.write(BULK[:1500])
        two.write(OTHER[:10])
        self.scheduler.drain([one, two])
        self.scheduler.control(control_message(Message.STREAM_RESET, stream_id=1, service_id="s"))
        self.scheduler.resumeProducing()
        messages = self.wire.messages()
        self.assertEqual(messages[-1].type, Message.STREAM_RESET)
        one_bytes = b"".join(m.payload for m in messages if m.connectionId == 1)
        assert_same_bytes(self, one_bytes, BULK[:1500])
        self.assertEqual(b"".join(m.payload for m in messages if m.connectionId == 2), OTHER[:10])

    def test_round_robin_one_quantum_each(self) -> None:
        """A busy lane's backlog never delays another lane by more than one quantum."""
        bulk, echo = self.lane(1), self.lane(2)
        self.scheduler.pauseProducing()
        bulk.write(BULK[:5000])
        echo.write(OTHER[:64])
        self.scheduler.resumeProducing()
        messages = self.wire.messages()
        order = [(m.connectionId, len(m.payload)) for m in messages]
        self.assertEqual(order[:2], [(1, 1000), (2, 64)])
        bulk_bytes = b"".join(m.payload for m in messages if m.connectionId == 1)
        assert_same_bytes(self, bulk_bytes, BULK[:5000])
        self.assertEqual([m.payload for m in messages if m.connectionId == 2], [OTHER[:64]])

    def test_interactive_bytes_interleave_with_bulk(self) -> None:
        """While the WebSocket is full, echoes queue in their own lane and go out next turn."""
        bulk, echo = self.lane(1), self.lane(2)
        self.scheduler.pauseProducing()
        bulk.write(b"B" * 10_000)
        self.scheduler.resumeProducing()
        self.wire.messages()
        self.scheduler.pauseProducing()
        bulk.write(b"B" * 10_000)
        echo.write(b"ping")
        self.scheduler.resumeProducing()
        first_two = [m.connectionId for m in self.wire.messages()[:2]]
        self.assertIn(2, first_two)

    def test_paused_by_the_transport(self) -> None:
        """Twisted pauses the scheduler when the transport's buffer fills: nothing more goes out."""
        lane = self.lane(1)
        self.scheduler.pauseProducing()
        lane.write(b"x" * 10)
        self.assertEqual(self.wire.records, [])
        self.scheduler.resumeProducing()
        self.assertEqual(len(self.wire.records), 1)

    def test_lane_bound_pauses_only_its_socket(self) -> None:
        scheduler = OutboundScheduler(self.wire.send, lane_limit=100)
        full_reader, other_reader = Reader(), Reader()
        full = scheduler.open_lane(DataFields("s", 1, 1), full_reader)
        other = scheduler.open_lane(DataFields("s", 1, 2), other_reader)
        scheduler.pauseProducing()
        full.write(b"x" * 100)
        other.write(b"y" * 10)
        self.assertTrue(full_reader.paused)
        self.assertFalse(other_reader.paused)
        scheduler.resumeProducing()
        self.assertFalse(full_reader.paused)

    def test_closed_scheduler_sends_nothing(self) -> None:
        lane = self.lane(1)
        self.scheduler.close()
        lane.write(b"late")
        self.scheduler.control(reset(1))
        self.assertEqual(self.wire.records, [])


class IdleTests(SynchronousTestCase):
    """C{when_idle}: the event that everything queued has been written (or the session is over)."""

    def setUp(self) -> None:
        self.wire = Wire()
        self.scheduler = OutboundScheduler(self.wire.send, max_payload=1000)

    def test_at_once_when_nothing_is_queued(self) -> None:
        self.successResultOf(self.scheduler.when_idle())

    def test_after_the_last_record(self) -> None:
        self.scheduler.pauseProducing()
        lane = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())
        lane.write(b"a" * 2500)
        lane.finish(reset(1))
        idle = self.scheduler.when_idle()
        self.assertNoResult(idle)
        self.scheduler.resumeProducing()
        self.successResultOf(idle)
        self.assertEqual(self.wire.messages()[-1].type, Message.CONNECTION_RESET)

    def test_when_the_session_ends(self) -> None:
        self.scheduler.pauseProducing()
        self.scheduler.control(reset(1))
        idle = self.scheduler.when_idle()
        self.scheduler.close()
        self.successResultOf(idle)
        self.successResultOf(self.scheduler.when_idle())

    def test_cancelled_waiter_forgotten(self) -> None:
        self.scheduler.pauseProducing()
        self.scheduler.control(reset(1))
        idle = self.scheduler.when_idle()
        idle.cancel()
        self.failureResultOf(idle)
        self.scheduler.resumeProducing()

    def test_when_withdraw_leaves_nothing(self) -> None:
        """Records dropped by C{withdraw} were the last: the waiters hear it then, not later."""
        self.scheduler.pauseProducing()
        self.scheduler.control(reset(1), "old")
        idle = self.scheduler.when_idle()
        self.scheduler.withdraw("other")
        self.assertNoResult(idle)
        self.scheduler.withdraw("old")
        self.successResultOf(idle)

    def test_when_an_abort_leaves_nothing(self) -> None:
        """A lane aborted without a record to send was the last: the waiters hear it then."""
        self.scheduler.pauseProducing()
        lane = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())
        lane.write(b"dropped")
        idle = self.scheduler.when_idle()
        lane.abort(None)
        self.successResultOf(idle)


class FrameTests(SynchronousTestCase):
    """Records ready together share a WebSocket frame, up to the frame limit."""

    def setUp(self) -> None:
        self.frames: List[bytes] = []
        self.scheduler = OutboundScheduler(self.frames.append, frame_limit=131076)

    def test_ready_records_share_a_frame(self) -> None:
        one = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())
        two = self.scheduler.open_lane(DataFields("s", 1, 2), Reader())
        self.scheduler.pauseProducing()
        one.write(BULK[:10])
        two.write(OTHER[:10])
        self.scheduler.control(reset(3))
        self.scheduler.resumeProducing()
        (frame,) = self.frames
        messages = decode_all(frame)
        self.assertEqual(
            [m.type for m in messages], [Message.CONNECTION_RESET, Message.DATA, Message.DATA]
        )
        self.assertEqual([m.payload for m in messages[1:]], [BULK[:10], OTHER[:10]])

    def test_two_full_records_per_frame_never_more(self) -> None:
        lane = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())
        self.scheduler.pauseProducing()
        lane.write(BULK[: 64512 * 5])
        self.scheduler.resumeProducing()
        self.assertTrue(all(len(f) <= 131076 for f in self.frames))
        self.assertEqual([len(decode_all(f)) for f in self.frames], [2, 2, 1])
        payload = b"".join(m.payload for f in self.frames for m in decode_all(f))
        assert_same_bytes(self, payload, BULK[: 64512 * 5])

    def test_a_lone_small_write_goes_at_once(self) -> None:
        lane = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())
        lane.write(b"ping")
        self.assertEqual(len(self.frames), 1)


class PacedTests(SynchronousTestCase):
    """With a pacer the window bounds what the service has not read; pongs open it again."""

    def setUp(self) -> None:
        self.now = 0.0
        self.pacer = Pacer(lambda: self.now)
        self.pings: List[bytes] = []
        self.wire = Wire()
        self.scheduler = OutboundScheduler(
            self.wire.send, pacer=self.pacer, send_ping=self.pings.append
        )

    def test_window_stops_bulk_and_pongs_resume_it(self) -> None:
        lane = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())
        lane.write(b"B" * (Pacer.INITIAL_WINDOW + 200_000))
        sent = sum(len(m.payload) for m in self.wire.messages())
        self.assertLess(sent, Pacer.INITIAL_WINDOW + Pacer.MAX_QUANTUM)
        self.assertGreater(sent, Pacer.INITIAL_WINDOW - Pacer.MAX_QUANTUM)
        self.assertTrue(self.pings)
        self.now += 0.001
        for ping in list(self.pings):
            self.scheduler.pong(ping)
        self.assertTrue(self.wire.messages())

    def test_interactive_credit(self) -> None:
        """A small write goes out even when bulk data has filled the window."""
        bulk = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())
        echo = self.scheduler.open_lane(DataFields("s", 1, 2), Reader())
        bulk.write(b"B" * (Pacer.INITIAL_WINDOW * 2))
        self.wire.messages()
        echo.write(OTHER[:64])
        (message,) = self.wire.messages()
        self.assertEqual((message.connectionId, message.payload), (2, OTHER[:64]))

    def test_blocked_scheduler_has_every_byte_covered_by_a_ping(self) -> None:
        """
        Regression: a capped transfer stalled for good when the window shrank
        below the bytes sent after the last ping: every ping was answered and
        nothing would ever open the window again.  Whenever the window stops
        the scheduler, a ping now covers every byte sent, so a pong will come.
        """
        lane = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())
        lane.write(b"B" * (Pacer.INITIAL_WINDOW * 2))
        self.assertGreater(lane.queued, 0)  # blocked by the window
        (_, last_seq) = struct.unpack(">4sQ", self.pings[-1])
        self.assertEqual(last_seq, self.pacer.sent)
        self.now += 0.01
        for ping in self.pings:
            self.pacer.on_pong(ping)
        self.pacer.window = Pacer.MIN_WINDOW  # as a measured slow rate makes it
        self.wire.messages()
        self.scheduler.resumeProducing()
        self.assertTrue(self.wire.messages())

    def test_frames_do_not_outrun_the_window(self) -> None:
        """
        Regression: records gathered into one frame were counted by the pacer
        only when the frame went out, so a frame filled up to 128 KiB whatever
        the window, and through the 800 KB/s cap an echo waited 300 ms.
        """
        frames: List[bytes] = []
        scheduler = OutboundScheduler(
            frames.append, pacer=self.pacer, send_ping=self.pings.append, frame_limit=131076
        )
        self.pacer.window = Pacer.MIN_WINDOW
        self.pacer.rate = 800_000.0  # a slow path: small quanta
        lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
        lane.write(b"B" * 200_000)
        sent = sum(len(f) for f in frames)
        self.assertLess(sent, Pacer.MIN_WINDOW + 2 * self.pacer.quantum + 64)

    def test_foreign_pongs_are_not_taken(self) -> None:
        self.assertFalse(self.scheduler.pong(b"autobahn keepalive"))


class StallTimerTests(SynchronousTestCase):
    """
    A window shut by the pacer is reopened by time alone, never only by a
    pong: a pong can sit behind data the proxy itself has stopped reading
    (issue 18: the C++ source's unpaced bulk deadlocked an echo through our
    destination).
    """

    def setUp(self) -> None:
        self.clock = SpinGuardClock()  # a timer re-armed at once fails, not hangs
        self.pacer = Pacer(self.clock.seconds)
        self.pings: List[bytes] = []
        self.wire = Wire()
        self.scheduler = OutboundScheduler(
            self.wire.send, pacer=self.pacer, send_ping=self.pings.append, clock=self.clock
        )
        self.lane = self.scheduler.open_lane(DataFields("s", 1, 1), Reader())

    def sent(self) -> int:
        return len(self.sent_bytes())

    def sent_bytes(self) -> bytes:
        return b"".join(m.payload for m in self.wire.messages())

    def test_lane_drains_after_the_stall_bound_without_a_pong(self) -> None:
        """Window shut, no pong ever: after STALL the lane drains with no other event."""
        total = Pacer.INITIAL_WINDOW * 3
        self.lane.write(BULK[:total])
        first = self.sent_bytes()
        self.assertLess(len(first), total)  # the window stopped it
        self.clock.advance(Pacer.STALL / 2)
        self.assertEqual(self.sent(), 0)  # not before the bound
        self.clock.advance(Pacer.STALL / 2)
        assert_same_bytes(self, first + self.sent_bytes(), BULK[:total])
        self.assertEqual(self.lane.queued, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timer_is_rearmed_after_a_late_pong(self) -> None:
        """A pong that opens the window only briefly leaves a new timer behind when it shuts again."""
        self.pacer.window = Pacer.MIN_WINDOW
        self.lane.write(b"B" * 200_000)
        self.wire.messages()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.1)
        self.scheduler.pong(self.pings[0])  # acks little; the window shuts again at once
        self.pacer.window = Pacer.MIN_WINDOW
        self.scheduler.resumeProducing()
        self.assertGreater(self.lane.queued, 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(Pacer.STALL)
        self.assertEqual(self.lane.queued, 0)

    def test_close_cancels_the_timer(self) -> None:
        """The session's end leaves no timer on the reactor."""
        self.lane.write(b"B" * (Pacer.INITIAL_WINDOW * 2))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.scheduler.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_paused_reading_opens_the_window_at_once(self) -> None:
        """
        While inbound flow control does not read the WebSocket no pong can
        come: the pacer steps aside at once, and paces again on resume.
        """
        self.lane.write(b"B" * (Pacer.INITIAL_WINDOW * 2))
        self.wire.messages()
        self.assertGreater(self.lane.queued, 0)
        self.scheduler.reading_paused(True)
        self.assertEqual(self.lane.queued, 0)
        self.scheduler.reading_paused(False)
        self.lane.write(b"B" * (Pacer.INITIAL_WINDOW * 2))
        self.assertGreater(self.lane.queued, 0)
