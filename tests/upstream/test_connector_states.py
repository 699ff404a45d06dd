"""
The connector's state machine, transition by transition, on a fake clock.

Each test puts a L{TunnelConnector} in one state (see the table in
L{aws_localproxy.upstream.connector}) with scripted attempts and a
scripted WebSocket, feeds it one input, and checks what it did: the
attempts it made, the WebSocket's close frame or drop, its timers, its log
lines and the exit code.  The two deciding states (attempt_failed,
session_lost) last only as long as the transition into them; what may
arrive meanwhile is fed from a log observer that fires on their first line.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, List

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.errors import FatalTunnelError, RecoverableTunnelError
from aws_localproxy.protocol.scheduler import OutboundSettings
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.protocol.wire import Message, control_message
from aws_localproxy.upstream.connector import RetryPolicy, TunnelConnector
from aws_localproxy.upstream.websocket import CloseOutcome
from tests.fakes.connector import scripted_connector
from tests.fakes.endpoints import FakeEndpoint
from tests.fakes.websocket import FakeProtocol, closed

RETRY_DELAY = 2.0
SERVICE_IDS = control_message(Message.SERVICE_IDS, available_service_ids=["ssh"])
#: A record the tunnel cannot parse: the session is broken (recoverable).
MALFORMED = b"\x00\x03\xff\xff\xff"
STOPPING = (1000, "local proxy stopping")


class QuietLocal:
    """A source's local side that listens nowhere."""

    def services_ready(self, endpoints: Any) -> None:
        pass

    def connect(self, connection: Any) -> Any:  # pragma: no cover - a source does not connect
        raise AssertionError("a source does not connect")


class Lifecycle(SynchronousTestCase):
    """Builds a connector and walks it into each state."""

    def make(
        self, retry_count: int = -1, reconnect: bool = True, at: float = 0.0
    ) -> TunnelConnector:
        self.clock = MemoryReactorClock()
        self.clock.advance(at)
        self.endpoint = FakeEndpoint()
        self.tunnel = Tunnel(
            Mode.SOURCE,
            QuietLocal(),
            service_map={"ssh": "0"},
            outbound=OutboundSettings(clock=self.clock, pacing=False),
        )
        self.ready: List[Tunnel] = []
        self.closes: List[CloseOutcome] = []
        self.connector = scripted_connector(
            self.clock,
            self.endpoint,
            self.tunnel,
            RetryPolicy(retry_count, RETRY_DELAY, reconnect_on_data_error=reconnect),
            on_ready=self.ready.append,
            on_closed=self.closes.append,
        )
        self.codes: List[int] = []
        self.connector.finished.addCallback(self.codes.append)
        return self.connector

    # -- walking into a state -----------------------------------------------------------

    def connecting(self, **kwargs: Any) -> Deferred[Any]:
        """An attempt under way: returns it (the test fires it; L{cancelled} says if it was)."""
        self.make(**kwargs)
        self.cancelled: List[bool] = []
        attempt: Deferred[Any] = Deferred(lambda _: self.cancelled.append(True))
        self.endpoint.results = [attempt]
        self.connector.start()
        return attempt

    def handshaking(self, **kwargs: Any) -> FakeProtocol:
        self.make(**kwargs)
        protocol = FakeProtocol()
        self.endpoint.results = [protocol]
        self.connector.start()
        return protocol

    def waiting_to_retry(self, **kwargs: Any) -> None:
        self.make(**kwargs)
        self.connector.start()  # refused: no scripted result
        self.assertEqual(self.endpoint.attempts, 1)

    def session_up(self, **kwargs: Any) -> FakeProtocol:
        protocol = self.handshaking(**kwargs)
        self.connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        protocol.state = FakeProtocol.STATE_OPEN
        protocol.deliver(SERVICE_IDS)
        return protocol

    def broken(self, **kwargs: Any) -> FakeProtocol:
        protocol = self.session_up(**kwargs)
        protocol.deliver(MALFORMED)
        self.assertEqual(protocol.dropped, [True])
        protocol.state = FakeProtocol.STATE_CLOSED
        return protocol

    def failing(self, **kwargs: Any) -> FakeProtocol:
        protocol = self.session_up(**kwargs)
        self.connector.fail(FatalTunnelError("cannot listen"))
        self.assertEqual(protocol.dropped, [True])
        protocol.state = FakeProtocol.STATE_CLOSED
        return protocol

    def flushing(self, **kwargs: Any) -> FakeProtocol:
        """Stopping with resets: one connection's bytes wait behind a full WebSocket."""
        protocol = self.session_up(**kwargs)
        scheduler = self.tunnel.scheduler
        assert scheduler is not None
        connection = self.tunnel.local_connection_accepted("ssh", _Local())
        assert connection is not None
        scheduler.pauseProducing()
        connection.data_received(b"x")
        self.connector.stop(3.0)
        self.assertEqual(protocol.closed_with, [])
        return protocol

    def closing(self, **kwargs: Any) -> FakeProtocol:
        protocol = self.session_up(**kwargs)
        self.connector.stop()
        self.assertEqual(protocol.closed_with, [STOPPING])
        protocol.state = 2  # Autobahn's CLOSING
        return protocol

    def done(self) -> None:
        self.make()
        self.connector.stop()
        self.assertEqual(self.codes, [0])

    # -- what came out ---------------------------------------------------------------------

    def lose(self, protocol: FakeProtocol, **kwargs: Any) -> None:
        """The WebSocket goes away (an unclean drop of an open one unless C{kwargs} say otherwise)."""
        protocol.state = FakeProtocol.STATE_CLOSED
        self.connector.session_closed(protocol, closed(**kwargs))  # type: ignore[arg-type]

    def assertTimers(self, count: int) -> None:
        self.assertEqual(len(self.clock.getDelayedCalls()), count)


@contextmanager
def logged() -> Iterator[List[tuple[LogLevel, str]]]:
    captured: List[tuple[LogLevel, str]] = []
    with capturedLogs() as events:
        yield captured
        captured.extend((event["log_level"], formatEvent(event)) for event in events)


@contextmanager
def when_logged(text: str, action: Callable[[], object]) -> Iterator[None]:
    """Run C{action} (once) as soon as a log line starting with C{text} is emitted."""
    fired: List[bool] = []

    def observer(event: Any) -> None:
        if not fired and formatEvent(event).startswith(text):
            fired.append(True)
            action()

    globalLogPublisher.addObserver(observer)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observer)


class _Local:
    """A local connection the tunnel writes to and closes."""

    closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class IdleTests(Lifecycle):
    def test_built(self) -> None:
        """
        The metrics' figures of a proxy not connected yet: no WebSocket, no
        session, its state since the connector was built.
        """
        self.make(at=7.5)
        self.assertEqual((self.connector.sessions, self.connector.state_changed_at), (0, 7.5))
        self.assertIsNone(self.connector.protocol)

    def test_start_connects(self) -> None:
        self.make()
        with logged() as lines:
            self.connector.start()
        self.assertEqual(self.endpoint.attempts, 1)
        self.assertIn(
            (
                LogLevel.info,
                "Attempting to establish web socket connection with endpoint "
                "wss://example.invalid:443",
            ),
            lines,
        )

    def test_stop(self) -> None:
        """Stopped before it started: exit 0, and a later start does nothing."""
        self.make()
        self.assertIs(self.connector.stop(), self.connector.finished)
        self.assertEqual(self.codes, [0])
        self.connector.start()
        self.assertEqual(self.endpoint.attempts, 0)

    def test_stop_after_resets(self) -> None:
        self.make()
        self.connector.stop(3.0)
        self.assertEqual(self.codes, [0])
        self.assertEqual(self.endpoint.attempts, 0)

    def test_fail(self) -> None:
        self.make()
        with logged() as lines:
            self.connector.fail(FatalTunnelError("bad configuration"))
        self.assertEqual(self.codes, [1])
        self.assertIn((LogLevel.critical, "bad configuration"), lines)


class ConnectingTests(Lifecycle):
    def test_dialed(self) -> None:
        """Connected: the WebSocket handshake runs; nothing is decided yet."""
        attempt = self.connecting()
        self.assertIsNone(self.connector.protocol)
        protocol = FakeProtocol()
        attempt.callback(protocol)
        self.assertIs(self.connector.protocol, protocol)
        self.assertEqual(self.codes, [])
        self.assertTimers(0)

    def test_dial_failed_retries_after_the_delay(self) -> None:
        attempt = self.connecting()
        with logged() as lines:
            attempt.errback(ConnectionRefusedError("refused"))
        self.assertIn((LogLevel.error, "Could not connect to proxy server: refused"), lines)
        (retry,) = self.clock.getDelayedCalls()
        self.assertEqual(retry.getTime(), RETRY_DELAY)
        self.clock.advance(RETRY_DELAY - 0.1)
        self.assertEqual(self.endpoint.attempts, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.endpoint.attempts, 2)
        self.assertEqual(self.codes, [])

    def test_dial_failed_for_the_last_time(self) -> None:
        attempt = self.connecting(retry_count=0)
        with logged() as lines:
            attempt.errback(ConnectionRefusedError("refused"))
        self.assertEqual(self.codes, [1])
        self.assertTimers(0)
        self.assertEqual(
            [text for level, text in lines if level >= LogLevel.error],
            [
                "Could not connect to proxy server: refused",
                "Could not connect to the tunneling service after 0 retries "
                "(websocket.connect_retry_count); giving up",
            ],
        )

    def test_stop_cancels_the_attempt(self) -> None:
        self.connecting()
        with logged() as lines:
            self.connector.stop()
        self.assertEqual(self.codes, [0])
        self.assertEqual(self.cancelled, [True])
        self.assertTimers(0)
        self.assertEqual([text for level, text in lines if level >= LogLevel.error], [])

    def test_stop_after_resets_cancels_the_attempt(self) -> None:
        self.connecting()
        self.connector.stop(3.0)
        self.assertEqual(self.codes, [0])
        self.assertEqual(self.cancelled, [True])

    def test_fail_exits_one(self) -> None:
        """
        A fatal error while an attempt is under way (a metrics port in use at
        start-up, a listener that cannot bind during a reconnect) exits 1;
        the attempt's cancellation must not turn it into a clean stop (it
        did: exit 0).
        """
        self.connecting()
        with logged() as lines:
            self.connector.fail(FatalTunnelError("Cannot serve metrics"))
        self.assertEqual(lines, [(LogLevel.critical, "Cannot serve metrics")])
        self.assertEqual(self.codes, [1])
        self.assertEqual(self.cancelled, [True])
        self.assertTimers(0)


class HandshakingTests(Lifecycle):
    def test_session_opened(self) -> None:
        """The session starts: the tunnel takes the WebSocket over, its count goes up."""
        protocol = self.handshaking()
        self.clock.advance(5)
        self.connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        self.assertTrue(self.tunnel.session_up)
        self.assertEqual((self.connector.sessions, self.connector.state_changed_at), (1, 5))
        self.assertIsNotNone(protocol.receive)
        protocol.deliver(SERVICE_IDS)
        self.assertEqual(self.ready, [self.tunnel])

    def test_handshake_failed_retries(self) -> None:
        protocol = self.handshaking()
        with logged() as lines:
            self.lose(protocol, was_open=False, http_status=503, http_status_line="HTTP/1.1 503 X")
        self.assertIn(
            (LogLevel.error, "Proxy server rejected web socket upgrade request: (HTTP/1.1 503 X)"),
            lines,
        )
        self.clock.advance(RETRY_DELAY)
        self.assertEqual(self.endpoint.attempts, 2)
        self.assertEqual(self.closes, [])  # not an open session's end

    def test_handshake_failed_lines(self) -> None:
        """A transport error, or no reason at all, each has its line."""
        protocol = self.handshaking()
        with logged() as lines:
            self.lose(protocol, was_open=False, transport_error="certificate verify failed")
        self.assertIn(
            (
                LogLevel.error,
                "Could not establish the WebSocket connection: certificate verify failed",
            ),
            lines,
        )
        protocol = FakeProtocol()
        self.endpoint.results = [protocol]
        self.clock.advance(RETRY_DELAY)
        with logged() as lines:
            self.lose(protocol, was_open=False, reason="timed out")
        self.assertIn(
            (LogLevel.error, "Could not establish the WebSocket connection: timed out"), lines
        )

    def test_which_refusals_are_final(self) -> None:
        """
        Every 5xx (the service is unwell) is retried, and so is a 101
        without a subprotocol; any other status, 4xx or not, ends the proxy.
        """
        for status, final in [(101, False), (499, True), (500, False), (599, False), (600, True)]:
            protocol = self.handshaking()
            self.lose(protocol, was_open=False, http_status=status, http_status_line=f"{status} X")
            self.clock.advance(RETRY_DELAY)
            self.assertEqual(
                (self.codes, self.endpoint.attempts), ([1], 1) if final else ([], 2), status
            )

    def test_v1_session_is_ready_at_once(self) -> None:
        """
        The subprotocol the service chose reaches the tunnel: a V1 service
        sends no SERVICE_IDS, so a V1 session is ready as it opens.
        """
        protocol = self.handshaking()
        self.connector.session_opened(protocol, SUBPROTOCOL_V1)  # type: ignore[arg-type]
        self.assertEqual(self.ready, [self.tunnel])

    def test_handshake_failed_for_the_last_time(self) -> None:
        protocol = self.handshaking(retry_count=0)
        self.lose(protocol, was_open=False, transport_error="reset")
        self.assertEqual(self.codes, [1])

    def test_upgrade_refused(self) -> None:
        protocol = self.handshaking()
        with logged() as lines:
            self.lose(protocol, was_open=False, http_status=403, http_status_line="HTTP/1.1 403 No")
        self.assertEqual(self.codes, [1])
        self.assertTimers(0)
        self.assertEqual(
            [text for level, text in lines if level >= LogLevel.error],
            ["Proxy server rejected web socket upgrade request: (HTTP/1.1 403 No)"],
        )

    def test_stop_drops_the_attempt(self) -> None:
        protocol = self.handshaking()
        self.connector.stop()
        self.assertEqual((protocol.dropped, protocol.closed_with), ([True], []))
        self.assertEqual(self.codes, [])
        self.lose(protocol, was_open=False)
        self.assertEqual(self.codes, [0])
        self.assertTimers(0)

    def test_stop_after_resets_drops_the_attempt(self) -> None:
        protocol = self.handshaking()
        self.connector.stop(3.0)
        self.assertEqual(protocol.dropped, [True])
        self.lose(protocol, was_open=False, http_status=403, http_status_line="HTTP/1.1 403 No")
        self.assertEqual(self.codes, [0])

    def test_fail(self) -> None:
        """A fatal error drops the attempt; its end exits 1 without a handshake line."""
        protocol = self.handshaking()
        self.connector.fail(FatalTunnelError("cannot listen"))
        self.assertEqual(protocol.dropped, [True])
        with logged() as lines:
            self.lose(protocol, was_open=False, transport_error="aborted")
        self.assertEqual(self.codes, [1])
        self.assertEqual(lines, [])


class AttemptFailedTests(Lifecycle):
    """What arrives while a failed attempt is being decided on."""

    def test_stop(self) -> None:
        attempt = self.connecting()
        with when_logged("Could not connect to proxy server", self.connector.stop):
            attempt.errback(ConnectionRefusedError("refused"))
        self.assertEqual(self.codes, [0])
        self.assertTimers(0)

    def test_stop_after_resets(self) -> None:
        attempt = self.connecting()
        with when_logged("Could not connect to proxy server", lambda: self.connector.stop(3.0)):
            attempt.errback(ConnectionRefusedError("refused"))
        self.assertEqual(self.codes, [0])
        self.assertTimers(0)

    def test_fail(self) -> None:
        attempt = self.connecting(retry_count=0)
        with when_logged(
            "Could not connect to proxy server",
            lambda: self.connector.fail(FatalTunnelError("boom")),
        ):
            attempt.errback(ConnectionRefusedError("refused"))
        self.assertEqual(self.codes, [1])
        self.assertTimers(0)


class WaitingToRetryTests(Lifecycle):
    def test_retry_due(self) -> None:
        self.waiting_to_retry()
        self.clock.advance(RETRY_DELAY)
        self.assertEqual(self.endpoint.attempts, 2)

    def test_retries_then_gives_up(self) -> None:
        """N retries after the first attempt, then exit 1."""
        self.waiting_to_retry(retry_count=2)
        self.clock.advance(RETRY_DELAY)
        self.assertEqual(self.codes, [])
        self.clock.advance(RETRY_DELAY)
        self.assertEqual((self.endpoint.attempts, self.codes), (3, [1]))
        self.clock.advance(10 * RETRY_DELAY)
        self.assertEqual(self.endpoint.attempts, 3)

    def test_stop(self) -> None:
        self.waiting_to_retry()
        self.connector.stop()
        self.assertEqual(self.codes, [0])
        self.assertTimers(0)

    def test_stop_after_resets(self) -> None:
        self.waiting_to_retry()
        self.connector.stop(3.0)
        self.assertEqual(self.codes, [0])
        self.assertTimers(0)

    def test_fail(self) -> None:
        self.waiting_to_retry()
        self.connector.fail(FatalTunnelError("cannot listen"))
        self.assertEqual(self.codes, [1])
        self.assertTimers(0)


class SessionUpTests(Lifecycle):
    def test_session_failed(self) -> None:
        """The tunnel cannot take a message: error line, the WebSocket dropped, no exit yet."""
        protocol = self.session_up()
        with logged() as lines:
            protocol.deliver(MALFORMED)
        self.assertEqual(protocol.dropped, [True])
        self.assertEqual(self.codes, [])
        self.assertEqual(len([1 for level, _ in lines if level == LogLevel.error]), 1)

    def test_fatal_session_error(self) -> None:
        """SERVICE_IDS that cannot work: critical line, dropped, exit 1 when it is gone."""
        protocol = self.handshaking()
        self.tunnel._configured = {"a": "1", "b": "2"}
        self.connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        with logged() as lines:
            protocol.deliver(control_message(Message.SERVICE_IDS, available_service_ids=["c"]))
        self.assertEqual(protocol.dropped, [True])
        self.assertTrue([text for level, text in lines if level == LogLevel.critical])
        self.lose(protocol)
        self.assertEqual((self.codes, self.endpoint.attempts), ([1], 1))

    def test_fatal_report_is_logged_as_it_came(self) -> None:
        """The WebSocket reports a fatal error: its words are the critical line, exit 1."""
        protocol = self.session_up()
        with logged() as lines:
            self.connector.session_failed(
                protocol,  # type: ignore[arg-type]
                FatalTunnelError("Service id ssh is not in the configuration"),
            )
        self.assertEqual(
            (lines, protocol.dropped),
            ([(LogLevel.critical, "Service id ssh is not in the configuration")], [True]),
        )
        self.lose(protocol)
        self.assertEqual(self.codes, [1])

    def test_fail(self) -> None:
        protocol = self.session_up()
        self.connector.fail(FatalTunnelError("cannot listen"))
        self.assertEqual(protocol.dropped, [True])
        self.lose(protocol)
        self.assertEqual(self.codes, [1])
        self.assertEqual(len(self.closes), 1)

    def test_service_closed(self) -> None:
        protocol = self.session_up()
        self.clock.advance(12.0)
        outcome = closed(was_clean=True, code=1000, reason="expired", closed_by_service=True)
        with logged() as lines:
            protocol.state = FakeProtocol.STATE_CLOSED
            self.connector.session_closed(protocol, outcome)  # type: ignore[arg-type]
        self.assertEqual(self.codes, [0])
        self.assertIn(
            (LogLevel.info, "Web socket close received. Code: 1000; Reason: expired"), lines
        )
        self.assertFalse(self.tunnel.session_up)
        self.assertEqual(self.closes, [outcome])
        self.assertEqual(self.connector.state_changed_at, 12.0)

    def test_closed_hook_failure(self) -> None:
        """
        An application's hook that raises as the session ends is logged; the
        connector goes on with its rules (here: reconnect).
        """
        protocol = self.session_up()

        def hook(outcome: CloseOutcome) -> None:
            raise ValueError("the application's bug")

        self.connector._on_closed = hook
        with logged() as lines:
            self.lose(protocol)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(lines[0][:1], (LogLevel.critical,))
        self.assertEqual(lines[0][1].splitlines()[0], "The session-closed hook failed")
        self.assertEqual((self.endpoint.attempts, self.codes), (2, []))

    def test_session_lost_reconnects_at_once(self) -> None:
        protocol = self.session_up()
        self.endpoint.results = [FakeProtocol()]
        with logged() as lines:
            self.lose(protocol, reason="ping timeout")
        self.assertEqual((self.endpoint.attempts, self.codes), (2, []))
        self.assertEqual(
            [text for level, text in lines if level >= LogLevel.info],
            [
                "Error from io_ctx::run(): ping timeout",
                "Failed web socket session ID: 1",
                "Attempting to establish web socket connection with endpoint "
                "wss://example.invalid:443",
            ],
        )

    def test_session_lost_without_reconnect(self) -> None:
        protocol = self.session_up(reconnect=False)
        with logged() as lines:
            self.lose(protocol)
        self.assertEqual((self.endpoint.attempts, self.codes), (1, [1]))
        self.assertIn((LogLevel.critical, "connection lost"), lines)

    def test_retry_count_starts_again_after_a_session(self) -> None:
        """The retries are per outage: a session that opened gives the next outage all of them."""
        self.waiting_to_retry(retry_count=1)  # the first of one retry used
        protocol = FakeProtocol()
        self.endpoint.results = [protocol]
        self.clock.advance(RETRY_DELAY)
        self.connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        self.lose(protocol)  # reconnects at once: refused
        self.assertEqual((self.endpoint.attempts, self.codes), (3, []))
        self.clock.advance(RETRY_DELAY)  # the one retry: refused too
        self.assertEqual((self.endpoint.attempts, self.codes), (4, [1]))

    def test_stop(self) -> None:
        protocol = self.session_up()
        self.connector.stop()
        self.assertEqual((protocol.closed_with, protocol.dropped), ([STOPPING], []))
        self.lose(protocol, was_clean=True, code=1000)
        self.assertEqual(self.codes, [0])

    def test_stop_after_resets(self) -> None:
        """Every connection is reset first; the close frame follows once that is written."""
        protocol = self.session_up()
        local = _Local()
        self.tunnel.local_connection_accepted("ssh", local)
        self.connector.stop(3.0)
        self.assertTrue(local.closed)
        self.assertEqual(protocol.closed_with, [STOPPING])

    def test_stop_without_resets_closes_at_once(self) -> None:
        """
        stop() without a flush time (the end of --stdio, after its own wait):
        the close frame goes now, behind nothing; no connection is reset.
        """
        protocol = self.session_up()
        local = _Local()
        connection = self.tunnel.local_connection_accepted("ssh", local)
        assert connection is not None and self.tunnel.scheduler is not None
        self.tunnel.scheduler.pauseProducing()  # the WebSocket's buffer is full
        connection.data_received(b"x")
        self.connector.stop()
        self.assertEqual((protocol.closed_with, protocol.dropped), ([STOPPING], []))
        self.assertFalse(local.closed)
        self.assertTimers(0)

    def test_stop_while_the_service_closes(self) -> None:
        """
        The service's close frame came (the WebSocket is closing, its end not
        yet reported): a stop, with or without flush time, drops the
        connection at once instead of resetting into a closing WebSocket.
        """
        for flush in (0.0, 3.0):
            protocol = self.session_up()
            local = _Local()
            self.tunnel.local_connection_accepted("ssh", local)
            protocol.sent.clear()  # the connection's start
            protocol.state = 2  # Autobahn's CLOSING
            self.connector.stop(flush)
            self.assertEqual((protocol.dropped, protocol.closed_with), ([True], []), flush)
            self.assertEqual(protocol.sent, [], flush)
            self.assertFalse(local.closed, flush)
            self.lose(protocol, was_clean=True, code=1000, closed_by_service=True)
            self.assertEqual(self.codes, [0], flush)

    def test_stop_from_the_closed_hook(self) -> None:
        """An application that stops the proxy as its session ends: no reconnect, exit 0."""
        protocol = self.session_up()
        self.connector._on_closed = lambda outcome: self.connector.stop()
        with logged() as lines:
            self.lose(protocol)
        self.assertEqual((self.endpoint.attempts, self.codes), (1, [0]))
        self.assertEqual([text for level, text in lines if level >= LogLevel.error], [])

    def test_stop_from_the_ready_hook(self) -> None:
        """An application that stops the proxy once it is connected: the close frame goes."""
        protocol = self.handshaking()
        self.connector._on_ready = lambda tunnel: self.connector.stop()
        self.connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        protocol.state = FakeProtocol.STATE_OPEN
        protocol.deliver(SERVICE_IDS)
        self.assertEqual(protocol.closed_with, [STOPPING])


class BrokenTests(Lifecycle):
    def test_lost_reconnects_with_the_error(self) -> None:
        protocol = self.broken()
        with logged() as lines:
            self.lose(protocol)
        self.assertEqual((self.endpoint.attempts, self.codes), (2, []))
        errors = [text for level, text in lines if level == LogLevel.error]
        self.assertTrue(errors[0].startswith("Error from io_ctx::run(): Could not parse"), errors)

    def test_service_closed_is_lost_too(self) -> None:
        """The service's close frame after the error does not make it a clean end."""
        protocol = self.broken()
        self.lose(protocol, was_clean=True, code=1000, closed_by_service=True)
        self.assertEqual((self.endpoint.attempts, self.codes), (2, []))

    def test_lost_without_reconnect(self) -> None:
        protocol = self.broken(reconnect=False)
        with logged() as lines:
            self.lose(protocol)
        self.assertEqual(self.codes, [1])
        self.assertTrue(
            [t for level, t in lines if level == LogLevel.critical][0].startswith("Could not parse")
        )

    def test_session_failed_again_is_ignored(self) -> None:
        protocol = self.broken()
        with logged() as lines:
            self.connector.session_failed(protocol, RecoverableTunnelError("again"))  # type: ignore[arg-type]
        self.assertEqual((lines, protocol.dropped), ([], [True]))

    def test_fail(self) -> None:
        protocol = self.broken()
        with logged() as lines:
            self.connector.fail(FatalTunnelError("cannot listen"))
        self.assertEqual(lines, [(LogLevel.critical, "cannot listen")])
        self.lose(protocol)
        self.assertEqual((self.codes, self.endpoint.attempts), ([1], 1))

    def test_stop(self) -> None:
        protocol = self.broken()
        self.connector.stop()
        self.assertEqual(protocol.dropped, [True, True])
        self.lose(protocol)
        self.assertEqual((self.codes, self.endpoint.attempts), ([0], 1))

    def test_stop_after_resets(self) -> None:
        protocol = self.broken()
        self.connector.stop(3.0)
        self.lose(protocol)
        self.assertEqual((self.codes, self.endpoint.attempts), ([0], 1))


class SessionLostTests(Lifecycle):
    """What arrives while a lost session is being decided on, or while it reconnects."""

    def test_stop_during_the_reconnect_attempt(self) -> None:
        """A stop racing the reconnect: the attempt is cancelled, exit 0, nothing more."""
        protocol = self.session_up()
        cancelled: List[bool] = []
        self.endpoint.results = [Deferred(lambda _: cancelled.append(True))]
        self.lose(protocol)
        self.assertEqual(self.endpoint.attempts, 2)
        self.connector.stop(3.0)
        self.assertEqual((cancelled, self.codes), ([True], [0]))
        self.clock.advance(10 * RETRY_DELAY)
        self.assertEqual(self.endpoint.attempts, 2)

    def test_stop_during_the_reconnect_upgrade(self) -> None:
        """The reconnect's upgrade is under way: it is dropped; its end is the exit, 0."""
        protocol = self.session_up()
        second = FakeProtocol()
        self.endpoint.results = [second]
        self.lose(protocol)
        self.connector.stop(3.0)
        self.assertEqual((second.dropped, second.closed_with, self.codes), ([True], [], []))
        self.lose(second, was_open=False, transport_error="aborted")
        self.assertEqual((self.codes, self.endpoint.attempts), ([0], 2))
        self.assertEqual(len(self.closes), 1)

    def test_stop_while_the_reconnect_waits_to_retry(self) -> None:
        """The reconnect was refused; the stop comes before the retry: exit 0, no retry."""
        protocol = self.session_up()
        self.lose(protocol)  # the reconnect is refused (nothing scripted)
        self.assertTimers(1)
        self.connector.stop(3.0)
        self.assertEqual(self.codes, [0])
        self.assertTimers(0)
        self.assertEqual(self.endpoint.attempts, 2)

    def test_every_outage_gets_every_retry(self) -> None:
        """
        websocket.connect_retry_count counts per outage: after each session
        that opened, the next outage gets all of its retries again, whether
        its attempts are refused or their upgrade fails.
        """
        self.make(retry_count=2)
        self.connector.start()  # refused
        self.clock.advance(RETRY_DELAY)  # the first retry: refused
        for outage in range(4):
            protocol = FakeProtocol()
            self.endpoint.results = [protocol]
            self.clock.advance(RETRY_DELAY)  # the last retry works
            self.connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
            self.lose(protocol)  # the reconnect: refused
            failing = FakeProtocol()
            self.endpoint.results = [failing]
            self.clock.advance(RETRY_DELAY)  # the first retry: its upgrade fails
            self.lose(failing, was_open=False, http_status=503, http_status_line="503 X")
            self.assertEqual(self.codes, [], outage)
        self.assertEqual(self.endpoint.attempts, 2 + 4 * 3)
        self.clock.advance(RETRY_DELAY)  # the last retry: refused
        self.assertEqual((self.codes, self.endpoint.attempts), ([1], 2 + 4 * 3 + 1))

    def test_stop(self) -> None:
        protocol = self.session_up()
        with when_logged("Error from io_ctx::run()", self.connector.stop):
            self.lose(protocol)
        self.assertEqual((self.endpoint.attempts, self.codes), (1, [0]))

    def test_stop_after_resets(self) -> None:
        protocol = self.session_up()
        with when_logged("Error from io_ctx::run()", lambda: self.connector.stop(3.0)):
            self.lose(protocol)
        self.assertEqual((self.endpoint.attempts, self.codes), (1, [0]))

    def test_fail(self) -> None:
        protocol = self.session_up(reconnect=False)
        with when_logged(
            "connection lost", lambda: self.connector.fail(FatalTunnelError("cannot listen"))
        ):
            self.lose(protocol)
        self.assertEqual((self.endpoint.attempts, self.codes), (1, [1]))


class FailingTests(Lifecycle):
    def test_lost_exits_one(self) -> None:
        protocol = self.failing()
        self.lose(protocol)
        self.assertEqual((self.codes, self.endpoint.attempts), ([1], 1))

    def test_service_closed_exits_one(self) -> None:
        protocol = self.failing()
        self.lose(protocol, was_clean=True, code=1000, closed_by_service=True)
        self.assertEqual(self.codes, [1])

    def test_fail_again(self) -> None:
        protocol = self.failing()
        with logged() as lines:
            self.connector.fail(FatalTunnelError("another"))
        self.assertEqual(lines, [(LogLevel.critical, "another")])
        self.assertEqual(protocol.dropped, [True, True])

    def test_stop_during_a_fatal_error(self) -> None:
        """A stop does not turn a fatal error into a clean exit."""
        protocol = self.failing()
        self.connector.stop()
        self.connector.stop(3.0)
        self.assertEqual(protocol.dropped, [True, True, True])
        self.lose(protocol)
        self.assertEqual(self.codes, [1])

    def test_ignored(self) -> None:
        """A late failure of the tunnel, or a late open, changes nothing (a late open is dropped)."""
        protocol = self.failing()
        self.connector.session_failed(protocol, RecoverableTunnelError("late"))  # type: ignore[arg-type]
        self.connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        self.assertEqual(protocol.dropped, [True, True])
        self.lose(protocol)
        self.assertEqual(self.codes, [1])


class FlushingTests(Lifecycle):
    def test_resets_sent(self) -> None:
        protocol = self.flushing()
        scheduler = self.tunnel.scheduler
        assert scheduler is not None
        scheduler.resumeProducing()
        self.assertEqual(protocol.closed_with, [STOPPING])
        self.lose(protocol, was_clean=True, code=1000)
        self.assertEqual(self.codes, [0])
        self.assertTimers(0)

    def test_bound(self) -> None:
        """A WebSocket that takes nothing: the close frame goes at the bound, with a warning."""
        protocol = self.flushing()
        with logged() as lines:
            self.clock.advance(3.0)
        self.assertEqual(protocol.closed_with, [STOPPING])
        self.assertEqual(
            [text for level, text in lines if level >= LogLevel.warn],
            [
                "Stopping: the last resets and 1 bytes for the tunnel were not all sent "
                "within 3.0 s; closing the web socket anyway"
            ],
        )

    def test_lost(self) -> None:
        protocol = self.flushing()
        self.lose(protocol)
        self.assertEqual((self.codes, protocol.closed_with), ([0], []))
        self.assertTimers(0)

    def test_service_closed(self) -> None:
        protocol = self.flushing()
        self.lose(protocol, was_clean=True, code=1000, closed_by_service=True)
        self.assertEqual(self.codes, [0])

    def test_session_failed(self) -> None:
        protocol = self.flushing()
        protocol.deliver(MALFORMED)
        self.assertEqual(protocol.dropped, [True])
        self.lose(protocol)
        self.assertEqual((self.codes, self.endpoint.attempts), ([0], 1))

    def test_fatal_error_during_the_stop(self) -> None:
        """A fatal error while the last resets are written: exit 1."""
        protocol = self.flushing()
        self.connector.fail(FatalTunnelError("cannot listen"))
        self.assertEqual(protocol.dropped, [True])
        self.lose(protocol)
        self.assertEqual(self.codes, [1])

    def test_second_stop_waits(self) -> None:
        protocol = self.flushing()
        self.connector.stop()
        self.connector.stop(3.0)
        self.assertEqual((protocol.closed_with, protocol.dropped), ([], []))


class ClosingTests(Lifecycle):
    def test_closed(self) -> None:
        protocol = self.closing()
        self.lose(protocol, was_clean=True, code=1000)
        self.assertEqual(self.codes, [0])
        self.assertEqual(len(self.closes), 1)

    def test_service_closed(self) -> None:
        protocol = self.closing()
        self.lose(protocol, was_clean=True, code=1000, closed_by_service=True)
        self.assertEqual(self.codes, [0])

    def test_second_stop_drops(self) -> None:
        """A second stop does not wait for the close handshake."""
        protocol = self.closing()
        self.connector.stop()
        self.connector.stop(3.0)
        self.assertEqual(protocol.dropped, [True, True])

    def test_session_failed(self) -> None:
        protocol = self.closing()
        self.connector.session_failed(protocol, RecoverableTunnelError("bad"))  # type: ignore[arg-type]
        self.assertEqual(protocol.dropped, [True])
        self.lose(protocol)
        self.assertEqual(self.codes, [0])

    def test_fail(self) -> None:
        protocol = self.closing()
        self.connector.fail(FatalTunnelError("cannot listen"))
        self.lose(protocol)
        self.assertEqual(self.codes, [1])

    def test_late_open_and_late_resets(self) -> None:
        """The flush's bound after the close frame, or an upgrade that completes anyway."""
        protocol = self.flushing()
        self.clock.advance(3.0)  # the close frame goes at the bound
        self.connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        self.assertEqual(protocol.dropped, [True])
        self.lose(protocol, was_open=False)
        self.assertEqual(self.codes, [0])


class DoneTests(Lifecycle):
    def test_nothing_changes(self) -> None:
        self.done()
        self.connector.start()
        self.connector.stop()
        self.connector.stop(3.0)
        self.assertEqual((self.endpoint.attempts, self.codes), (0, [0]))

    def test_a_fatal_error_is_still_logged(self) -> None:
        self.done()
        with logged() as lines:
            self.connector.fail(FatalTunnelError("too late"))
        self.assertEqual((lines, self.codes), ([(LogLevel.critical, "too late")], [0]))

    def test_a_cancelled_attempt_changes_nothing(self) -> None:
        """The cancelled attempt's failure arrives once the exit code is out: it is taken quietly."""
        attempt = self.connecting()
        with logged() as lines:
            self.connector.stop()
        self.assertEqual(self.cancelled, [True])
        self.assertIsNone(self.successResultOf(attempt))
        self.assertEqual([text for level, text in lines if level >= LogLevel.warn], [])
        self.assertEqual((self.codes, self.endpoint.attempts), ([0], 1))
