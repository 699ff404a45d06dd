# -*- test-case-name: tests.upstream.test_websocket -*-
# Autobahn is not annotated; its base classes' methods and constructors are
# called throughout.
# mypy: disallow-untyped-calls=False
"""
The WebSocket to the tunneling service: Autobahn's client protocol, thinly.

One L{TunnelClientProtocol} is one session.  It does the handshake the way
the reference does (``access-token`` and ``client-token``
headers, a ``User-Agent``, one ``Sec-WebSocket-Protocol`` value from the
settings), accepts whichever of the three tunneling subprotocols the
service picks (the reference does not check it) but insists that it
picks one, and reports how the session goes to a L{SessionEvents} object:
the connector, which owns the rules for what happens next.

Once the session is open the tunnel gives it its receiver and its outbound
scheduler (L{TunnelClientProtocol.start_session}): each binary message goes
straight to the tunnel, each pong of the pacer's pings straight to the
scheduler, and the connector only hears of the session again if it fails or
ends.
"""

from __future__ import annotations

import os
import platform
import struct
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Protocol

import autobahn
import google.protobuf
import OpenSSL
import twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectingRequest, ConnectionResponse
from twisted.logger import Logger
from twisted.python.failure import Failure

from aws_localproxy._version import __version__
from aws_localproxy.adapters.autobahn_private import (
    fast_path,
    keepalive_call_later,
    parse_frames,
    restart_keepalive,
)
from aws_localproxy.adapters.sockets import (
    set_no_delay,
    set_not_sent_low_water,
    set_socket_buffers,
    tcp_transport_of,
)
from aws_localproxy.protocol.constants import (
    ACCESS_TOKEN_HEADER,
    CLIENT_TOKEN_HEADER,
    MAX_WEBSOCKET_FRAME_SIZE,
    SUBPROTOCOLS,
)
from aws_localproxy.protocol.errors import TunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.upstream.masking import mask_in_place
from aws_localproxy.upstream.tls_layer import BatchingTLSTransport

__all__ = [
    "CloseOutcome",
    "SessionEvents",
    "TunnelClientFactory",
    "TunnelClientProtocol",
    "user_agent",
    "NO_SUBPROTOCOL",
]

NO_SUBPROTOCOL = "No websocket subprotocol returned from proxy server!"

#: Incoming messages are re-framed by the tunnel codec, so their size only
#: needs a sane bound; frames are bounded by the protocol itself.
MAX_INCOMING_MESSAGE = 16 * 1024 * 1024

#: Unsent bytes the kernel may hold for the WebSocket (see L{set_not_sent_low_water}).
NOTSENT_LOWAT = 128 * 1024

#: Bytes of masking keys read from the system's random source at once (1024 keys).
_MASK_POOL = 4096

_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
#: A frame's 7-bit length 126 or 127: the real length follows, in 16 or 64 bits.
_EXTENDED_LENGTH = {126: struct.Struct("!H"), 127: struct.Struct("!Q")}
#: The smallest length each form may carry (RFC 6455 5.2: "the minimal number
#: of bytes MUST be used to encode the length"), indexed by the 7-bit length.
_SHORTEST = (0,) * 126 + (126, 0x10000)


def user_agent() -> str:
    """Names this project and the versions a support request needs (the reference's does the same)."""
    bits = struct.calcsize("P") * 8
    python = ".".join(map(str, sys.version_info[:3]))
    return (
        f"aws-localproxy/{__version__} {platform.system().lower()} {bits}-bit"
        f"/python-{python}/twisted-{twisted.__version__}/autobahn-{getattr(autobahn, '__version__', '?')}"
        f"/pyopenssl-{OpenSSL.__version__}/protobuf-{google.protobuf.__version__}"
    )


@dataclass(frozen=True)
class CloseOutcome:
    """How a session (or an attempt at one) ended, as the connector needs to know it."""

    was_open: bool
    was_clean: bool
    code: Optional[int]
    reason: str
    #: The peer sent a close frame first (CloseTunnel, expiry, replaced by another peer).
    closed_by_service: bool
    #: The HTTP status of a rejected upgrade, if a response was read.
    http_status: Optional[int] = None
    http_status_line: str = ""
    #: Why the transport went away (network or TLS failure), if not a clean close.
    transport_error: str = ""


class SessionEvents(Protocol):
    """How a L{TunnelClientProtocol}'s session goes (implemented by the connector)."""

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        """The handshake succeeded with C{subprotocol}; the session is to start."""

    def session_failed(self, protocol: TunnelClientProtocol, error: TunnelError) -> None:
        """The tunnel could not take a message: the session cannot go on (nothing more is handed over)."""

    def session_closed(self, protocol: TunnelClientProtocol, outcome: CloseOutcome) -> None:
        """The WebSocket is gone (or never opened): how it ended."""


def _no_session(payload: bytes) -> None:
    """Where messages go while no session takes them: before it starts, after it failed."""


#: Not the class's C{log}: Autobahn logs through that attribute, and its own
#: logger drops debug lines for nothing, while a Twisted C{Logger} there would
#: build and filter an event for every frame.
_log = Logger(namespace="aws_localproxy.upstream.websocket.TunnelClientProtocol")


class TunnelClientProtocol(WebSocketClientProtocol):
    """One WebSocket session with the tunneling service."""

    factory: TunnelClientFactory

    _was_open = False
    _takes_bytearrays = False
    #: The start of a binary frame L{_binary_frames} has not seen all of: its
    #: pieces, their size, and the size that completes the frame (or its header).
    _partial: Optional[list[bytes]] = None
    _partial_size = 0
    _partial_need = 0
    _transport_error = ""
    #: Whether complete binary frames skip Autobahn's parser: Autobahn's
    #: internals are what the fast path reads (set once connected, see
    #: L{aws_localproxy.adapters.autobahn_private}); else Autobahn parses all.
    _fast_path = False
    #: The largest frame the fast path takes (set when the options are known).
    _fast_path_limit = 0
    #: Inbound flow control is not reading the WebSocket (a local connection is full).
    _not_reading = False
    #: The keep-alive's pong timeout ran out while we were not reading.
    _pong_timeout_deferred = False
    #: The session's scheduler, once it started: where the pacer's pongs go.
    _outbound: Optional[OutboundScheduler] = None
    #: L{_binary_frames} left Autobahn a pong the scheduler did not take.
    _pong_refused = False
    #: Masking keys not used yet, and where the next one starts (L{_next_mask}).
    _masks = b""
    _mask_at = _MASK_POOL

    def connectionMade(self) -> None:
        #: Where each binary message goes: the tunnel, once the session starts.
        self._receive: Callable[[bytes], None] = _no_session
        # Autobahn tries this itself, but before the factory's options reach
        # the protocol, so it silently does nothing.
        set_no_delay(self.transport)
        set_not_sent_low_water(self.transport, NOTSENT_LOWAT)
        # The batching TLS layer encrypts straight from a frame's bytearray;
        # any other transport (plain TCP, a test's) wants bytes.
        self._takes_bytearrays = isinstance(self.transport, BatchingTLSTransport)
        factory = self.factory
        if factory.socket_buffer_size is not None:
            set_socket_buffers(self.transport, factory.socket_buffer_size)
        if factory.read_buffer_size is not None:
            # Twisted reads (and buffers writes) in bufferSize units.
            tcp = tcp_transport_of(self.transport)
            if tcp is not None:
                tcp.bufferSize = factory.read_buffer_size  # type: ignore[attr-defined]
        super().connectionMade()
        # Autobahn copies the factory's options onto the protocol just now;
        # 0 means "no limit" to it.
        # (Set from the factory's CONFIG_ATTRS at run time: not declared on the class.)
        options = (
            getattr(self, "maxFramePayloadSize", 0),
            getattr(self, "maxMessagePayloadSize", 0),
        )
        limits = [int(n) for n in options if n > 0]
        self._fast_path_limit = min(limits, default=MAX_INCOMING_MESSAGE)
        self._fast_path = fast_path()

    def onConnecting(self, transport_details: object) -> ConnectingRequest:
        factory = self.factory
        return ConnectingRequest(
            host=factory.request_host,
            port=factory.port,
            resource=factory.resource,
            headers=dict(factory.request_headers),
            useragent=factory.useragent,
            protocols=[factory.offered_subprotocol],
        )

    def onConnect(self, response: ConnectionResponse) -> None:
        session_id = response.headers.get("channel-id", "")
        _log.info("Web socket session ID: {session_id}", session_id=session_id)
        if not response.protocol:
            _log.error(NO_SUBPROTOCOL)
            raise ValueError(NO_SUBPROTOCOL)
        _log.debug("Web socket subprotocol selected: {protocol}", protocol=response.protocol)

    def onOpen(self) -> None:
        self._was_open = True
        _log.info(
            "Successfully established websocket connection with proxy server: {url}",
            url=self.factory.display_url,
        )
        self.factory.events.session_opened(self, self.websocket_protocol_in_use or "")

    def start_session(
        self,
        receive: Callable[[bytes], None],
        outbound: OutboundScheduler,
        inbound: InboundFlow,
    ) -> None:
        """
        The tunnel starts its session (L{SessionLink.start_session
        <aws_localproxy.protocol.interfaces.SessionLink.start_session>}):
        from now on every message goes to C{receive} and every pong to
        C{outbound}, which is the producer of what this WebSocket writes;
        C{inbound} stops reading it while a local connection is full.
        """
        self._receive = receive
        self._outbound = outbound
        transport: Any = self.transport
        transport.registerProducer(outbound, True)
        inbound.attach(transport, outbound, self)

    def _deliver(self, payload: bytes) -> None:
        """Hand one message to the session; a failure is the session's end."""
        try:
            self._receive(payload)
        except TunnelError as error:
            self._session_failed(error)

    def _session_failed(self, error: TunnelError) -> None:
        """The tunnel could not take a message: hand over nothing more, tell the connector."""
        self._receive = _no_session
        self.factory.events.session_failed(self, error)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # Text frames carry bytes like binary ones (the reference treats them alike); no real peer sends them.
        self._deliver(payload)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if reason is not None and not self._was_open:
            self._transport_error = reason.getErrorMessage()
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        status_line = (getattr(self, "http_status_line", None) or "").strip()
        status: Optional[int] = None
        if not self._was_open and status_line:
            parts = status_line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                status = int(parts[1])
        closed_by_service = bool(
            self._was_open and wasClean and not getattr(self, "closedByMe", False)
        )
        outcome = CloseOutcome(
            was_open=self._was_open,
            was_clean=wasClean,
            code=self.remoteCloseCode if closed_by_service else code,
            reason=(self.remoteCloseReason if closed_by_service else reason) or "",
            closed_by_service=closed_by_service,
            http_status=status,
            http_status_line=status_line,
            transport_error=self._transport_error,
        )
        self._receive = _no_session
        self._outbound = None
        self.factory.events.session_closed(self, outcome)

    def dataReceived(self, data: bytes) -> None:
        if not self._fast_path:
            super().dataReceived(data)
            return
        # Autobahn's own builds the arguments of a debug line for every read,
        # whether debug logging is on or not.
        if self._partial is not None or (
            self.state == self.STATE_OPEN
            and self.current_frame is None
            and not self.inside_message
            and not self.data
        ):
            data = self._binary_frames(data)
            if not data:
                return
        parse_frames(self, data)

    def _binary_frames(self, data: bytes) -> bytes:
        """
        Hand over each complete binary message in C{data}, and each pong of
        the session's pacer; return the bytes, from the first frame of any
        other kind on, that Autobahn must parse.

        Nearly every frame the service sends is one final, unmasked binary
        frame holding records, or the pong of a pacing ping.  Autobahn's
        parser spends more per frame (a header object, a masker, five
        callbacks, statistics) and per read than the records cost to decode;
        this loop takes those frames whole while Autobahn sits between
        messages, and gives it everything from the first other frame (a
        ping, a close, a fragment, a keep-alive pong, anything it must judge)
        at a frame boundary, so its state is never split.

        Only frames RFC 6455 allows, within this session's limits, are taken:
        first byte exactly FIN + binary (no reserved bit, so no extension and
        no fragment), no mask (a server never masks), a length in its
        shortest form and no larger than C{maxFramePayloadSize} (nor the
        message bound); or first byte exactly FIN + pong, no mask, at most
        125 bytes (a control frame's bound), a payload the session's
        scheduler takes as its pacer's.  Any other frame is Autobahn's,
        which fails the session with its close code (1002, 1009) and logs
        why: the fast path never accepts what Autobahn would refuse (the
        differential test in tests/upstream/test_websocket_differential.py
        holds it to that).
        """
        partial = self._partial
        if partial is not None:
            partial.append(data)
            self._partial_size += len(data)
            if self._partial_size < self._partial_need:
                return b""
            data = b"".join(partial)
            self._partial = None
        receive, outbound = self._receive, self._outbound
        limit = self._fast_path_limit
        position, end, need = 0, len(data), 0
        while position < end:
            if self.state != self.STATE_OPEN:
                break
            left = end - position
            if left < 2:
                need = 2
                break
            first, second = data[position], data[position + 1]
            if first == 0x8A and second <= 125 and outbound is not None:
                # A pong (unmasked, its length in 7 bits): the pacer's, or Autobahn's.
                stop = position + 2 + second
                if stop > end:
                    need = stop - position
                    break
                if not outbound.pong(data[position + 2 : stop]):
                    # The keep-alive's: Autobahn keeps its account of those,
                    # and parses this pong next (not offered again).
                    self._pong_refused = True
                    break
                position = stop
                continue
            if first != 0x82 or second & 0x80:
                break
            length = second
            start = position + 2
            if length >= 126:
                extended = _EXTENDED_LENGTH[length]
                start += extended.size
                if end < start:
                    need = start - position
                    break
                (length,) = extended.unpack_from(data, position + 2)
                if length > limit or length < _SHORTEST[second]:
                    break  # too big, or not in its shortest form: Autobahn fails it
            stop = start + length
            if stop > end:
                need = stop - position
                break
            position = stop
            try:
                receive(data[start:stop])
            except TunnelError as error:
                self._session_failed(error)
                receive = _no_session
        if position and self.autoPingTimeoutCall is not None and self.autoPingRestartOnAnyTraffic:
            # Data received is the peer alive, as Autobahn counts it for the
            # frames it parses itself: a session busy receiving (its pong
            # queued behind the data) must not be dropped for a late pong.
            restart_keepalive(self)
        if not need:
            return data[position:]
        self._partial = [data[position:]]
        self._partial_size = end - position
        self._partial_need = need
        return b""

    def onMessageEnd(self) -> None:
        if not self._fast_path:
            super().onMessageEnd()
            return
        # Autobahn's own also fires an observer event (and builds a Deferred
        # chain) per message, which nothing here listens to.
        if not self.failedByMe:
            self._deliver(b"".join(self.message_data))
        self.message_data = None  # type: ignore[assignment]

    def send_record(self, record: bytes) -> None:
        """
        One tunnel record, one masked binary WebSocket frame.

        This is Autobahn's C{sendMessage} for the one case the tunnel needs
        (binary, unfragmented, uncompressed, client-masked), written out: its
        general path asserts its arguments, updates statistics and builds
        debug-log arguments for every frame, a measurable share of the
        proxy's time at full speed.  The frame is built once and masked where it
        lies (L{mask_in_place}, Autobahn's NVX code), with the next of the
        session's masking keys (L{_next_mask}, written out here).
        """
        if self.state != self.STATE_OPEN:
            return
        length = len(record)
        at = self._mask_at
        if at >= _MASK_POOL:
            self._masks, at = os.urandom(_MASK_POOL), 0
        mask = self._masks[at : at + 4]
        self._mask_at = at + 4
        if length <= 125:
            frame, start = bytearray((0x82, 0x80 | length)), 6
        elif length <= 0xFFFF:
            frame, start = bytearray(_SHORT.pack(0x82, 0x80 | 126, length)), 8
        else:
            frame, start = bytearray(_LONG.pack(0x82, 0x80 | 127, length)), 14
        frame += mask
        frame += record
        mask_in_place(frame, start, mask)
        transport: Any = self.transport
        transport.write(frame if self._takes_bytearrays else bytes(frame))

    def send_ping(self, payload: bytes) -> None:
        """A ping frame (the pacer's ack clock), written as directly as L{send_record}."""
        if self.state != self.STATE_OPEN:
            return
        mask = self._next_mask()
        frame = bytearray((0x89, 0x80 | len(payload)))
        frame += mask
        frame += payload
        mask_in_place(frame, 6, mask)
        self._write_frame(frame)

    def _next_mask(self) -> bytes:
        """
        A frame's masking key: four bytes from the system's random source (RFC
        6455 asks for a strong source of entropy), read L{_MASK_POOL} bytes at
        a time rather than one call per frame.
        """
        at = self._mask_at
        if at >= _MASK_POOL:
            self._masks, at = os.urandom(_MASK_POOL), 0
        self._mask_at = at + 4
        return self._masks[at : at + 4]

    def _write_frame(self, frame: bytearray) -> None:
        transport: Any = self.transport
        transport.write(frame if self._takes_bytearrays else bytes(frame))

    def reading_paused(self, paused: bool) -> None:
        """
        Inbound flow control stopped (or resumed) reading this WebSocket.

        A pong cannot arrive while we do not read, so the keep-alive does
        not hold our own back-pressure against the peer: a pong timeout
        that runs out meanwhile is put off, and once reading resumes the
        peer has a whole pong timeout again (any data frame it sent in the
        meantime counts as its answer, as always).  A peer that is truly
        gone is still found, one pong timeout after reading resumes.
        """
        self._not_reading = paused
        if paused or not self._pong_timeout_deferred:
            return
        self._pong_timeout_deferred = False
        # Unless the pong came in the rest of the read that paused us.
        if (
            self.state == self.STATE_OPEN
            and self.autoPingTimeoutCall is None
            and self.autoPingPending is not None
        ):
            self.autoPingTimeoutCall = keepalive_call_later(self.factory)(
                self.autoPingTimeout, self.onAutoPingTimeout
            )

    def onAutoPingTimeout(self) -> None:
        if self._not_reading:
            self.autoPingTimeoutCall = None
            self._pong_timeout_deferred = True
            _log.debug("Pong timeout while the WebSocket is not read: waiting until it is")
            return
        super().onAutoPingTimeout()

    def processControlFrame(self) -> bool:
        # The pacer's pongs are ours: Autobahn would take them for stray
        # answers to its own keep-alive ping and warn about each.
        outbound = self._outbound
        if (
            self._fast_path
            and outbound is not None
            and self.current_frame.opcode == 10
            and self.control_frame_data is not None
        ):
            if self._pong_refused:
                self._pong_refused = False  # the session's outbound said no already
            elif outbound.pong(b"".join(self.control_frame_data)):
                self.control_frame_data = None  # type: ignore[assignment]
                return True
        return bool(super().processControlFrame())

    def onPong(self, payload: bytes) -> None:
        # Without the fast path every pong arrives here, the pacer's too.
        outbound = self._outbound
        if self._fast_path or outbound is None or not outbound.pong(payload):
            super().onPong(payload)


class TunnelClientFactory(WebSocketClientFactory):
    """Builds the session protocol; holds what every handshake sends."""

    # Twisted types Factory.protocol as building a protocol whose ``factory`` is
    # exactly Factory[Self]; ours declares its concrete factory class.
    protocol = TunnelClientProtocol  # type: ignore[assignment]
    noisy = False  # no "Starting/Stopping factory" lines at info level

    def __init__(
        self,
        reactor: object,
        *,
        url: str,
        display_url: str,
        events: SessionEvents,
        access_token: str,
        client_token: Optional[str],
        subprotocol: str,
        ping_period: float,
        pong_timeout: float,
        open_handshake_timeout: float,
        read_buffer_size: Optional[int] = None,
        socket_buffer_size: Optional[int] = None,
    ) -> None:
        super().__init__(url, protocols=list(SUBPROTOCOLS), useragent=user_agent(), reactor=reactor)
        self.events = events
        self.display_url = display_url
        #: ``websocket.read_buffer_size`` when set: the TCP transport's read size.
        self.read_buffer_size = read_buffer_size
        #: ``websocket.max_frame_size`` when set: the socket's kernel buffers.
        self.socket_buffer_size = socket_buffer_size
        self.offered_subprotocol = subprotocol
        # Autobahn writes "Host: host:port"; brackets keep an IPv6 literal readable.
        self.request_host = f"[{self.host}]" if ":" in self.host else self.host
        headers = {ACCESS_TOKEN_HEADER: access_token}
        if client_token:
            headers[CLIENT_TOKEN_HEADER] = client_token
        self.request_headers: Mapping[str, str] = headers
        self.setProtocolOptions(
            autoPingInterval=ping_period,
            autoPingTimeout=pong_timeout,
            openHandshakeTimeout=open_handshake_timeout,
            closeHandshakeTimeout=2,
            maxFramePayloadSize=MAX_WEBSOCKET_FRAME_SIZE,
            maxMessagePayloadSize=MAX_INCOMING_MESSAGE,
            perMessageCompressionOffers=[],
            failByDrop=True,
        )

    def __repr__(self) -> str:
        return f"<TunnelClientFactory {self.display_url}>"
