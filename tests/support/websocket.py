"""
A real L{TunnelClientProtocol} on a string transport, with the tunneling
service's side of the upgrade played by the test (L{WebSocketTestCase}), and
what the client wrote read back as frames (L{client_frames}); the server's
half of any WebSocket written out byte by byte (L{upgrade_response},
L{server_frame}), for the tests that drive Autobahn's own client protocol
too; which frames reach Autobahn's parser (L{frames_autobahn_begins}).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import List, Mapping, Optional, Tuple

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3
from aws_localproxy.upstream.websocket import (
    CloseOutcome,
    TunnelClientFactory,
    TunnelClientProtocol,
)
from tests.fakes.transport import TCPLikeTransport
from tests.fakes.websocket import RecordingEvents

ACCESS_TOKEN = "AQGAAXiv-access-token-for-the-tests"
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def client_frames(data: bytes) -> List[Tuple[int, bytes]]:
    """Split what the client wrote into (opcode, unmasked payload) pairs."""
    frames = []
    while data:
        first, second = data[0], data[1]
        assert second & 0x80, "client frames are masked"
        length, offset = second & 0x7F, 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            offset = 10
        mask = data[offset : offset + 4]
        body = data[offset + 4 : offset + 4 + length]
        frames.append((first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(body))))
        data = data[offset + 4 + length :]
    return frames


class WebSocketTestCase(SynchronousTestCase):
    """
    Each test's own L{TunnelClientProtocol} on a L{TCPLikeTransport}, its
    events recorded (L{RecordingEvents}), txaio's timers on the test's
    L{Clock}; the test plays the service's upgrade response (L{accept}).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        config = txaio.config  # type: ignore[attr-defined]
        previous = config.loop
        config.loop = self.clock
        self.addCleanup(setattr, config, "loop", previous)
        self.events = RecordingEvents()

    #: Autobahn protocol options set on each factory after ours (a test's other limits).
    protocol_options: Mapping[str, object] = {}

    def connect(
        self,
        url: str = "wss://data.tunneling.iot.us-east-1.amazonaws.com/tunnel?local-proxy-mode=source",
        client_token: Optional[str] = None,
        subprotocol: str = SUBPROTOCOL_V3,
    ) -> Tuple[TunnelClientProtocol, TCPLikeTransport]:
        factory = TunnelClientFactory(
            self.clock,
            url=url,
            display_url=url.split("?")[0],
            events=self.events,
            access_token=ACCESS_TOKEN,
            client_token=client_token,
            subprotocol=subprotocol,
            ping_period=5.0,
            pong_timeout=10.0,
            open_handshake_timeout=30.0,
        )
        if self.protocol_options:
            factory.setProtocolOptions(**self.protocol_options)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 443))
        assert isinstance(protocol, TunnelClientProtocol)
        transport = TCPLikeTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def accept(self, protocol: TunnelClientProtocol, subprotocol: Optional[str]) -> bytes:
        return upgrade_response(
            protocol.websocket_key, subprotocol, extra_headers=b"channel-id: 0a1b2c3d\r\n"
        )

    def open(self, **kwargs: str) -> Tuple[TunnelClientProtocol, TCPLikeTransport]:
        protocol, transport = self.connect(**kwargs)
        protocol.dataReceived(self.accept(protocol, SUBPROTOCOL_V3))
        self.assertEqual(len(self.events.opened), 1)
        transport.clear()
        return protocol, transport

    def lose(
        self, protocol: TunnelClientProtocol, reason: Optional[Failure] = None
    ) -> CloseOutcome:
        """The TCP connection goes away; the one outcome reported for it."""
        protocol.connectionLost(reason or Failure(ConnectionDone()))
        self.assertEqual(len(self.events.closed), 1)
        return self.events.closed[0]


def upgrade_response(
    key: bytes, subprotocol: Optional[str] = None, *, extra_headers: bytes = b""
) -> bytes:
    """The server's 101 answer to an upgrade request whose C{Sec-WebSocket-Key} was C{key}."""
    accept = base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n"
    )
    if subprotocol is not None:
        response += b"Sec-WebSocket-Protocol: " + subprotocol.encode() + b"\r\n"
    return response + extra_headers + b"\r\n"


def server_frame(opcode: int, payload: bytes, *, final: bool = True, first_bits: int = 0) -> bytes:
    """
    One unmasked frame (as a server sends it) in the shortest length form;
    C{first_bits} are ORed into the first byte (a reserved bit, say).
    """
    first = (0x80 if final else 0) | first_bits | opcode
    if len(payload) < 126:
        return struct.pack("!BB", first, len(payload)) + payload
    if len(payload) < 0x10000:
        return struct.pack("!BBH", first, 126, len(payload)) + payload
    return struct.pack("!BBQ", first, 127, len(payload)) + payload


def frames_autobahn_begins(protocol: TunnelClientProtocol) -> List[int]:
    """
    The opcodes of the frames Autobahn's parser begins on C{protocol} from now
    on (those the fast path takes never reach it), in order.
    """
    seen: List[int] = []
    original = protocol.onFrameBegin

    def begin() -> None:
        assert protocol.current_frame is not None
        seen.append(protocol.current_frame.opcode)
        original()

    protocol.onFrameBegin = begin  # type: ignore[method-assign]
    return seen
