# -*- test-case-name: tests.protocol.test_destination_rules -*-
"""
The destination's rules: streams and connections become local connections.

A StreamStart (or, with no stream yet, a ConnectionStart) starts the
service's stream and opens its first local connection; in V3 a
ConnectionStart of the current stream opens another.  A StreamStart during
a transfer ends the old stream and starts the new one at once, as the V3
guide asks: with a new stream ID (the reference drops the new stream's data
until yet another StreamStart comes) and with the current one too (a source
that restarted and counts from 1 again; the reference ignores it, and the
restarted source's first connection hangs).  The old stream's connections
are closed after what they were sent is written; what they had yet to send
is dropped, since the peer would take it for the new stream's.

A ConnectionStart for a connection ID that is open on the current stream is
the peer's error (V3 guide): that connection is reset and nothing is opened
for the start.  A restarted source cannot cause it: its first start is a
StreamStart, which ends every old connection first.

At most ``tcp.max_active_connections`` connections per service are opened;
the peer's asks beyond that are answered with a reset.  A connection that
cannot reach the local service is answered with a reset: its ConnectionReset
towards a V3 peer, a StreamReset in V1/V2 format.
"""

from __future__ import annotations

from twisted.logger import Logger

from aws_localproxy.protocol.errors import RecoverableTunnelError
from aws_localproxy.protocol.service_state import Connection, Service
from aws_localproxy.protocol.tunnel_session import (
    UNEXPECTED_IN_TRANSFER,
    UNEXPECTED_WHILE_WAITING,
    UNRECOGNIZED_IN_TRANSFER,
    UNRECOGNIZED_WHILE_WAITING,
    TunnelSession,
    unexpected_type,
)
from aws_localproxy.protocol.wire import Message

__all__ = ["control", "connect_failed"]

NO_STREAM_ID_IN_STREAM_START = "No stream ID set for stream start message!"
NO_STREAM_ID_IN_CONNECTION_START = "No stream ID set for connection start message!"

_STREAM_START = Message.STREAM_START
_STREAM_RESET = Message.STREAM_RESET
_CONNECTION_START = Message.CONNECTION_START
_CONNECTION_RESET = Message.CONNECTION_RESET

log = Logger(namespace="aws_localproxy.protocol.tunnel")


def control(session: TunnelSession, service: Service, message: Message) -> None:
    """A control message (not DATA, not a stream or session reset) for one of a destination's services."""
    message_type = message.type
    if message_type == _STREAM_START or (message_type == _CONNECTION_START and not service.active):
        _on_stream_start(session, service, message)
    elif message_type == _CONNECTION_START:
        _on_connection_start(session, service, message)
    elif message_type == _CONNECTION_RESET:
        if service.active:
            session.peer_reset_connection(service, message)
    elif service.active:
        unexpected_type(message, UNEXPECTED_IN_TRANSFER, UNRECOGNIZED_IN_TRANSFER)
    else:
        unexpected_type(message, UNEXPECTED_WHILE_WAITING, UNRECOGNIZED_WHILE_WAITING)


def connect_failed(session: TunnelSession, connection: Connection, reason: str) -> None:
    """
    Every attempt to open C{connection}'s local socket failed.

    Towards a V3 peer the answer is a ConnectionReset for that connection,
    also when it is the first of its stream (opened by a StreamStart): the
    V3 guide answers a failed connection attempt so, the stream and the
    service's other connections go on, and a V3 peer reads a StreamReset
    without a connection ID as a V1 message on its V3 session (aws-c-iot
    then drops and reopens its whole WebSocket).  In V1/V2 format a stream
    has one connection and the StreamReset ends both.
    """
    service = connection.service
    log.debug(
        "Could not connect service id {service_id} connection id {connection_id}: {reason}",
        service_id=service.service_id,
        connection_id=connection.connection_id,
        reason=reason,
    )
    if session.format.multiplexed:
        session.reset_connection(connection)
        return
    log.debug(
        "resetting stream for service id:{service_id}, then listen for stream start",
        service_id=service.service_id,
        trace=True,
    )
    session.reset_stream(service, connection.stream_id)


def _received(service: Service, message: Message) -> dict[str, object]:
    """The fields of a log line about a start the peer sent for C{service}."""
    return {"service_id": service.service_id, "stream_id": message.streamId}


def _on_stream_start(session: TunnelSession, service: Service, message: Message) -> None:
    if not message.streamId:
        raise RecoverableTunnelError(NO_STREAM_ID_IN_STREAM_START)
    log.debug(
        "Received service id : {service_id}, stream id: {stream_id}",
        **_received(service, message),
    )
    if service.active:
        if message.streamId == service.stream_id:
            # The source started again with a stream ID it used before (a
            # restarted reference source counts from 1 again): a new stream all
            # the same, and the old one is over.  No StreamReset for the old
            # stream: it would carry the new stream's ID.
            log.warn(
                "Stream start received for the current stream id {stream_id} of service id "
                "{service_id}: the source started again; closing the stream's connections",
                **_received(service, message),
            )
        else:
            log.warn(
                "Stream start received during data transfer for service id :{service_id}"
                "with new stream id: {stream_id}",
                **_received(service, message),
            )
            log.warn("Reset this stream")
        # What the old connections were sent is flushed to their sockets; what they
        # had yet to send is dropped: under a repeated stream ID the peer would take
        # it for the new stream's.
        session.end_stream(service, None)
    # Whatever is still queued under the new stream's ID belongs to an older
    # stream of that ID (closed connections' last bytes, their resets, a
    # refusal): after this StreamStart the source would take it for the new
    # stream's.  A new stream ID leaves nothing to drop (the source reads
    # older streams' records as stale).
    session.withdraw_stream(service, message.streamId)
    if not message.connectionId:
        # After the old stream is gone, so that falling back cannot reset it
        # with a StreamReset that carries the new stream's ID.
        session.fall_back_to_v2()
    service.stream_id = message.streamId
    service.active = True
    _connect(session, service, message.connectionId)


def _on_connection_start(session: TunnelSession, service: Service, message: Message) -> None:
    if not message.streamId:
        raise RecoverableTunnelError(NO_STREAM_ID_IN_CONNECTION_START)
    log.debug(
        "Received service id : {service_id}, stream id: {stream_id}, "
        "connection id: {connection_id} for connection start",
        connection_id=message.connectionId,
        **_received(service, message),
    )
    if message.streamId != service.stream_id:
        log.warn(
            "Ignoring connection start for service id {service_id}: stream id {stream_id} "
            "is not the current stream {current}",
            current=service.stream_id,
            **_received(service, message),
        )
        return
    if not message.connectionId and session.format.multiplexed:
        # Not a V2 peer (V2 has no ConnectionStart), and no connection named:
        # opening one under ID 0 would give the stream two connections that
        # V2 format could not tell apart.
        log.warn(
            "Ignoring connection start for service id {service_id} without a connection id",
            service_id=service.service_id,
        )
        return
    _connect(session, service, message.connectionId)


def _refuse(session: TunnelSession, service: Service, connection_id: int) -> None:
    """
    Answer a start we will not act on with the reset that ends it: a
    ConnectionReset towards a V3 peer (whether a StreamStart or a
    ConnectionStart asked), a StreamReset in V1/V2 format.
    """
    service.counters.connections_refused += 1
    if session.format.multiplexed:
        session.send(
            session.control(_CONNECTION_RESET, service, service.stream_id, connection_id),
            (service.service_id, service.stream_id),
        )
    else:
        session.reset_stream(service, service.stream_id)


def _connect(session: TunnelSession, service: Service, connection_id: int) -> None:
    """Open a local connection for a StreamStart or ConnectionStart."""
    if session.format.multiplexed:
        existing = service.connections.get(connection_id)
    else:
        # One connection per stream: whatever its key (it may have been opened
        # under a V3 connection ID before the peer showed it speaks V2).
        connection_id = 0
        existing = next(iter(service.connections.values()), None)
    if existing is not None:
        # The peer reuses a live connection ID: that connection is broken.
        log.warn(
            "Connection id {connection_id} of service id {service_id} is already open: "
            "resetting it",
            connection_id=connection_id,
            service_id=service.service_id,
        )
        if session.format.multiplexed:
            session.reset_connection(existing, peer_reset=True)
        else:
            session.reset_stream(service, existing.stream_id)
        return
    if len(service.connections) >= session.max_active_connections:
        log.warn(
            "Refusing connection id {connection_id} of service id {service_id}: "
            "{count} connections are active, the maximum (tcp.max_active_connections)",
            connection_id=connection_id,
            service_id=service.service_id,
            count=len(service.connections),
        )
        _refuse(session, service, connection_id)
        return
    connection = session.open_connection(service, connection_id)
    log.info(
        "Setting up dest socket with tcp connection id {connection_id}",
        connection_id=connection_id,
    )
    local = session.local.connect(connection)
    connection.local = local
    if not connection.open:
        # It failed or was reset while connecting synchronously.
        local.close()
