"""
L{aws_localproxy.proxy.stdio_exit}: a ``--stdio`` proxy ends on the
outbound scheduler's event that its last bytes were written, not by polling,
within its deadline; on a MemoryReactorClock with a real scheduler.
"""

from __future__ import annotations

from typing import List, Optional

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.local.stdio import StdioEnd
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.proxy.stdio_exit import STDIO_FLUSH_TIMEOUT, end_after_stdio


class RecordingLink:
    """
    The connector as the end sees it (how it was ended), and the session's
    scheduler the end is handed.
    """

    def __init__(self, scheduler: Optional[OutboundScheduler]) -> None:
        self.scheduler = scheduler
        #: For each stop: how many records the WebSocket had been handed by then.
        self.stops: List[int] = []
        self.failures: List[BaseException] = []
        self.sent: List[bytes] = []

    def send(self, record: bytes) -> None:
        self.sent.append(record)

    def stop(self) -> None:
        self.stops.append(len(self.sent))

    def fail(self, error: BaseException) -> None:
        self.failures.append(error)


class StdioExitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.link = RecordingLink(None)
        self.scheduler = OutboundScheduler(self.link.send, clock=self.clock)
        self.link.scheduler = self.scheduler

    def test_waits_for_the_last_byte_without_polling(self) -> None:
        """
        The stop follows the last record's write, whenever the WebSocket
        takes it; meanwhile the only timer is the deadline, which nothing
        re-arms (a 10 ms poll would show as a new delayed call).
        """
        self.scheduler.pauseProducing()  # the WebSocket's buffer is full
        self.scheduler.control(b"last bytes")
        self.scheduler.control(b"the reset")
        end_after_stdio(StdioEnd(session_lost=False), self.link.scheduler, self.link, self.clock)
        self.assertEqual(self.link.stops, [])
        (deadline,) = self.clock.getDelayedCalls()
        self.assertEqual(deadline.getTime(), STDIO_FLUSH_TIMEOUT)
        for _ in range(50):
            self.clock.advance(0.01)
            self.assertEqual(self.clock.getDelayedCalls(), [deadline])
        self.assertEqual(self.link.stops, [])
        self.scheduler.resumeProducing()
        self.assertEqual(self.link.sent, [b"last bytes", b"the reset"])
        self.assertEqual(self.link.stops, [2])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.link.failures, [])

    def test_deadline(self) -> None:
        """A WebSocket that never takes the last bytes is closed anyway at the deadline."""
        self.scheduler.pauseProducing()
        self.scheduler.control(b"never written")
        with capturedLogs() as events:
            end_after_stdio(
                StdioEnd(session_lost=False), self.link.scheduler, self.link, self.clock
            )
            self.clock.advance(STDIO_FLUSH_TIMEOUT - 0.001)
            self.assertEqual(self.link.stops, [])
            self.clock.advance(0.001)
        self.assertEqual(self.link.stops, [0])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(
            [(event["log_level"], formatEvent(event)) for event in events],
            [
                (LogLevel.info, "The --stdio connection ended: stopping"),
                (LogLevel.warn, "Stopping with data for the tunnel still unsent"),
            ],
        )

    def test_nothing_queued(self) -> None:
        end_after_stdio(StdioEnd(session_lost=False), self.link.scheduler, self.link, self.clock)
        self.assertEqual(self.link.stops, [0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_session(self) -> None:
        self.link.scheduler = None
        end_after_stdio(StdioEnd(session_lost=False), self.link.scheduler, self.link, self.clock)
        self.assertEqual(self.link.stops, [0])

    def test_session_ends_while_flushing(self) -> None:
        """The session's end (nothing more can be sent) stops the proxy at once."""
        self.scheduler.pauseProducing()
        self.scheduler.control(b"lost")
        end_after_stdio(StdioEnd(session_lost=False), self.link.scheduler, self.link, self.clock)
        self.scheduler.close()
        self.assertEqual(self.link.stops, [0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refused_or_session_lost(self) -> None:
        """A refused connection, or one whose session went first, ends the proxy with an error."""
        end_after_stdio(
            StdioEnd(session_lost=False, refused=True), self.link.scheduler, self.link, self.clock
        )
        end_after_stdio(StdioEnd(session_lost=True), self.link.scheduler, self.link, self.clock)
        self.assertEqual(
            [str(error) for error in self.link.failures],
            [
                "The tunnel refused the --stdio connection",
                "The tunnel's session ended while the --stdio connection was open",
            ],
        )
        for error in self.link.failures:
            self.assertIsInstance(error, FatalTunnelError)
        self.assertEqual(self.link.stops, [])
