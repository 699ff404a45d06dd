# -*- test-case-name: tests.test_tunnel -*-
"""
The tunnel protocol object: one local proxy's half of the tunnel, without I/O.

A L{Tunnel} is driven by method calls -- WebSocket payloads from the service,
local connections accepted, read and lost -- and acts only through the
narrow objects of L{aws_localproxy.interfaces}: it sends records to the
L{TunnelPeer}, writes to and closes L{LocalConnection}s and asks the
L{LocalSide} to listen or connect.  It never sees a socket, a reactor or a
clock, so tests script whole conversations with plain objects.

It speaks to V3 peers (many connections per stream), V2 peers (one
connection per stream, no connection IDs) and V1 peers (one service, no
service IDs), switching from V3 to V2 format when the peer shows it is a V2
peer (a connection ID of 0).  The rules are those of the reference local
proxy (behaviour.md §3), with the fixes of its known bugs that
L{Tunnel}'s docstring lists.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from twisted.logger import Logger

from aws_localproxy.constants import SUBPROTOCOL_V1, Mode, PeerVersion
from aws_localproxy.errors import FatalTunnelError, RecoverableTunnelError
from aws_localproxy.interfaces import LocalConnection, LocalSide, TunnelConnection, TunnelPeer
from aws_localproxy.mapping import build_mapping, deduplicate
from aws_localproxy.streams import INT32_MAX, UINT32_MAX, Connection, Service, next_id
from aws_localproxy.wire import (
    DEFAULT_LIMITS,
    Limits,
    Message,
    MessageDecoder,
    WireError,
    control_message,
    encode_data,
    type_name,
)

__all__ = ["Tunnel"]

_DATA = Message.DATA
_STREAM_START = Message.STREAM_START
_STREAM_RESET = Message.STREAM_RESET
_SESSION_RESET = Message.SESSION_RESET
_SERVICE_IDS = Message.SERVICE_IDS
_CONNECTION_START = Message.CONNECTION_START
_CONNECTION_RESET = Message.CONNECTION_RESET
_HIGHEST_KNOWN_TYPE = _CONNECTION_RESET

# The reference's error messages (behaviour.md §3, §7.3), word for word.
PARSE_ERROR = "Could not parse web socket binary frame into message: "
STREAM_START_BEFORE_SERVICE_IDS = (
    "Receive stream start before receiving service ids. Cannot forward data."
)
NO_STREAM_ID_IN_STREAM_START = "No stream ID set for stream start message!"
NO_STREAM_ID_IN_CONNECTION_START = "No stream ID set for connection start message!"
UNEXPECTED_WHILE_WAITING = "Unexpected message type received while waiting for stream start: %d"
UNEXPECTED_IN_TRANSFER = (
    "Unexpected message type received during control message handling during data transfer: %d"
)
UNRECOGNIZED_WHILE_WAITING = "Unrecognized message type received while waiting for stream start: %d"
UNRECOGNIZED_IN_TRANSFER = (
    "Unrecognized message type received during control message handling during data transfer: %d"
)


class Tunnel:
    """
    The state machine of a source or destination local proxy for one tunnel.

    A session is one WebSocket connection: L{session_started} ...
    L{session_ended}.  Within it, the service first sends SERVICE_IDS; then
    each service ID has a stream (started by the source with StreamStart) and,
    in V3, many connections (ConnectionStart / ConnectionReset).

    Where the reference has known bugs (behaviour.md §9) this class fixes them:

     - it never stops processing messages (P1, P2, P3): every message in a
       payload is handled at once, bytes after SERVICE_IDS included; only the
       I/O layer's flow control pauses reading;
     - reset bookkeeping is per service (P4): a stream reset touches only the
       connections of its service, nothing waits on a shared counter;
     - a new StreamStart during a transfer closes the old connections and then
       starts the new stream (D1);
     - a failed V3 ConnectionStart is answered with a ConnectionReset for that
       connection only; a failed StreamStart (or any failure in V1/V2 format)
       with a StreamReset (D4);
     - CONNECTION_RESET and CONNECTION_START are checked against the current
       stream ID (D6), and a connection ID of 0 from a V2 peer reaches the
       single connection of the service (D5);
     - messages before a stream exists and starts sent to a source are ignored
       with a warning instead of crashing (D7, D8);
     - C{max_active_connections} is enforced by refusing the new local
       connection, and in V1/V2 format a second simultaneous local connection
       of a service is refused instead of silently replacing the first (S3);
     - control messages for an unknown service ID are dropped with a warning,
       and a StreamStart/ConnectionStart for one is answered with a reset so
       the source's client is not left hanging.
    """

    log = Logger()

    def __init__(
        self,
        mode: Mode,
        peer: TunnelPeer,
        local: LocalSide,
        *,
        service_map: Mapping[str, str],
        peer_version: PeerVersion = PeerVersion.V3,
        lookup_endpoints: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_active_connections: int = 128,
    ) -> None:
        self.mode = mode
        self._peer = peer
        self._local = local
        self._configured = dict(service_map)
        self._configured_version = peer_version
        self._lookup_endpoints = lookup_endpoints
        self._limits = limits
        self._max_active_connections = max_active_connections
        #: The message format in use towards the peer; may fall back to V2 in a session.
        self.peer_version = peer_version
        self.service_ids: tuple[str, ...] = ()
        self.endpoints: Mapping[str, str] = MappingProxyType({})
        self.ready = False
        self._in_session = False
        self._services: dict[str, Service] = {}
        self._decoder = MessageDecoder(limits)

    # -- the WebSocket side ---------------------------------------------------

    def session_started(self, subprotocol: str) -> None:
        """
        The WebSocket is open with C{subprotocol}: start a new session.

        Stream and connection IDs restart.  A V1 service sends no SERVICE_IDS,
        so for V1 the configured mapping is set up at once, in V1 format.
        """
        if self._in_session:
            self.session_ended()
        self._in_session = True
        self._decoder = MessageDecoder(self._limits)
        self._services = {}
        self.ready = False
        self.service_ids = ()
        self.endpoints = MappingProxyType({})
        self.peer_version = self._configured_version
        if subprotocol == SUBPROTOCOL_V1:
            self.peer_version = PeerVersion.V1
            self._set_up(list(self._configured) or [""])
        else:
            self.log.debug("Waiting for service ids...", trace=True)

    def data_received(self, payload: bytes) -> None:
        """
        Handle one binary WebSocket message from the service.

        Every complete tunnel message in it is handled before this returns.

        @raise RecoverableTunnelError: the session is broken; reconnect.
        @raise FatalTunnelError: this configuration cannot work; exit 1.
        """
        if not self._in_session:
            return
        try:
            messages = self._decoder.feed(payload)
        except WireError as error:
            raise RecoverableTunnelError(PARSE_ERROR + str(error)) from error
        for message in messages:
            if not self._in_session:
                break
            self._dispatch(message)

    def session_ended(self) -> None:
        """
        The WebSocket is gone: close every local connection (after flushing what
        was written to it) and forget the streams.  Nothing is sent any more.
        """
        if not self._in_session:
            return
        self._in_session = False
        self.ready = False
        for service in self._services.values():
            for connection in service.take_connections():
                connection.close_local()
        self._services = {}

    # -- the local side -------------------------------------------------------

    def local_connection_accepted(
        self, service_id: str, local: LocalConnection
    ) -> TunnelConnection | None:
        """
        Source: a listener of C{service_id} accepted C{local}.

        Sends the StreamStart (first connection of a stream, and every
        connection in V1/V2 format) or ConnectionStart (later V3 connections)
        before returning, so no DATA can precede it.

        @return: the tunnel's end of the connection, or C{None} to refuse it
            (the caller closes it): no session ready, unknown service, over
            C{max_active_connections}, or a second connection in V1/V2 format.
        """
        if self.mode is not Mode.SOURCE:
            self.log.warn("Refusing a local connection: a destination does not accept any")
            return None
        if not self.ready:
            self.log.info(
                "Refusing connection for service id {service_id}: the tunnel is not ready",
                service_id=service_id,
            )
            return None
        service = self._services.get(service_id)
        if service is None:
            self.log.warn(
                "Refusing connection for unknown service id {service_id}", service_id=service_id
            )
            return None
        if self.peer_version is PeerVersion.V3:
            if len(service.connections) >= self._max_active_connections:
                self.log.warn(
                    "Refusing connection for service id {service_id}: "
                    "{count} connections are active, the maximum "
                    "(tcp.max_active_connections)",
                    service_id=service_id,
                    count=len(service.connections),
                )
                return None
            connection_id = self._new_connection_id(service)
        else:
            if service.connections:
                self.log.warn(
                    "Refusing connection for service id {service_id}: "
                    "simultaneous connections are not enabled towards a V{version} peer",
                    service_id=service_id,
                    version=int(self.peer_version),
                )
                return None
            self.log.info("Falling back to older protocol, setting new connection id to 0")
            connection_id = 0
        self.log.info("creating tcp connection id {connection_id}", connection_id=connection_id)

        if service.active and self.peer_version is PeerVersion.V3:
            message_type = _CONNECTION_START
            self.log.info(
                " sending connection start for service id: {service_id} "
                "connection id: {connection_id}",
                service_id=service_id,
                connection_id=connection_id,
            )
        else:
            message_type = _STREAM_START
            service.stream_id = next_id(service.stream_id, INT32_MAX)
            service.active = True
            self.log.debug(
                "Sending stream start, setting new stream ID to: {stream_id}, "
                "service id: {service_id}",
                stream_id=service.stream_id,
                service_id=service_id,
            )
        connection = Connection(
            self,
            service,
            connection_id,
            service.stream_id,
            starts_stream=message_type == _STREAM_START,
        )
        connection.local = local
        service.connections[connection_id] = connection
        self._send_control(message_type, service, connection.stream_id, connection_id)
        return connection

    # Called by Connection (the TunnelConnection the I/O layer holds).

    def _local_data(self, connection: Connection, data: bytes) -> None:
        if not (connection.open and self._in_session):
            return
        service = connection.service
        wire_service_id = self._wire_service_id(service)
        wire_connection_id = self._wire_connection_id(connection)
        self.log.debug(
            "Prepare to send data message: service id: {service_id} stream id: {stream_id} "
            "connection id: {connection_id}",
            service_id=service.service_id,
            stream_id=connection.stream_id,
            connection_id=connection.connection_id,
        )
        send = self._peer.send_record
        for record in encode_data(
            wire_service_id, connection.stream_id, wire_connection_id, data, self._limits
        ):
            send(record)

    def _local_lost(self, connection: Connection) -> None:
        if not (connection.open and self._in_session):
            return
        connection.open = False
        service = connection.service
        service.connections.pop(connection.connection_id, None)
        if self.peer_version is PeerVersion.V3:
            self._send_control(
                _CONNECTION_RESET, service, connection.stream_id, connection.connection_id
            )
            return
        self.log.info("simultaneous connections are not enabled, sending stream reset")
        self._send_control(_STREAM_RESET, service, connection.stream_id)
        self._end_stream(service)

    def _connect_failed(self, connection: Connection, reason: str) -> None:
        if not (connection.open and self._in_session):
            return
        service = connection.service
        self.log.debug(
            "Could not connect service id {service_id} connection id {connection_id}: {reason}",
            service_id=service.service_id,
            connection_id=connection.connection_id,
            reason=reason,
        )
        if self.peer_version is PeerVersion.V3 and not connection.starts_stream:
            # D4: only this connection failed; the others of the stream live on.
            service.connections.pop(connection.connection_id, None)
            connection.close_local()
            self._send_control(
                _CONNECTION_RESET, service, connection.stream_id, connection.connection_id
            )
            return
        self.log.debug(
            "resetting stream for service id:{service_id}, then listen for stream start",
            service_id=service.service_id,
            trace=True,
        )
        self._send_control(_STREAM_RESET, service, connection.stream_id)
        self._end_stream(service)

    # -- inbound dispatch (behaviour.md §3.3) -----------------------------------

    def _dispatch(self, message: Message) -> None:
        message_type = message.type
        if not self.ready:
            self._before_service_ids(message)
            return
        service_id = self._route(message.serviceId)
        service = self._services.get(service_id)
        if message_type == _DATA:
            current = self._current_stream(message, service_id, service)
            if current is not None:
                self._on_data(current, message)
            return
        self.log.debug(
            "Received {type_name} service id: {service_id} stream id: {stream_id} "
            "connection id: {connection_id}",
            type_name=type_name(message_type),
            service_id=message.serviceId,
            stream_id=message.streamId,
            connection_id=message.connectionId,
            trace=True,
        )
        if message_type == _STREAM_RESET:
            current = self._current_stream(message, service_id, service)
            if current is not None:
                self._on_stream_reset(current)
        elif message_type == _SESSION_RESET:
            # Resets everything whatever its service ID (the reference goes deaf
            # when it has none, P1).
            self._on_session_reset()
        elif message_type == _SERVICE_IDS:
            self._on_late_service_ids(message, service)
        elif service is None:
            self._on_unknown_service(message)
        elif self.mode is Mode.SOURCE:
            self._source_control(service, message)
        else:
            self._destination_control(service, message)

    def _route(self, service_id: str) -> str:
        """The service a message is for: V1 peers send no service ID, so it is the first one."""
        if self.peer_version is PeerVersion.V1 and self.service_ids:
            return self.service_ids[0]
        return service_id

    def _current_stream(
        self, message: Message, service_id: str, service: Service | None
    ) -> Service | None:
        """
        The stale-message filter of DATA and STREAM_RESET (and, D6, CONNECTION_RESET):
        the service if the message is for its current stream, else C{None}.
        """
        if service is None or not service.stream_id:
            self.log.warn(
                "No stream found for service id: {service_id}. Ignore stream id: {stream_id}",
                service_id=service_id,
                stream_id=message.streamId,
            )
            return None
        if not message.streamId:
            self.log.warn("Message received with streamid not set")
            return None
        if message.streamId != service.stream_id:
            self.log.debug("Stale message received. Dropping", trace=True)
            return None
        return service

    def _before_service_ids(self, message: Message) -> None:
        message_type = message.type
        if message_type == _SERVICE_IDS:
            self._set_up(deduplicate(message.availableServiceIds))
        elif message_type == _STREAM_START and self.mode is Mode.DESTINATION:
            raise RecoverableTunnelError(STREAM_START_BEFORE_SERVICE_IDS)
        elif message_type == _STREAM_START:
            self.log.warn(
                "Ignoring stream start received before service ids: a source does not accept it"
            )
        elif message_type != _DATA:
            self.log.debug(
                "Expect:Message_Type_SERVICE_IDS. Ignore message type: {type}",
                type=message_type,
            )

    def _on_data(self, service: Service, message: Message) -> None:
        if not message.connectionId:
            self._fall_back_to_v2()
        connection = self._find_connection(service, message.connectionId)
        if connection is None or connection.local is None:
            self.log.debug("Received non exist connection Id, skipping...")
            return
        connection.local.write(message.payload)

    def _on_stream_reset(self, service: Service) -> None:
        for connection in service:
            self.log.debug(
                "Handling explicit reset by closing TCP for service id: {service_id} "
                "connection id: {connection_id}",
                service_id=service.service_id,
                connection_id=connection.connection_id,
            )
        self._end_stream(service)

    def _on_connection_reset(self, service: Service, message: Message) -> None:
        if self._current_stream(message, service.service_id, service) is None:
            return
        connection = self._find_connection(service, message.connectionId)
        if connection is None:
            self.log.debug("Ignoring explicit reset... TCP socket has been deleted")
            return
        self.log.debug(
            "Handling explicit reset by closing TCP for service id: {service_id} "
            "connection id: {connection_id}",
            service_id=service.service_id,
            connection_id=connection.connection_id,
        )
        service.connections.pop(connection.connection_id, None)
        connection.close_local()

    def _on_session_reset(self) -> None:
        self.log.info("Session reset received: closing every connection")
        for service in self._services.values():
            self._end_stream(service)

    def _on_late_service_ids(self, message: Message, service: Service | None) -> None:
        if service is not None:
            # Routed to a service (it carries a service ID, or V1): its handler ignores it.
            if service.active:
                self.log.info("Receive service Ids during data transfer. ignore")
            return
        # A new SERVICE_IDS: set the session up again, like the reference.
        for known in self._services.values():
            for connection in known.take_connections():
                connection.close_local()
        self._set_up(deduplicate(message.availableServiceIds))

    def _on_unknown_service(self, message: Message) -> None:
        message_type = message.type
        if self.mode is Mode.DESTINATION and message_type in (_STREAM_START, _CONNECTION_START):
            self.log.warn(
                "Received {type_name} for unknown service id {service_id}: resetting it",
                type_name=type_name(message_type),
                service_id=message.serviceId,
            )
            if message_type == _CONNECTION_START and message.connectionId:
                reset = _CONNECTION_RESET
            else:
                reset = _STREAM_RESET
            self._send(
                control_message(
                    reset,
                    stream_id=message.streamId,
                    service_id=message.serviceId,
                    connection_id=message.connectionId if reset == _CONNECTION_RESET else 0,
                )
            )
        elif message.ignorable:
            self.log.debug(
                "Ignoring {type_name} for unknown service id {service_id}",
                type_name=type_name(message_type),
                service_id=message.serviceId,
            )
        else:
            self.log.warn(
                "Ignoring {type_name} for unknown service id {service_id}",
                type_name=type_name(message_type),
                service_id=message.serviceId,
            )

    # -- per-service control handlers (§3.5.5, §3.6) ----------------------------

    def _source_control(self, service: Service, message: Message) -> None:
        message_type = message.type
        if not service.active:
            # No stream yet or any more: the reference's "ignore" handler.
            self.log.debug(
                "Ignoring {type_name} for service id {service_id}: no active stream",
                type_name=type_name(message_type),
                service_id=service.service_id,
            )
        elif message_type == _CONNECTION_RESET:
            self._on_connection_reset(service, message)
        elif message_type in (_STREAM_START, _CONNECTION_START):
            self.log.warn(
                "Ignoring {type_name} for service id {service_id}: a source does not accept it",
                type_name=type_name(message_type),
                service_id=service.service_id,
            )
        else:
            self._unexpected_type(message, UNEXPECTED_IN_TRANSFER, UNRECOGNIZED_IN_TRANSFER)

    def _destination_control(self, service: Service, message: Message) -> None:
        message_type = message.type
        if message_type == _STREAM_START or (
            message_type == _CONNECTION_START and not service.active
        ):
            self._on_stream_start(service, message)
        elif message_type == _CONNECTION_START:
            self._on_connection_start(service, message)
        elif message_type == _CONNECTION_RESET:
            if service.active:
                self._on_connection_reset(service, message)
        elif service.active:
            self._unexpected_type(message, UNEXPECTED_IN_TRANSFER, UNRECOGNIZED_IN_TRANSFER)
        else:
            self._unexpected_type(message, UNEXPECTED_WHILE_WAITING, UNRECOGNIZED_WHILE_WAITING)

    def _unexpected_type(self, message: Message, unexpected: str, unrecognized: str) -> None:
        """UNKNOWN and types newer than this proxy: skip if ignorable, else end the session."""
        message_type = message.type
        if message.ignorable:
            self.log.debug("Ignoring ignorable message of type {type}", type=message_type)
        elif message_type == Message.UNKNOWN:
            raise RecoverableTunnelError(unexpected % (message_type,))
        elif message_type > _HIGHEST_KNOWN_TYPE:
            raise FatalTunnelError(unrecognized % (message_type,))
        # Any other known type has no meaning here (e.g. STREAM_RESET while waiting).

    def _on_stream_start(self, service: Service, message: Message) -> None:
        if not message.connectionId:
            self._fall_back_to_v2()
        if not message.streamId:
            raise RecoverableTunnelError(NO_STREAM_ID_IN_STREAM_START)
        self.log.debug(
            "Received service id : {service_id}, stream id: {stream_id}",
            service_id=service.service_id,
            stream_id=message.streamId,
        )
        if service.active:
            if message.streamId == service.stream_id:
                self.log.debug("Ignoring stream start for the current stream")
                return
            self.log.warn(
                "Stream start received during data transfer for service id :{service_id}"
                "with new stream id: {stream_id}",
                service_id=service.service_id,
                stream_id=message.streamId,
            )
            self.log.warn("Reset this stream")
            self._end_stream(service)
        # D1: the new stream starts now, not at some later StreamStart.
        service.stream_id = message.streamId
        service.active = True
        self._connect(service, message.connectionId, starts_stream=True)

    def _on_connection_start(self, service: Service, message: Message) -> None:
        if not message.streamId:
            raise RecoverableTunnelError(NO_STREAM_ID_IN_CONNECTION_START)
        self.log.debug(
            "Received service id : {service_id}, stream id: {stream_id}, "
            "connection id: {connection_id} for connection start",
            service_id=service.service_id,
            stream_id=message.streamId,
            connection_id=message.connectionId,
        )
        if message.streamId != service.stream_id:
            self.log.warn(
                "Ignoring connection start for service id {service_id}: stream id {stream_id} "
                "is not the current stream {current}",
                service_id=service.service_id,
                stream_id=message.streamId,
                current=service.stream_id,
            )
            return
        if not message.connectionId:
            self._fall_back_to_v2()
        self._connect(service, message.connectionId, starts_stream=False)

    def _connect(self, service: Service, connection_id: int, *, starts_stream: bool) -> None:
        """Destination: open a local connection for a StreamStart or ConnectionStart."""
        if self.peer_version is not PeerVersion.V3:
            connection_id = 0
        existing = service.connections.pop(connection_id, None)
        if existing is not None:
            # The peer reuses a live connection ID: that connection is broken.
            self.log.warn(
                "Connection id {connection_id} of service id {service_id} is already open: "
                "resetting it",
                connection_id=connection_id,
                service_id=service.service_id,
            )
            existing.close_local()
            if self.peer_version is PeerVersion.V3:
                self._send_control(
                    _CONNECTION_RESET, service, existing.stream_id, existing.connection_id
                )
            else:
                self._send_control(_STREAM_RESET, service, existing.stream_id)
                self._end_stream(service)
            return
        connection = Connection(
            self, service, connection_id, service.stream_id, starts_stream=starts_stream
        )
        service.connections[connection_id] = connection
        self.log.info(
            "Setting up dest socket with tcp connection id {connection_id}",
            connection_id=connection_id,
        )
        local = self._local.connect(connection)
        connection.local = local
        if not connection.open:
            # It failed or was reset while connecting synchronously.
            local.close()

    # -- helpers ---------------------------------------------------------------

    def _set_up(self, received: Sequence[str]) -> None:
        """Validate and map the session's service IDs, then tell the local side."""
        mapping = build_mapping(self.mode, self._configured, received, self._lookup_endpoints)
        old = self._services
        services: dict[str, Service] = {}
        for service_id in mapping.service_ids:
            service = Service(service_id, mapping.endpoints[service_id])
            previous = old.get(service_id)
            if previous is not None:
                # Keep numbering where it was, so late messages stay recognisably stale.
                service.stream_id = previous.stream_id
                service.last_connection_id = previous.last_connection_id
            services[service_id] = service
        self._services = services
        self.service_ids = mapping.service_ids
        self.endpoints = MappingProxyType(dict(mapping.endpoints))
        self.ready = True
        self._local.services_ready(self.endpoints)
        if self.mode is Mode.DESTINATION:
            self.log.debug("Waiting for stream start...", trace=True)

    def _end_stream(self, service: Service) -> None:
        """Close every connection of C{service}; a source's next connection starts a new stream."""
        service.active = False
        for connection in service.take_connections():
            connection.close_local()

    def _find_connection(self, service: Service, connection_id: int) -> Connection | None:
        connection = service.connections.get(connection_id)
        if (
            connection is None
            and len(service.connections) == 1
            and (not connection_id or self.peer_version is not PeerVersion.V3)
        ):
            # A V2 peer sends no connection ID, and V2 format ignores the ones a V3 peer
            # sends: either way it means the service's only connection (possibly a V3
            # connection started before the peer showed it speaks V2).
            (connection,) = service.connections.values()
        return connection

    def _new_connection_id(self, service: Service) -> int:
        connection_id = next_id(service.last_connection_id, UINT32_MAX)
        while connection_id in service.connections:
            connection_id = next_id(connection_id, UINT32_MAX)
        service.last_connection_id = connection_id
        return connection_id

    def _fall_back_to_v2(self) -> None:
        if self.peer_version is PeerVersion.V3:
            self.log.debug("reverting to v2 message format")
            self.peer_version = PeerVersion.V2

    def _wire_service_id(self, service: Service) -> str:
        return "" if self.peer_version is PeerVersion.V1 else service.service_id

    def _wire_connection_id(self, connection: Connection) -> int:
        return connection.connection_id if self.peer_version is PeerVersion.V3 else 0

    def _send_control(
        self, message_type: int, service: Service, stream_id: int, connection_id: int = 0
    ) -> None:
        if self.peer_version is not PeerVersion.V3:
            connection_id = 0
        self._send(
            control_message(
                message_type,
                stream_id=stream_id,
                service_id=self._wire_service_id(service),
                connection_id=connection_id,
            )
        )

    def _send(self, record: bytes) -> None:
        if self._in_session:
            self._peer.send_record(record)
