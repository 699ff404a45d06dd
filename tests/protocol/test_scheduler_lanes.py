"""
L{aws_localproxy.protocol.scheduler}: a lane's records, its turns, and its end.

A local socket's reads arrive in pieces of any size; the scheduler cuts
them into records of at most one quantum, each full until the backlog runs
out, with every byte once and in order.  A connection with a backlog of
many reads takes one quantum per turn, like one with a single big read.
After the peer resets a connection (C{abort}) nothing more of it is sent;
a stream's records that are withdrawn go, every one of them.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, List, Optional

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.wire import DataFields, Message, control_message, decode_all
from tests.fakes.local import Reader
from tests.support.payloads import assert_same_bytes, unique_payload

QUANTUM = 1000


def reset(connection_id: int) -> bytes:
    return control_message(
        Message.CONNECTION_RESET, stream_id=1, service_id="s", connection_id=connection_id
    )


class LaneTestCase(SynchronousTestCase):
    #: Each test cuts a few kilobytes in well under a millisecond: one still
    #: running after this long is in a loop that never ends (a record that
    #: never fills), and fails instead of hanging the run.
    DEADLINE = 2.0

    def setUp(self) -> None:
        if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGALRM, self._overdue)
            self.addCleanup(signal.signal, signal.SIGALRM, previous)
            signal.setitimer(signal.ITIMER_REAL, self.DEADLINE)
            self.addCleanup(signal.setitimer, signal.ITIMER_REAL, 0)
        self.frames: List[bytes] = []
        self.scheduler = OutboundScheduler(self.frames.append, max_payload=QUANTUM)

    def _overdue(self, signum: int, frame: Optional[FrameType]) -> None:
        raise AssertionError("still running after %s s: a loop that does not end" % self.DEADLINE)

    def lane(self, connection_id: int, tag: Any = None) -> Any:
        return self.scheduler.open_lane(DataFields("s", 1, connection_id), Reader(), tag=tag)

    def messages(self) -> List[Message]:
        out = [m for frame in self.frames for m in decode_all(frame)]
        self.frames.clear()
        return out


class RecordCuttingTests(LaneTestCase):
    def assert_cut(self, reads: List[int]) -> None:
        """C{reads} (sizes) queued behind a full WebSocket come out as full quanta, in order."""
        lane = self.lane(1)
        self.scheduler.pauseProducing()
        data = unique_payload(sum(reads), seed=sum(reads))
        offset = 0
        for size in reads:
            lane.write(data[offset : offset + size])
            offset += size
        self.scheduler.resumeProducing()
        sizes = [len(m.payload) for m in self.messages()]
        full, rest = divmod(len(data), QUANTUM)
        self.assertEqual(sizes, [QUANTUM] * full + ([rest] if rest else []), reads)
        self.assertEqual(lane.queued, 0)

    def test_small_reads_joined_into_one_record(self) -> None:
        self.assert_cut([300, 200, 1, 99])
        self.assert_cut([400, 600])  # exactly one quantum

    def test_reads_joined_and_cut_across_quanta(self) -> None:
        """Reads that straddle record edges, exactly fill one, or are cut twice."""
        self.assert_cut([300, 700, 200, 1500, 1, 999, 2500, 10, 20, 30])
        self.assert_cut([999, 1, 1000, 1001, 998, 3])
        self.assert_cut([250] * 9)

    def test_every_byte_once_in_order(self) -> None:
        lane = self.lane(1)
        self.scheduler.pauseProducing()
        data = unique_payload(20_000, seed=60)
        sizes = [1, 7, 300, 999, 1000, 1001, 2500, 13, 4000, 64]
        offset = 0
        while offset < len(data):
            for size in sizes:
                lane.write(data[offset : offset + size])
                offset += size
        self.scheduler.resumeProducing()
        got = b"".join(m.payload for m in self.messages())
        assert_same_bytes(self, got, data)


class TurnTests(LaneTestCase):
    def test_a_backlog_of_many_reads_takes_one_quantum_per_turn(self) -> None:
        """
        A bulk connection whose backlog arrived in several reads still takes
        one quantum per turn: the echo beside it waits behind one quantum, not
        one per read.
        """
        bulk, echo = self.lane(1), self.lane(2)
        self.scheduler.pauseProducing()
        for seed in range(4):
            bulk.write(unique_payload(QUANTUM, seed=70 + seed))
        echo.write(b"echo")
        self.scheduler.resumeProducing()
        self.assertEqual([m.connectionId for m in self.messages()], [1, 2, 1, 1, 1])

    def test_a_lane_written_while_it_waits_keeps_one_place(self) -> None:
        """
        A lane that has had a turn and waits for the next (the WebSocket's
        buffer filled) is written to again: it keeps its one place in the
        ring, so the other lane still gets every other turn.
        """
        frames: List[bytes] = []

        def write(frame: bytes) -> None:  # every frame fills the transport's buffer
            frames.append(frame)
            scheduler.pauseProducing()

        scheduler = OutboundScheduler(write, max_payload=QUANTUM)
        one = scheduler.open_lane(DataFields("s", 1, 1), Reader())
        two = scheduler.open_lane(DataFields("s", 1, 2), Reader())
        scheduler.pauseProducing()
        one.write(unique_payload(3 * QUANTUM, seed=80))
        two.write(unique_payload(3 * QUANTUM, seed=81))
        scheduler.resumeProducing()  # one's first quantum; one waits behind two
        one.write(unique_payload(QUANTUM, seed=82))
        while not scheduler.idle:
            scheduler.resumeProducing()
        order = [m.connectionId for frame in frames for m in decode_all(frame)]
        self.assertEqual(order, [1, 2, 1, 2, 1, 2, 1])


class EndTests(LaneTestCase):
    def test_nothing_of_an_aborted_connection_after_its_reset(self) -> None:
        """Bytes its socket still delivers after the peer reset it, and a later finish, are dropped."""
        lane = self.lane(1)
        self.scheduler.pauseProducing()
        lane.write(b"queued before")
        lane.abort(reset(1))
        lane.write(b"read after the reset")
        lane.finish(reset(1))
        self.scheduler.resumeProducing()
        self.assertEqual([m.type for m in self.messages()], [Message.CONNECTION_RESET])
        lane.write(b"later still")
        self.assertEqual(self.messages(), [])

    def test_an_aborted_connections_reset_is_withdrawn_with_its_stream(self) -> None:
        """A restarted source's stream: the old connection's reset is not sent after the new start."""
        lane = self.lane(1, tag=("s", 1))
        self.scheduler.pauseProducing()
        lane.write(b"old")
        lane.abort(reset(1))
        self.scheduler.withdraw(("s", 1))
        self.scheduler.resumeProducing()
        self.assertEqual(self.messages(), [])

    def test_withdrawing_a_bare_reset_makes_the_scheduler_idle(self) -> None:
        """A closing lane with only its reset left, withdrawn: the stopping proxy hears idle at once."""
        lane = self.lane(1, tag=("s", 1))
        self.scheduler.pauseProducing()
        lane.finish(reset(1))
        idle = self.scheduler.when_idle()
        self.assertNoResult(idle)
        self.scheduler.withdraw(("s", 1))
        self.successResultOf(idle)
        self.scheduler.resumeProducing()
        self.assertEqual(self.messages(), [])

    def test_other_connections_go_on_after_a_drain(self) -> None:
        """
        A stream reset drains every lane in front of it; a connection of
        another stream that stays open keeps sending afterwards.
        """
        ending, other = self.lane(1), self.lane(2)
        self.scheduler.pauseProducing()
        ending.write(unique_payload(1500, seed=90))
        other.write(unique_payload(500, seed=91))
        self.scheduler.drain([ending])
        self.scheduler.control(control_message(Message.STREAM_RESET, stream_id=1, service_id="s"))
        self.scheduler.resumeProducing()
        self.assertEqual(self.messages()[-1].type, Message.STREAM_RESET)
        later = unique_payload(2500, seed=92)
        other.write(later)
        got = b"".join(m.payload for m in self.messages() if m.connectionId == 2)
        assert_same_bytes(self, got, later)
        self.assertTrue(self.scheduler.idle)
