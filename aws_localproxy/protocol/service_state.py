# -*- test-case-name: tests.protocol.test_service_state,tests.protocol.test_tunnel -*-
"""
The tunnel's bookkeeping: per service, its stream; per stream, its connections.

A service ID has at most one current stream, numbered by the source.  Our
source counts each service's streams on from a random point (L{random_stream_start}),
drawn once per process and kept across reconnects, so that a restarted or
reconnected source never repeats the stream ID the destination still holds:
the V3 guide asks for stream IDs "unlikely to repeat through a tunnel's
lifetime", and a destination that took the new stream for the old one would
hang the first connection or hand its bytes to the old one.  In V3 a stream
carries many connections, numbered by the source too (1, 2, ... per service
and session); towards V1/V2 peers it carries one, numbered 0 and never sent.
These objects hold that state; the rules for changing it live in
L{aws_localproxy.protocol.tunnel}.
"""

from __future__ import annotations

import secrets
from typing import Callable, Dict, Iterator, List, Optional

from aws_localproxy.protocol.interfaces import (
    ConnectionEvents,
    ForwardsReading,
    LocalConnection,
    OutboundLane,
)

__all__ = [
    "INT32_MAX",
    "UINT32_MAX",
    "Service",
    "ServiceCounters",
    "Connection",
    "next_id",
    "random_stream_start",
]

#: Stream IDs are protobuf int32: after the largest one the count starts again at 1.
INT32_MAX = 2**31 - 1
#: Connection IDs are protobuf uint32.
UINT32_MAX = 2**32 - 1


def _dropped(data: bytes) -> None:
    """What a closed connection does with the bytes still read from its socket."""


def next_id(current: int, maximum: int) -> int:
    """The ID after C{current}: one more, or 1 after C{maximum} (0 means "none")."""
    return 1 if current >= maximum else current + 1


def random_stream_start() -> int:
    """
    Where a source's stream IDs of one service count from: the stream ID
    "before" its first stream, random in [0, L{INT32_MAX}), so the first is
    in [1, L{INT32_MAX}] and later ones follow with L{next_id}'s wrap.  Two
    processes of one tunnel repeat an ID only if their runs of IDs overlap:
    a chance of about (streams used) / 2**31.  Every known peer only
    compares stream IDs for equality, so no range of them is special.
    """
    return secrets.randbelow(INT32_MAX)


class ServiceCounters:
    """
    What one service ID carried, for metrics: plain ints bumped on the data
    path, read at scrape time.  They live for the whole tunnel (the
    L{Service} objects are rebuilt with each session).

    Bytes are DATA payload bytes; messages are DATA records.  A connection
    is I{opened} when the tunnel takes it, I{refused} when it does not (or
    a destination cannot connect), I{reset} when the peer ends it (its
    reset, a stream or session reset), I{closed} when its local socket ends.
    """

    __slots__ = (
        "service_id",
        "bytes_sent",
        "bytes_received",
        "messages_sent",
        "messages_received",
        "connections_opened",
        "connections_refused",
        "connections_reset",
        "connections_closed",
    )

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_received = 0
        self.connections_opened = 0
        self.connections_refused = 0
        self.connections_reset = 0
        self.connections_closed = 0


class Service:
    """
    One service ID of a session: its endpoint, its stream, its connections.

    C{active} means "a stream is open": for a source, a StreamStart was sent
    and no StreamReset followed; for a destination, a StreamStart was received
    (the reference's data-transfer handler).  C{stream_id} keeps the last
    stream ID even when inactive, so that late messages of that stream are
    recognised as stale and the source's next stream is C{stream_id + 1}
    (a source's service starts at the tunnel's L{random_stream_start} point,
    or where the previous session left it).
    """

    def __init__(
        self, service_id: str, endpoint: str, counters: Optional[ServiceCounters] = None
    ) -> None:
        self.service_id = service_id
        self.endpoint = endpoint
        self.counters = counters if counters is not None else ServiceCounters(service_id)
        self.stream_id = 0
        self.active = False
        self.last_connection_id = 0
        self.connections: Dict[int, Connection] = {}

    def take_connections(self) -> List[Connection]:
        """Forget every connection of this service and return them, oldest first."""
        connections = list(self.connections.values())
        self.connections.clear()
        return connections

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self.connections.values()))

    def __repr__(self) -> str:
        return "<Service %r stream=%d active=%s connections=%s>" % (
            self.service_id,
            self.stream_id,
            self.active,
            sorted(self.connections),
        )


class Connection(ForwardsReading):
    """
    The tunnel's end of one local connection (L{TunnelConnection}).

    Bytes read from the local socket go straight into the connection's
    outbound L{lane<aws_localproxy.protocol.scheduler.Lane>}: while it has
    one, C{data_received} I{is} the lane's C{write} (L{attach_lane}), so a
    read costs the local side one call into the tunnel.  The socket's end is
    reported to the tunnel (L{ConnectionEvents}), which knows the rules.
    Once closed (by either side, or with the session) it ignores every
    further report, so each connection is reset at most once.
    """

    __slots__ = (
        "_events",
        "service",
        "service_id",
        "connection_id",
        "stream_id",
        "local",
        "lane",
        "data_received",
        "open",
    )

    #: Bytes read from the local socket, to be sent as DATA in order: the
    #: lane's C{write} while there is a lane, else dropped.
    data_received: Callable[[bytes], None]

    def __init__(
        self,
        events: ConnectionEvents,
        service: Service,
        connection_id: int,
        stream_id: int,
    ) -> None:
        self._events = events
        self.service = service
        self.service_id = service.service_id
        self.connection_id = connection_id
        self.stream_id = stream_id
        self.local: LocalConnection | None = None
        #: Where its bytes go; C{None} once the connection is closed.
        self.lane: OutboundLane | None = None
        self.data_received = _dropped
        self.open = True

    def attach_lane(self, lane: OutboundLane) -> None:
        """From now on the bytes read go to C{lane} (which counts them, in the service's counters)."""
        self.lane = lane
        self.data_received = lane.write

    def detach_lane(self) -> OutboundLane | None:
        """The connection is closed: the bytes read go nowhere any more.  Returns the lane it had."""
        lane, self.lane = self.lane, None
        self.data_received = _dropped
        return lane

    def connection_lost(self) -> None:
        if self.open:
            self._events.local_lost(self)

    def connect_failed(self, reason: str) -> None:
        if self.open:
            self._events.local_connect_failed(self, reason)

    def replace_local(self, stand_in: LocalConnection, local: LocalConnection) -> None:
        if self.local is stand_in:
            self.local = local

    def local_gone(self) -> None:
        """The local socket is gone: the connection is closed, nothing is written to it any more."""
        self.open = False
        self.local = None

    # ReadControl, for the lane (the local socket's reading): from ForwardsReading.

    def close_local(self) -> None:
        """Mark closed and close the local socket (flushing), if there is one."""
        self.open = False
        if self.local is not None:
            self.local.close()

    def __repr__(self) -> str:
        return "<Connection %r stream=%d id=%d%s>" % (
            self.service.service_id,
            self.stream_id,
            self.connection_id,
            "" if self.open else " closed",
        )
