# -*- test-case-name: tests.test_localconn -*-
"""
One local TCP (or Unix) connection, as a Twisted protocol and as the
tunnel's L{LocalConnection}.

Source listeners and destination connectors both end up with one of these
per connection; only how it is born differs.  It relays bytes both ways and
reports back-pressure to L{FlowControl}: as a producer registered on its own
transport it hears when the local socket cannot take more.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aws_localproxy.flowcontrol import FlowControl
from aws_localproxy.interfaces import TunnelConnection
from aws_localproxy.sockets import set_no_delay

__all__ = ["LocalStreamProtocol", "describe_peer"]


def describe_peer(transport: object) -> str:
    """``ip:port`` of the other end of a local socket (a path for Unix sockets)."""
    try:
        address = transport.getPeer()  # type: ignore[attr-defined]
    except Exception:
        return "unknown"
    host = getattr(address, "host", None)
    if host is None:
        return str(getattr(address, "name", address))
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

    def __init__(
        self,
        flow: FlowControl,
        tunnel_connection: Optional[TunnelConnection] = None,
        on_made: Optional[Callable[["LocalStreamProtocol"], None]] = None,
    ) -> None:
        self.flow = flow
        self.tunnel_connection = tunnel_connection
        self._on_made = on_made
        self._closed_by_tunnel = False
        self._gone = False
        self.peer = "unknown"

    # -- Twisted's side -------------------------------------------------------

    def connectionMade(self) -> None:
        self.peer = describe_peer(self.transport)
        set_no_delay(self.transport)
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.flow.add_local(self.transport)  # type: ignore[arg-type]
        if self._on_made is not None:
            self._on_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self.tunnel_connection is not None and not self._closed_by_tunnel:
            self.tunnel_connection.data_received(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._gone = True
        self.flow.remove_local(self.transport, self)  # type: ignore[arg-type]
        self.log.info("Disconnected from: {peer}", peer=self.peer)
        if self.tunnel_connection is not None and not self._closed_by_tunnel:
            self.tunnel_connection.connection_lost()

    # -- IPushProducer: the local socket's send buffer --------------------------

    def pauseProducing(self) -> None:
        self.flow.blocked(self)

    def resumeProducing(self) -> None:
        self.flow.unblocked(self)

    def stopProducing(self) -> None:
        self.flow.unblocked(self)

    # -- the tunnel's side (LocalConnection) -------------------------------------

    def write(self, data: bytes) -> None:
        if not self._gone and not self._closed_by_tunnel:
            self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        """Flush what was written, then close; the tunnel already knows."""
        if self._closed_by_tunnel:
            return
        self._closed_by_tunnel = True
        if not self._gone and self.transport is not None:
            self.transport.loseConnection()

    def refuse(self) -> None:
        """Close a connection the tunnel did not take."""
        self._closed_by_tunnel = True
        if self.transport is not None:
            self.transport.loseConnection()
