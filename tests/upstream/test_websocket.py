"""
Unit tests of aws_localproxy.upstream.websocket on a StringTransport: the upgrade
request as it goes on the wire, the checks on the upgrade response, and what
each way a session ends reports to the connector.

Autobahn's timers run on txaio's global loop, not on the factory's reactor:
every test points C{txaio.config.loop} at its own L{Clock}.
"""

from __future__ import annotations

import struct
from typing import Callable, List, Optional, Tuple

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from aws_localproxy.adapters import autobahn_private
from aws_localproxy.protocol.constants import (
    MAX_WEBSOCKET_FRAME_SIZE,
    SUBPROTOCOL_V1,
    SUBPROTOCOL_V2,
    SUBPROTOCOL_V3,
)
from aws_localproxy.protocol.errors import FatalTunnelError, RecoverableTunnelError
from aws_localproxy.upstream.websocket import (
    MAX_INCOMING_MESSAGE,
    TunnelClientProtocol,
    user_agent,
)
from tests.fakes.transport import TCPLikeTransport
from tests.fakes.websocket import NoPacer, RecordingEvents
from tests.support.payloads import digest, unique_payload
from tests.support.seams import adapter_warnings
from tests.support.websocket import (
    ACCESS_TOKEN,
    WebSocketTestCase,
    client_frames,
    frames_autobahn_begins,
)

CLIENT_TOKEN = "b0a9b1c5-1b3b-4e3a-9a8e-client-token-0001"
#: Message payloads in which no block repeats (slices of one for several
#: messages of a test), so a frame's bytes taken twice, or from the wrong
#: place in a read, change a message.
PAYLOAD = unique_payload(MAX_WEBSOCKET_FRAME_SIZE + 1, seed=21)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame as the service sends it (payloads under 64 KiB)."""
    if len(payload) < 126:
        header = struct.pack("!BB", 0x80 | opcode, len(payload))
    else:
        header = struct.pack("!BBH", 0x80 | opcode, 126, len(payload))
    return header + payload


class RecordingPacer(NoPacer):
    """
    A session's outbound that records every pong offered to its pacer and
    takes those C{takes} says its pacer pinged for.
    """

    def __init__(self, takes: Callable[[bytes], bool]) -> None:
        self.pongs: List[bytes] = []
        self.takes = takes

    def pong(self, payload: bytes) -> bool:
        self.pongs.append(payload)
        return self.takes(payload)


def open_with_lpq1_pacer(
    case: WebSocketTestCase,
) -> Tuple[TunnelClientProtocol, RecordingPacer, List[int]]:
    """
    Open C{case}'s session with a pacer that takes the pongs starting
    C{b"lpq1"}: the protocol, the pacer and the opcodes Autobahn's parser
    begins (L{frames_autobahn_begins}).
    """
    outbound = case.events.outbound = RecordingPacer(lambda payload: payload.startswith(b"lpq1"))
    protocol, _ = case.open()
    return protocol, outbound, frames_autobahn_begins(protocol)


#: A message in two fragments with two pongs between them: C{b"ours"} (the
#: pacer's) and C{b"keepalive"} (Autobahn's).
FRAGMENTS_AROUND_PONGS = (
    struct.pack("!BB", 0x02, 3)
    + b"fra"
    + server_frame(0xA, b"ours")
    + server_frame(0xA, b"keepalive")
    + struct.pack("!BB", 0x80, 3)
    + b"gme"
)


class UpgradeRequestTests(WebSocketTestCase):
    """The HTTP upgrade request, byte for byte."""

    def expected(
        self,
        resource: str,
        host: str,
        client_token: Optional[str] = None,
        subprotocol: str = SUBPROTOCOL_V3,
        key: bytes = b"",
    ) -> bytes:
        lines = [
            f"GET {resource} HTTP/1.1",
            f"User-Agent: {user_agent()}",
            f"Host: {host}",
            "Upgrade: WebSocket",
            "Connection: Upgrade",
            "Pragma: no-cache",
            "Cache-Control: no-cache",
            f"access-token: {ACCESS_TOKEN}",
        ]
        if client_token is not None:
            lines.append(f"client-token: {client_token}")
        lines += [
            f"Sec-WebSocket-Key: {key.decode()}",
            f"Sec-WebSocket-Protocol: {subprotocol}",
            "Sec-WebSocket-Version: 13",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def test_source_without_client_token(self) -> None:
        """
        The source's request: the mode in the query, the access token in its
        header, one subprotocol offered, no C{client-token} header, no
        extensions, no cookie.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            transport.value(),
            self.expected(
                "/tunnel?local-proxy-mode=source",
                "data.tunneling.iot.us-east-1.amazonaws.com:443",
                key=protocol.websocket_key,
            ),
        )
        self.assertNotIn(b"Cookie", transport.value())
        self.assertNotIn(b"Sec-WebSocket-Extensions", transport.value())

    def test_destination_with_client_token(self) -> None:
        """A client token, when there is one, is sent in the C{client-token} header."""
        protocol, transport = self.connect(
            url="wss://127.0.0.1:8443/tunnel?local-proxy-mode=destination",
            client_token=CLIENT_TOKEN,
        )
        self.assertEqual(
            transport.value(),
            self.expected(
                "/tunnel?local-proxy-mode=destination",
                "127.0.0.1:8443",
                client_token=CLIENT_TOKEN,
                key=protocol.websocket_key,
            ),
        )

    def test_empty_client_token_is_not_sent(self) -> None:
        """An empty client token means none: no empty header."""
        _, transport = self.connect(client_token="")
        self.assertNotIn(b"client-token", transport.value())

    def test_ipv6_host_in_brackets(self) -> None:
        """An IPv6 literal gets brackets in C{Host}, so its port can be told from it."""
        protocol, transport = self.connect(url="wss://[::1]:8443/tunnel?local-proxy-mode=source")
        self.assertIn(b"\r\nHost: [::1]:8443\r\n", transport.value())

    def test_only_the_configured_subprotocol_is_offered(self) -> None:
        """
        The subprotocol of the settings is the only one offered, whichever it
        is (C{-y} does not change it).
        """
        for subprotocol in (SUBPROTOCOL_V1, SUBPROTOCOL_V2, SUBPROTOCOL_V3):
            protocol, transport = self.connect(subprotocol=subprotocol)
            offered = [
                line
                for line in transport.value().split(b"\r\n")
                if line.startswith(b"Sec-WebSocket-Protocol:")
            ]
            self.assertEqual(offered, [b"Sec-WebSocket-Protocol: " + subprotocol.encode()])

    def test_user_agent_names_the_project(self) -> None:
        """The C{User-Agent} names this project, its version and its platform."""
        agent = user_agent()
        self.assertRegex(agent, r"^aws-localproxy/\d+\.\d+\.\d+\S* \S+ \d+-bit/python-\d")
        for component in ("twisted-", "autobahn-", "pyopenssl-", "protobuf-"):
            self.assertIn(component, agent)


class UpgradeResponseTests(WebSocketTestCase):
    def test_101_with_subprotocol_opens(self) -> None:
        """A 101 naming a tunneling subprotocol opens the session and says which."""
        protocol, _ = self.connect()
        protocol.dataReceived(self.accept(protocol, SUBPROTOCOL_V3))
        self.assertEqual(self.events.opened, [(protocol, SUBPROTOCOL_V3)])

    def test_any_tunneling_subprotocol_is_accepted(self) -> None:
        """The service may pick an older subprotocol than the one offered."""
        protocol, _ = self.connect()
        protocol.dataReceived(self.accept(protocol, SUBPROTOCOL_V2))
        self.assertEqual(self.events.opened, [(protocol, SUBPROTOCOL_V2)])

    def test_101_without_subprotocol_is_refused(self) -> None:
        """
        A 101 without C{Sec-WebSocket-Protocol} never opens: the connection
        is dropped and the outcome is a session that was never open.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(self.accept(protocol, None))
        self.assertEqual(self.events.opened, [])
        self.assertTrue(transport.disconnecting)
        outcome = self.lose(protocol)
        self.assertFalse(outcome.was_open)
        self.assertFalse(outcome.closed_by_service)
        self.flushLoggedErrors(ValueError)

    def test_4xx_status_is_reported(self) -> None:
        """A rejected upgrade reports its status and status line (4xx: final for the connector)."""
        protocol, transport = self.connect()
        protocol.dataReceived(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(self.events.opened, [])
        self.assertTrue(transport.disconnecting)
        outcome = self.lose(protocol)
        self.assertEqual(
            (outcome.was_open, outcome.http_status, outcome.http_status_line),
            (False, 403, "HTTP/1.1 403 Forbidden"),
        )

    def test_5xx_status_is_reported(self) -> None:
        protocol, _ = self.connect()
        protocol.dataReceived(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        outcome = self.lose(protocol)
        self.assertEqual((outcome.was_open, outcome.http_status), (False, 502))

    def test_no_response_no_status(self) -> None:
        """
        The connection dies before any response: no status (not a made-up
        200), and the transport's error is kept.
        """
        protocol, _ = self.connect()
        outcome = self.lose(protocol, Failure(ConnectionLost("reset by peer")))
        self.assertEqual((outcome.was_open, outcome.http_status), (False, None))
        self.assertIn("reset by peer", outcome.transport_error)


class OpenSessionTests(WebSocketTestCase):
    def test_messages_reach_the_events(self) -> None:
        """Each binary message from the service is handed over whole."""
        protocol, _ = self.open()
        protocol.dataReceived(
            server_frame(0x2, b"\x00\x05hello") + server_frame(0x2, PAYLOAD[:300])
        )
        self.assertEqual(self.events.messages, [b"\x00\x05hello", PAYLOAD[:300]])

    def test_messages_go_to_the_session_only_once_it_started(self) -> None:
        """
        The session starts (the tunnel gives it its receiver) when the
        connector hears it opened; from then on every message goes straight
        to that receiver.
        """
        received: List[bytes] = []
        self.events.receive = received.append
        protocol, _ = self.open()
        protocol.dataReceived(server_frame(0x2, b"one") + server_frame(0x2, b"two"))
        self.assertEqual(received, [b"one", b"two"])
        self.assertEqual(self.events.messages, [])

    def test_failure_ends_the_handover(self) -> None:
        """
        A message the tunnel cannot take fails the session: the connector
        hears why, once, and nothing more reaches the tunnel -- not the rest
        of the read, not a later read, not a message Autobahn assembled.
        """
        received: List[bytes] = []
        error = RecoverableTunnelError("bad record")

        def receive(payload: bytes) -> None:
            received.append(payload)
            if payload == b"bad":
                raise error

        self.events.receive = receive
        protocol, _ = self.open()
        protocol.dataReceived(
            server_frame(0x2, b"ok") + server_frame(0x2, b"bad") + server_frame(0x2, b"same read")
        )
        protocol.dataReceived(server_frame(0x2, b"after"))
        protocol.dataReceived(
            struct.pack("!BB", 0x02, 3) + b"fra" + struct.pack("!BB", 0x80, 3) + b"gme"
        )
        self.assertEqual(received, [b"ok", b"bad"])
        self.assertEqual(self.events.failed, [error])

    def test_failure_of_an_assembled_message(self) -> None:
        """The same for a message Autobahn's parser assembled (a fragmented one)."""
        error = FatalTunnelError("wrong service ids")

        def receive(payload: bytes) -> None:
            raise error

        self.events.receive = receive
        protocol, _ = self.open()
        protocol.dataReceived(
            struct.pack("!BB", 0x02, 3) + b"fra" + struct.pack("!BB", 0x80, 3) + b"gme"
        )
        protocol.dataReceived(server_frame(0x2, b"after"))
        self.assertEqual(self.events.failed, [error])

    def test_pongs_go_to_the_session_scheduler(self) -> None:
        """
        A pong Autobahn parses (here between a message's fragments) goes to
        the session's scheduler too; one it takes is not Autobahn's.
        """
        outbound = self.events.outbound = RecordingPacer(lambda payload: payload == b"ours")
        protocol, _ = self.open()
        autobahns: List[bytes] = []
        protocol._onPong = autobahns.append  # type: ignore[method-assign]
        protocol.dataReceived(FRAGMENTS_AROUND_PONGS)
        self.assertEqual(outbound.pongs, [b"ours", b"keepalive"])
        self.assertEqual(autobahns, [b"keepalive"])
        self.assertEqual(self.events.messages, [b"fragme"])

    def test_send_record_is_one_binary_message(self) -> None:
        protocol, transport = self.open()
        protocol.send_record(b"\x00\x03abc")
        self.assertEqual(client_frames(transport.value()), [(0x2, b"\x00\x03abc")])

    def test_masking_keys(self) -> None:
        """
        Each frame has its own masking key, from the system's random source
        read a thousand keys at a time: frames past the first read are
        masked as well, and the keys are not reused (random keys may repeat
        by chance, about once in two thousand runs of this test; not ten times).
        """
        protocol, transport = self.open()
        for index in range(2100):
            protocol.send_record(b"%d" % index)
        data = transport.value()
        self.assertEqual(
            [payload for _, payload in client_frames(data)], [b"%d" % i for i in range(2100)]
        )
        keys, position = set(), 0
        while position < len(data):
            keys.add(data[position + 2 : position + 6])
            position += 6 + (data[position + 1] & 0x7F)
        self.assertGreater(len(keys), 2090)

    def test_send_record_before_open_is_dropped(self) -> None:
        """Nothing is written (and nothing raises) while the handshake is still running."""
        protocol, transport = self.connect()
        transport.clear()
        protocol.send_record(b"\x00\x03abc")
        self.assertEqual(transport.value(), b"")

    def test_service_close_frame(self) -> None:
        """
        The service closes (CloseTunnel, expiry, replaced by another peer):
        the close is answered and the outcome carries the service's code and
        reason, marked as closed by the service.
        """
        protocol, transport = self.open()
        protocol.dataReceived(server_frame(0x8, struct.pack("!H", 1000) + b"tunnel closed"))
        # The echo carries the status code (RFC 6455 section 5.5.1), not the reason.
        self.assertEqual(client_frames(transport.value()), [(0x8, struct.pack("!H", 1000))])
        outcome = self.lose(protocol)
        self.assertEqual(
            (outcome.was_open, outcome.was_clean, outcome.closed_by_service),
            (True, True, True),
        )
        self.assertEqual((outcome.code, outcome.reason), (1000, "tunnel closed"))
        self.assertEqual(outcome.http_status, None)

    def test_own_close_is_not_the_services(self) -> None:
        """A close this side started is not reported as closed by the service."""
        protocol, transport = self.open()
        protocol.sendClose(1000)
        protocol.dataReceived(server_frame(0x8, struct.pack("!H", 1000)))
        outcome = self.lose(protocol)
        self.assertEqual((outcome.was_open, outcome.closed_by_service), (True, False))

    def test_dropped_connection(self) -> None:
        """An open session whose TCP connection dies is neither clean nor the service's close."""
        protocol, _ = self.open()
        outcome = self.lose(protocol, Failure(ConnectionLost("gone")))
        self.assertEqual(
            (outcome.was_open, outcome.was_clean, outcome.closed_by_service), (True, False, False)
        )

    def test_ping_and_pong_timeout(self) -> None:
        """
        A ping goes out every ping period; an unanswered one drops the
        connection after the pong timeout, on txaio's loop (our clock).
        """
        protocol, transport = self.open()
        self.clock.advance(5.5)
        frames = client_frames(transport.value())
        self.assertEqual([opcode for opcode, _ in frames], [0x9])
        self.assertFalse(transport.disconnecting)
        self.clock.advance(11)
        self.assertTrue(transport.disconnecting)

    def test_data_through_the_fast_path_keeps_the_session_alive(self) -> None:
        """
        Regression (issue 18): data frames the fast path takes count as the
        peer's traffic, as Autobahn counts the frames it parses
        (C{autoPingRestartOnAnyTraffic}): a session busy receiving, whose
        pong waits behind the data, is not dropped for the late pong.
        """
        protocol, transport = self.open()
        for second in range(40):
            self.clock.advance(1)
            # Every frame the service sends is one the fast path takes.
            protocol.dataReceived(server_frame(0x2, b"data %d" % second))
        self.assertEqual(len(self.events.messages), 40)
        self.assertIn(0x9, [opcode for opcode, _ in client_frames(transport.value())])
        self.assertFalse(transport.disconnecting)
        # Silence afterwards: the keep-alive still finds a dead peer (the
        # next ping after a ping period, dropped a pong timeout later).
        self.clock.pump([1.0] * (5 + 10 + 2))
        self.assertTrue(transport.disconnecting)

    def test_a_frame_split_over_reads_counts_when_it_completes(self) -> None:
        """Bytes of a frame still incomplete are not yet a frame (Autobahn counts whole frames)."""
        protocol, transport = self.open()
        self.clock.advance(5.5)  # the keep-alive ping is out; its timeout runs
        frame = server_frame(0x2, PAYLOAD[:1000])
        protocol.dataReceived(frame[:500])
        self.clock.advance(9)
        protocol.dataReceived(frame[500:])
        self.clock.advance(9)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.events.messages, [PAYLOAD[:1000]])


def long_frame(opcode: int, payload: bytes, first: int = 0x80) -> bytes:
    """One unmasked frame with a 64-bit length (any size)."""
    return struct.pack("!BBQ", first | opcode, 127, len(payload)) + payload


class IncomingFrameTests(WebSocketTestCase):
    """
    Binary frames are taken whole by the protocol's own loop while Autobahn
    is between messages; every other frame reaches Autobahn at a frame
    boundary.  The messages and their order are the same either way.
    """

    def test_every_split(self) -> None:
        """The stream cut at every byte: the same messages, in order, none early."""
        messages = [b"\x00\x01a", PAYLOAD[:200], PAYLOAD[200:70200], b""]
        stream = (
            server_frame(0x2, messages[0])
            + server_frame(0x2, messages[1])
            + long_frame(0x2, messages[2])
            + server_frame(0x2, messages[3])
        )
        for cut in list(range(0, 16)) + list(range(200, 230)) + [len(stream) - 1]:
            self.events.messages.clear()
            protocol, _ = self.open()
            protocol.dataReceived(stream[:cut])
            delivered = len(self.events.messages)
            protocol.dataReceived(stream[cut:])
            self.assertEqual(
                [digest(message) for message in self.events.messages],
                [digest(message) for message in messages],
                cut,
            )
            self.assertLessEqual(delivered, 4)
            self.events.opened.clear()

    def test_byte_by_byte(self) -> None:
        protocol, _ = self.open()
        stream = server_frame(0x2, PAYLOAD[:300]) + server_frame(0x2, PAYLOAD[300:305])
        for index in range(len(stream)):
            protocol.dataReceived(stream[index : index + 1])
        self.assertEqual(self.events.messages, [PAYLOAD[:300], PAYLOAD[300:305]])

    def test_ping_between_messages(self) -> None:
        """A ping in the middle is Autobahn's: answered, and the messages around it kept in order."""
        protocol, transport = self.open()
        protocol.dataReceived(
            server_frame(0x2, b"one") + server_frame(0x9, b"hi") + server_frame(0x2, b"two")
        )
        self.assertEqual(self.events.messages, [b"one", b"two"])
        self.assertEqual(client_frames(transport.value()), [(0xA, b"hi")])

    def test_fragmented_message(self) -> None:
        """A message in fragments goes through Autobahn whole; the next frames are taken again."""
        protocol, _ = self.open()
        first = struct.pack("!BB", 0x02, 3) + b"abc"  # binary, not final
        last = struct.pack("!BB", 0x80, 3) + b"def"  # continuation, final
        protocol.dataReceived(first + last[:2])
        protocol.dataReceived(last[2:] + server_frame(0x2, b"next"))
        self.assertEqual(self.events.messages, [b"abcdef", b"next"])

    def test_close_after_messages(self) -> None:
        """Messages, then the service's close, in one read: all delivered, the close answered."""
        protocol, transport = self.open()
        protocol.dataReceived(
            server_frame(0x2, b"last") + server_frame(0x8, struct.pack("!H", 1000) + b"bye")
        )
        self.assertEqual(self.events.messages, [b"last"])
        self.assertEqual(client_frames(transport.value()), [(0x8, struct.pack("!H", 1000))])

    def test_masked_server_frame_fails_the_connection(self) -> None:
        """A masked frame from the service breaks RFC 6455: Autobahn drops the connection."""
        protocol, transport = self.open()
        masked = struct.pack("!BB", 0x82, 0x80 | 3) + b"\0\0\0\0" + b"abc"
        protocol.dataReceived(server_frame(0x2, b"ok") + masked)
        self.assertEqual(self.events.messages, [b"ok"])
        self.assertTrue(transport.disconnecting)

    def test_oversized_frame_fails_the_connection(self) -> None:
        """A frame over the incoming bound is Autobahn's to refuse, before its payload arrives."""
        protocol, transport = self.open()
        protocol.dataReceived(struct.pack("!BBQ", 0x82, 127, MAX_INCOMING_MESSAGE + 1))
        self.assertEqual(self.events.messages, [])
        self.assertTrue(transport.disconnecting)

    def failure_codes(self, protocol: TunnelClientProtocol) -> List[int]:
        """The close codes Autobahn fails C{protocol} with (it drops TCP: no close frame shows them)."""
        codes: List[int] = []
        fail = protocol._fail_connection

        def recording(code: int = 1001, reason: str = "going away") -> None:
            codes.append(code)
            fail(code, reason)

        protocol._fail_connection = recording  # type: ignore[method-assign]
        return codes

    def test_frame_over_the_frame_limit_is_refused_with_1009(self) -> None:
        """
        Regression (issue 18): a frame over C{maxFramePayloadSize} (131,076
        bytes) was taken by the fast path, up to 16 MiB.  Autobahn fails the
        session with 1009 as soon as it reads the header.
        """
        protocol, transport = self.open()
        codes = self.failure_codes(protocol)
        size = MAX_WEBSOCKET_FRAME_SIZE + 1
        protocol.dataReceived(server_frame(0x2, b"ok") + long_frame(0x2, b"z" * size))
        self.assertEqual(self.events.messages, [b"ok"])
        self.assertEqual(codes, [1009])
        self.assertTrue(transport.disconnecting)
        self.assertIn("exceeds payload limit", self.lose(protocol).reason)

    def test_frame_at_the_frame_limit_is_taken(self) -> None:
        protocol, transport = self.open()
        message = PAYLOAD[:MAX_WEBSOCKET_FRAME_SIZE]
        protocol.dataReceived(long_frame(0x2, message))
        self.assertEqual([digest(m) for m in self.events.messages], [digest(message)])
        self.assertFalse(transport.disconnecting)

    def test_non_minimal_lengths_are_refused_with_1002(self) -> None:
        """
        Regression (issue 18): 5 bytes sent with a 16-bit length (or 300 with
        a 64-bit one) were taken; RFC 6455 asks for the shortest form, and
        Autobahn fails the session with 1002.
        """
        for frame in (
            struct.pack("!BBH", 0x82, 126, 5) + b"y" * 5,
            long_frame(0x2, b"y" * 300),
        ):
            self.events.messages.clear()
            self.events.opened.clear()
            protocol, transport = self.open()
            codes = self.failure_codes(protocol)
            protocol.dataReceived(server_frame(0x2, b"ok") + frame)
            self.assertEqual(self.events.messages, [b"ok"])
            self.assertEqual(codes, [1002])
            self.assertTrue(transport.disconnecting)

    def test_binary_frames_skip_autobahns_parser(self) -> None:
        """
        Autobahn sees no frame of a plain binary stream; it sees a ping and
        the rest of that read, and the next read is taken again.
        """
        protocol, _ = self.open()
        seen = frames_autobahn_begins(protocol)
        protocol.dataReceived(server_frame(0x2, b"a") + server_frame(0x2, PAYLOAD[:1000]))
        self.assertEqual(seen, [])
        protocol.dataReceived(server_frame(0x9, b"p") + server_frame(0x2, b"c"))
        self.assertEqual(seen, [0x9, 0x2])
        protocol.dataReceived(server_frame(0x2, b"d"))
        self.assertEqual(seen, [0x9, 0x2])
        self.assertEqual(self.events.messages, [b"a", PAYLOAD[:1000], b"c", b"d"])

    def test_pacer_pongs_skip_autobahns_parser(self) -> None:
        """
        A pong the session's pacer takes is taken in the fast path too, and
        the binary frames after it with it; a pong it does not take (the
        keep-alive's) is Autobahn's, with the rest of that read.
        """
        protocol, outbound, seen = open_with_lpq1_pacer(self)
        protocol.dataReceived(
            server_frame(0x2, b"a") + server_frame(0xA, b"lpq1 ours") + server_frame(0x2, b"b")
        )
        self.assertEqual(seen, [])
        protocol.dataReceived(server_frame(0xA, b"keepalive") + server_frame(0x2, b"c"))
        self.assertEqual(seen, [0xA, 0x2])
        self.assertEqual(self.events.messages, [b"a", b"b", b"c"])
        # (The keep-alive's was offered to the scheduler first, then to Autobahn.)
        self.assertEqual(outbound.pongs.count(b"lpq1 ours"), 1)
        self.assertIn(b"keepalive", outbound.pongs)

    def test_pacer_pong_split_over_reads(self) -> None:
        """A pong cut between two reads is taken once it completes."""
        outbound = self.events.outbound = RecordingPacer(lambda payload: True)
        protocol, _ = self.open()
        stream = server_frame(0xA, b"lpq1 twelve!") + server_frame(0x2, b"after")
        protocol.dataReceived(stream[:5])
        self.assertEqual(outbound.pongs, [])
        protocol.dataReceived(stream[5:])
        self.assertEqual(outbound.pongs, [b"lpq1 twelve!"])
        self.assertEqual(self.events.messages, [b"after"])


class ReadingPausedTests(WebSocketTestCase):
    """
    While inbound flow control does not read the WebSocket, no pong can
    arrive: the keep-alive waits for reading to resume before it judges.
    """

    def test_pong_timeout_waits_while_we_do_not_read(self) -> None:
        protocol, transport = self.open()
        self.clock.advance(5.5)  # the keep-alive ping is out
        protocol.reading_paused(True)
        self.clock.pump([1.0] * 60)
        self.assertFalse(transport.disconnecting)
        protocol.reading_paused(False)
        # What was waiting is read: any data frame is the peer's answer.
        protocol.dataReceived(server_frame(0x2, b"queued behind our pause"))
        self.clock.pump([1.0] * 12)
        self.assertFalse(transport.disconnecting)

    def test_silent_peer_is_found_after_reading_resumes(self) -> None:
        protocol, transport = self.open()
        self.clock.advance(5.5)
        protocol.reading_paused(True)
        self.clock.pump([1.0] * 30)
        protocol.reading_paused(False)
        self.clock.pump([1.0] * 5)
        self.assertFalse(transport.disconnecting)  # a whole pong timeout again
        self.clock.pump([1.0] * 7)
        self.assertTrue(transport.disconnecting)

    def test_pong_read_before_the_pause_took_effect(self) -> None:
        """A pong in the rest of the read that paused us answers the ping: no timeout is re-armed."""
        protocol, transport = self.open()
        self.clock.advance(5.5)
        ((_, ping),) = client_frames(transport.value())
        protocol.reading_paused(True)
        self.clock.pump([1.0] * 11)  # the timeout runs out while paused
        protocol.dataReceived(server_frame(0xA, ping))
        protocol.reading_paused(False)
        self.clock.pump([1.0] * 14)
        self.assertFalse(transport.disconnecting)


class PacerEvents(RecordingEvents):
    """
    Events that start each session with an outbound whose pacer sent pings
    with the payload C{b"pace"}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pacer = self.outbound = RecordingPacer(lambda payload: payload == b"pace")


class PacerPongTests(WebSocketTestCase):
    """The pacer's pongs reach the session; other pongs are Autobahn's keep-alive's."""

    def setUp(self) -> None:
        super().setUp()
        self.events = PacerEvents()

    def test_pacer_pong(self) -> None:
        protocol, transport = self.open()
        protocol.dataReceived(server_frame(0x2, b"one") + server_frame(0xA, b"pace"))
        protocol.dataReceived(server_frame(0xA, b"other") + server_frame(0x2, b"two"))
        self.assertEqual(self.events.pacer.pongs, [b"pace", b"other"])
        self.assertEqual(self.events.messages, [b"one", b"two"])
        self.assertFalse(transport.disconnecting)


class WithoutFastPath(WebSocketTestCase):
    """
    Where Autobahn's parser internals moved (C{PARSER_SEAM} false), the
    WebSocket takes no frame past Autobahn's parser: the same messages,
    pongs, keep-alive and close, through Autobahn's public path, and a
    warning once.
    """

    def setUp(self) -> None:
        super().setUp()
        self.warnings = adapter_warnings(self)
        self.patch(autobahn_private, "PARSER_SEAM", False)

    def open(self, **kwargs: str) -> Tuple[TunnelClientProtocol, TCPLikeTransport]:
        protocol, transport = super().open(**kwargs)
        self.assertFalse(protocol._fast_path)
        self.assertEqual(len(self.warnings), 1)
        return protocol, transport


class OpenSessionWithoutFastPathTests(WithoutFastPath, OpenSessionTests):
    def test_pongs_go_to_the_session_scheduler(self) -> None:
        """
        Without the fast path every pong reaches the session's scheduler
        through Autobahn's public C{onPong}; one it takes is not passed on.
        """
        autobahns: List[bytes] = []
        self.patch(
            WebSocketClientProtocol, "onPong", lambda protocol, payload: autobahns.append(payload)
        )
        outbound = self.events.outbound = RecordingPacer(lambda payload: payload == b"ours")
        protocol, _ = self.open()
        protocol.dataReceived(FRAGMENTS_AROUND_PONGS)
        self.assertEqual(outbound.pongs, [b"ours", b"keepalive"])
        self.assertEqual(autobahns, [b"keepalive"])
        self.assertEqual(self.events.messages, [b"fragme"])


class IncomingFramesWithoutFastPathTests(WithoutFastPath, IncomingFrameTests):
    def test_binary_frames_skip_autobahns_parser(self) -> None:
        """Without the fast path Autobahn parses every frame."""
        protocol, _ = self.open()
        seen = frames_autobahn_begins(protocol)
        protocol.dataReceived(server_frame(0x2, b"a") + server_frame(0x9, b"p"))
        protocol.dataReceived(server_frame(0x2, b"b"))
        self.assertEqual(seen, [0x2, 0x9, 0x2])
        self.assertEqual(self.events.messages, [b"a", b"b"])

    def test_pacer_pongs_skip_autobahns_parser(self) -> None:
        """
        Without the fast path Autobahn parses the pacer's pongs too; each
        pong is offered to the session's scheduler once.
        """
        protocol, outbound, seen = open_with_lpq1_pacer(self)
        protocol.dataReceived(
            server_frame(0x2, b"a") + server_frame(0xA, b"lpq1 ours") + server_frame(0x2, b"b")
        )
        protocol.dataReceived(server_frame(0xA, b"keepalive") + server_frame(0x2, b"c"))
        self.assertEqual(seen, [0x2, 0xA, 0x2, 0xA, 0x2])
        self.assertEqual(self.events.messages, [b"a", b"b", b"c"])
        self.assertEqual(outbound.pongs, [b"lpq1 ours", b"keepalive"])


class ReadingPausedWithoutFastPathTests(WithoutFastPath, ReadingPausedTests):
    pass


class PacerPongWithoutFastPathTests(WithoutFastPath, PacerPongTests):
    pass
