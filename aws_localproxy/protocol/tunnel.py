# -*- test-case-name: tests.protocol.test_tunnel -*-
"""
The tunnel protocol object: one local proxy's half of the tunnel, without I/O.

A L{Tunnel} is driven by method calls -- WebSocket payloads from the service,
local connections accepted, read and lost -- and acts only through the
narrow objects of L{aws_localproxy.protocol.interfaces}: it sends records through
the session's L{Outbound} (the scheduler), writes to and closes
L{LocalConnection}s and asks the L{LocalSide} to listen or connect.  It
never sees a socket, a reactor or a clock, so tests script whole
conversations with plain objects.

When a WebSocket opens, the tunnel takes it over (L{Tunnel.link_opened}): it
builds the session's scheduler from the settings it was given, and the
WebSocket hands every payload straight to L{Tunnel.data_received}; the
connector that opened it is out of the data path until it closes.

This module is the dispatch: sessions, SERVICE_IDS, routing each message
to its service and stream, and the resets every mode handles alike.  The
rest is cut by job: L{aws_localproxy.protocol.peer_format} (V1/V2/V3 numbering),
L{aws_localproxy.protocol.tunnel_session} (one session's state and operations),
L{aws_localproxy.protocol.source_rules} and L{aws_localproxy.protocol.destination_rules}.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence

import attrs
from twisted.logger import Logger

from aws_localproxy.protocol import destination_rules, source_rules
from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, Mode, PeerVersion
from aws_localproxy.protocol.errors import RecoverableTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import (
    LocalConnection,
    LocalSide,
    Outbound,
    SessionLink,
    TunnelConnection,
    Wait,
)
from aws_localproxy.protocol.peer_format import PeerFormat
from aws_localproxy.protocol.scheduler import OutboundScheduler, OutboundSettings
from aws_localproxy.protocol.service_ids import build_mapping, deduplicate
from aws_localproxy.protocol.service_state import (
    Connection,
    Service,
    ServiceCounters,
    random_stream_start,
)
from aws_localproxy.protocol.tunnel_session import TunnelSession
from aws_localproxy.protocol.wire import (
    DEFAULT_LIMITS,
    Limits,
    Message,
    MessageDecoder,
    WireError,
    control_message,
    type_name,
)

__all__ = ["Tunnel"]

_DATA = Message.DATA
_V3 = PeerVersion.V3
_STREAM_START = Message.STREAM_START
_STREAM_RESET = Message.STREAM_RESET
_SESSION_RESET = Message.SESSION_RESET
_SERVICE_IDS = Message.SERVICE_IDS
_CONNECTION_START = Message.CONNECTION_START
_CONNECTION_RESET = Message.CONNECTION_RESET
#: The types a peer sends about a stream (not SERVICE_IDS, SESSION_RESET: the service's).
_STREAM_MESSAGES = frozenset(
    (_DATA, _STREAM_START, _STREAM_RESET, _CONNECTION_START, _CONNECTION_RESET)
)

PARSE_ERROR = "Could not parse web socket binary frame into message: "
STREAM_START_BEFORE_SERVICE_IDS = (
    "Receive stream start before receiving service ids. Cannot forward data."
)
#: Why a source's connection waits while the session has no service IDs.
WAITING_FOR_SESSION = Wait(
    "the tunnel is not ready (connecting, reconnecting or waiting for its service ids)"
)
V1_PEER_SEVERAL_SERVICES = (
    "The peer sends no service id (a V1 peer), but this tunnel has several services "
    "({service_ids}): a V1 peer can only use a tunnel with one service. "
    "Open the tunnel with a single service, or update the peer"
)


def _no_wake() -> None:
    """The default of L{Tunnel.waiting_may_start}: nothing waits."""


def _nobody_listens() -> None:
    """The default of L{Tunnel.on_session_ready}: nobody is told."""


def _copy(service_map: Mapping[str, str]) -> dict[str, str]:
    """The tunnel's own copy of its configured mapping."""
    return dict(service_map)


# on_setattr: the converter runs when the tunnel is built; assignments on the
# data path are plain (attrs would run the converter hook on every one).
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class Tunnel:
    """
    The state machine of a source or destination local proxy for one tunnel.

    A session is one WebSocket connection: L{session_started} ...
    L{session_ended}.  Within it, the service first sends SERVICE_IDS; then
    each service ID has a stream (started by the source with StreamStart) and,
    in V3, many connections (ConnectionStart / ConnectionReset).

    Where the reference misbehaves this class does not (each difference is
    listed in docs/compatibility.md):

     - it never stops processing messages: every message in a payload is
       handled at once, bytes after SERVICE_IDS included; only flow control
       pauses reading;
     - reset bookkeeping is per service: a stream reset touches only the
       connections of its service;
     - a StreamStart during a transfer closes the old connections and then
       starts the new stream, also when it repeats the current stream ID (a
       restarted source); a source's own stream IDs start at a random point
       and go on across sessions, so they do not repeat;
     - a failed connect is answered towards a V3 peer with a ConnectionReset
       for that connection only, whether a StreamStart or a ConnectionStart
       asked for it; in V1/V2 format with a StreamReset;
     - CONNECTION_RESET and CONNECTION_START are checked against the current
       stream ID, and a connection ID of 0 from a V2 peer reaches the single
       connection of the service;
     - messages before a stream exists, and starts sent to a source, are
       ignored with a warning instead of crashing;
     - C{max_active_connections} is enforced on both sides by refusing the new
       connection, and in V1/V2 format a second simultaneous local connection
       of a service is refused instead of silently replacing the first;
     - control messages for an unknown service ID are dropped with a warning,
       and a StreamStart/ConnectionStart for one is answered with a reset so
       the source's client is not left hanging (a ConnectionReset when it
       names a connection in V3);
     - a message type newer than this proxy that the peer did not mark
       ignorable ends the session (the proxy reconnects) instead of the process;
     - without C{-y} a source finds the peer's version instead of presuming V3
       (L{aws_localproxy.protocol.source_rules}), a stream's message without a service ID
       on a tunnel with one service is for that service (a V1 peer's), and a
       source's connection that cannot start yet waits (L{Wait}) instead of
       being refused.
    """

    log = Logger()

    mode: Mode
    _local: LocalSide
    #: The configured service ID -> endpoint mapping (C{service_map=}).
    _configured: dict[str, str] = attrs.field(kw_only=True, alias="service_map", converter=_copy)
    #: The configured message format (C{peer_version=}).
    _configured_version: PeerVersion = attrs.field(
        kw_only=True, alias="peer_version", default=PeerVersion.V3
    )
    _lookup_endpoints: Callable[[Sequence[str]], Mapping[str, str]] | None = attrs.field(
        kw_only=True, default=None
    )
    limits: Limits = attrs.field(kw_only=True, default=DEFAULT_LIMITS)
    _max_active_connections: int = attrs.field(kw_only=True, default=128)
    #: Source: where a service's stream IDs count from (C{stream_id_start=};
    #: tests pass C{lambda: 0} to get 1, 2, ...).
    _stream_id_start: Callable[[], int] = attrs.field(
        kw_only=True, alias="stream_id_start", default=random_stream_start
    )
    #: Source: service ID -> the last stream ID it used, for the life of the
    #: tunnel, so a new session goes on counting instead of repeating IDs the
    #: destination may still hold.
    _stream_ids: dict[str, int] = attrs.field(init=False, factory=dict)
    #: Destination: answer a StreamStart with a connection ID with an empty DATA
    #: of that connection, which shows a source that we speak V3 (L{_show_v3}).
    announce_version: bool = attrs.field(kw_only=True, default=True)
    _session: Optional[TunnelSession] = attrs.field(init=False, default=None)
    #: Source: called (outside of any of the tunnel's own work) when a local
    #: connection that was answered with L{Wait} may start now; the I/O side
    #: offers its waiting connections again (L{local_connection_offered}).
    waiting_may_start: Callable[[], None] = attrs.field(init=False, default=_no_wake)
    _decoder: MessageDecoder = attrs.field(init=False)
    #: How each session's outbound scheduler is built (L{link_opened}).
    outbound: OutboundSettings = attrs.field(kw_only=True, factory=OutboundSettings)
    #: Back-pressure from the local connections to the WebSocket: the local
    #: side reports full connections to it, each session's link is attached.
    inbound: InboundFlow = attrs.field(kw_only=True, factory=InboundFlow)
    #: Called once in each session, when it has its service IDs (at its start
    #: for V1), after the payload that brought them is handled.
    on_session_ready: Callable[[], None] = attrs.field(init=False, default=_nobody_listens)
    #: The scheduler L{link_opened} built for the session now open.
    _scheduler: Optional[OutboundScheduler] = attrs.field(init=False, default=None)
    #: Records and their bytes written by the schedulers of sessions gone.
    _records_sent_before: int = attrs.field(init=False, default=0)
    _bytes_sent_before: int = attrs.field(init=False, default=0)
    #: Service ID -> what it carried, for the life of the tunnel (metrics).
    counters: dict[str, ServiceCounters] = attrs.field(init=False, factory=dict)

    @_decoder.default
    def _new_decoder(self) -> MessageDecoder:
        return MessageDecoder(self.limits)

    @property
    def messages_received(self) -> int:
        """Messages received from the peer over every session, for metrics."""
        return self._decoder.messages_decoded

    @property
    def bytes_received(self) -> int:
        """WebSocket payload bytes received from the peer over every session, for metrics."""
        return self._decoder.bytes_fed

    def counters_for(self, service_id: str) -> ServiceCounters:
        """The counters of one of this tunnel's own service IDs (created on first use)."""
        counters = self.counters.get(service_id)
        if counters is None:
            counters = self.counters[service_id] = ServiceCounters(service_id)
        return counters

    # -- what the session negotiated --------------------------------------------

    @property
    def ready(self) -> bool:
        """The session has its service IDs: connections can be opened."""
        return self._session is not None and self._session.ready

    @property
    def service_ids(self) -> tuple[str, ...]:
        return self._session.service_ids if self._session is not None else ()

    @property
    def endpoints(self) -> Mapping[str, str]:
        return self._session.endpoints if self._session is not None else MappingProxyType({})

    @property
    def active_connections(self) -> Mapping[str, int]:
        """
        Service ID -> connections open now, in the current session (empty
        between sessions): the session's figure the metrics read.
        """
        session = self._session
        if session is None:
            return {}
        return {
            service_id: len(service.connections) for service_id, service in session.services.items()
        }

    @property
    def peer_version(self) -> PeerVersion:
        """The message format in use towards the peer; may fall back to V2 in a session."""
        if self._session is not None:
            return self._session.format.version
        return self._configured_version

    # -- the WebSocket side ---------------------------------------------------

    def link_opened(self, subprotocol: str, link: SessionLink) -> None:
        """
        A WebSocket session is open with C{subprotocol}: the session gets
        its own outbound scheduler (built from L{outbound}, writing to
        C{link}), C{link} hands each payload straight to L{data_received}
        from now on, and the session starts (L{session_started}).
        """
        scheduler = self.outbound.scheduler(
            link.send_record, link.send_ping, self.limits.max_payload_size
        )
        self._scheduler = scheduler
        link.start_session(self.data_received, scheduler, self.inbound)
        self.session_started(subprotocol, scheduler)

    def link_closed(self) -> None:
        """
        The session's WebSocket is gone: its scheduler stops (its stall
        timer too) and the session ends (L{session_ended}).
        """
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            self._records_sent_before += scheduler.records_sent
            self._bytes_sent_before += scheduler.bytes_sent
            scheduler.close()
        self.inbound.detach()
        self.session_ended()

    @property
    def scheduler(self) -> Optional[OutboundScheduler]:
        """The outbound scheduler of the session L{link_opened} started, while it is open."""
        return self._scheduler

    @property
    def session_up(self) -> bool:
        """A WebSocket session is open now (from L{link_opened} to L{link_closed})."""
        return self._scheduler is not None

    @property
    def last_ping_rtt(self) -> Optional[float]:
        """
        Seconds from the current session's latest answered pacing ping to its
        pong, for metrics (C{None} between sessions and before the first pong).
        """
        scheduler = self._scheduler
        return scheduler.last_rtt if scheduler is not None else None

    @property
    def records_sent(self) -> int:
        """Records written to the WebSocket over every session (each frame's, one by one)."""
        scheduler = self._scheduler
        return self._records_sent_before + (scheduler.records_sent if scheduler else 0)

    @property
    def bytes_sent(self) -> int:
        """Record bytes (length prefixes included) written to the WebSocket over every session."""
        scheduler = self._scheduler
        return self._bytes_sent_before + (scheduler.bytes_sent if scheduler else 0)

    def session_started(self, subprotocol: str, outbound: Outbound) -> None:
        """
        The WebSocket is open with C{subprotocol}; records go to C{outbound}.

        Connection IDs restart; a source's stream IDs go on from the last
        session's.  A V1 service sends no SERVICE_IDS,
        so for V1 the configured mapping is set up at once, in V1 format.
        """
        if self._session is not None:
            self.session_ended()
        version = self._configured_version
        if subprotocol == SUBPROTOCOL_V1:
            version = PeerVersion.V1
        self._decoder.reset()
        # A source's V3 is presumed until the peer shows it (-y V1/V2 force a format;
        # a destination follows the source's starts).
        presumed = self.mode is Mode.SOURCE and version is PeerVersion.V3
        session = self._session = TunnelSession(
            self.mode,
            outbound,
            PeerFormat(version, known=not presumed),
            self._local,
            self,
            self._max_active_connections,
        )
        if version is PeerVersion.V1:
            self._set_up(session, list(self._configured) or [""])
            self._wake(session)
            self._announce_ready(session)
        else:
            self.log.debug("Waiting for service ids...", trace=True)

    def data_received(self, payload: bytes) -> None:
        """
        Handle one binary WebSocket message from the service.

        Every complete tunnel message in it is handled before this returns.

        @raise RecoverableTunnelError: the session is broken; reconnect.
        @raise FatalTunnelError: this configuration cannot work; exit 1.
        """
        session = self._session
        if session is None:
            return
        try:
            messages = self._decoder.feed(payload)
        except WireError as error:
            raise RecoverableTunnelError(PARSE_ERROR + str(error)) from error
        for message in messages:
            if self._session is not session:
                break
            if message.type == _DATA:
                # The common case, delivered here: DATA from a peer that showed
                # it speaks V3, for an open connection of the current stream
                # of one of our services -- exactly what _dispatch -> _on_data
                # would do with it (the same counters, the same write).  Any
                # other DATA (another format, an unknown service, a stale
                # stream, no connection ID, no such connection) goes on to
                # _dispatch, which knows every rule.
                service = connection = None
                peer = session.format
                if peer.known and peer.version is _V3:
                    service = session.services.get(message.serviceId)
                stream_id, connection_id = message.streamId, message.connectionId
                if service is not None and stream_id == service.stream_id and stream_id:
                    connection = service.connections.get(connection_id) if connection_id else None
                local = connection.local if connection is not None else None
                if local is not None:
                    assert service is not None
                    counters = service.counters
                    counters.messages_received += 1
                    data = message.payload
                    if data:
                        counters.bytes_received += len(data)
                        local.write(data)
                    continue
            self._dispatch(session, message)
        if session.may_start:
            self._wake(session)
        if session.newly_ready:
            self._announce_ready(session)

    def _wake(self, session: TunnelSession) -> None:
        """Tell the I/O side that waiting connections may start (source), once per change."""
        if session.take_may_start() and self.mode is Mode.SOURCE and self._session is session:
            self.waiting_may_start()

    def _announce_ready(self, session: TunnelSession) -> None:
        """The session got its service IDs: tell L{on_session_ready}, once a session."""
        if session.take_newly_ready() and self._session is session:
            self.on_session_ready()

    def session_ended(self) -> None:
        """
        The WebSocket is gone: close every local connection (after flushing what
        was written to it) and forget the streams.  Nothing is sent any more.
        """
        session, self._session = self._session, None
        if session is not None:
            self._keep_stream_ids(session.services)
            session.end()

    # -- the local side -------------------------------------------------------

    def local_connection_offered(
        self, service_id: str, local: LocalConnection
    ) -> TunnelConnection | Wait | None:
        """
        Source: a listener of C{service_id} accepted C{local}, or a connection
        that waited is offered again.

        Sends the StreamStart (first connection of a stream, and every
        connection in V1/V2 format) or ConnectionStart (later V3 connections)
        before returning, so no DATA can precede it.

        @return: the tunnel's end of the connection; a L{Wait} when it cannot
            start yet but may soon (the session is not ready, or the peer has
            not shown whether it takes several connections a stream): the
            caller keeps it unread and offers it again after
            L{waiting_may_start}; or C{None} to refuse it (the caller closes
            it): unknown service, over C{max_active_connections}, or a second
            connection towards a V1/V2 peer.
        """
        if self.mode is not Mode.SOURCE:
            self.log.warn("Refusing a local connection: a destination does not accept any")
            return None
        session = self._session
        if session is None or not session.ready:
            return WAITING_FOR_SESSION
        if session.stopping:
            self.log.info(
                "Refusing connection for service id {service_id}: the proxy is stopping",
                service_id=service_id,
            )
            return None
        connection = source_rules.accept(session, service_id, local)
        if connection is None and service_id in session.services:
            session.services[service_id].counters.connections_refused += 1
        return connection

    def local_connection_accepted(
        self, service_id: str, local: LocalConnection
    ) -> TunnelConnection | None:
        """
        Source: like L{local_connection_offered}, for a caller that cannot
        hold a connection (C{--stdio}): one that would wait is refused.
        """
        connection = self.local_connection_offered(service_id, local)
        if isinstance(connection, Wait):
            self.local_connection_given_up(service_id, connection)
            return None
        return connection

    def local_connection_given_up(self, service_id: str, wait: Wait) -> None:
        """Source: a connection that waited is refused (its bound passed, or the proxy stops)."""
        self.log.info(
            "Refusing connection for service id {service_id}: {reason}",
            service_id=service_id,
            reason=wait.reason,
        )
        if service_id in self.counters:
            self.counters[service_id].connections_refused += 1

    # ConnectionEvents: what a Connection reports.

    def local_lost(self, connection: Connection) -> None:
        """A local socket is gone: everything read from it is queued; its reset follows."""
        session = self._session
        if session is None or not connection.open or connection.lane is None:
            return
        connection.local_gone()
        connection.service.counters.connections_closed += 1
        self._reset_from_our_side(session, connection)

    def reset_every_connection(self) -> None:
        """
        The proxy stops while its WebSocket is open: end every stream -- its
        StreamReset queued after every byte already read from its connections
        (in V3 too: the stream is over, not only its connections) -- and close
        the local sockets after flushing what they were sent.  From now on no connection starts in this
        session.  The caller closes the WebSocket once the resets are sent.

        Without this a stopping proxy only closed its WebSocket: through a
        tunneling service that does not reset the other side's streams when
        a peer goes (the AWS guide says it "may"), the peer's connections
        stayed open until this proxy came back, maybe never.
        """
        session = self._session
        if session is None or not session.open or session.stopping:
            return
        session.begin_stopping()
        count = 0
        for service in list(session.services.values()):
            ending = [c for c in service if c.open and c.lane is not None]
            count += len(ending)
            if service.active and session.format.several_connections:
                # The whole stream ends, even one whose connections are all closed,
                # so the peer is told so: after ConnectionResets alone the reference
                # destination keeps the stream as its current one and drops the next
                # StreamStart (a restarted source's) as it resets it.  The reset
                # names a connection: aws-c-iot takes one without for a V1/V2
                # message on its V3 session.
                named = ending[0].connection_id if ending else service.last_connection_id
                session.reset_stream(service, service.stream_id, named)
                continue
            for connection in ending:
                self._reset_from_our_side(session, connection)
        if count:
            self.log.info(
                "Stopping: resetting {count} open connection(s) before closing the web socket",
                count=count,
            )

    def _reset_from_our_side(self, session: TunnelSession, connection: Connection) -> None:
        """End C{connection} from this side with the reset its peer's version understands."""
        service = connection.service
        if session.format.several_connections:
            session.reset_connection(connection)
            return
        if session.format.known:
            self.log.info("simultaneous connections are not enabled, sending stream reset")
            session.reset_stream(service, connection.stream_id)
        else:
            # A V1 peer ignores ConnectionReset: its application connection would
            # stay open and receive the next connection's bytes.  The reset names
            # the connection, like the StreamStart did: aws-c-iot reconnects its
            # WebSocket on a message of another version than the stream's start.
            self.log.info(
                "The peer has not shown its version yet: ending the stream of service id "
                "{service_id} with a stream reset, which every version understands",
                service_id=service.service_id,
            )
            session.reset_stream(service, connection.stream_id, connection.connection_id)
        if session.may_start:
            self._wake(session)

    def local_connect_failed(self, connection: Connection, reason: str) -> None:
        session = self._session
        if session is None or not connection.open or connection.lane is None:
            return
        connection.service.counters.connections_refused += 1
        destination_rules.connect_failed(session, connection, reason)

    # -- inbound dispatch -------------------------------------------------------

    def _dispatch(self, session: TunnelSession, message: Message) -> None:
        message_type = message.type
        if not session.ready:
            self._before_service_ids(session, message)
            return
        stream_message = message_type in _STREAM_MESSAGES
        service_id = session.format.route(
            message.serviceId, session.service_ids, stream_message=stream_message
        )
        service = session.services.get(service_id)
        if (
            service is None
            and stream_message
            and not message.serviceId
            and len(session.service_ids) > 1
        ):
            self._v1_peer_with_several_services(session, message)
            return
        if message_type == _DATA:
            current = session.current_stream(message, service_id, service)
            if current is not None:
                self._on_data(session, current, message)
            elif service is not None:
                self._answer_undeliverable(session, service, message)
            return
        if session.stopping:
            self._while_stopping(session, message, service)
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
            current = session.current_stream(message, service_id, service)
            if current is not None:
                self._on_stream_reset(session, current)
        elif message_type == _SESSION_RESET:
            # Resets everything whatever its service ID (the reference goes deaf
            # when it has none).
            self.log.info("Session reset received: closing every connection")
            for known in session.services.values():
                session.end_stream(known, None)
        elif message_type == _SERVICE_IDS:
            self._on_late_service_ids(session, message, service)
        elif service is None:
            self._on_unknown_service(session, message)
        elif self.mode is Mode.SOURCE:
            source_rules.control(session, service, message)
        else:
            if message_type == _STREAM_START and not message.serviceId and service_id:
                # A V1 source: it ignores service IDs, and the service closes a
                # stream started without one if a message of it then carries one.
                session.format.speak_v1()
            destination_rules.control(session, service, message)
            if message_type == _STREAM_START and message.connectionId and self.announce_version:
                self._show_v3(session, service, message.connectionId)

    def _before_service_ids(self, session: TunnelSession, message: Message) -> None:
        message_type = message.type
        if message_type == _SERVICE_IDS:
            self._set_up(session, deduplicate(message.availableServiceIds))
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

    def _show_v3(self, session: TunnelSession, service: Service, connection_id: int) -> None:
        """
        Destination: a stream started with a connection ID (a V3 source).  Show
        the source at once that we speak V3 too, with an empty DATA of that
        connection: a source that does not know our version yet (ours, without
        C{-y}) holds its other connections until a message of the stream
        carries a connection ID, and the application may not speak first.
        """
        connection = service.connections.get(connection_id)
        if connection is None or not connection.open or not session.format.several_connections:
            return
        fields = session.format.data_fields(service.service_id, service.stream_id, connection_id)
        session.send(fields.record())

    def _on_data(self, session: TunnelSession, service: Service, message: Message) -> None:
        # data_received delivers the common case itself, the same way: a change
        # here is a change there (tests.protocol.test_tunnel.DataFastPathTests
        # holds the two to each other).
        if not message.connectionId:
            session.fall_back_to_v2()
        elif not session.format.known:
            session.shown_v3()
        connection = session.find_connection(service, message.connectionId)
        if connection is None:
            self._answer_undeliverable(session, service, message)
            return
        if connection.local is None:
            self.log.debug("Received non exist connection Id, skipping...")
            return
        payload = message.payload
        counters = service.counters
        counters.messages_received += 1
        if payload:  # (an empty one shows the peer's version: see _show_v3)
            counters.bytes_received += len(payload)
            connection.local.write(payload)

    def _answer_undeliverable(
        self, session: TunnelSession, service: Service, message: Message
    ) -> None:
        """
        DATA of one of our services that no connection of this session can
        take: tell the peer, once per stream or connection and session,
        instead of dropping it silently, when that is the only way the peer
        learns its connection is gone -- a restarted or reconnected peer of
        ours (a destination whose new session knows no stream, a source whose
        new process never started the stream) through a tunneling service
        that does not reset streams when a peer re-attaches.

         - Source: DATA of our current stream with a connection ID we do not
           have (V3): a ConnectionReset for that connection (a connection of
           ours that an earlier session closed without telling the peer).
           It names only that connection, and cannot overtake a start: only
           a source starts connections, and our resets and starts reach the
           peer in the order we send them.
         - Destination: DATA of our current stream that no connection takes
           is dropped, as before: we reset that connection ourselves (the
           reset is on its way), and answering could overtake the start of a
           new connection with that ID by the source.
         - DATA of any other stream (not our current one, or we have none):
           a StreamReset for the message's stream ID (naming its connection
           ID, if it has one, so a V3 peer reads it as a V3 message).  This
           cannot close a live stream of the peer: every version checks a
           StreamReset's stream ID against its current stream and discards
           it when they differ (the V3 guide's stream-ID validation; "safe to
           ignore" without an active stream).  So it ends the peer's stream
           only when that stream is the peer's current one, and then the
           stream is dead anyway: its StreamStart went to a session of ours
           that is gone, and none of its bytes can be delivered.  When the
           peer has moved on (its StreamStart for a newer stream is in flight
           to us) the reset is stale there and dropped.
         - Source: DATA of the current stream without a connection ID
           (V1/V2) and no connection: a StreamReset for the stream, by the
           same reasoning.

        One race remains, at a destination only: a source that repeats its
        stream IDs across restarts (the reference starts at 1), whose old
        process's DATA reaches a session of ours that lacks the stream just
        as its new process starts a stream with the same ID: our reset can
        end the new stream if it is already sent when the new StreamStart
        arrives (a queued one is withdrawn with the old stream's records).  Our
        own source never repeats stream IDs.

        Not answered: a stream or connection this session reset itself (the
        peer's DATA was in flight; our reset already tells it), or one already
        answered (no reset storm: one answer per stream or connection ID a
        session, in a memory of L{RESETS_REMEMBERED} entries), DATA with no
        stream ID, and DATA for an unknown service ID.
        """
        stream_id = message.streamId
        if not stream_id or session.stopping:
            return
        connection_id = message.connectionId
        current = stream_id == service.stream_id
        if current and self.mode is Mode.DESTINATION:
            self.log.debug("Received non exist connection Id, skipping...")
            return
        if current and connection_id and session.format.multiplexed:
            reset, key = _CONNECTION_RESET, connection_id
            if session.reset_sent(service.service_id, stream_id, None):
                return  # the whole stream was reset
        else:
            reset, key = _STREAM_RESET, None
        if not session.first_reset(service.service_id, stream_id, key):
            return
        self.log.info(
            "Received data for {what} of service id {service_id} stream id {stream_id} "
            "connection id {connection_id} that this session does not have: "
            "answering with a {type_name} so the peer closes it",
            what="a connection" if key is not None else "a stream",
            service_id=service.service_id,
            stream_id=stream_id,
            connection_id=connection_id,
            type_name=type_name(reset),
        )
        if reset == _STREAM_RESET:
            # It ends every connection of that stream at the peer, also ours that
            # are closing with bytes still queued (their lanes are in no table
            # any more): like every reset we send, it goes after the bytes
            # already read, not ahead of them as a plain control record would.
            # (A ConnectionReset is not answered for a closing connection: its
            # own reset is remembered, see first_reset.)
            session.outbound.drain(())
        session.send(
            control_message(
                reset,
                stream_id=stream_id,
                service_id=message.serviceId,
                connection_id=connection_id,
            ),
            stream=(service.service_id, stream_id),
        )

    def _while_stopping(
        self, session: TunnelSession, message: Message, service: Optional[Service]
    ) -> None:
        """
        The proxy stops and is sending its last resets: a start is answered
        with a reset at once (its connection would be cut a moment later);
        anything else is ignored.
        """
        if self.mode is Mode.DESTINATION and message.type in (_STREAM_START, _CONNECTION_START):
            self.log.info("Refusing a new connection: the proxy is stopping")
            self._on_unknown_service(session, message, quiet=True)

    def _on_stream_reset(self, session: TunnelSession, service: Service) -> None:
        for connection in service:
            self.log.debug(
                "Handling explicit reset by closing TCP for service id: {service_id} "
                "connection id: {connection_id}",
                service_id=service.service_id,
                connection_id=connection.connection_id,
            )
        session.end_stream(service, None)

    def _on_late_service_ids(
        self, session: TunnelSession, message: Message, service: Service | None
    ) -> None:
        routed = message.serviceId or session.format.version is PeerVersion.V1
        if service is not None and routed:
            # Routed to a service (it carries a service ID, or V1): its handler ignores it.
            # Without a service ID it is the service's own, even on a tunnel whose one
            # service has none (the empty list of a tunnel opened without services).
            if service.active:
                self.log.info("Receive service Ids during data transfer. ignore")
            return
        # A new SERVICE_IDS: set the session up again, like the reference.
        session.close_all()
        self._set_up(session, deduplicate(message.availableServiceIds))

    def _v1_peer_with_several_services(self, session: TunnelSession, message: Message) -> None:
        """
        A message without a service ID on a tunnel with several services: a V1
        peer, which the protocol does not allow there.  Said once per session
        at error level; a start is answered with a reset and a source ends the
        streams the message may be about, so no client waits for ever.
        """
        if session.first_v1_peer_report():
            self.log.error(V1_PEER_SEVERAL_SERVICES, service_ids=", ".join(session.service_ids))
        message_type = message.type
        if self.mode is Mode.DESTINATION:
            if message_type in (_STREAM_START, _CONNECTION_START):
                self._on_unknown_service(session, message)
            return
        if message_type not in (_DATA, _STREAM_RESET):
            return
        for service in session.services.values():
            if service.active and service.stream_id == message.streamId:
                session.reset_stream(service, service.stream_id)

    def _on_unknown_service(
        self, session: TunnelSession, message: Message, *, quiet: bool = False
    ) -> None:
        message_type = message.type
        if self.mode is Mode.DESTINATION and message_type in (_STREAM_START, _CONNECTION_START):
            if not quiet:
                self.log.warn(
                    "Received {type_name} for unknown service id {service_id}: resetting it",
                    type_name=type_name(message_type),
                    service_id=message.serviceId,
                )
            # A start that names a connection is ended with that connection's reset
            # (a V3 peer takes a StreamReset without one for a V1/V2 message).
            if message.connectionId and (
                message_type == _CONNECTION_START or session.format.multiplexed
            ):
                reset = _CONNECTION_RESET
            else:
                reset = _STREAM_RESET
            session.send(
                session.format.control(
                    reset,
                    message.serviceId,
                    message.streamId,
                    message.connectionId if reset == _CONNECTION_RESET else 0,
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

    def _keep_stream_ids(self, services: Mapping[str, Service]) -> None:
        """Source: remember where each service's stream IDs got to, for the next session."""
        if self.mode is Mode.SOURCE:
            for service_id, service in services.items():
                self._stream_ids[service_id] = service.stream_id

    def _set_up(self, session: TunnelSession, received: Sequence[str]) -> None:
        """Validate and map the session's service IDs, then tell the local side."""
        mapping = build_mapping(self.mode, self._configured, received, self._lookup_endpoints)
        old = session.services
        self._keep_stream_ids(old)
        services: dict[str, Service] = {}
        for service_id in mapping.service_ids:
            service = Service(
                service_id, mapping.endpoints[service_id], self.counters_for(service_id)
            )
            previous = old.get(service_id)
            if previous is not None:
                # Keep numbering where it was, so late messages stay recognisably stale.
                service.stream_id = previous.stream_id
                service.last_connection_id = previous.last_connection_id
            elif self.mode is Mode.SOURCE:
                if service_id not in self._stream_ids:
                    self._stream_ids[service_id] = self._stream_id_start()
                service.stream_id = self._stream_ids[service_id]
            services[service_id] = service
        session.set_up(services, mapping.service_ids, MappingProxyType(dict(mapping.endpoints)))
        self._local.services_ready(session.endpoints)
        if self.mode is Mode.DESTINATION:
            self.log.debug("Waiting for stream start...", trace=True)
