# -*- test-case-name: tests.protocol.test_source_rules -*-
"""
The source's rules: local connections become streams and connections.

The source numbers everything.  The first local connection of a service
starts a stream (StreamStart with the next stream ID); in V3 later ones
start connections of that stream (ConnectionStart with the next connection
ID); towards V1/V2 peers a service has one connection at a time, so a
second simultaneous one is refused rather than silently replacing the
first.  The start is sent before the connection exists for the I/O layer,
so no DATA can precede it.

Without ``-y`` the peer's version is presumed V3 until the peer shows it
(L{aws_localproxy.protocol.peer_format}).  Until then a stream carries one connection:
its start is a StreamStart (with a connection ID, which V1/V2 peers ignore),
its end a StreamReset (which every version understands: a V1 peer ignores a
ConnectionReset and would write the next connection's bytes into the old
application connection), and a second connection of the service waits,
unread (L{Wait}), until the peer has shown its version -- then it starts as
a V3 connection, or is refused by the V1/V2 rule -- or until the stream is
free again, when it starts a stream of its own.

From the peer a source only takes resets (the dispatch handles stream and
session resets): StreamStart and ConnectionStart sent to a source are
ignored with a warning.
"""

from __future__ import annotations

from twisted.logger import Logger

from aws_localproxy.protocol.interfaces import LocalConnection, Wait
from aws_localproxy.protocol.service_state import INT32_MAX, Connection, Service, next_id
from aws_localproxy.protocol.tunnel_session import (
    UNEXPECTED_IN_TRANSFER,
    UNRECOGNIZED_IN_TRANSFER,
    TunnelSession,
    unexpected_type,
)
from aws_localproxy.protocol.wire import Message, type_name

__all__ = ["accept", "control", "WAITING_FOR_VERSION"]

#: Why a second connection waits while the peer's version is only presumed.
WAITING_FOR_VERSION = Wait(
    "the peer has not yet shown whether it takes several connections a stream "
    "(its first connection has received nothing yet)"
)

_STREAM_START = Message.STREAM_START
_CONNECTION_START = Message.CONNECTION_START
_CONNECTION_RESET = Message.CONNECTION_RESET

log = Logger(namespace="aws_localproxy.protocol.tunnel")


def accept(
    session: TunnelSession, service_id: str, local: LocalConnection
) -> Connection | Wait | None:
    """
    A listener of C{service_id} accepted C{local}: start its stream or
    connection, return L{WAITING_FOR_VERSION} to hold it, or C{None} to
    refuse it.
    """
    service = session.services.get(service_id)
    if service is None:
        log.warn("Refusing connection for unknown service id {service_id}", service_id=service_id)
        return None
    if not session.format.known and service.connections:
        return WAITING_FOR_VERSION
    if session.format.multiplexed:
        if len(service.connections) >= session.max_active_connections:
            log.warn(
                "Refusing connection for service id {service_id}: "
                "{count} connections are active, the maximum "
                "(tcp.max_active_connections)",
                service_id=service_id,
                count=len(service.connections),
            )
            return None
        connection_id = session.new_connection_id(service)
    else:
        if service.connections:
            log.warn(
                "Refusing connection for service id {service_id}: "
                "simultaneous connections are not enabled towards a V{version} peer",
                service_id=service_id,
                version=int(session.format.version),
            )
            return None
        log.info("Falling back to older protocol, setting new connection id to 0")
        connection_id = 0
    log.info("creating tcp connection id {connection_id}", connection_id=connection_id)

    if service.active and session.format.several_connections:
        message_type = _CONNECTION_START
        log.info(
            " sending connection start for service id: {service_id} connection id: {connection_id}",
            service_id=service_id,
            connection_id=connection_id,
        )
    else:
        message_type = _STREAM_START
        service.stream_id = next_id(service.stream_id, INT32_MAX)
        service.active = True
        log.debug(
            "Sending stream start, setting new stream ID to: {stream_id}, service id: {service_id}",
            stream_id=service.stream_id,
            service_id=service_id,
        )
    session.send(session.control(message_type, service, service.stream_id, connection_id))
    connection = session.open_connection(service, connection_id)
    connection.local = local
    return connection


def control(session: TunnelSession, service: Service, message: Message) -> None:
    """A control message (not DATA, not a stream or session reset) for one of a source's services."""
    message_type = message.type
    if not service.active:
        # No stream yet or any more: nothing to act on.
        log.debug(
            "Ignoring {type_name} for service id {service_id}: no active stream",
            type_name=type_name(message_type),
            service_id=service.service_id,
        )
    elif message_type == _CONNECTION_RESET:
        if message.connectionId and message.streamId == service.stream_id:
            session.shown_v3()
        session.peer_reset_connection(service, message)
    elif message_type in (_STREAM_START, _CONNECTION_START):
        log.warn(
            "Ignoring {type_name} for service id {service_id}: a source does not accept it",
            type_name=type_name(message_type),
            service_id=service.service_id,
        )
    else:
        unexpected_type(message, UNEXPECTED_IN_TRANSFER, UNRECOGNIZED_IN_TRANSFER)
