# -*- test-case-name: tests.tunnelservice.test_dataplane -*-
# mypy: disallow-untyped-calls=False
# (this module subclasses or calls Twisted/Autobahn APIs that have no annotations)
"""
The data plane: the ``/tunnel`` WebSocket that local proxies connect to.

The handshake is decided in C{onConnect}, before the upgrade, by the rules
of L{handshake} and the tokens of the L{TunnelRegistry}, so a refused
client gets the HTTP status the real service gives.  An accepted client is
handed to the L{Relay}, which carries its binary messages to the other peer
once this module has checked them against the protocol rules (L{rules}),
and which pauses reading a peer while the other cannot take more.

How records are framed towards a peer is a choice the AWS service makes
its own way (the guides: a peer's framing "is not guaranteed to be the
same" on the other side): by default each received message is forwarded
as it came (cut at the frame limit); with C{reframe} set, what is pending
for a peer in one reactor turn is joined and cut into frames of that many
bytes, wherever the record boundaries fall.
"""

from __future__ import annotations

import secrets
from typing import Any, Dict, List, Optional, Set, cast

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

from aws_localproxy.adapters.sockets import set_no_delay, set_not_sent_low_water
from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE
from aws_localproxy.protocol.wire import MessageDecoder, WireError
from aws_localproxy.tunnelservice.bandwidth import (
    BandwidthThrottle,
    ReadGate,
    TokenBucket,
    read_size,
    socket_transport,
)
from aws_localproxy.tunnelservice.handshake import Grant, HandshakeRejected, read_upgrade
from aws_localproxy.tunnelservice.model import CLOSE_POLICY_VIOLATION, CLOSE_UNSUPPORTED_DATA
from aws_localproxy.tunnelservice.registry import TunnelRegistry
from aws_localproxy.tunnelservice.relay import Relay
from aws_localproxy.tunnelservice.rules import violation

#: Unsent bytes the kernel may hold per data-plane socket (TCP_NOTSENT_LOWAT):
#: the rest waits in the transport's buffer, where back-pressure sees it.
NOT_SENT_LOW_WATER = 32 * 1024

#: Seconds a connection the service dropped gracefully may take to go
#: (over TLS: until the peer answers the close_notify) before it is aborted.
DROP_TIMEOUT = 5.0

#: A WebSocket message may span several frames; bound what one may hold.
MAX_MESSAGE_SIZE = 8 * MAX_WEBSOCKET_FRAME_SIZE


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
        #: Bytes waiting to be re-framed (only with C{reframe}), and the call that sends them.
        self._pending: List[bytes] = []
        self._flush_call: Optional[Any] = None

    def send_frames(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol.state != WebSocketProtocol.STATE_OPEN:
            return
        if protocol.factory.reframe:
            self._pending.append(data)
            if self._flush_call is None:
                self._flush_call = protocol.factory.reactor.callLater(0, self.flush)
            return
        self._send(data, MAX_WEBSOCKET_FRAME_SIZE)

    def flush(self) -> None:
        """Send what is pending for re-framing, in frames of the factory's C{reframe} bytes."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        pending, self._pending = b"".join(self._pending), []
        if pending and self._protocol.state == WebSocketProtocol.STATE_OPEN:
            self._send(pending, self._protocol.factory.reframe)

    def _send(self, data: bytes, frame_size: int) -> None:
        # The service never sends a frame over the protocol's limit.
        protocol = self._protocol
        for start in range(0, len(data), frame_size):
            protocol.sendMessage(data[start : start + frame_size], isBinary=True)

    def close(self, code: int, reason: str) -> None:
        protocol = self._protocol
        self.flush()
        if protocol.state == WebSocketProtocol.STATE_OPEN:
            # sendClose only takes application codes; the service uses the
            # protocol's own (1003, 1008) as the real one does.
            protocol.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123))
        elif protocol.state != WebSocketProtocol.STATE_CLOSED and protocol.transport:
            cast(ITCPTransport, protocol.transport).abortConnection()

    def abort(self) -> None:
        if self._protocol.transport is not None:
            cast(ITCPTransport, self._protocol.transport).abortConnection()

    def pause_reading(self, reason: str) -> None:
        gate = self._protocol.read_gate
        if gate is not None:
            gate.pause(reason)

    def resume_reading(self, reason: str) -> None:
        gate = self._protocol.read_gate
        if gate is not None:
            gate.resume(reason)


@implementer(IPushProducer)
class _SendBufferWatch:
    """
    Registered on a peer's transport: tells the relay when that peer's
    send buffer fills and drains (L{Relay.send_buffer_full}).
    """

    def __init__(self, relay: Relay, grant: Grant, link: _Link) -> None:
        self._relay = relay
        self._grant = grant
        self._link = link

    def pauseProducing(self) -> None:
        self._relay.send_buffer_full(self._grant, self._link)

    def resumeProducing(self) -> None:
        self._relay.send_buffer_drained(self._grant, self._link)

    def stopProducing(self) -> None:
        self.resumeProducing()


#: Not the class's C{log}: Autobahn logs through that attribute, and its own
#: logger drops debug lines for nothing, while a Twisted C{Logger} there would
#: build and filter an event for every frame.
_log = Logger(namespace="aws_localproxy.tunnelservice.dataplane.DataPlaneProtocol")


class DataPlaneProtocol(WebSocketServerProtocol):
    """One client WebSocket of the data plane."""

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
        try:
            upgrade = read_upgrade(
                request.path, request.params, list(request.protocols), request.headers
            )
            grant = self.factory.registry.authorize(
                upgrade.mode_value, upgrade.access_tokens, upgrade.client_tokens
            )
        except HandshakeRejected as rejected:
            raise ConnectionDeny(rejected.status, rejected.reason) from None
        self._grant = grant
        self._link = _Link(self, upgrade.subprotocol)
        _log.info(
            "Accepted {mode} handshake for tunnel {tunnel_id} with {subprotocol}, "
            "session {channel_id}",
            mode=grant.slot.mode.value,
            tunnel_id=grant.tunnel.tunnel_id,
            subprotocol=upgrade.subprotocol,
            channel_id=self.channel_id,
        )
        return upgrade.subprotocol, {"channel-id": self.channel_id}

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        headers = list(responseHeaders or [])
        headers.append(("channel-id", self.channel_id))
        if reason == "Tunnel is closed":
            headers.append(("X-Status-Reason", reason))
        _log.info(
            "Refused a data-plane handshake from {peer}: {code} {reason}",
            peer=self.peer,
            code=code,
            reason=reason,
        )
        super().failHandshake(reason, code, headers)

    def onOpen(self) -> None:
        grant, link = self._grant, self._link
        assert grant is not None and link is not None
        assert self.transport is not None
        self.read_gate = ReadGate(cast(IPushProducer, self.transport))
        limit = self.factory.bandwidth_limit
        if limit:
            clock = self.factory.reactor
            self._throttle = BandwidthThrottle(self.read_gate, TokenBucket(clock, limit), clock)
            # Small reads: the socket's read size (Twisted's bufferSize) is
            # also its write-buffer threshold, which only makes back-pressure
            # towards this peer start sooner.
            tcp = socket_transport(self.transport)
            if hasattr(tcp, "bufferSize"):
                tcp.bufferSize = read_size(limit)
        # twisted.web's HTTPChannel registered itself as the transport's
        # producer before the upgrade handed the transport over; replace it.
        consumer = cast(IConsumer, self.transport)
        consumer.unregisterProducer()
        consumer.registerProducer(_SendBufferWatch(self.factory.relay, grant, link), True)
        self.factory.relay.attach(grant, link)

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
        self.factory.relay.relay(grant, payload, messages)

    def _break(self, code: int, reason: str) -> None:
        assert self._grant is not None and self._link is not None
        self._violated = True
        self.factory.relay.violation(self._grant, self._link, code, reason)

    # -- end -----------------------------------------------------------

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        grant, link = self._grant, self._link
        if grant is None or link is None:
            return
        local_code = self.localCloseCode
        if local_code == 1009 and not self._violated:
            # Autobahn enforced the frame or message size limit.
            self._violated = True
            self.factory.relay.violation(
                grant, link, 1009, "Frame or message exceeds the size limit"
            )
        self.factory.relay.detach(grant, link)

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
            _log.info("Aborting a connection that did not close in time: {peer}", peer=self.peer)
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
            if self._link is not None:
                self._link.flush()
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
    The data plane's factory: the registry, the relay, the limits, and the
    live connections (so that L{stop_all} can end them all).
    """

    protocol = DataPlaneProtocol  # type: ignore[assignment]

    def __init__(
        self,
        registry: TunnelRegistry,
        relay: Relay,
        reactor: Any = None,
        bandwidth_limit: int = 0,
        reframe: int = 0,
    ) -> None:
        super().__init__(reactor=reactor, server="localtunnel")
        if not 0 <= reframe <= MAX_WEBSOCKET_FRAME_SIZE:
            raise ValueError("reframe must be between 0 and %d" % (MAX_WEBSOCKET_FRAME_SIZE,))
        self.registry = registry
        self.relay = relay
        #: Bytes per second each peer may send (0: unlimited); see L{bandwidth}.
        self.bandwidth_limit = bandwidth_limit
        #: 0: forward messages as received; N: join and cut into N-byte frames.
        self.reframe = reframe
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
