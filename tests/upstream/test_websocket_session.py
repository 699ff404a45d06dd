"""
The WebSocket's session as the connector, the operator and the service see
it, beyond tests/upstream/test_websocket.py: the frames it writes in every
length form, the pacer's pings, the lines it logs, how each end is reported
(and for which protocol), the handshake timeouts, the message bound, inbound
flow control reaching its transport and keep-alive.
"""

from __future__ import annotations

import platform
import struct
import sys
from typing import List, Tuple

import autobahn
import google.protobuf
import OpenSSL
import twisted
from twisted.internet.error import ConnectionLost
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from aws_localproxy._version import __version__
from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE, SUBPROTOCOL_V3
from aws_localproxy.protocol.errors import RecoverableTunnelError, TunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.upstream.websocket import (
    MAX_INCOMING_MESSAGE,
    NO_SUBPROTOCOL,
    CloseOutcome,
    TunnelClientProtocol,
    user_agent,
)
from tests.fakes.websocket import NoPacer, RecordingEvents
from tests.support.logs import logs, texts
from tests.support.payloads import digest, unique_payload
from tests.support.seams import adapter_warnings
from tests.support.websocket import (
    WebSocketTestCase,
    client_frames,
    server_frame,
    upgrade_response,
)

#: Records of every size the frames' length forms meet, from one payload in
#: which no block repeats.
PAYLOAD = unique_payload(70_000 + 65_536, seed=41)
URL = "wss://data.tunneling.iot.us-east-1.amazonaws.com/tunnel"


class RecordingOutbound(NoPacer):
    """A session's outbound that records what the WebSocket and inbound flow control ask of it."""

    def __init__(self) -> None:
        self.calls: List[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def reading_paused(self, paused: bool) -> None:
        self.calls.append("reading paused" if paused else "reading resumed")


class NamingEvents(RecordingEvents):
    """Events that also keep which protocol each failure and close came from."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_by: List[Tuple[TunnelClientProtocol, TunnelError]] = []
        self.closed_by: List[Tuple[TunnelClientProtocol, CloseOutcome]] = []
        self.inbound = InboundFlow()

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        self.opened.append((protocol, subprotocol))
        protocol.start_session(self.receive, self.outbound, self.inbound)  # type: ignore[arg-type]

    def session_failed(self, protocol: TunnelClientProtocol, error: TunnelError) -> None:
        super().session_failed(protocol, error)
        self.failed_by.append((protocol, error))

    def session_closed(self, protocol: TunnelClientProtocol, outcome: CloseOutcome) -> None:
        super().session_closed(protocol, outcome)
        self.closed_by.append((protocol, outcome))


class NotStartingEvents(RecordingEvents):
    """Events that hear the session opened but do not start it (yet)."""

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        self.opened.append((protocol, subprotocol))


class SessionTestCase(WebSocketTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.events = NamingEvents()


class OutgoingFrameTests(SessionTestCase):
    """Every record is one final, masked binary frame, its length in the shortest form."""

    def test_every_length_form(self) -> None:
        protocol, transport = self.open()
        sizes = [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]
        records = []
        position = 0
        for size in sizes:
            records.append(PAYLOAD[position : position + size])
            position += size % 1000
        for record in records:
            protocol.send_record(record)
        data = transport.value()
        self.assertEqual(
            [(opcode, digest(payload)) for opcode, payload in client_frames(data)],
            [(0x2, digest(record)) for record in records],
        )
        # The headers byte for byte: FIN + binary, mask bit + the shortest length form.
        position = 0
        for record in records:
            size = len(record)
            if size <= 125:
                header, extended = bytes((0x82, 0x80 | size)), b""
            elif size <= 0xFFFF:
                header, extended = bytes((0x82, 0x80 | 126)), struct.pack("!H", size)
            else:
                header, extended = bytes((0x82, 0x80 | 127)), struct.pack("!Q", size)
            start = position + 2 + len(extended)
            self.assertEqual(data[position:start], header + extended, size)
            position = start + 4 + size
        self.assertEqual(position, len(data))

    def test_ping(self) -> None:
        """The pacer's ping: one final, masked ping frame carrying its payload."""
        protocol, transport = self.open()
        protocol.send_ping(b"lpq1 0001")
        data = transport.value()
        self.assertEqual(data[:2], bytes((0x89, 0x80 | 9)))
        self.assertEqual(client_frames(data), [(0x9, b"lpq1 0001")])

    def test_ping_before_open_is_dropped(self) -> None:
        protocol, transport = self.connect()
        transport.clear()
        protocol.send_ping(b"lpq1 0001")
        self.assertEqual(transport.value(), b"")

    def test_pings_and_records_masked_alike(self) -> None:
        """
        Pings and records take their masking keys from the same source, read
        a thousand keys at a time: over two thousand frames of each, all
        carry their payload, and the keys are not reused.
        """
        protocol, transport = self.open()
        expected = []
        for index in range(2100):
            ping, record = b"p%d" % index, b"r%d" % index
            protocol.send_ping(ping)
            protocol.send_record(record)
            expected += [(0x9, ping), (0x2, record)]
        data = transport.value()
        frames = client_frames(data)
        if frames != expected:
            pairs = zip(frames, expected, strict=False)
            shorter = min(len(frames), len(expected))
            at = next((i for i, (got, wanted) in enumerate(pairs) if got != wanted), shorter)
            self.fail(
                f"{len(frames)} frames, {len(expected)} expected; frame {at} is "
                f"{frames[at : at + 1]!r}, expected {expected[at : at + 1]!r}"
            )
        keys, position = set(), 0
        while position < len(data):
            keys.add(data[position + 2 : position + 6])
            position += 6 + (data[position + 1] & 0x7F)
        self.assertGreater(len(keys), 4190)


class UserAgentTests(SessionTestCase):
    def test_exact(self) -> None:
        """The C{User-Agent}, word for word: what a support request reads."""
        bits = "64" if sys.maxsize > 2**32 else "32"
        self.assertEqual(
            user_agent(),
            f"aws-localproxy/{__version__} {platform.system().lower()} {bits}-bit"
            f"/python-{platform.python_version()}/twisted-{twisted.__version__}"
            f"/autobahn-{autobahn.__version__}/pyopenssl-{OpenSSL.__version__}"
            f"/protobuf-{google.protobuf.__version__}",
        )


class HandshakeLogTests(SessionTestCase):
    """The lines the operator reads about the handshake, word for word."""

    def test_session_id_and_success(self) -> None:
        protocol, _ = self.connect()
        with logs() as captured:
            protocol.dataReceived(self.accept(protocol, SUBPROTOCOL_V3))
        self.assertEqual(
            texts(captured, LogLevel.info),
            [
                "Web socket session ID: 0a1b2c3d",
                "Successfully established websocket connection with proxy server: " + URL,
            ],
        )

    def test_no_session_id(self) -> None:
        """A response without C{channel-id}: an empty session ID, not a made-up one."""
        protocol, _ = self.connect()
        with logs() as captured:
            protocol.dataReceived(upgrade_response(protocol.websocket_key, SUBPROTOCOL_V3))
        self.assertEqual(texts(captured, LogLevel.info)[0], "Web socket session ID: ")

    def test_no_subprotocol(self) -> None:
        """The refusal is logged as an error, and is why the session never opened."""
        protocol, _ = self.connect()
        with logs() as captured:
            protocol.dataReceived(self.accept(protocol, None))
        self.assertEqual(texts(captured, LogLevel.error)[0], NO_SUBPROTOCOL)
        self.assertEqual(NO_SUBPROTOCOL, "No websocket subprotocol returned from proxy server!")
        outcome = self.lose(protocol)
        self.assertIn(NO_SUBPROTOCOL, outcome.reason)
        self.flushLoggedErrors(ValueError)


class HandshakeTimeoutTests(SessionTestCase):
    def test_upgrade_never_answered(self) -> None:
        """No response to the upgrade: the attempt is dropped after the open handshake timeout (30 s here)."""
        protocol, transport = self.connect()
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(2)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(self.lose(protocol).was_open)

    def test_close_never_answered(self) -> None:
        """Our close frame unanswered: the connection is dropped 2 s later, not kept open."""
        protocol, transport = self.open()
        protocol.sendClose(1000)
        self.clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)


class StatusLineTests(SessionTestCase):
    """The status of a refused upgrade, however the status line is written."""

    def refused(self, status_line: bytes) -> CloseOutcome:
        protocol, _ = self.connect()
        protocol.dataReceived(status_line + b"\r\nContent-Length: 0\r\n\r\n")
        return self.lose(protocol)

    def test_without_reason_phrase(self) -> None:
        outcome = self.refused(b"HTTP/1.1 403")
        self.assertEqual((outcome.http_status, outcome.http_status_line), (403, "HTTP/1.1 403"))

    def test_status_not_a_number(self) -> None:
        outcome = self.refused(b"HTTP/1.1 OK fine")
        self.assertEqual(
            (outcome.http_status, outcome.http_status_line), (None, "HTTP/1.1 OK fine")
        )

    def test_no_status(self) -> None:
        outcome = self.refused(b"HTTP/1.1")
        self.assertEqual((outcome.http_status, outcome.http_status_line), (None, "HTTP/1.1"))

    def test_no_response(self) -> None:
        protocol, _ = self.connect()
        outcome = self.lose(protocol, Failure(ConnectionLost("reset by peer")))
        self.assertEqual((outcome.http_status, outcome.http_status_line), (None, ""))


class SessionEndTests(SessionTestCase):
    """How each end is reported to the connector, and for which protocol."""

    def test_failure_names_the_protocol(self) -> None:
        error = RecoverableTunnelError("bad record")

        def receive(payload: bytes) -> None:
            raise error

        self.events.receive = receive
        protocol, _ = self.open()
        protocol.dataReceived(server_frame(0x2, b"bad"))
        self.assertEqual(self.events.failed_by, [(protocol, error)])

    def test_close_names_the_protocol(self) -> None:
        protocol, _ = self.open()
        outcome = self.lose(protocol)
        self.assertEqual(self.events.closed_by, [(protocol, outcome)])

    def test_dropped_connection_code(self) -> None:
        """A dropped session is reported with 1006 (abnormal closure), not the service's code."""
        protocol, _ = self.open()
        outcome = self.lose(protocol, Failure(ConnectionLost("gone")))
        self.assertEqual(outcome.code, 1006)
        self.assertIn("connection was closed uncleanly", outcome.reason)

    def test_service_close_without_reason(self) -> None:
        protocol, _ = self.open()
        protocol.dataReceived(server_frame(0x8, struct.pack("!H", 1001)))
        outcome = self.lose(protocol)
        self.assertEqual(
            (outcome.closed_by_service, outcome.code, outcome.reason), (True, 1001, "")
        )


class BeforeTheSessionStartsTests(WebSocketTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.events = NotStartingEvents()

    def test_messages_before_the_session_starts(self) -> None:
        """
        Messages that arrive before the tunnel starts the session are
        dropped (nothing fails); once it starts, they reach it.
        """
        protocol, transport = self.open()
        protocol.dataReceived(server_frame(0x2, b"early") + server_frame(0x2, PAYLOAD[:300]))
        self.assertFalse(transport.disconnecting)
        received: List[bytes] = []
        protocol.start_session(received.append, NoPacer(), InboundFlow())  # type: ignore[arg-type]
        protocol.dataReceived(server_frame(0x2, b"late"))
        self.assertEqual(received, [b"late"])


class InboundFlowTests(SessionTestCase):
    """
    Inbound flow control stops reading this WebSocket while a local
    connection is full, and says so to the session's scheduler and to the
    WebSocket's keep-alive.
    """

    def test_a_full_local_connection_pauses_reading(self) -> None:
        outbound = self.events.outbound = RecordingOutbound()
        protocol, transport = self.open()
        full = object()
        self.events.inbound.blocked(full)
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(outbound.calls, ["reading paused"])
        # The keep-alive does not drop a peer whose pong we are not reading.
        self.clock.pump([1.0] * 40)
        self.assertFalse(transport.disconnecting)
        self.events.inbound.unblocked(full)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(outbound.calls, ["reading paused", "reading resumed"])

    def test_the_scheduler_is_the_producer(self) -> None:
        """What the WebSocket writes is produced by the session's scheduler, which is pushed."""
        outbound = self.events.outbound = RecordingOutbound()
        _, transport = self.open()
        self.assertIs(transport.producer, outbound)
        self.assertTrue(transport.streaming)

    def test_keepalive_resumes_without_warnings(self) -> None:
        """
        A pong timeout put off while not reading is re-armed on Autobahn's own
        timer when reading resumes: no adapter says it fell back.
        """
        warnings = adapter_warnings(self)
        protocol, transport = self.open()
        self.clock.advance(5.5)  # the keep-alive ping is out
        protocol.reading_paused(True)
        self.clock.pump([1.0] * 30)
        protocol.reading_paused(False)
        self.clock.pump([1.0] * 9)
        self.assertFalse(transport.disconnecting)
        self.clock.pump([1.0] * 3)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(warnings, [])


class MessageBoundTests(SessionTestCase):
    def test_message_over_the_bound_fails_with_1009(self) -> None:
        """
        A message in fragments (each within the frame limit) that grows
        past 16 MiB fails the session with 1009, before it is delivered.
        """
        protocol, transport = self.open()
        codes: List[int] = []
        fail = protocol._fail_connection

        def recording(code: int = 1001, reason: str = "going away") -> None:
            codes.append(code)
            fail(code, reason)

        protocol._fail_connection = recording  # type: ignore[method-assign]
        fragment = PAYLOAD[: MAX_WEBSOCKET_FRAME_SIZE // 2]
        count = MAX_INCOMING_MESSAGE // len(fragment) + 1
        protocol.dataReceived(server_frame(0x2, fragment, final=False))
        for _ in range(count - 1):
            protocol.dataReceived(server_frame(0x0, fragment, final=False))
            if codes:
                break
        self.assertEqual(codes, [1009])
        self.assertEqual(self.events.messages, [])
        self.assertTrue(transport.disconnecting)
