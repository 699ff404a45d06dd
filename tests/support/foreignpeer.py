"""
A foreign peer for tests: the other end of a tunnel, written from the
protocol guides (V1/V2/V3 WebSocketProtocolGuide.md of the C++ reference)
and the reference's documented behaviour, not from this project's proxy.

Our proxy must work with peers that do not pace, do not wait and do not
cover for it, as the C++ reference, the Device Client and the console's
browser SSH do.  This peer is one of them:

 - B{unpaced and greedy}: every byte read from a local socket is sent at
   once (DATA records of at most 63 KiB, as many WebSocket messages as it
   takes), every record received is written to its local socket at once,
   the WebSocket is always read however full a local socket is, and it
   never sends a ping (Autobahn answers the service's);
 - B{V1, V2 or V3 format}: V1 messages carry neither service ID nor
   connection ID and a V1 peer routes everything to its one service; V2
   adds service IDs; V3 adds connection IDs, ConnectionStart and
   ConnectionReset;
 - B{source role}: L{ForeignPeer.listen} opens a local port per service.
   The first connection of a service sends StreamStart with the next
   stream ID; in V3 later ones send ConnectionStart on the same stream, in
   V1/V2 a new connection replaces the active one (it is closed, without a
   reset) with StreamStart and the next stream ID.  Stream IDs count from 1
   in each instance, so a "restarted" source (a new instance with the same
   client token) repeats them, like the C++ reference;
 - B{destination role}: StreamStart (and V3 ConnectionStart) connects to
   the local service of that service ID.  A StreamStart while a stream is
   active closes that stream's connections (after flushing) and starts the
   new one, as the guides ask.  A failed connect is answered with
   ConnectionReset in V3 and StreamReset in V1/V2;
 - B{messages it does not know}: types it does not know are ignored (the
   guides allow ignoring unknown types; the Device Client does), so a V1
   peer ignores SERVICE_IDS, ConnectionStart and ConnectionReset; a V2
   destination answers ConnectionStart and ConnectionReset with a
   StreamReset of its stream (the V3 guide's account of a V2 peer);
 - a local close sends ConnectionReset (V3) or StreamReset (V1/V2); a
   StreamReset for the current stream closes its connections, a
   ConnectionReset (V3) its connection; records for another stream are
   dropped.

Everything it sends and receives is kept (L{ForeignPeer.sent},
L{ForeignPeer.received}) for tests to check.  It uses only the generated
protobuf C{Message} class, Autobahn and Twisted.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import ssl
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from aws_localproxy._proto.Message_pb2 import Message
from tests.support.conditions import Conditions
from tests.support.deadlines import EVENT, branch, deadline

txaio.use_twisted()

log = Logger()

SUBPROTOCOLS = {
    1: "aws.iot.securetunneling-1.0",
    2: "aws.iot.securetunneling-2.0",
    3: "aws.iot.securetunneling-3.0",
}

#: The largest DATA payload the guides allow (63 KiB).
MAX_PAYLOAD = 63 * 1024
#: The largest WebSocket frame the service takes.
MAX_FRAME = 131076

#: Message types each version knows; others are ignored.
KNOWN_TYPES = {
    1: {Message.DATA, Message.STREAM_START, Message.STREAM_RESET, Message.SESSION_RESET},
    2: {
        Message.DATA,
        Message.STREAM_START,
        Message.STREAM_RESET,
        Message.SESSION_RESET,
        Message.SERVICE_IDS,
    },
    3: set(Message.Type.values()) - {Message.UNKNOWN},
}

_PREFIX = struct.Struct(">H")


def client_tls(ca_file: str) -> Any:
    """TLS towards the local tunnel service, trusting its CA only."""
    with open(ca_file, "rb") as f:
        return ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(f.read()))


def encode(message: Message) -> bytes:
    """One record: the 2-byte big-endian length, then the serialized message."""
    body = message.SerializeToString()
    return _PREFIX.pack(len(body)) + body


class RecordReader:
    """Turns the WebSocket payloads, one continuous byte stream, into messages."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> List[Message]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= 2:
            (length,) = _PREFIX.unpack_from(self._buffer)
            if len(self._buffer) < 2 + length:
                break
            message = Message()
            message.ParseFromString(self._buffer[2 : 2 + length])
            messages.append(message)
            self._buffer = self._buffer[2 + length :]
        return messages


class _Local(Protocol):
    """A local TCP connection of the peer: one stream (V1/V2) or connection (V3)."""

    def __init__(self, peer: "ForeignPeer", service_id: str, connection_id: int) -> None:
        self.peer = peer
        self.service_id = service_id
        self.connection_id = connection_id
        self.stream_id = 0
        #: Closed by the tunnel (a reset, a replacement): no reset is sent for it.
        self.closed_by_tunnel = False
        #: Tunnel bytes that arrived before the connect finished (destination).
        self.pending: List[bytes] = []

    def connectionMade(self) -> None:
        if self.pending:
            self.transport.write(b"".join(self.pending))  # type: ignore[union-attr]
            self.pending = []

    def dataReceived(self, data: bytes) -> None:
        self.peer._local_data(self, data)

    def connectionLost(self, reason: Any = None) -> None:
        self.peer._local_closed(self)

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def close(self) -> None:
        """Close after flushing what was written (or forget a connect in progress)."""
        self.closed_by_tunnel = True
        if self.transport is not None:
            self.transport.loseConnection()


class _Service:
    """One service ID's state: its current stream and its connections."""

    def __init__(self) -> None:
        self.stream_id = 0
        self.active = False
        self.next_connection_id = 1
        self.connections: Dict[int, _Local] = {}


class _Socket(WebSocketClientProtocol):
    #: Not C{peer}: Autobahn keeps the peer's address there.
    foreign: "ForeignPeer"

    def onOpen(self) -> None:
        self.foreign._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        for message in self.foreign._reader.feed(payload):
            self.foreign._received(message)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.foreign._ws_closed(code, reason)

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        call = getattr(self, "closeHandshakeTimeoutCall", None)
        if call is not None and call.active():
            call.cancel()


class ForeignPeer:
    """
    One end of a tunnel (see the module docstring).

    @param service: the L{RunningTunnelService} to connect to.
    @param mode: C{"source"} or C{"destination"}.
    @param version: 1, 2 or 3, the format it speaks (and the subprotocol it offers).
    @param destinations: destination role: service ID -> local port (a V1
        peer takes the only one, whatever the ID).
    @param cookie: send the access token in the C{awsiot-tunnel-token}
        cookie, as the console's browser SSH does, instead of the header.
    """

    def __init__(
        self,
        reactor: Any,
        service: Any,
        mode: str,
        token: str,
        *,
        version: int = 3,
        destinations: Optional[Mapping[str, int]] = None,
        cookie: bool = False,
        client_token: Optional[str] = None,
    ) -> None:
        self.reactor = reactor
        self.service = service
        self.mode = mode
        self.token = token
        self.version = version
        self.destinations = dict(destinations or {})
        self.cookie = cookie
        self.client_token = client_token
        self.sent: List[Message] = []
        self.received: List[Message] = []
        self.service_ids: Optional[List[str]] = None
        self.close_info: Optional[Tuple[Optional[int], Optional[str]]] = None
        self.closed: Deferred[Tuple[Optional[int], Optional[str]]] = Deferred()
        self._services: Dict[str, _Service] = {}
        self._listeners: List[Any] = []
        self._reader = RecordReader()
        self._socket: Optional[_Socket] = None
        self._ready: Deferred[ForeignPeer] = Deferred()
        self._conditions = Conditions()

    # -- the WebSocket -------------------------------------------------

    @property
    def name(self) -> str:
        """Which peer, in messages: "the foreign V3 source"."""
        return f"the foreign V{self.version} {self.mode}"

    def start(self) -> Deferred["ForeignPeer"]:
        """
        Connect; fires once open and, for V2/V3, once SERVICE_IDS arrived;
        fails if that has not happened within L{EVENT} seconds.
        """
        headers = {}
        if self.cookie:
            headers["cookie"] = "awsiot-tunnel-token=%s" % (self.token,)
        else:
            headers["access-token"] = self.token
        if self.client_token is not None:
            headers["client-token"] = self.client_token
        scheme = "wss" if self.service.use_tls else "ws"
        factory = WebSocketClientFactory(
            "%s://localhost:%d/tunnel?local-proxy-mode=%s" % (scheme, self.service.port, self.mode),
            protocols=[SUBPROTOCOLS[self.version]],
            headers=headers,
            reactor=self.reactor,
        )
        factory.protocol = _Socket
        factory.setProtocolOptions(openHandshakeTimeout=10, closeHandshakeTimeout=2)
        peer = self

        def build(addr: Any) -> _Socket:
            protocol = WebSocketClientFactory.buildProtocol(factory, addr)
            protocol.foreign = peer
            return protocol  # type: ignore[no-any-return]

        factory.buildProtocol = build  # type: ignore[method-assign]
        endpoint: Any = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.service.port)
        if self.service.use_tls:
            endpoint = wrapClientTLS(client_tls(self.service.ca_file), endpoint)
        endpoint.connect(factory).addErrback(self._ready.errback)
        return deadline(
            branch(self._ready),
            EVENT,
            f"{self.name} did not get its session (open{'' if self.version == 1 else ', SERVICE_IDS'})",
            lambda: (
                f"WebSocket {'open' if self._socket is not None else 'not open'}, "
                f"{len(self.received)} message(s) received"
            ),
        )

    def _opened(self, socket: _Socket) -> None:
        self._socket = socket
        if self.version == 1:
            self._ready.callback(self)

    def stop(self) -> Deferred[Any]:
        """Close the WebSocket, the local connections and the listeners, as a process exit does."""
        for listener in self._listeners:
            listener.stopListening()
        self._listeners = []
        for service in self._services.values():
            for local in list(service.connections.values()):
                local.closed_by_tunnel = True
                if local.transport is not None:
                    local.transport.abortConnection()
        if self._socket is None or self.close_info is not None:
            return succeed(None)
        socket = self._socket
        if socket.state == WebSocketClientProtocol.STATE_OPEN:
            socket.sendClose()
        elif socket.transport is not None:
            socket.transport.abortConnection()

        def aborted(failure: Any) -> Any:
            # No close within the deadline: drop the connection, fail the wait.
            if socket.transport is not None:
                socket.transport.abortConnection()
            return failure

        return deadline(
            branch(self.closed), EVENT, f"the WebSocket of {self.name} did not close"
        ).addErrback(aborted)

    def _ws_closed(self, code: Optional[int], reason: Optional[str]) -> None:
        self.close_info = (code, reason)
        if not self._ready.called:
            self._ready.errback(ConnectionError("refused or closed: %s %s" % (code, reason)))
        for service in self._services.values():
            for local in list(service.connections.values()):
                local.close()
        self.closed.callback(self.close_info)

    def send(self, *messages: Message) -> None:
        """Send C{messages} at once, in as few WebSocket messages as the frame limit allows."""
        if self._socket is None or self._socket.state != WebSocketClientProtocol.STATE_OPEN:
            return
        self.sent.extend(messages)
        data = b"".join(encode(message) for message in messages)
        for start in range(0, len(data), MAX_FRAME):
            self._socket.sendMessage(data[start : start + MAX_FRAME], isBinary=True)

    def _message(self, message_type: int, local: _Local, **fields: Any) -> Message:
        """A message about C{local}'s stream in this peer's format."""
        message = Message(type=message_type, streamId=local.stream_id, **fields)
        if self.version >= 2:
            message.serviceId = local.service_id
        if self.version == 3:
            message.connectionId = local.connection_id
        return message

    # -- waiting (for tests) -------------------------------------------

    def when(
        self, condition: Callable[[], bool], what: str, within: float = EVENT
    ) -> Deferred[None]:
        """
        Fires once C{condition()} holds (checked after each message
        received); fails with C{what} (what did not happen) after C{within} s.
        """
        return self._conditions.when(
            condition, what, within, lambda: f"{len(self.received)} message(s) received"
        )

    def settled(self) -> bool:
        """No local connect is in progress (every connection started has a socket)."""
        return all(
            local.transport is not None
            for service in self._services.values()
            for local in service.connections.values()
        )

    def received_of(self, message_type: int) -> List[Message]:
        return [m for m in self.received if m.type == message_type]

    # -- receiving -----------------------------------------------------

    def _service_id(self, message: Message) -> str:
        if self.version == 1:
            # A V1 peer has one service and reads no service ID.
            if self.mode == "destination" and self.destinations:
                return next(iter(self.destinations))
            return next(iter(self._services), "")
        return message.serviceId

    def _received(self, message: Message) -> None:
        self.received.append(message)
        try:
            self._dispatch(message)
        finally:
            self._conditions.check()

    def _dispatch(self, message: Message) -> None:
        kind = message.type
        if kind not in KNOWN_TYPES[self.version]:
            if self.version == 2 and kind in (Message.CONNECTION_START, Message.CONNECTION_RESET):
                self._reset_unknown(message)
            return
        if kind == Message.SERVICE_IDS:
            self.service_ids = list(message.availableServiceIds)
            if not self._ready.called:
                self._ready.callback(self)
            return
        sid = self._service_id(message)
        if kind == Message.SESSION_RESET:
            for service in self._services.values():
                self._end_stream(service)
            return
        if kind == Message.STREAM_START or kind == Message.CONNECTION_START:
            if self.mode == "destination":
                self._start(sid, message)
            return
        service = self._services.get(sid)
        if service is None or not service.active or message.streamId != service.stream_id:
            return
        if kind == Message.STREAM_RESET:
            self._end_stream(service)
        elif kind == Message.CONNECTION_RESET:
            local = service.connections.pop(message.connectionId, None)
            if local is not None:
                local.close()
        elif kind == Message.DATA:
            key = message.connectionId if self.version == 3 else 0
            local = service.connections.get(key)
            if local is not None:
                local.write(message.payload)

    def _end_stream(self, service: _Service) -> None:
        service.active = False
        connections, service.connections = service.connections, {}
        for local in connections.values():
            local.close()

    def _reset_unknown(self, message: Message) -> None:
        """A V2 destination answers a V3-only message with a StreamReset of its stream."""
        service = self._services.get(message.serviceId)
        if service is None or not service.active:
            return
        self.send(
            Message(
                type=Message.STREAM_RESET, streamId=service.stream_id, serviceId=message.serviceId
            )
        )
        self._end_stream(service)

    # -- destination role ----------------------------------------------

    def _start(self, sid: str, message: Message) -> None:
        port = self.destinations.get(sid)
        if port is None:
            log.warn("Foreign destination: no service {sid!r}", sid=sid)
            reply = Message(type=Message.STREAM_RESET, streamId=message.streamId)
            if self.version >= 2:
                reply.serviceId = sid
            self.send(reply)
            return
        service = self._services.setdefault(sid, _Service())
        if message.type == Message.STREAM_START:
            if service.active:
                self._end_stream(service)
            service.active, service.stream_id = True, message.streamId
        elif not service.active or message.streamId != service.stream_id:
            return
        key = message.connectionId if self.version == 3 else 0
        local = _Local(self, sid, key)
        local.stream_id = service.stream_id
        service.connections[key] = local
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", port, timeout=5)
        endpoint.connect(Factory.forProtocol(lambda: local)).addErrback(
            lambda _: self._connect_failed(service, local)
        )

    def _connect_failed(self, service: _Service, local: _Local) -> None:
        if service.connections.get(local.connection_id) is not local:
            return
        self._reset(service, local)

    def _reset(self, service: _Service, local: _Local) -> None:
        """
        C{local} is gone (its connect failed or it closed): forget it and tell
        the other side, with ConnectionReset in V3, else StreamReset, which
        ends the service's stream.
        """
        del service.connections[local.connection_id]
        if self.version == 3:
            self.send(self._message(Message.CONNECTION_RESET, local))
        else:
            self.send(self._message(Message.STREAM_RESET, local))
            service.active = False

    # -- source role ---------------------------------------------------

    def listen(self, service_id: str = "") -> Deferred[int]:
        """Listen on 127.0.0.1 for C{service_id}'s connections; fires with the port."""
        sid = "" if self.version == 1 else service_id
        self._services.setdefault(sid, _Service())
        endpoint = TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1")

        def listening(port: Any) -> int:
            self._listeners.append(port)
            return int(port.getHost().port)

        return endpoint.listen(Factory.forProtocol(lambda: self._accept(sid))).addCallback(
            listening
        )

    def _accept(self, sid: str) -> _Local:
        service = self._services[sid]
        if self.version == 3:
            local = _Local(self, sid, service.next_connection_id)
            service.next_connection_id += 1
            if service.active:
                local.stream_id = service.stream_id
                service.connections[local.connection_id] = local
                self.send(self._message(Message.CONNECTION_START, local))
                return local
        else:
            local = _Local(self, sid, 0)
            old = service.connections.pop(0, None)
            if old is not None:
                old.close()
        service.stream_id += 1
        service.active = True
        local.stream_id = service.stream_id
        service.connections[local.connection_id] = local
        self.send(self._message(Message.STREAM_START, local))
        return local

    # -- both roles: local sockets -------------------------------------

    def _local_data(self, local: _Local, data: bytes) -> None:
        if local.closed_by_tunnel:
            return
        self.send(
            *(
                self._message(Message.DATA, local, payload=data[start : start + MAX_PAYLOAD])
                for start in range(0, len(data), MAX_PAYLOAD)
            )
        )

    def _local_closed(self, local: _Local) -> None:
        service = self._services.get(local.service_id)
        if local.closed_by_tunnel or service is None:
            return
        if service.connections.get(local.connection_id) is not local:
            return
        self._reset(service, local)
