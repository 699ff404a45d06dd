# -*- test-case-name: tests.local.test_stdio -*-
"""
``--stdio``: standard input and output as the source's one local connection.

For ``ssh -o ProxyCommand='localproxy ... --stdio SSH1'``: no listener; as
soon as the tunnel is ready, stdin/stdout become one tunnel connection of
the chosen service ID, exactly like a connection a source's listener
accepted (the same L{LocalStreamProtocol}, so the same flow control both
ways).  The connection ends when stdin reaches EOF (what was read is sent
first, then the connection's reset), when stdout is closed, or when the
peer resets it (what the peer sent is written to stdout first); then the
proxy stops.  Standard output carries nothing but the tunnel's bytes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import LocalConnection, TunnelConnection
from aws_localproxy.protocol.service_ids import UNNAMED_SERVICE

__all__ = ["StdioConnection", "StdioSide", "StdioEnd", "choose_service_id"]

Accept = Callable[[str, LocalConnection], Optional[TunnelConnection]]


class StdioEnd:
    """How the stdio connection ended: C{session_lost} when the WebSocket went first."""

    def __init__(self, session_lost: bool, refused: bool = False) -> None:
        self.session_lost = session_lost
        self.refused = refused

    def __repr__(self) -> str:
        return f"<StdioEnd session_lost={self.session_lost} refused={self.refused}>"


def choose_service_id(wanted: Optional[str], available: Sequence[str]) -> str:
    """
    The service ID the stdio connection is for: C{wanted} if the tunnel has
    it, else the tunnel's only one.

    A tunnel opened without services has one service without an ID (the
    tunnel reports it as C{""}; an empty C{available} means the same), and
    C{--stdio} without a name connects to it.

    @raise FatalTunnelError: C{wanted} is not one of the tunnel's, or none
        was named and the tunnel has several.
    """
    available = list(available) or [UNNAMED_SERVICE]
    if wanted is not None:
        if wanted not in available:
            if available == [UNNAMED_SERVICE]:
                raise FatalTunnelError(
                    f"Service id {wanted} given to --stdio is not one of the tunnel's: "
                    "the tunnel has no service ids (leave SERVICE_ID out)"
                )
            raise FatalTunnelError(
                f"Service id {wanted} given to --stdio is not one of the tunnel's: "
                + ", ".join(available)
            )
        return wanted
    if len(available) != 1:
        raise FatalTunnelError(
            "The tunnel has several service ids (" + ", ".join(available) + "): "
            "name one with --stdio SERVICE_ID"
        )
    return available[0]


@implementer(IHalfCloseableProtocol)
class StdioConnection(LocalStreamProtocol):
    """
    A L{LocalStreamProtocol} on C{StandardIO}: stdin's EOF is the local end
    of the connection, but stdout is flushed before the transport closes
    (without half-close support, Twisted would drop what is still unwritten).
    """

    def __init__(
        self,
        inbound: InboundFlow,
        *,
        on_made: Callable[[LocalStreamProtocol], None],
        on_end: Callable[[StdioEnd], None],
        session_ready: Callable[[], bool],
        sockets: LocalSockets = LocalSockets(),
    ) -> None:
        super().__init__(inbound, on_made=on_made, sockets=sockets)
        self._on_end = on_end
        self._session_ready = session_ready
        self._session_lost = False
        self._refused = False

    # IHalfCloseableProtocol

    def readConnectionLost(self) -> None:
        """EOF on stdin: the tunnel hears of the end, stdout is flushed, then it closes."""
        self._local_end()

    def writeConnectionLost(self) -> None:
        """Stdout was closed by whoever reads it: nobody can take the peer's bytes."""
        self._local_end()

    def _local_end(self) -> None:
        connection = self.tunnel_connection
        if connection is not None and not self._closed_by_tunnel:
            connection.connection_lost()
        self.close()

    # The tunnel's side.

    def close(self) -> None:
        if not self._closed_by_tunnel:
            self._session_lost = not self._session_ready()
        super().close()

    def refuse(self) -> None:
        self._refused = True
        super().refuse()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        self._on_end(StdioEnd(self._session_lost, self._refused))


class StdioSide:
    """
    The L{LocalSide} of a ``--stdio`` source: no listener, one connection
    on the process's standard input and output, opened when the first
    session is ready.

    @ivar on_end: called once with a L{StdioEnd} when that connection is over.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        inbound: InboundFlow,
        *,
        service_id: Optional[str],
        accept: Accept,
        session_ready: Callable[[], bool],
        on_end: Callable[[StdioEnd], None],
        sockets: LocalSockets = LocalSockets(),
        standard_io: Optional[Callable[..., Any]] = None,
    ) -> None:
        """
        @param accept: the tunnel's answer to the connection, which cannot
            wait (C{Tunnel.local_connection_accepted}): its end, or C{None}
            to refuse it.
        @param session_ready: whether the tunnel has its service IDs now
            (the connection's end then says whether the session went first).
        @param sockets: the connection's backlog and read size (it never retries).
        @param standard_io: builds the transport from a protocol (default
            C{twisted.internet.stdio.StandardIO}; tests pass their own).
        """
        self._reactor = reactor
        self.inbound = inbound
        self._wanted = service_id
        self._session_ready = session_ready
        self.on_end = on_end
        self._sockets = sockets
        self._standard_io = standard_io
        self._accept = accept
        self.service_id: Optional[str] = None
        self.protocol: Optional[StdioConnection] = None
        self._transport: Any = None

    def services_ready(self, endpoints: Mapping[str, str]) -> None:
        if self.protocol is not None:
            return  # a later session: the one connection is already open (or over)
        service_id = choose_service_id(self._wanted, list(endpoints))
        self.service_id = service_id
        protocol = StdioConnection(
            self.inbound,
            on_made=self._made,
            on_end=self.on_end,
            session_ready=self._session_ready,
            sockets=self._sockets,
        )
        self.protocol = protocol
        build = self._standard_io
        if build is None:
            from twisted.internet.stdio import StandardIO

            build = StandardIO
        self._transport = build(protocol, reactor=self._reactor)

    def _made(self, protocol: LocalStreamProtocol) -> None:
        assert self.service_id is not None
        connection = self._accept(self.service_id, protocol)
        if connection is None:
            protocol.refuse()
            return
        protocol.tunnel_connection = connection
        self.log.info(
            "Standard input and output are a connection for service id {service_id}",
            service_id=self.service_id,
        )

    def connect(self, connection: TunnelConnection) -> LocalConnection:
        raise FatalTunnelError("A source local proxy does not connect to local services")

    def stop(self) -> None:
        """The proxy is stopping: close the connection (stdout flushed first)."""
        if self.protocol is not None:
            self.protocol.close()
