# -*- test-case-name: tests.local.test_connection -*-
"""
One local TCP (or Unix) connection, as a Twisted protocol and as the
tunnel's L{LocalConnection}.

Source listeners and destination connectors both end up with one of these
per connection; only how it is born differs.  It relays bytes both ways:

 - read bytes go to its L{TunnelConnection} (and on to its outbound lane,
   which pauses reading through L{pause_reading} when the tunnel is slower);
 - tunnel bytes are written to the socket; as the producer registered on
   its own transport it hears when the socket's send buffer is full, and
   past its bound (L{backlog_limit}) it tells L{InboundFlow} to stop
   reading the WebSocket.

Closing always delivers: what was written is flushed, then the socket
closes.  Twisted does not close a transport whose streaming producer is
paused (when the buffer drains it resumes the producer instead), so the
producer is unregistered before C{loseConnection}.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aws_localproxy.adapters.sockets import set_no_delay
from aws_localproxy.adapters.twisted_private import sends_now, write_now
from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import TunnelConnection

__all__ = ["LocalStreamProtocol", "describe_peer", "DEFAULT_BACKLOG_LIMIT"]

#: Bytes a local connection holds past Twisted's buffer before the WebSocket
#: pauses (the reference's ``tcp.write_buffer_size`` default).
DEFAULT_BACKLOG_LIMIT = LocalSockets.backlog_limit


def describe_peer(transport: object) -> str:
    """``ip:port`` of the other end of a local socket (a path for Unix sockets)."""
    try:
        address = transport.getPeer()  # type: ignore[attr-defined]
    except Exception:
        return "unknown"
    host = getattr(address, "host", None)
    if host is None:
        # Twisted keeps a Unix socket's path as bytes: log it as the path.
        name = getattr(address, "name", address)
        return name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return f"{host}:{address.port}"


@implementer(IPushProducer)
class LocalStreamProtocol(Protocol):
    """
    Relays one local connection to its L{TunnelConnection}.

    @ivar tunnel_connection: the tunnel's end; set by whoever created this
        protocol, before or right after C{connectionMade}.
    @ivar on_made: called from C{connectionMade} (the source uses it to ask
        the tunnel whether to accept the connection).
    """

    log = Logger()
    transport: ITransport
    #: Whether writes are sent at once (L{write_now}): a socket transport.
    _send_now = False

    def __init__(
        self,
        inbound: InboundFlow,
        tunnel_connection: Optional[TunnelConnection] = None,
        on_made: Optional[Callable[["LocalStreamProtocol"], None]] = None,
        sockets: LocalSockets = LocalSockets(),
    ) -> None:
        self.inbound = inbound
        self.tunnel_connection = tunnel_connection
        self._on_made = on_made
        #: What the ``tcp.*`` settings say: its read size, its backlog bound.
        self.sockets = sockets
        #: Tunnel bytes held unsent before the tunnel stops reading for this
        #: connection (C{sockets.backlog_limit}, copied: it is read on every write).
        self.backlog_limit = sockets.backlog_limit
        self._closed_by_tunnel = False
        self._gone = False
        self._write_paused = False
        self._backlog = 0
        self._reading_paused = False
        self.peer = "unknown"

    # -- Twisted's side -------------------------------------------------------

    def connectionMade(self) -> None:
        self.peer = describe_peer(self.transport)
        read_size = self.sockets.read_size
        if read_size is not None and hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = read_size
        set_no_delay(self.transport)
        self._send_now = sends_now(self.transport)
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        if self._reading_paused:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        if self._on_made is not None:
            self._on_made(self)

    def dataReceived(self, data: bytes) -> None:
        connection = self.tunnel_connection
        if connection is not None and not self._closed_by_tunnel:
            connection.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self.inbound.unblocked(self)
        self.log.info("Disconnected from: {peer}", peer=self.peer)
        if self.tunnel_connection is not None and not self._closed_by_tunnel:
            self.tunnel_connection.connection_lost()

    # -- IPushProducer: the local socket's send buffer --------------------------

    def pauseProducing(self) -> None:
        # Twisted calls this on every write while the buffer is full.
        if not self._write_paused:
            self._write_paused = True
            self._backlog = 0

    def resumeProducing(self) -> None:
        # The backlog is counted from zero again at the next pause.
        self._write_paused = False
        self.inbound.unblocked(self)

    def stopProducing(self) -> None:
        self.resumeProducing()

    # -- the tunnel's side (LocalConnection) -------------------------------------

    def write(self, data: bytes) -> None:
        if self._gone or self._closed_by_tunnel:
            return
        if self._send_now and not self._write_paused:
            write_now(self.transport, data)
        else:
            self.transport.write(data)
        if self._write_paused:
            self._backlog += len(data)
            if self._backlog >= self.backlog_limit:
                self.inbound.blocked(self)

    def pause_reading(self) -> None:
        """The tunnel is slower than this socket: stop reading it."""
        if not self._reading_paused:
            self._reading_paused = True
            if self.transport is not None and not self._gone:
                self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and not self._gone:
                self.transport.resumeProducing()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Flush what was written, then close; the tunnel already knows."""
        if self._closed_by_tunnel:
            return
        self._closed_by_tunnel = True
        self.inbound.unblocked(self)
        if not self._gone and self.transport is not None:
            self._lose()

    def refuse(self) -> None:
        """Close a connection the tunnel did not take."""
        self._closed_by_tunnel = True
        if self.transport is not None:
            self._lose()

    def _lose(self) -> None:
        # A paused producer would keep the transport open forever (see the module docstring).
        self.transport.unregisterProducer()  # type: ignore[attr-defined]
        self.transport.loseConnection()
