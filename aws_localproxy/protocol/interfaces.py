"""
The narrow interfaces between the tunnel protocol object and the I/O around it.

The tunnel (L{aws_localproxy.protocol.tunnel}) is pure protocol logic: it never
touches a socket, a reactor or a clock.  It is driven by method calls from
the WebSocket side (bytes from the service) and from the local side (local
connections accepted, data read, connections closed), and it acts only
through the objects described here.  Tests script whole conversations by
implementing these with plain Python objects.

Directions, in the protocol's words:

 - the *peer* is the other local proxy, reached through the tunneling service
   over the WebSocket (records go out through an L{Outbound});
 - a *local connection* is a TCP connection on this machine: accepted by a
   source's listener, or opened by a destination to its local service.

Every local connection belongs to one service ID.  In V3 a service ID has one
stream and many connections (connection IDs 1, 2, ...); towards V1/V2 peers a
service has at most one connection at a time (connection ID 0, never sent).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable, Mapping, Protocol, runtime_checkable

from twisted.internet.defer import Deferred


@runtime_checkable
class ReadControl(Protocol):
    """Stops and restarts reading one local socket (local -> tunnel back-pressure)."""

    def pause_reading(self) -> None:
        """Its bytes are not being sent fast enough: stop reading it."""

    def resume_reading(self) -> None:
        """Read it again."""


class ForwardsReading:
    """
    A L{ReadControl} that passes pausing and resuming on to C{local}, the
    local connection behind it, while there is one: the tunnel's
    L{aws_localproxy.protocol.service_state.Connection}, and a destination's connection
    while it is still connecting.
    """

    __slots__ = ()

    local: LocalConnection | None

    def pause_reading(self) -> None:
        if self.local is not None:
            self.local.pause_reading()

    def resume_reading(self) -> None:
        if self.local is not None:
            self.local.resume_reading()


@runtime_checkable
class OutboundLane(Protocol):
    """One connection's place in the outbound queue (L{aws_localproxy.protocol.scheduler.Lane})."""

    #: The connection's fixed DATA fields (L{aws_localproxy.protocol.wire.DataFields}).
    fields: Any

    def write(self, data: bytes) -> None:
        """Bytes read from the local socket, sent as DATA in order."""

    def finish(self, final: bytes | None) -> None:
        """Send C{final} (a reset record) after every byte queued, then nothing more."""

    def abort(self, final: bytes | None) -> None:
        """Drop what is queued and send C{final} now (the peer already reset the connection)."""


@runtime_checkable
class Outbound(Protocol):
    """
    Where a session's records go (L{aws_localproxy.protocol.scheduler.OutboundScheduler}):
    handed to the tunnel when the WebSocket opens, dropped when it closes.
    """

    def control(self, record: bytes, tag: Hashable | None = None) -> None:
        """Send a control record, ahead of any DATA still queued; C{tag} as for L{withdraw}."""

    def open_lane(
        self, fields: Any, reader: ReadControl, counters: Any = None, tag: Hashable | None = None
    ) -> Any:
        """
        A lane for a new connection whose DATA records carry C{fields}, each
        counted in C{counters.messages_sent} (and its bytes in
        C{counters.bytes_sent}) when given; C{tag} as for L{withdraw}.
        """

    def withdraw(self, tag: Hashable) -> None:
        """
        Drop what is still queued under C{tag} (the tunnel tags a service's
        stream): control records, and closing lanes' bytes and resets.
        """

    def drain(self, lanes: Iterable[Any]) -> None:
        """Send what C{lanes} hold before the next control record (stream resets)."""

    def when_idle(self) -> Deferred[None]:
        """
        A Deferred that fires once everything queued has been written (or
        dropped), or the session is over: what a stop waits for.
        """

    def close(self) -> None:
        """The session is over."""


@runtime_checkable
class SessionLink(Protocol):
    """
    One session's WebSocket, as the tunnel drives it
    (L{aws_localproxy.upstream.websocket.TunnelClientProtocol}).

    When the WebSocket opens, the tunnel builds the session's outbound
    scheduler around C{send_record} and C{send_ping}, and gives the link
    the session with L{start_session}: from then on the link hands each
    payload straight to the tunnel, and whoever connected it (the
    connector) is out of the data path.
    """

    def send_record(self, record: bytes) -> None:
        """Send C{record} (one or more whole records) as one binary WebSocket message."""

    def send_ping(self, payload: bytes) -> None:
        """Send a ping frame with C{payload} (the pacer's ack clock)."""

    def start_session(self, receive: Callable[[bytes], None], outbound: Any, inbound: Any) -> None:
        """
        The session starts: hand every binary message from now on to
        C{receive} (which raises a L{TunnelError
        <aws_localproxy.protocol.errors.TunnelError>} when the session
        cannot go on) and every pong to C{outbound.pong}; C{outbound} (the
        session's L{OutboundScheduler
        <aws_localproxy.protocol.scheduler.OutboundScheduler>}) produces
        what is written, and C{inbound} (the tunnel's L{InboundFlow
        <aws_localproxy.protocol.inbound_flow.InboundFlow>}) pauses reading
        while a local connection is full.
        """


@runtime_checkable
class LocalConnection(ReadControl, Protocol):
    """One local TCP connection, as the tunnel drives it."""

    def write(self, data: bytes) -> None:
        """
        Deliver bytes from the tunnel to the local socket.

        For a destination connection that is still connecting, the bytes are
        kept and written once it is connected (the reference drops them).
        """

    def close(self) -> None:
        """
        Close the local socket after everything written so far is flushed.

        The tunnel calls this when the peer resets the connection or stream,
        or when the session ends.  Idempotent.  It does not call back
        L{TunnelConnection.connection_lost}: the tunnel already knows.  A
        destination connection still connecting finishes connecting, writes
        what it holds, then closes.
        """


@runtime_checkable
class TunnelConnection(Protocol):
    """
    The tunnel's end of one local connection: what the I/O layer reports to.

    Returned by L{aws_localproxy.protocol.tunnel.Tunnel.local_connection_accepted}
    (source) and passed to L{LocalSide.connect} (destination).
    """

    service_id: str
    connection_id: int

    def data_received(self, data: bytes) -> None:
        """Bytes read from the local socket, to be sent as DATA, in order."""

    def connection_lost(self) -> None:
        """
        The local socket is gone (EOF, error, or the local application closed
        it): the tunnel tells the peer with ConnectionReset (V3) or
        StreamReset (V1/V2).
        """

    def connect_failed(self, reason: str) -> None:
        """
        Destination only: every connect attempt to the local service failed
        (the I/O layer does the retries of ``tcp.connection_retry_count``).
        """

    def replace_local(self, stand_in: LocalConnection, local: LocalConnection) -> None:
        """
        Destination only: the L{LocalConnection} that L{LocalSide.connect}
        returned, C{stand_in} (it keeps what is written while connecting),
        is connected: write to C{local}, the connected one, from now on --
        unless the tunnel has let go of C{stand_in} meanwhile.
        """


@runtime_checkable
class ConnectionEvents(Protocol):
    """What a L{aws_localproxy.protocol.service_state.Connection} reports to: the tunnel."""

    def local_lost(self, connection: Any) -> None:
        """The connection's local socket is gone."""

    def local_connect_failed(self, connection: Any, reason: str) -> None:
        """A destination's local connection could not be opened."""


@runtime_checkable
class LocalSide(Protocol):
    """The local half of the proxy: listeners (source) or connectors (destination)."""

    def services_ready(self, endpoints: Mapping[str, str]) -> None:
        """
        SERVICE_IDS was received and validated: C{endpoints} maps each service
        ID of this session to its configured endpoint text (a port for a
        source, C{"0"} meaning "pick one"; C{port}, C{host:port} or a Unix
        socket path for a destination).

        A source starts (or keeps) a listener per service ID; a destination
        only records the endpoints.  Called again on a later SERVICE_IDS
        (e.g. after a reconnect) with the new set.
        """

    def connect(self, connection: TunnelConnection) -> LocalConnection:
        """
        Destination only: open a local connection to the endpoint of
        C{connection.service_id} and return it at once.  The returned object
        buffers writes until connected; success is silent, final failure is
        reported with C{connection.connect_failed}.
        """


class Wait:
    """
    What the tunnel answers a source's new local connection that cannot start
    yet but may soon: the session is not ready (connecting, reconnecting, no
    SERVICE_IDS yet) or the peer has not shown whether it takes several
    connections a stream.  The I/O side holds the connection unread, offers
    it again when the tunnel says connections may start, and refuses it after
    its bound (L{aws_localproxy.local.source.SourceSide}).
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        #: Why it waits, for the log line if it is refused in the end.
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Wait {self.reason!r}>"
