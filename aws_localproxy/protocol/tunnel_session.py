# -*- test-case-name: tests.protocol.test_tunnel_session,tests.protocol.test_tunnel -*-
"""
One session's state: its services, streams and connections, and the few
operations every rule is made of.

A session is one WebSocket.  It starts with nothing; SERVICE_IDS sets up
its services; streams and connections come and go inside it; when the
WebSocket goes, the session goes with everything in it.  The rules (the
dispatch in L{aws_localproxy.protocol.tunnel}, L{aws_localproxy.protocol.source_rules},
L{aws_localproxy.protocol.destination_rules}) decide *when* to open, close or reset;
this module does it the one right way: a reset we send follows every byte
already read from the connections it ends, a reset we receive drops what
was still to be sent, and a closed local socket is flushed before it closes.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Optional

import attrs
from twisted.logger import Logger

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.errors import RecoverableTunnelError
from aws_localproxy.protocol.interfaces import ConnectionEvents, LocalSide, Outbound
from aws_localproxy.protocol.peer_format import PeerFormat
from aws_localproxy.protocol.service_state import UINT32_MAX, Connection, Service, next_id
from aws_localproxy.protocol.wire import Message

__all__ = ["TunnelSession", "unexpected_type"]

# The reference's error lines for message types a handler cannot take.
UNEXPECTED_WHILE_WAITING = "Unexpected message type received while waiting for stream start: %d"
UNEXPECTED_IN_TRANSFER = (
    "Unexpected message type received during control message handling during data transfer: %d"
)
UNRECOGNIZED_WHILE_WAITING = "Unrecognized message type received while waiting for stream start: %d"
UNRECOGNIZED_IN_TRANSFER = (
    "Unrecognized message type received during control message handling during data transfer: %d"
)
_HIGHEST_KNOWN_TYPE = Message.CONNECTION_RESET
#: How many of its own resets a session remembers, so that DATA still in flight
#: for what it reset is not answered with a second reset.
RESETS_REMEMBERED = 1024

log = Logger(namespace="aws_localproxy.protocol.tunnel")


def unexpected_type(message: Message, unexpected: str, unrecognized: str) -> None:
    """
    UNKNOWN and types newer than this proxy: skipped if the peer marked them
    ignorable, else the session ends (and the proxy reconnects).  The
    reference exits for an unknown type; one record from the peer must not
    be able to stop a device's proxy.
    """
    message_type = message.type
    if message.ignorable:
        log.debug("Ignoring ignorable message of type {type}", type=message_type)
    elif message_type == Message.UNKNOWN:
        raise RecoverableTunnelError(unexpected % (message_type,))
    elif message_type > _HIGHEST_KNOWN_TYPE:
        raise RecoverableTunnelError(unrecognized % (message_type,))
    # Any other known type has no meaning here (e.g. STREAM_RESET while waiting).


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)  # plain assignments on the data path
class TunnelSession:
    """
    The state of one WebSocket session of a tunnel.

    Built from what the tunnel gives it; the rest starts empty and fills
    as the peer's SERVICE_IDS and starts arrive.
    """

    mode: Mode
    outbound: Outbound
    format: PeerFormat
    local: LocalSide
    _events: ConnectionEvents
    max_active_connections: int
    services: dict[str, Service] = attrs.field(init=False, factory=dict)
    service_ids: tuple[str, ...] = attrs.field(init=False, default=())
    endpoints: Mapping[str, str] = attrs.field(init=False, default=MappingProxyType({}))
    ready: bool = attrs.field(init=False, default=False)
    open: bool = attrs.field(init=False, default=True)
    #: Source: something happened that may let a waiting local connection
    #: start (ready, the peer's version shown, a stream freed); the tunnel
    #: tells the I/O side once its current call is done.
    may_start: bool = attrs.field(init=False, default=False)
    #: The session has just got its service IDs; the tunnel tells its listener
    #: once the payload that brought them is handled.
    newly_ready: bool = attrs.field(init=False, default=False)
    #: A V1 peer on a tunnel with several services was reported (once a session).
    v1_peer_reported: bool = attrs.field(init=False, default=False)
    #: The proxy is stopping: every connection was reset, none may start.
    stopping: bool = attrs.field(init=False, default=False)
    #: Streams (connection C{None}) and connections, as (service ID, stream ID,
    #: connection ID), that this session reset or answered: DATA for them that
    #: we cannot deliver is not answered (again).  Bounded, oldest out first.
    _resets_sent: dict[tuple[str, int, Optional[int]], None] = attrs.field(init=False, factory=dict)

    # -- setting up ----------------------------------------------------------

    def set_up(
        self,
        services: dict[str, Service],
        service_ids: tuple[str, ...],
        endpoints: Mapping[str, str],
    ) -> None:
        """
        SERVICE_IDS were validated and mapped: these are the session's
        services from now on (a later SERVICE_IDS replaces them), and
        connections may start.
        """
        self.services = services
        self.service_ids = service_ids
        self.endpoints = endpoints
        if not self.ready:
            self.ready = True
            self.newly_ready = True
        self.may_start = True

    def take_may_start(self) -> bool:
        """
        The tunnel tells the I/O side now that waiting connections may start
        (the mark is cleared); whether they can: the session is ready.
        """
        self.may_start = False
        return self.ready

    def take_newly_ready(self) -> bool:
        """Whether the session has just got its service IDs, once (the tunnel tells its listener)."""
        newly, self.newly_ready = self.newly_ready, False
        return newly and self.ready

    def first_v1_peer_report(self) -> bool:
        """A V1 peer on a tunnel with several services: whether this is the session's first report."""
        first = not self.v1_peer_reported
        self.v1_peer_reported = True
        return first

    def begin_stopping(self) -> None:
        """The proxy stops: every connection is being reset, and none may start from now on."""
        self.stopping = True

    # -- sending -------------------------------------------------------------

    def control(
        self, message_type: int, service: Service, stream_id: int, connection_id: int = 0
    ) -> bytes:
        """A control record for C{service} in the session's format (not sent)."""
        return self.format.control(message_type, service.service_id, stream_id, connection_id)

    def send(self, record: bytes, stream: Optional[tuple[str, int]] = None) -> None:
        """
        Send a control record now (ahead of queued DATA); C{stream} (service
        ID, stream ID) is the stream it names, for L{withdraw_stream}.
        """
        if self.open:
            self.outbound.control(record, stream)

    def withdraw_stream(self, service: Service, stream_id: int) -> None:
        """
        Drop every record of C{service}'s stream C{stream_id} still queued:
        the last bytes and resets of its connections.  A destination does this
        when the source starts that stream ID again (a restarted source): sent
        after the new StreamStart, they would name the new stream's
        connections, and the source would deliver the old bytes to its new
        client or reset it.  The source has forgotten the old stream.
        """
        self.outbound.withdraw((service.service_id, stream_id))

    def reset_sent(self, service_id: str, stream_id: int, connection_id: Optional[int]) -> bool:
        """Whether this session reset (or answered) that stream or connection (remembered)."""
        return (service_id, stream_id, connection_id) in self._resets_sent

    def first_reset(self, service_id: str, stream_id: int, connection_id: Optional[int]) -> bool:
        """
        Note that this session resets a stream (C{connection_id} C{None}) or
        a connection; C{True} if it had not already (as far as the bounded
        memory of L{RESETS_REMEMBERED} entries goes).
        """
        if self.reset_sent(service_id, stream_id, connection_id):
            return False
        resets = self._resets_sent
        resets[(service_id, stream_id, connection_id)] = None
        if len(resets) > RESETS_REMEMBERED:
            del resets[next(iter(resets))]
        return True

    # -- connections ---------------------------------------------------------

    def open_connection(self, service: Service, connection_id: int) -> Connection:
        """A new connection of C{service}'s current stream, with its outbound lane."""
        connection = Connection(self._events, service, connection_id, service.stream_id)
        connection.attach_lane(
            self.outbound.open_lane(
                self.format.data_fields(service.service_id, service.stream_id, connection_id),
                connection,
                service.counters,
                (service.service_id, service.stream_id),
            )
        )
        service.connections[connection_id] = connection
        service.counters.connections_opened += 1
        return connection

    def close_connection(
        self, connection: Connection, final: Optional[bytes], *, peer_reset: bool
    ) -> None:
        """
        Forget C{connection}, send C{final} (its reset, if any) and close its
        local socket after flushing.  When the peer reset it, what was still
        to be sent is dropped (the peer no longer knows the connection);
        otherwise C{final} follows every byte already read.
        """
        connection.service.connections.pop(connection.connection_id, None)
        if final is not None:
            self.first_reset(
                connection.service.service_id, connection.stream_id, connection.connection_id
            )
        lane = connection.detach_lane()
        if lane is not None:
            if peer_reset:
                lane.abort(final)
            else:
                lane.finish(final)
        elif final is not None:
            self.send(final, (connection.service_id, connection.stream_id))
        connection.close_local()

    def reset_connection(self, connection: Connection, *, peer_reset: bool = False) -> None:
        """
        Close C{connection} from this side and send its ConnectionReset: after
        every byte already read, or at once when C{peer_reset} (the peer's
        own use of the connection is broken).
        """
        reset = self.control(
            Message.CONNECTION_RESET,
            connection.service,
            connection.stream_id,
            connection.connection_id,
        )
        self.close_connection(connection, reset, peer_reset=peer_reset)

    def reset_stream(self, service: Service, stream_id: int, connection_id: int = 0) -> None:
        """
        End C{service}'s stream C{stream_id} from this side: its StreamReset
        after its data, naming C{connection_id} if the format numbers connections.
        """
        self.end_stream(
            service,
            self.control(Message.STREAM_RESET, service, stream_id, connection_id),
            stream_id,
        )

    def end_stream(
        self, service: Service, reset: Optional[bytes], stream_id: Optional[int] = None
    ) -> None:
        """
        Close every connection of C{service}; its next connection (source)
        starts a new stream.  With C{reset} (ours to send), the stream's data
        already read goes first; without, the peer ended the stream and what
        was still queued is dropped.  C{stream_id} is the stream C{reset} names
        (default: the service's current stream).
        """
        service.active = False
        self.may_start = True
        named = stream_id or service.stream_id
        if reset is not None:
            self.first_reset(service.service_id, named, None)
        connections = service.take_connections()
        if reset is None:
            service.counters.connections_reset += len(connections)
        lanes = [lane for lane in (c.detach_lane() for c in connections) if lane is not None]
        if reset is not None:
            self.outbound.drain(lanes)
            self.send(reset, (service.service_id, named))
        else:
            for lane in lanes:
                lane.abort(None)
        for connection in connections:
            connection.close_local()

    def current_stream(
        self, message: Message, service_id: str, service: Optional[Service]
    ) -> Optional[Service]:
        """
        The stale-message filter of DATA, STREAM_RESET and CONNECTION_RESET:
        the service if the message is for its current stream, else C{None}.
        """
        if service is None or not service.stream_id:
            log.warn(
                "No stream found for service id: {service_id}. Ignore stream id: {stream_id}",
                service_id=service_id,
                stream_id=message.streamId,
            )
            return None
        if not message.streamId:
            log.warn("Message received with streamid not set")
            return None
        if message.streamId != service.stream_id:
            log.debug("Stale message received. Dropping", trace=True)
            return None
        return service

    def peer_reset_connection(self, service: Service, message: Message) -> None:
        """
        The peer reset one connection: close it after flushing what it was
        sent, drop what it had yet to send, and answer with a reset of our
        own (V3), as the reference does when its closed socket reports EOF.
        """
        if self.current_stream(message, service.service_id, service) is None:
            return
        connection = self.find_connection(service, message.connectionId)
        if connection is None:
            log.debug("Ignoring explicit reset... TCP socket has been deleted")
            return
        log.debug(
            "Handling explicit reset by closing TCP for service id: {service_id} "
            "connection id: {connection_id}",
            service_id=service.service_id,
            connection_id=connection.connection_id,
        )
        service.counters.connections_reset += 1
        answer = None
        if self.format.multiplexed:
            answer = self.control(
                Message.CONNECTION_RESET, service, connection.stream_id, connection.connection_id
            )
        self.close_connection(connection, answer, peer_reset=True)

    def find_connection(self, service: Service, connection_id: int) -> Optional[Connection]:
        connection = service.connections.get(connection_id)
        if (
            connection is None
            and len(service.connections) == 1
            and (not connection_id or not self.format.multiplexed)
        ):
            # A V2 peer sends no connection ID, and V2 format ignores the ones a V3 peer
            # sends: either way it means the service's only connection (possibly a V3
            # connection started before the peer showed it speaks V2).
            (connection,) = service.connections.values()
        return connection

    def shown_v3(self) -> None:
        """The peer sent a connection ID of the current stream: several connections may start."""
        if self.format.shown_v3():
            self.may_start = True

    def new_connection_id(self, service: Service) -> int:
        connection_id = next_id(service.last_connection_id, UINT32_MAX)
        while connection_id in service.connections:
            connection_id = next_id(connection_id, UINT32_MAX)
        service.last_connection_id = connection_id
        return connection_id

    def fall_back_to_v2(self) -> None:
        """
        The peer is a V2 peer: speak V2 from now on, queued DATA included.

        V2 format has one connection per stream: a stream that already carries
        several (a V3 source accepts more before the peer shows it is V2, or a
        peer stops sending connection IDs) cannot go on, or their DATA would
        go out under one ID and mix at the peer.  Such a stream is reset, after
        the bytes already read (in their own connections' records).
        """
        if not self.format.multiplexed:
            return
        self.may_start = True
        for service in self.services.values():
            if len(service.connections) > 1:
                log.warn(
                    "The peer sent no connection ID while service id {service_id} has "
                    "{count} connections: V2 format cannot carry them, resetting the stream",
                    service_id=service.service_id,
                    count=len(service.connections),
                )
                self.end_stream(
                    service, self.control(Message.STREAM_RESET, service, service.stream_id)
                )
        self.format.fall_back_to_v2()
        for service in self.services.values():
            for connection in service:
                if connection.lane is not None:
                    connection.lane.fields = self.format.data_fields(
                        service.service_id, connection.stream_id, connection.connection_id
                    )

    # -- the end -------------------------------------------------------------

    def close_all(self) -> None:
        """
        Close every local connection (after flushing what it was sent);
        nothing more is sent for them.

        While the session goes on (a second SERVICE_IDS sets it up again)
        what they read and is still queued is dropped with their lanes: left
        in the scheduler it would go out later, after the ConnectionReset
        with which a source answers the peer's DATA for a connection it no
        longer has (control records go first), or under the IDs of a stream
        the peer starts again (a restarted source), where it would reach
        the new connection.  When the WebSocket is gone (L{end}) the
        scheduler is closed and holds nothing any more.
        """
        for service in self.services.values():
            for connection in service.take_connections():
                lane = connection.detach_lane()
                if lane is not None and self.open:
                    lane.abort(None)
                connection.close_local()

    def end(self) -> None:
        """The WebSocket is gone."""
        self.open = False
        self.ready = False
        self.outbound.close()
        self.close_all()
        self.services = {}
