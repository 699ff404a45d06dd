# -*- test-case-name: tests.test_destination -*-
"""
The destination's local side: a TCP (or Unix socket) client per connection.

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

from typing import List, Mapping, Optional, Set, Tuple, cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger

from aws_localproxy.errors import FatalTunnelError
from aws_localproxy.flowcontrol import InboundFlow
from aws_localproxy.interfaces import LocalConnection, TunnelConnection
from aws_localproxy.localconn import DEFAULT_BACKLOG_LIMIT, LocalStreamProtocol

__all__ = ["DestinationSide", "parse_destination"]

#: Where a bare port goes, as in the reference.
DEFAULT_DESTINATION_HOST = "127.0.0.1"


def parse_destination(endpoint: str, default_host: str = DEFAULT_DESTINATION_HOST) -> Tuple[str, int] | str:
    """
    ``port``, ``host:port``, ``[v6]:port`` or a bare IPv6 ``a:b::c:port`` ->
    C{(host, port)}; anything with a ``/`` is a Unix socket path (returned as is).
    """
    text = endpoint.strip()
    if "/" in text:
        return text
    text = text.lower()
    if text.isdigit():
        return default_host, _port(text, endpoint)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise FatalTunnelError(f"Invalid destination endpoint: {endpoint}")
        return host, _port(rest[1:], endpoint)
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise FatalTunnelError(f"Invalid destination endpoint: {endpoint}")
    return host, _port(port, endpoint)


def _port(text: str, endpoint: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise FatalTunnelError(f"Invalid port in destination endpoint: {endpoint}")
    return int(text)


class _PendingConnection:
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
        self._protocol: Optional[LocalStreamProtocol] = None
        self._closed = False
        self._reading_paused = False
        self._attempt: Optional[Deferred[None]] = None

    def start(self) -> None:
        self._side.connecting.add(self)
        d = Deferred.fromCoroutine(self._connect_with_retries())
        self._attempt = d
        d.addErrback(lambda f: f.trap(CancelledError))
        d.addBoth(lambda _: self._side.connecting.discard(self))

    async def _connect_with_retries(self) -> None:
        side = self._side
        attempts = 0
        target = parse_destination(self._endpoint, side.default_host)
        while True:
            side.log.info(
                "Attempting to establish tcp socket connection to: {endpoint}",
                endpoint=self._endpoint,
            )
            try:
                factory = Factory.forProtocol(
                    lambda: LocalStreamProtocol(
                        side.inbound, self._connection, backlog_limit=side.backlog_limit
                    )
                )
                factory.noisy = False
                protocol = cast(
                    LocalStreamProtocol, await side.endpoint_for(target).connect(factory)
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
                if 0 <= side.retry_count < attempts:
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
                await deferLater(side.reactor, side.retry_delay)  # type: ignore[arg-type]
                continue
            self._connected(protocol, target)
            return

    def _connected(self, protocol: LocalStreamProtocol, target: Tuple[str, int] | str) -> None:
        if isinstance(target, str):
            self._side.log.info("Connected to Unix socket: {path}", path=target)
        else:
            peer = protocol.transport.getPeer()
            self._side.log.info(
                "Connected to {ip}, port: {port}",
                ip=getattr(peer, "host", target[0]),
                port=getattr(peer, "port", target[1]),
            )
        self._protocol = protocol
        if self._reading_paused:
            protocol.pause_reading()
        for data in self._buffer:
            protocol.write(data)
        self._buffer.clear()
        self._buffered = 0
        self._side.inbound.unblocked(self)
        if self._closed:
            protocol.close()

    # -- LocalConnection ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._protocol is not None:
            self._protocol.write(data)
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
        if self._protocol is not None:
            self._protocol.close()

    def pause_reading(self) -> None:
        self._reading_paused = True
        if self._protocol is not None:
            self._protocol.pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        if self._protocol is not None:
            self._protocol.resume_reading()

    def cancel(self) -> None:
        """The proxy is stopping: give up connecting."""
        self._closed = True
        self._buffer.clear()
        self._side.inbound.unblocked(self)
        if self._protocol is None and self._attempt is not None:
            self._attempt.cancel()


class DestinationSide:
    """The L{LocalSide} of a destination local proxy."""

    log = Logger()

    def __init__(
        self,
        reactor: object,
        inbound: InboundFlow,
        *,
        default_host: str = DEFAULT_DESTINATION_HOST,
        retry_count: int = 5,
        retry_delay: float = 2.5,
        pending_limit: int = 131076,
        backlog_limit: int = DEFAULT_BACKLOG_LIMIT,
        connect_timeout: float = 30,
    ) -> None:
        self.reactor = reactor
        self.inbound = inbound
        self.default_host = default_host
        self.retry_count = retry_count
        self.retry_delay = retry_delay
        self.pending_limit = pending_limit
        self.backlog_limit = backlog_limit
        #: Local connections still connecting (cancelled by L{stop}).
        self.connecting: Set[_PendingConnection] = set()
        self.connect_timeout = connect_timeout
        self.endpoints: Mapping[str, str] = {}

    def services_ready(self, endpoints: Mapping[str, str]) -> None:
        for endpoint in endpoints.values():
            parse_destination(endpoint, self.default_host)  # bad mappings fail now
        self.endpoints = dict(endpoints)

    def endpoint_for(self, target: Tuple[str, int] | str) -> IStreamClientEndpoint:
        if isinstance(target, str):
            return UNIXClientEndpoint(self.reactor, target, timeout=self.connect_timeout)  # type: ignore[arg-type]
        host, port = target
        return HostnameEndpoint(self.reactor, host, port, timeout=self.connect_timeout)

    def stop(self) -> None:
        """The proxy is stopping: give up every connect still in progress."""
        for pending in list(self.connecting):
            pending.cancel()

    def connect(self, connection: TunnelConnection) -> LocalConnection:
        endpoint = self.endpoints.get(connection.service_id)
        if endpoint is None:
            raise FatalTunnelError(f"Receive invalid service id {connection.service_id}")
        pending = _PendingConnection(self, connection, endpoint)
        pending.start()
        return pending
