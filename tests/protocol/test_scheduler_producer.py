"""
L{aws_localproxy.protocol.scheduler}: the scheduler as the WebSocket
transport's producer, and what it reports.

The transport pauses its producer when its buffer is full and resumes it
when the buffer drains; a producer that writes on after the pause fills the
very buffer the pause protects, and the unsent bytes in front of the service
are what makes an interactive byte wait.  Here the transport is as strict as
it gets: every write fills it, so each resume lets exactly one frame out.
That also makes every step of a lane's back-pressure, and of C{when_idle},
visible one record at a time.
"""

from __future__ import annotations

from typing import List, Optional

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.service_state import ServiceCounters
from aws_localproxy.protocol.wire import DataFields, Message, control_message, decode_all
from tests.fakes.local import Reader
from tests.support.payloads import assert_same_bytes, unique_payload

PAYLOAD = 1000


def reset(connection_id: int) -> bytes:
    return control_message(
        Message.CONNECTION_RESET, stream_id=1, service_id="s", connection_id=connection_id
    )


class FullAfterEachWrite:
    """
    The WebSocket's transport with a buffer that every frame fills: it
    pauses its producer at each write, and the test drains it (resumes the
    producer) one frame at a time.
    """

    def __init__(self) -> None:
        self.frames: List[bytes] = []
        self.producer: Optional[OutboundScheduler] = None
        self.written_while_paused = 0
        self.paused = False

    def write(self, frame: bytes) -> None:
        if self.paused:
            self.written_while_paused += 1
        self.frames.append(frame)
        self.paused = True
        assert self.producer is not None
        self.producer.pauseProducing()

    def drain(self) -> List[Message]:
        """The buffer empties: resume the producer; the messages written since."""
        assert self.producer is not None
        before = len(self.frames)
        self.paused = False
        self.producer.resumeProducing()
        return [m for frame in self.frames[before:] for m in decode_all(frame)]


class StrictTransportTests(SynchronousTestCase):
    def make(self, **kwargs: int) -> tuple[FullAfterEachWrite, OutboundScheduler]:
        transport = FullAfterEachWrite()
        scheduler = OutboundScheduler(transport.write, max_payload=PAYLOAD, **kwargs)
        transport.producer = scheduler
        return transport, scheduler

    def test_nothing_is_written_after_a_pause(self) -> None:
        """Each resume lets exactly one record out, in order, until the lane is empty."""
        transport = FullAfterEachWrite()
        scheduler = OutboundScheduler(transport.write, max_payload=PAYLOAD)  # default framing
        transport.producer = scheduler
        lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
        data = unique_payload(5 * PAYLOAD, seed=3)
        scheduler.pauseProducing()
        lane.write(data)
        received = []
        for _ in range(5):
            (message,) = transport.drain()
            received.append(message.payload)
        self.assertEqual(transport.drain(), [])
        self.assertEqual(transport.written_while_paused, 0)
        assert_same_bytes(self, b"".join(received), data)

    def test_idle_only_after_the_last_frame(self) -> None:
        """C{when_idle} (a stopping proxy's cue to close) waits for every frame behind a full buffer."""
        transport, scheduler = self.make()
        lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
        scheduler.pauseProducing()
        lane.write(unique_payload(3 * PAYLOAD, seed=4))
        lane.finish(reset(1))
        idle = scheduler.when_idle()
        for _ in range(3):
            transport.drain()
            self.assertNoResult(idle)
        (last,) = transport.drain()
        self.assertEqual(last.type, Message.CONNECTION_RESET)
        self.successResultOf(idle)

    def test_reading_resumes_when_half_the_lane_is_sent(self) -> None:
        """
        A lane that reached its limit pauses its socket, and resumes it once
        half the limit (no more) is left: not after the first record, not
        later than needed.
        """
        reader = Reader()
        transport, scheduler = self.make(lane_limit=4 * PAYLOAD)
        lane = scheduler.open_lane(DataFields("s", 1, 1), reader)
        scheduler.pauseProducing()
        lane.write(unique_payload(4 * PAYLOAD, seed=5))
        self.assertTrue(reader.paused)
        transport.drain()  # 3,000 bytes left
        self.assertTrue(reader.paused)
        transport.drain()  # 2,000 bytes left: half the limit
        self.assertFalse(reader.paused)

    def test_the_limit_pauses_again_after_a_resume(self) -> None:
        """The bound holds for the lane's whole life, not only the first time it fills."""
        reader = Reader()
        transport, scheduler = self.make(lane_limit=4 * PAYLOAD)
        lane = scheduler.open_lane(DataFields("s", 1, 1), reader)
        scheduler.pauseProducing()
        lane.write(unique_payload(4 * PAYLOAD, seed=6))
        transport.drain()
        transport.drain()
        self.assertFalse(reader.paused)
        lane.write(unique_payload(2 * PAYLOAD, seed=7))  # 4,000 queued again
        self.assertTrue(reader.paused)
        self.assertEqual(reader.pauses, 2)

    def test_a_consumer_that_resumes_from_inside_write(self) -> None:
        """
        A transport that drains at once (pauses and resumes its producer
        from inside C{write}) gets every record once and in order, without
        the scheduler calling itself over again for each record.
        """
        frames: List[bytes] = []
        scheduler: Optional[OutboundScheduler] = None

        def write(frame: bytes) -> None:
            frames.append(frame)
            assert scheduler is not None
            scheduler.pauseProducing()
            scheduler.resumeProducing()

        scheduler = OutboundScheduler(write, max_payload=PAYLOAD)
        lanes = [scheduler.open_lane(DataFields("s", 1, n), Reader()) for n in (1, 2)]
        data = [unique_payload(500 * PAYLOAD, seed=8 + n) for n in (1, 2)]
        scheduler.pauseProducing()
        for lane, payload in zip(lanes, data, strict=True):
            lane.write(payload)
        scheduler.resumeProducing()  # deeper than the stack if each record recursed
        messages = [m for frame in frames for m in decode_all(frame)]
        self.assertEqual([m.connectionId for m in messages[:4]], [1, 2, 1, 2])
        for n, payload in zip((1, 2), data, strict=True):
            got = b"".join(m.payload for m in messages if m.connectionId == n)
            assert_same_bytes(self, got, payload)


class TotalsTests(SynchronousTestCase):
    """What the metrics read: the session's records and bytes, each service's counters."""

    def test_session_totals_are_what_was_written(self) -> None:
        for frame_limit in (0, 131076):
            frames: List[bytes] = []
            scheduler = OutboundScheduler(
                frames.append, max_payload=PAYLOAD, frame_limit=frame_limit
            )
            lane = scheduler.open_lane(DataFields("s", 1, 1), Reader())
            scheduler.pauseProducing()
            lane.write(unique_payload(2500, seed=10))
            scheduler.control(reset(2))
            scheduler.resumeProducing()
            lane.write(unique_payload(10, seed=11))
            lane.finish(reset(1))
            records = [m for frame in frames for m in decode_all(frame)]
            self.assertEqual(len(records), 6)
            self.assertEqual(scheduler.records_sent, 6)
            self.assertEqual(scheduler.bytes_sent, sum(len(frame) for frame in frames))

    def test_service_counters_count_data_only(self) -> None:
        """
        A service's counters: payload bytes its connections read and the
        DATA records made of them (resets and other control records are
        not data), across several connections of the service.
        """
        counters = ServiceCounters("s")
        frames: List[bytes] = []
        scheduler = OutboundScheduler(frames.append, max_payload=PAYLOAD)
        one = scheduler.open_lane(DataFields("s", 1, 1), Reader(), counters)
        two = scheduler.open_lane(DataFields("s", 1, 2), Reader(), counters)
        scheduler.pauseProducing()
        one.write(unique_payload(1500, seed=12))
        one.write(unique_payload(700, seed=13))
        two.write(unique_payload(300, seed=14))
        scheduler.drain([two])
        scheduler.resumeProducing()
        one.finish(reset(1))
        data = [m for frame in frames for m in decode_all(frame) if m.type == Message.DATA]
        self.assertEqual(counters.bytes_sent, 2500)
        self.assertEqual(counters.messages_sent, len(data))
        self.assertEqual(counters.messages_sent, 4)
