"""
The connector's rules: retries, final rejections, reconnects, exit codes.

The WebSocket is replaced by a scripted stand-in: the tests play the
events Autobahn would report (opened, message, closed) and check what the
connector does next, on a MemoryReactorClock.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.protocol.wire import Message, encode_message
from aws_localproxy.upstream.connector import RetryPolicy, TunnelConnector
from tests.fakes.connector import scripted_connector
from tests.fakes.endpoints import FakeEndpoint
from tests.fakes.websocket import FakeProtocol, closed


class NullLocal:
    def __init__(self) -> None:
        self.endpoints: list = []

    def services_ready(self, endpoints) -> None:
        self.endpoints.append(dict(endpoints))

    def connect(self, connection):  # pragma: no cover - sources do not connect
        raise AssertionError("unexpected")


def service_ids(*ids: str) -> bytes:
    message = Message(type=Message.SERVICE_IDS)
    message.availableServiceIds.extend(ids)
    return encode_message(message)


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
        connector.session_message(first, service_ids("ssh"))  # type: ignore[arg-type]
        self.assertEqual(len(self.ready), 1)
        connector.session_closed(first, closed())  # type: ignore[arg-type]
        self.assertEqual(self.endpoint.attempts, 2)
        connector.session_opened(second, SUBPROTOCOL_V3)  # type: ignore[arg-type]
        connector.session_message(second, service_ids("ssh"))  # type: ignore[arg-type]
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
        connector.session_message(first, b"\x00\x03\xff\xff\xff")  # type: ignore[arg-type]
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
        connector.session_message(protocol, service_ids("other"))  # type: ignore[arg-type]
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

    def test_stop_while_waiting_to_retry(self) -> None:
        connector = self.make()
        connector.start()
        connector.stop()
        self.clock.advance(10)
        self.assertEqual(self.endpoint.attempts, 1)
        self.assertEqual(self.codes, [0])
