"""
End to end, the WebSocket frame rules hold on the receive fast path.

A scripted tunneling service (TLS on 127.0.0.1, a port the OS picks, an
Autobahn server that accepts the proxy's upgrade with the V3 subprotocol and
sends SERVICE_IDS) writes frames byte by byte to a real source proxy, which
has one local client connected through it.  Issue 18 part 6: the fast path
(C{TunnelClientProtocol._binary_frames}) once delivered frames over
C{maxFramePayloadSize} and lengths not in their shortest form, which
Autobahn (and RFC 6455) refuse.  Each case checks what the service and the
local client see: the close code the proxy sends (1009 too big, 1002 not
minimal), that none of the frame's data reached the client, the proxy's
error line, and the proxy's reconnect (a second upgrade).  A valid frame is
delivered (the control case), so the tests can fail either way.
"""

from __future__ import annotations

import struct
from typing import Any, List, Optional

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import SSL4ServerEndpoint

from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE, SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.wire import (
    Message,
    control_message,
    decode_all,
    encode_data,
    join_records,
)
from aws_localproxy.tunnelservice.certs import server_tls_options
from tests.support.deadlines import scaled
from tests.support.e2e import E2ETestCase, errors_logged, pattern
from tests.support.helpers import private_ca
from tests.support.payloads import assert_same_bytes

#: The service ID of the scripted tunnel's one service.
SERVICE = "ssh"


def binary_frame(payload: bytes, length_form: Optional[int] = None) -> bytes:
    """
    One final, unmasked binary frame (as a service sends) holding
    C{payload}, its length in the shortest form unless C{length_form} (7,
    16 or 64 bits) says otherwise.
    """
    length = len(payload)
    if length_form is None:
        length_form = 7 if length <= 125 else 16 if length <= 0xFFFF else 64
    if length_form == 7:
        header = bytes((0x82, length))
    elif length_form == 16:
        header = struct.pack(">BBH", 0x82, 126, length)
    else:
        header = struct.pack(">BBQ", 0x82, 127, length)
    return header + payload


class ScriptedSession(WebSocketServerProtocol):
    """One upgrade to the scripted service: records what the proxy sends and how it closes."""

    factory: ScriptedServiceFactory

    def __init__(self) -> None:
        super().__init__()
        self.messages: List[Message] = []
        #: The close code in the proxy's close frame (None: it sent none).
        self.peer_close_code: Optional[int] = None
        self.closed: Deferred[None] = Deferred()

    def onConnect(self, request: ConnectionRequest) -> str:
        if SUBPROTOCOL_V3 not in request.protocols:
            raise ValueError(f"the proxy offered {request.protocols}")
        return SUBPROTOCOL_V3

    def onOpen(self) -> None:
        self.factory.sessions.append(self)
        self.sendMessage(
            control_message(Message.SERVICE_IDS, available_service_ids=[SERVICE]), isBinary=True
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.extend(decode_all(payload))

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.peer_close_code = self.remoteCloseCode
        if not self.closed.called:
            self.closed.callback(None)

    def starts(self) -> List[Message]:
        """The proxy's StreamStart and ConnectionStart messages on this session."""
        kinds = (Message.STREAM_START, Message.CONNECTION_START)
        return [m for m in self.messages if m.type in kinds]

    def write_raw(self, data: bytes) -> None:
        """Bytes straight onto the TLS stream, past Autobahn's framing."""
        assert self.transport is not None
        self.transport.write(data)


class ScriptedServiceFactory(WebSocketServerFactory):
    protocol = ScriptedSession

    def __init__(self) -> None:
        super().__init__()
        self.sessions: List[ScriptedSession] = []


class FrameRuleTests(E2ETestCase):
    """A source proxy against the scripted service: each frame rule, end to end."""

    timeout = scaled(30)

    @inlineCallbacks
    def setUp(self) -> Any:
        self.keep_log()
        # No local tunnel service: the scripted one stands in its place, with
        # the attributes E2ETestCase.proxy reads (host, port, capath).
        files = private_ca(self)
        self.factory = ScriptedServiceFactory()
        listening = yield SSL4ServerEndpoint(
            reactor, 0, server_tls_options(files), interface="127.0.0.1"
        ).listen(self.factory)
        self.addCleanup(listening.stopListening)
        self.host = "127.0.0.1"
        self.port = listening.getHost().port
        self.capath = files.capath
        self.tunnel_service = self  # type: ignore[assignment]
        # Runs after the proxy's cleanup (registered later) has stopped it.
        self.addCleanup(self.drop_sessions)
        self.errors = errors_logged(self)

    def drop_sessions(self) -> None:
        """Drop any session the stopped proxy left open."""
        for session in self.factory.sessions:
            if not session.closed.called and session.transport is not None:
                session.transport.abortConnection()

    @inlineCallbacks
    def open_connection(self) -> Any:
        """
        Start the source proxy, connect a local client through it and wait
        for its start on the service; fires with (client, session, stream
        id, connection id).
        """
        self.source = self.proxy(Mode.SOURCE, "source-token", {SERVICE: "0"})
        yield self.connected(self.source)
        port = yield self.listening(self.source, SERVICE)
        client = yield self.connect(port)
        session = self.factory.sessions[0]
        yield self.until(
            lambda: session.starts(), f"the proxy did not start {client.name}'s connection"
        )
        start = session.starts()[-1]
        self.assertEqual(start.serviceId, SERVICE)
        return client, session, start.streamId, start.connectionId

    @inlineCallbacks
    def assert_refused(self, frame: bytes, data_length: int, code: int, reason: str) -> Any:
        """
        The service writes C{frame} (DATA for the open local connection,
        C{data_length} bytes of it): the proxy fails the WebSocket with
        C{code} for C{reason}, the client gets none of the data, and the
        proxy upgrades again.

        The proxy's Autobahn fails a session by dropping the connection
        (C{failByDrop}, as the reference drops it), so no close frame
        carries the code to the service: the code is in Autobahn's warning
        line, the reason in the proxy's error line.  Should a close frame
        ever be sent, it must carry the same code.
        """
        client, session, _, _ = self.open_connection_result
        session.write_raw(frame)
        # Either outcome ends the wait: the close, or data delivered (the old
        # fast path), which the assertions below then report.
        yield self.until(
            lambda: session.closed.called or client.size,
            "the proxy neither failed the WebSocket nor delivered the frame",
        )
        self.assertEqual(
            client.size, 0, f"{client.size} of the frame's {data_length} bytes were delivered"
        )
        self.assertIn(session.peer_close_code, (None, code))
        failing = f"failing WebSocket connection (code={code})"
        self.assertTrue(
            any(failing in line and reason in line for line in self.errors),
            f"no warning {failing!r} for {reason!r} in {self.errors}",
        )
        self.assertTrue(
            any("Error from io_ctx::run()" in line and reason in line for line in self.errors),
            f"no error line of the proxy's for {reason!r} in {self.errors}",
        )
        yield self.until(
            lambda: len(self.factory.sessions) >= 2,
            "the proxy did not upgrade again after failing the WebSocket",
        )
        self.assertEqual(client.size, 0)

    @inlineCallbacks
    def test_valid_frame_is_delivered(self) -> Any:
        """Control: a DATA record in a frame of its shortest form reaches the client."""
        client, session, stream_id, connection_id = yield self.open_connection()
        data = pattern(40000)
        payload = join_records(encode_data(SERVICE, stream_id, connection_id, data))
        session.write_raw(binary_frame(payload))
        received = yield client.wait_for(len(data))
        assert_same_bytes(self, received, data)
        self.assertFalse(session.closed.called)
        self.assertEqual(len(self.factory.sessions), 1)

    @inlineCallbacks
    def test_frame_over_the_maximum_fails_with_1009(self) -> Any:
        """
        A frame over the proxy's maximum payload (131,076 bytes), far under
        16 MiB, holding valid DATA records: refused with 1009, nothing of it
        delivered, and the proxy reconnects.
        """
        self.open_connection_result = yield self.open_connection()
        _, _, stream_id, connection_id = self.open_connection_result
        data = pattern(MAX_WEBSOCKET_FRAME_SIZE + 20000)
        payload = join_records(encode_data(SERVICE, stream_id, connection_id, data))
        self.assertGreater(len(payload), MAX_WEBSOCKET_FRAME_SIZE)
        self.assertLess(len(payload), 1024 * 1024)
        yield self.assert_refused(
            binary_frame(payload), len(data), 1009, "exceeds payload limit of 131076 octets"
        )

    @inlineCallbacks
    def test_non_minimal_length_fails_with_1002(self) -> Any:
        """
        A small DATA record whose frame length is sent in the 16-bit form
        (it fits the 7-bit one): refused with 1002, not delivered, and the
        proxy reconnects.
        """
        self.open_connection_result = yield self.open_connection()
        _, _, stream_id, connection_id = self.open_connection_result
        data = b"hello"
        payload = join_records(encode_data(SERVICE, stream_id, connection_id, data))
        self.assertLessEqual(len(payload), 125)
        yield self.assert_refused(
            binary_frame(payload, length_form=16),
            len(data),
            1002,
            "not using minimal length encoding",
        )
