"""
The connector's rules: retries, final rejections, reconnects, exit codes;
the close frame after the resets when the proxy stops; recovery from a
session a malformed record ended; inbound flow control reaching each
session's scheduler and WebSocket.

The WebSocket is replaced by a scripted stand-in: the tests play the
events Autobahn would report (opened, message, closed) and check what the
connector does next, on a MemoryReactorClock.
"""

from __future__ import annotations

from typing import List

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.scheduler import OutboundSettings
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.protocol.wire import DataFields, Message
from aws_localproxy.upstream.connector import RetryPolicy, TunnelConnector
from tests.fakes.connector import scripted_connector
from tests.fakes.endpoints import FakeEndpoint
from tests.fakes.hostile_peer import ENDS_SESSION
from tests.fakes.local import FakeLocalConnection, FakeLocalSide, Reader
from tests.fakes.peer import FakePeer, ctl, data, service_ids
from tests.fakes.tunnel import SSH, TWO, PeerTunnel
from tests.fakes.websocket import FakeProtocol, closed
from tests.support.logs import logs, texts


class NullLocal:
    def __init__(self) -> None:
        self.endpoints: list = []

    def services_ready(self, endpoints) -> None:
        self.endpoints.append(dict(endpoints))

    def connect(self, connection):  # pragma: no cover - sources do not connect
        raise AssertionError("unexpected")


class ConnectorTests(SynchronousTestCase):
    def make(
        self, retry_count: int = -1, reconnect: bool = True, service_map: dict | None = None
    ) -> TunnelConnector:
        self.clock = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        self.local = NullLocal()
        self.ready: list = []
        self.tunnel = Tunnel(Mode.SOURCE, self.local, service_map=service_map or {})  # type: ignore[arg-type]
        connector = scripted_connector(
            self.clock,
            self.endpoint,
            self.tunnel,
            RetryPolicy(retry_count, 2.5, reconnect_on_data_error=reconnect),
            on_ready=self.ready.append,
        )
        self.codes: list = []
        connector.finished.addCallback(self.codes.append)
        return connector

    def test_retry_forever_by_default(self) -> None:
        connector = self.make()
        connector.start()
        for _ in range(20):
            self.clock.advance(2.5)
        self.assertEqual(self.endpoint.attempts, 21)
        self.assertEqual(self.codes, [])

    def test_retry_count_means_retries(self) -> None:
        """N retries after the first attempt, then exit 1 (the reference retries forever)."""
        connector = self.make(retry_count=3)
        connector.start()
        for _ in range(10):
            self.clock.advance(2.5)
        self.assertEqual(self.endpoint.attempts, 4)
        self.assertEqual(self.codes, [1])

    def test_zero_retries_exits_one(self) -> None:
        connector = self.make(retry_count=0)
        connector.start()
        self.assertEqual(self.endpoint.attempts, 1)
        self.assertEqual(self.codes, [1])

    def test_4xx_is_final(self) -> None:
        protocol = FakeProtocol()
        connector = self.make()
        self.endpoint.results = [protocol]
        connector.start()
        connector.session_closed(
            protocol,  # type: ignore[arg-type]
            closed(was_open=False, http_status=403, http_status_line="HTTP/1.1 403 Forbidden"),
        )
        self.clock.advance(10)
        self.assertEqual(self.endpoint.attempts, 1)
        self.assertEqual(self.codes, [1])

    def test_5xx_is_retried(self) -> None:
        first, second = FakeProtocol(), FakeProtocol()
        connector = self.make()
        self.endpoint.results = [first, second]
        connector.start()
        connector.session_closed(
            first,  # type: ignore[arg-type]
            closed(was_open=False, http_status=503, http_status_line="HTTP/1.1 503 Busy"),
        )
        self.assertEqual(self.endpoint.attempts, 1)
        self.clock.advance(2.5)
        self.assertEqual(self.endpoint.attempts, 2)
        self.assertEqual(self.codes, [])

    def test_missing_subprotocol_is_retried(self) -> None:
        """A 101 without Sec-WebSocket-Protocol is a broken session, not a final refusal."""
        first, second = FakeProtocol(), FakeProtocol()
        connector = self.make()
        self.endpoint.results = [first, second]
        connector.start()
        connector.session_closed(
            first,  # type: ignore[arg-type]
            closed(
                was_open=False, http_status=101, http_status_line="HTTP/1.1 101 Switching Protocols"
            ),
        )
        self.clock.advance(2.5)
        self.assertEqual(self.endpoint.attempts, 2)
        self.assertEqual(self.codes, [])

    def test_tls_failure_is_retried(self) -> None:
        protocol = FakeProtocol()
        connector = self.make(retry_count=1)
        self.endpoint.results = [protocol]
        connector.start()
        connector.session_closed(
            protocol,  # type: ignore[arg-type]
            closed(was_open=False, transport_error="certificate verify failed"),
        )
        self.clock.advance(2.5)
        self.assertEqual(self.endpoint.attempts, 2)
        self.assertEqual(self.codes, [1])

    def test_close_frame_from_service_exits_zero(self) -> None:
        protocol = FakeProtocol()
        connector = self.make()
        self.endpoint.results = [protocol]
        connector.start()
        connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        connector.session_closed(
            protocol,  # type: ignore[arg-type]
            closed(was_clean=True, code=1000, reason="tunnel closed", closed_by_service=True),
        )
        self.assertEqual(self.codes, [0])

    def test_drop_reconnects_at_once(self) -> None:
        first, second = FakeProtocol(), FakeProtocol()
        connector = self.make()
        self.endpoint.results = [first, second]
        connector.start()
        connector.session_opened(first, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        first.deliver(service_ids("ssh"))
        self.assertEqual(len(self.ready), 1)
        connector.session_closed(first, closed())  # type: ignore[arg-type]
        self.assertEqual(self.endpoint.attempts, 2)
        connector.session_opened(second, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        second.deliver(service_ids("ssh"))
        self.assertEqual(len(self.ready), 2)
        self.assertEqual(self.codes, [])

    def test_drop_without_reconnect_exits_one(self) -> None:
        protocol = FakeProtocol()
        connector = self.make(reconnect=False)
        self.endpoint.results = [protocol]
        connector.start()
        connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        connector.session_closed(protocol, closed())  # type: ignore[arg-type]
        self.assertEqual(self.endpoint.attempts, 1)
        self.assertEqual(self.codes, [1])

    def test_malformed_message_reconnects(self) -> None:
        first, second = FakeProtocol(), FakeProtocol()
        connector = self.make()
        self.endpoint.results = [first, second]
        connector.start()
        connector.session_opened(first, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        first.deliver(b"\x00\x03\xff\xff\xff")
        self.assertEqual(first.dropped, [True])
        connector.session_closed(first, closed())  # type: ignore[arg-type]
        self.assertEqual(self.endpoint.attempts, 2)
        self.assertEqual(self.codes, [])

    def test_fatal_mapping_error_exits_one(self) -> None:
        """SERVICE_IDS that do not match the configuration end the proxy with 1."""
        protocol = FakeProtocol()
        connector = self.make(service_map={"a": "1", "b": "2"})
        self.endpoint.results = [protocol]
        connector.start()
        connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        protocol.deliver(service_ids("other"))
        self.assertEqual(protocol.dropped, [True])
        connector.session_closed(protocol, closed())  # type: ignore[arg-type]
        self.assertEqual(self.codes, [1])
        self.assertEqual(self.endpoint.attempts, 1)

    def test_stop_sends_close_frame(self) -> None:
        protocol = FakeProtocol()
        connector = self.make()
        self.endpoint.results = [protocol]
        connector.start()
        connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        protocol.state = FakeProtocol.STATE_OPEN
        connector.stop()
        self.assertEqual(protocol.closed_with, [(1000, "local proxy stopping")])
        connector.session_closed(protocol, closed(was_clean=True, code=1000))  # type: ignore[arg-type]
        self.assertEqual(self.codes, [0])

    def test_last_ping_rtt(self) -> None:
        """
        The tunnel's figure: the current session's latest ping round trip
        (its pong straight from the WebSocket); none between sessions.
        """
        protocol = FakeProtocol()
        pings: list = []
        protocol.send_ping = pings.append  # type: ignore[method-assign]
        connector = self.make()
        self.tunnel.outbound = OutboundSettings(clock=self.clock)  # pacing on
        self.endpoint.results = [protocol]
        connector.start()
        self.assertIsNone(self.tunnel.last_ping_rtt)
        connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        self.assertIsNone(self.tunnel.last_ping_rtt)
        scheduler = self.tunnel.scheduler
        assert scheduler is not None
        for _ in range(64):  # a ping follows every window's quarter sent (16 of these)
            if pings:
                break
            scheduler.control(b"x" * 4096)
        (ping,) = pings
        self.clock.advance(0.25)
        self.assertTrue(protocol.outbound.pong(ping))
        self.assertEqual(self.tunnel.last_ping_rtt, 0.25)
        connector.session_closed(protocol, closed())  # type: ignore[arg-type]
        self.assertIsNone(self.tunnel.last_ping_rtt)

    def test_stop_while_waiting_to_retry(self) -> None:
        connector = self.make()
        connector.start()
        connector.stop()
        self.clock.advance(10)
        self.assertEqual(self.endpoint.attempts, 1)
        self.assertEqual(self.codes, [0])


class ConnectorStopTests(SynchronousTestCase):
    """C{TunnelConnector.stop(flush_timeout)}: the close frame waits for the resets, boundedly."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        self.tunnel = Tunnel(Mode.SOURCE, FakeLocalSide(), service_map=SSH)
        self.connector = scripted_connector(
            self.clock,
            self.endpoint,
            self.tunnel,
            RetryPolicy(retry_count=-1, retry_delay=1.0, reconnect_on_data_error=True),
        )
        self.protocol = FakeProtocol()
        self.endpoint.results = [self.protocol]
        self.connector.start()
        self.connector.session_opened(self.protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        self.protocol.state = FakeProtocol.STATE_OPEN
        self.protocol.deliver(service_ids("ssh"))
        self.client = FakeLocalConnection()
        connection = self.tunnel.local_connection_accepted("ssh", self.client)
        assert connection is not None
        self.connection = connection
        self.protocol.sent.clear()

    def sent(self) -> List[int]:
        from aws_localproxy.protocol.wire import decode_all

        return [message.type for record in self.protocol.sent for message in decode_all(record)]

    def test_close_after_the_resets(self) -> None:
        """The close frame goes once the reset is written, after the bytes before it."""
        scheduler = self.tunnel.scheduler
        assert scheduler is not None
        scheduler.pauseProducing()  # the WebSocket's buffer is full
        self.connection.data_received(b"x" * 10)
        self.connector.stop(3.0)
        self.assertEqual(self.protocol.closed_with, [])
        self.assertTrue(self.client.closed)
        scheduler.resumeProducing()
        self.assertEqual(self.sent(), [Message.DATA, Message.STREAM_RESET])
        self.assertEqual(self.protocol.closed_with, [(1000, "local proxy stopping")])
        self.connector.session_closed(self.protocol, closed(was_clean=True, code=1000))  # type: ignore[arg-type]
        self.assertEqual(self.connector.finished.result, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bounded_on_a_dead_websocket(self) -> None:
        """A WebSocket that takes nothing more: the close frame goes after the bound anyway."""
        scheduler = self.tunnel.scheduler
        assert scheduler is not None
        scheduler.pauseProducing()
        self.connection.data_received(b"x" * 10)
        self.connector.stop(3.0)
        self.clock.advance(2.9)
        self.connector.stop()  # a second signal, or a --stdio end: still waits
        self.assertEqual(self.protocol.closed_with, [])
        self.assertEqual(self.protocol.dropped, [])
        self.clock.advance(0.2)
        self.assertEqual(self.protocol.closed_with, [(1000, "local proxy stopping")])
        self.connector.session_closed(self.protocol, closed(was_clean=False))  # type: ignore[arg-type]
        self.assertEqual(self.connector.finished.result, 0)
        scheduler.resumeProducing()  # nothing is sent after the session's end
        self.assertEqual(self.sent(), [])

    def test_session_lost_while_flushing(self) -> None:
        """The WebSocket drops while the resets wait: no close frame, the stop completes."""
        scheduler = self.tunnel.scheduler
        assert scheduler is not None
        scheduler.pauseProducing()
        self.connection.data_received(b"x")
        finished = self.connector.stop(3.0)
        self.protocol.state = FakeProtocol.STATE_CLOSED
        self.connector.session_closed(self.protocol, closed())  # type: ignore[arg-type]
        self.assertEqual(self.protocol.closed_with, [])
        self.assertEqual(self.successResultOf(finished), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ConnectorRecoveryTests(SynchronousTestCase):
    """A malformed record, through the connector: error line, locals reset, reconnect."""

    def make(self, *, reconnect: bool = True, retry_count: int = 2):
        self.clock = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        self.local = FakeLocalSide()
        self.peer = FakePeer()
        self.tunnel = PeerTunnel(Mode.DESTINATION, self.peer, self.local, service_map=TWO)
        connector = scripted_connector(
            self.clock,
            self.endpoint,
            self.tunnel,
            RetryPolicy(retry_count, 2.5, reconnect_on_data_error=reconnect),
        )
        self.codes: List[int] = []
        connector.finished.addCallback(self.codes.append)
        return connector

    def open_session(self, connector: TunnelConnector, protocol: FakeProtocol) -> None:
        connector.session_opened(protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        protocol.deliver(
            service_ids("ssh", "web")
            + ctl(Message.STREAM_START, "ssh", 1, 1)
            + data("ssh", 1, 1, b"hello"),
        )

    def run_one(self, record: bytes, *, reconnect: bool = True) -> tuple:
        first, second = FakeProtocol(), FakeProtocol()
        connector = self.make(reconnect=reconnect)
        self.endpoint.results = [first, second]
        connector.start()
        self.open_session(connector, first)
        local = self.local.connection("ssh", 1)[1]
        with logs() as captured:
            first.deliver(record)
            # Anything the dying session still receives is not processed.
            first.deliver(data("ssh", 1, 1, b"late"))
            connector.session_closed(first, closed())  # type: ignore[arg-type]
        return connector, first, second, local, captured

    def test_each_malformed_reconnects(self) -> None:
        for name, record, error_text in ENDS_SESSION:
            connector, first, second, local, captured = self.run_one(record)
            self.assertEqual(first.dropped, [True], name)
            self.assertEqual(local.data, b"hello", name)
            self.assertEqual(local.close_calls, 1, name)
            errors = texts(captured, LogLevel.error)
            self.assertTrue(any(e.startswith(error_text) for e in errors), (name, errors))
            self.assertIn("Error from io_ctx::run(): " + errors[0], errors)
            # Reconnects at once with a fresh session.
            self.assertEqual(self.endpoint.attempts, 2, name)
            self.assertEqual(self.codes, [], name)
            self.open_session(connector, second)
            self.assertEqual(self.local.connection("ssh", 1)[1].data, b"hello", name)
            self.assertEqual(connector.sessions, 2)

    def test_without_reconnect_exits_one(self) -> None:
        """websocket.reconnect_on_data_error false: the error line is critical, exit 1."""
        connector, first, second, local, captured = self.run_one(
            ctl(42, "ssh", 1, 1), reconnect=False
        )
        self.assertEqual(self.codes, [1])
        self.assertEqual(self.endpoint.attempts, 1)
        self.assertEqual(local.close_calls, 1)
        self.assertTrue(
            any("Unrecognized message type" in t for t in texts(captured, LogLevel.critical))
        )

    def test_reconnect_follows_retry_rules(self) -> None:
        """If the service is then unreachable, the reconnect is retried every retry_delay, N times."""
        first = FakeProtocol()
        connector = self.make(retry_count=2)
        self.endpoint.results = [first]
        connector.start()
        self.open_session(connector, first)
        first.deliver(b"\x00\x03\xff\xff\xff")
        connector.session_closed(first, closed())  # type: ignore[arg-type]
        self.assertEqual(self.endpoint.attempts, 2)  # at once, refused
        self.clock.advance(2.4)
        self.assertEqual(self.endpoint.attempts, 2)
        self.clock.advance(0.1)
        self.assertEqual(self.endpoint.attempts, 3)
        self.assertEqual(self.codes, [])
        self.clock.advance(2.5)
        # The reconnect after the error and two retries, then exit 1.
        self.assertEqual(self.endpoint.attempts, 4)
        self.assertEqual(self.codes, [1])
        self.clock.advance(10)
        self.assertEqual(self.endpoint.attempts, 4)

    def test_repeated_bad_sessions_keep_reconnecting(self) -> None:
        """A peer that breaks every session cannot stop the proxy: each session reconnects."""
        protocols = [FakeProtocol() for _ in range(20)]
        connector = self.make(retry_count=0)
        self.endpoint.results = list(protocols)
        connector.start()
        for protocol in protocols[:-1]:
            self.open_session(connector, protocol)
            protocol.deliver(ctl(42, "ssh", 1, 1))
            connector.session_closed(protocol, closed())  # type: ignore[arg-type]
        self.assertEqual(self.codes, [])
        self.assertEqual(self.endpoint.attempts, 20)
        self.assertEqual(len(self.local.connections), 19)
        self.assertTrue(all(local.close_calls == 1 for _, local in self.local.connections))


class SessionWiringTests(SynchronousTestCase):
    """Each session's scheduler and WebSocket protocol hear when reading stops."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        self.protocol = FakeProtocol()
        self.endpoint.results = [self.protocol]
        self.tunnel = Tunnel(
            Mode.SOURCE,
            None,  # type: ignore[arg-type]
            service_map={},
            outbound=OutboundSettings(clock=self.clock),
        )

    def open_session(self, *, retry_count: int) -> TunnelConnector:
        """A source's connector on L{protocol}, started, its session open."""
        connector = scripted_connector(
            self.clock, self.endpoint, self.tunnel, RetryPolicy(retry_count, 1.0, True)
        )
        connector.start()
        connector.session_opened(self.protocol, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        return connector

    def test_pause_reaches_the_pacer_and_the_keepalive(self) -> None:
        self.open_session(retry_count=-1)
        scheduler = self.tunnel.scheduler
        assert scheduler is not None and scheduler._pacer is not None
        inbound = self.tunnel.inbound
        inbound.blocked("a full local connection")
        self.assertTrue(scheduler._pacer.deaf)
        inbound.unblocked("a full local connection")
        self.assertFalse(scheduler._pacer.deaf)
        self.assertEqual(self.protocol.reading_paused_calls, [True, False])

    def test_session_end_cancels_the_stall_timer(self) -> None:
        connector = self.open_session(retry_count=0)
        scheduler = self.tunnel.scheduler
        assert scheduler is not None
        lane = scheduler.open_lane(DataFields("", 1, 1), Reader())
        lane.write(b"B" * (4 * 1024 * 1024))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # the stall timer
        connector.session_closed(self.protocol, closed())  # type: ignore[arg-type]
        self.assertEqual(self.clock.getDelayedCalls(), [])
