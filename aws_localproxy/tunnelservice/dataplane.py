# -*- test-case-name: tests.test_tunnelservice_dataplane -*-
"""
The data plane: the ``/tunnel`` WebSocket that local proxies connect to.

The handshake is decided in C{onConnect}, before the upgrade, so a refused
client gets the HTTP status the real service gives (400 for a bad path,
mode or request, 401 without a valid token, 403 for a token of the other
mode, a closed tunnel or a wrong client token).  An accepted client is
handed to the L{TunnelRegistry}, which relays its binary messages to the
other peer after this module has checked them against the protocol rules.
"""

from __future__ import annotations

import secrets
from typing import Any, Dict, List, Mapping, Optional, Set, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aws_localproxy.constants import (
    ACCESS_TOKEN_COOKIE,
    ACCESS_TOKEN_HEADER,
    CLIENT_TOKEN_HEADER,
    MAX_WEBSOCKET_FRAME_SIZE,
    SUBPROTOCOLS,
)
from aws_localproxy.sockets import set_no_delay, set_not_sent_low_water
from aws_localproxy.tunnelservice.bandwidth import BandwidthThrottle, ReadGate, TokenBucket
from aws_localproxy.tunnelservice.registry import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNSUPPORTED_DATA,
    Grant,
    HandshakeRejected,
    TunnelRegistry,
)
from aws_localproxy.tunnelservice.rules import violation
from aws_localproxy.wire import MessageDecoder, WireError

#: The only path of the data plane.
TUNNEL_PATH = "/tunnel"
MODE_PARAMETER = "local-proxy-mode"

#: The L{ReadGate} reason of a peer paused because the other cannot take more.
BACK_PRESSURE = "back-pressure"

#: Unsent bytes the kernel may hold per data-plane socket (TCP_NOTSENT_LOWAT):
#: the rest waits in the transport's buffer, where back-pressure sees it.
NOT_SENT_LOW_WATER = 32 * 1024

#: Seconds a connection the service dropped gracefully may take to go
#: (over TLS: until the peer answers the close_notify) before it is aborted.
DROP_TIMEOUT = 5.0

#: A WebSocket message may span several frames; bound what one may hold.
MAX_MESSAGE_SIZE = 8 * MAX_WEBSOCKET_FRAME_SIZE


def select_subprotocol(offered: List[str]) -> Optional[str]:
    """The newest tunneling subprotocol the client offers, or C{None}."""
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return None


def header_values(headers: Mapping[str, str], name: str) -> List[str]:
    """
    Every value of a request header.  Repeated headers arrive joined with
    commas (Autobahn and twisted.web both join them), and no token may
    contain a comma, so a comma separates values.
    """
    raw = headers.get(name)
    if raw is None:
        return []
    return [value.strip() for value in raw.split(",")]


def cookie_values(headers: Mapping[str, str], name: str) -> List[str]:
    """Every value of cookie C{name} in the request's C{Cookie} header(s)."""
    raw = headers.get("cookie")
    if not raw:
        return []
    values = []
    for part in raw.replace(",", ";").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            values.append(value.strip().strip('"'))
    return values


def cancel_close_timer(protocol: WebSocketProtocol) -> None:
    """
    Autobahn cancels its close-handshake timer only when the close reply
    arrives; when the connection is lost first the timer stays pending on
    the reactor.  Cancel it with the connection.
    """
    call = getattr(protocol, "closeHandshakeTimeoutCall", None)
    if call is not None:
        protocol.closeHandshakeTimeoutCall = None
        call.cancel()


class _Link:
    """The L{PeerLink} of one data-plane protocol (kept apart from Autobahn's names)."""

    def __init__(self, protocol: "DataPlaneProtocol", subprotocol: str) -> None:
        self._protocol = protocol
        self.subprotocol = subprotocol

    def send_frames(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            return
        # The service never sends a frame over the protocol's limit.
        for start in range(0, len(data), MAX_WEBSOCKET_FRAME_SIZE):
            protocol.sendMessage(data[start : start + MAX_WEBSOCKET_FRAME_SIZE], isBinary=True)

    def close(self, code: int, reason: str) -> None:
        protocol = self._protocol
        if protocol.state == WebSocketProtocol.STATE_OPEN:
            # sendClose only takes application codes; the service uses the
            # protocol's own (1003, 1008) as the real one does.
            protocol.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123))
        elif protocol.state != WebSocketProtocol.STATE_CLOSED and protocol.transport:
            cast(ITCPTransport, protocol.transport).abortConnection()

    def abort(self) -> None:
        if self._protocol.transport is not None:
            cast(ITCPTransport, self._protocol.transport).abortConnection()

    def send_buffer_full(self) -> bool:
        return self._protocol.send_buffer_full

    def pause_reading(self) -> None:
        """The other peer cannot take more: stop reading this one (TCP back-pressure)."""
        gate = self._protocol.read_gate
        if gate is not None:
            gate.pause(BACK_PRESSURE)

    def resume_reading(self) -> None:
        gate = self._protocol.read_gate
        if gate is not None:
            gate.resume(BACK_PRESSURE)

    @property
    def reading_paused(self) -> bool:
        gate = self._protocol.read_gate
        return gate is not None and gate.holds(BACK_PRESSURE)


@implementer(IPushProducer)
class _SendBufferWatch:
    """
    Registered on a peer's transport: when that peer's send buffer fills,
    the other peer is no longer read, so a slow reader slows the writer
    down instead of making the service buffer without bound.
    """

    def __init__(self, protocol: "DataPlaneProtocol") -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.send_buffer_full = True
        other = self._protocol.other_link()
        if other is not None:
            other.pause_reading()

    def resumeProducing(self) -> None:
        self._protocol.send_buffer_full = False
        other = self._protocol.other_link()
        if other is not None:
            other.resume_reading()

    def stopProducing(self) -> None:
        self.resumeProducing()


class DataPlaneProtocol(WebSocketServerProtocol):
    """One client WebSocket of the data plane."""

    log = Logger()
    factory: "DataPlaneFactory"

    def __init__(self) -> None:
        super().__init__()
        #: The real service's per-session ID, also sent on refusals.
        self.channel_id = secrets.token_hex(16)
        self._grant: Optional[Grant] = None
        self._link: Optional[_Link] = None
        self._decoder = MessageDecoder()
        self._violated = False
        #: Pauses reading this peer (back-pressure, bandwidth); set once open.
        self.read_gate: Optional[ReadGate] = None
        self._throttle: Optional[BandwidthThrottle] = None
        self._drop_call: Optional[Any] = None

    # -- handshake -----------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> Any:
        if request.path != TUNNEL_PATH:
            raise ConnectionDeny(400, "Invalid path")
        modes = request.params.get(MODE_PARAMETER, [])
        if len(modes) != 1:
            raise ConnectionDeny(400, "Missing or repeated local-proxy-mode")
        subprotocol = select_subprotocol(list(request.protocols))
        if subprotocol is None:
            raise ConnectionDeny(400, "No supported Sec-WebSocket-Protocol")
        headers = request.headers
        tokens = header_values(headers, ACCESS_TOKEN_HEADER) + cookie_values(
            headers, ACCESS_TOKEN_COOKIE
        )
        try:
            grant = self.factory.registry.authorize(
                modes[0], tokens, header_values(headers, CLIENT_TOKEN_HEADER)
            )
        except HandshakeRejected as rejected:
            raise ConnectionDeny(rejected.status, rejected.reason) from None
        self._grant = grant
        self._link = _Link(self, subprotocol)
        self.log.info(
            "Accepted {mode} handshake for tunnel {tunnel_id} with {subprotocol}, "
            "session {channel_id}",
            mode=grant.slot.mode.value,
            tunnel_id=grant.tunnel.tunnel_id,
            subprotocol=subprotocol,
            channel_id=self.channel_id,
        )
        return subprotocol, {"channel-id": self.channel_id}

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        headers = list(responseHeaders or [])
        headers.append(("channel-id", self.channel_id))
        if reason == "Tunnel is closed":
            headers.append(("X-Status-Reason", reason))
        self.log.info(
            "Refused a data-plane handshake from {peer}: {code} {reason}",
            peer=self.peer,
            code=code,
            reason=reason,
        )
        super().failHandshake(reason, code, headers)

    def onOpen(self) -> None:
        assert self._grant is not None and self._link is not None
        assert self.transport is not None
        self.read_gate = ReadGate(cast(IPushProducer, self.transport))
        limit = self.factory.bandwidth_limit
        if limit:
            clock = self.factory.reactor
            self._throttle = BandwidthThrottle(
                self.read_gate, TokenBucket(clock, limit), clock
            )
        if not self.factory.registry.attach(self._grant, self._link):
            return
        # twisted.web's HTTPChannel registered itself as the transport's
        # producer before the upgrade handed the transport over; replace it.
        consumer = cast(IConsumer, self.transport)
        consumer.unregisterProducer()
        consumer.registerProducer(_SendBufferWatch(self), True)
        other = self.other_link()
        if other is not None and other.send_buffer_full():
            self._link.pause_reading()

    send_buffer_full = False

    def other_link(self) -> Optional[_Link]:
        """The live connection of the tunnel's other slot, if any."""
        grant = self._grant
        if grant is None:
            return None
        other = grant.tunnel.other(grant.slot.mode).peer
        return other if isinstance(other, _Link) else None

    # -- data ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        # Every byte read counts, frames of any kind (pings and pongs too),
        # as the AWS tunneling service counts them.
        if self._throttle is not None:
            self._throttle.received(len(data))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        grant, link = self._grant, self._link
        if grant is None or link is None or self._violated:
            return
        if self.state == WebSocketProtocol.STATE_CLOSED:
            # Read after the drop (reading is released for the close): not relayed.
            return
        registry = self.factory.registry
        if not isBinary:
            self._break(CLOSE_UNSUPPORTED_DATA, "Text frames are not supported")
            return
        try:
            messages = self._decoder.feed(payload)
        except WireError as error:
            self._break(CLOSE_POLICY_VIOLATION, str(error))
            return
        mode, services = grant.slot.mode, grant.tunnel.services
        for message in messages:
            reason = violation(mode, message, services)
            if reason is not None:
                self._break(CLOSE_POLICY_VIOLATION, reason)
                return
        registry.relay(grant, payload, messages)

    def _break(self, code: int, reason: str) -> None:
        assert self._grant is not None and self._link is not None
        self._violated = True
        self.factory.registry.violation(self._grant, self._link, code, reason)

    # -- end -----------------------------------------------------------

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        grant, link = self._grant, self._link
        if grant is None or link is None:
            return
        local_code = self.localCloseCode
        if local_code == 1009 and not self._violated:
            # Autobahn enforced the frame or message size limit.
            self._violated = True
            self.factory.registry.violation(
                grant, link, 1009, "Frame or message exceeds the size limit"
            )
        self.factory.registry.detach(grant, link)
        if self.send_buffer_full:
            self.send_buffer_full = False
            other = self.other_link()
            if other is not None:
                other.resume_reading()

    def dropConnection(self, abort: bool = False) -> None:
        """
        Autobahn unregisters the transport's producer before it drops the
        connection (a paused producer would keep it open).  Two more traps
        remain: a TLS transport closes only once it has read the peer's
        close_notify, which it cannot while reading is paused (so reading
        is released), and a peer that never answers it would keep the
        connection for good (so it is aborted after L{DROP_TIMEOUT}).
        """
        if self._throttle is not None:
            self._throttle.stop()
            self._throttle = None
        if self.read_gate is not None:
            self.read_gate.release()
        super().dropConnection(abort)
        if not abort and self.transport is not None and self._drop_call is None:
            self._drop_call = self.factory.reactor.callLater(
                self.factory.drop_timeout, self._drop_timed_out
            )

    def _drop_timed_out(self) -> None:
        self._drop_call = None
        if self.transport is not None:
            self.log.info("Aborting a connection that did not close in time: {peer}", peer=self.peer)
            cast(ITCPTransport, self.transport).abortConnection()

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.connections.add(self)
        set_no_delay(self.transport)
        set_not_sent_low_water(self.transport, NOT_SENT_LOW_WATER)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            cancel_close_timer(self)
            if self._drop_call is not None:
                if self._drop_call.active():
                    self._drop_call.cancel()
                self._drop_call = None
            if self._throttle is not None:
                self._throttle.stop()
                self._throttle = None
            self.factory.connection_gone(self)


class DataPlaneFactory(WebSocketServerFactory):
    """
    The data plane's factory: the registry, the limits, and the live
    connections (so that L{stop_all} can end them all).
    """

    protocol = DataPlaneProtocol  # type: ignore[assignment]

    def __init__(
        self, registry: TunnelRegistry, reactor: Any = None, bandwidth_limit: int = 0
    ) -> None:
        super().__init__(reactor=reactor, server="localtunnel")
        self.registry = registry
        #: Bytes per second each peer may send (0: unlimited); see L{bandwidth}.
        self.bandwidth_limit = bandwidth_limit
        self.drop_timeout = DROP_TIMEOUT
        self.connections: Set[DataPlaneProtocol] = set()
        self._waiting: Dict[DataPlaneProtocol, List[Deferred[None]]] = {}
        self.setProtocolOptions(
            maxFramePayloadSize=MAX_WEBSOCKET_FRAME_SIZE,
            maxMessagePayloadSize=MAX_MESSAGE_SIZE,
            # Send a close frame with the reason on a protocol error, as
            # the service does, instead of only dropping the connection.
            failByDrop=False,
            webStatus=False,
            openHandshakeTimeout=30,
        )

    def connection_gone(self, protocol: DataPlaneProtocol) -> None:
        self.connections.discard(protocol)
        for waiting in self._waiting.pop(protocol, []):
            waiting.callback(None)

    def wait_gone(self, protocol: DataPlaneProtocol) -> Deferred[None]:
        """Fires once C{protocol}'s connection is lost."""
        if protocol not in self.connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.setdefault(protocol, []).append(d)
        return d

    def stop_all(self) -> Deferred[None]:
        """Drop every connection; fires once all of them are gone."""
        waits = []
        for protocol in list(self.connections):
            waits.append(self.wait_gone(protocol))
            if protocol.transport is not None:
                cast(ITCPTransport, protocol.transport).abortConnection()
        return gatherResults(waits).addCallback(lambda _: None)
