# -*- test-case-name: tests.local.test_destination -*-
"""
The destination's local side: a TCP (or Unix socket) client per connection.

A service ID's endpoint is the reference's ``port``, ``host:port`` or Unix
socket path, or any Twisted client endpoint description
(``unix:/run/sshd.sock``, ``tcp:host=example:port=80``; see
L{aws_localproxy.config.local_endpoints}); an embedding application may hand over any
C{IStreamClientEndpoint} for a service ID instead (an in-process factory,
for one).

On StreamStart or ConnectionStart the tunnel asks for a local connection to
the service ID's endpoint.  The connection is returned at once and keeps
what the tunnel writes to it until the socket is connected (the reference
throws that data away); connect attempts are retried as
``tcp.connection_retry_count`` / ``tcp.connection_retry_delay_ms`` say, and
only after the last one does the tunnel hear of the failure.  Connecting
never blocks the reactor (the reference's connect does, D2) and IPv6
literals work (``[::1]:22``, which the reference cannot parse).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Set, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from aws_localproxy.config.local_endpoints import (
    DEFAULT_DESTINATION_HOST,
    DestinationEndpoint,
    EndpointError,
    parse_destination_endpoint,
)
from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import ForwardsReading, LocalConnection, TunnelConnection

__all__ = ["DestinationSide", "DEFAULT_DESTINATION_HOST"]


def _ignore_cancelled(failure: Failure) -> Optional[Failure]:
    """A connection attempt given up (the peer reset it, or the side stopped) is not an error."""
    return None if isinstance(failure.value, CancelledError) else failure


class _PendingConnection(ForwardsReading):
    """
    The L{LocalConnection} handed to the tunnel while connecting; afterwards it
    forwards to the connected protocol.

    A close while connecting does not cancel the connect: a client that
    writes a line and closes at once (``echo cmd | nc``) produces a start,
    data and a reset in one go, and the application must still get the
    connection, every byte and then EOF.  So the attempts go on (bounded by
    ``tcp.connection_retry_*``), the bytes are written, then it closes.
    """

    def __init__(self, side: DestinationSide, connection: TunnelConnection, endpoint: str) -> None:
        self._side = side
        self._connection = connection
        self._endpoint = endpoint
        self._buffer: List[bytes] = []
        self._buffered = 0
        #: The connected protocol, once there is one.
        self.local: Optional[LocalStreamProtocol] = None
        self._closed = False
        self._reading_paused = False
        self._attempt: Optional[Deferred[None]] = None

    def start(self) -> None:
        self._side.connecting.add(self)
        d = Deferred.fromCoroutine(self._connect_with_retries())
        self._attempt = d
        d.addErrback(_ignore_cancelled)
        d.addBoth(self._done)

    def _done(self, result: object) -> object:
        """No longer connecting; an error other than a cancel goes on, to be logged."""
        self._side.connecting.discard(self)
        return result

    async def _connect_with_retries(self) -> None:
        side = self._side
        attempts = 0
        service_id = self._connection.service_id
        while True:
            side.log.info(
                "Attempting to establish tcp socket connection to: {endpoint}",
                endpoint=self._endpoint,
            )
            try:
                factory = Factory.forProtocol(
                    lambda: LocalStreamProtocol(
                        side.inbound,
                        self._connection,
                        sockets=side.sockets,
                    )
                )
                factory.noisy = False
                protocol = cast(
                    LocalStreamProtocol, await side.endpoint_for(service_id).connect(factory)
                )
            except CancelledError:
                raise
            except Exception as error:
                attempts += 1
                reason = getattr(error, "message", None) or str(error) or type(error).__name__
                side.log.error(
                    "Could not connect to destination {endpoint} -- {reason}",
                    endpoint=self._endpoint,
                    reason=reason,
                )
                if 0 <= side.sockets.retry_count < attempts:
                    side.inbound.unblocked(self)
                    if self._buffered:
                        side.log.warn(
                            "Dropping {count} bytes for destination {endpoint}: "
                            "no connection could be made",
                            count=self._buffered,
                            endpoint=self._endpoint,
                        )
                    self._buffer.clear()
                    self._buffered = 0
                    self._connection.connect_failed(reason)
                    return
                await deferLater(side.reactor, side.sockets.retry_delay)
                continue
            self._connected(protocol)
            return

    def _connected(self, protocol: LocalStreamProtocol) -> None:
        peer = protocol.transport.getPeer()
        host = getattr(peer, "host", None)
        parsed = self._side._parsed.get(self._connection.service_id)
        if parsed is not None and parsed.path is not None:
            self._side.log.info("Connected to Unix socket: {path}", path=parsed.path)
        elif host is not None:
            self._side.log.info(
                "Connected to {ip}, port: {port}", ip=host, port=getattr(peer, "port", None)
            )
        else:
            self._side.log.info("Connected to {endpoint}", endpoint=self._endpoint)
        self.local = protocol
        if self._reading_paused:
            protocol.pause_reading()
        for data in self._buffer:
            protocol.write(data)
        self._buffer.clear()
        self._buffered = 0
        self._side.inbound.unblocked(self)
        if self._closed:
            protocol.close()
        else:
            # From now on the tunnel writes to the socket's protocol itself:
            # no extra call per DATA record through this stand-in.
            self._connection.replace_local(self, protocol)

    # -- LocalConnection ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.local is not None:
            self.local.write(data)
            return
        if self._closed:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= self._side.pending_limit:
            self._side.inbound.blocked(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.local is not None:
            self.local.close()

    def pause_reading(self) -> None:
        self._reading_paused = True
        super().pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        super().resume_reading()

    def cancel(self) -> None:
        """The proxy is stopping: give up connecting."""
        self._closed = True
        self._buffer.clear()
        self._side.inbound.unblocked(self)
        if self.local is None and self._attempt is not None:
            self._attempt.cancel()


class DestinationSide:
    """The L{LocalSide} of a destination local proxy."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        inbound: InboundFlow,
        *,
        sockets: LocalSockets = LocalSockets(),
        default_host: str = DEFAULT_DESTINATION_HOST,
        pending_limit: int = 131076,
        connect_timeout: float = 30,
        client_endpoints: Optional[Mapping[str, IStreamClientEndpoint]] = None,
    ) -> None:
        """
        @param sockets: backlog, read size and connect retries of every local connection.
        @param client_endpoints: service ID -> the endpoint to connect with,
            given by an embedding application (e.g. an in-process factory,
            L{aws_localproxy.local.inprocess.FactoryEndpoint}); it wins over the
            configured text.
        """
        self.reactor = reactor
        self.sockets = sockets
        self._client_endpoints = dict(client_endpoints or {})
        self._parsed: Dict[str, DestinationEndpoint] = {}
        self.inbound = inbound
        self.default_host = default_host
        self.pending_limit = pending_limit
        #: Local connections still connecting (cancelled by L{stop}).
        self.connecting: Set[_PendingConnection] = set()
        self.connect_timeout = connect_timeout
        self.endpoints: Mapping[str, str] = {}

    def services_ready(self, endpoints: Mapping[str, str]) -> None:
        parsed: Dict[str, DestinationEndpoint] = {}
        for service_id, endpoint in endpoints.items():
            if service_id in self._client_endpoints:
                continue
            try:  # bad mappings fail now, not at the first connection
                parsed[service_id] = parse_destination_endpoint(endpoint, self.default_host)
            except EndpointError as error:
                raise FatalTunnelError(str(error)) from None
        self._parsed = parsed
        self.endpoints = dict(endpoints)

    def endpoint_for(self, service_id: str) -> IStreamClientEndpoint:
        """The endpoint a new local connection of C{service_id} connects with."""
        given = self._client_endpoints.get(service_id)
        if given is not None:
            return given
        return self._parsed[service_id].client_endpoint(self.reactor, self.connect_timeout)

    def stop(self) -> None:
        """The proxy is stopping: give up every connect still in progress."""
        for pending in list(self.connecting):
            pending.cancel()

    def connect(self, connection: TunnelConnection) -> LocalConnection:
        endpoint = self.endpoints.get(connection.service_id)
        if endpoint is None or (
            connection.service_id not in self._parsed
            and connection.service_id not in self._client_endpoints
        ):
            raise FatalTunnelError(f"Receive invalid service id {connection.service_id}")
        pending = _PendingConnection(self, connection, endpoint)
        pending.start()
        return pending
