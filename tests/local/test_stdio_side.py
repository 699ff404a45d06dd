"""
L{aws_localproxy.local.stdio.StdioSide} and its connection's ends, on a
string transport standing in for standard input and output: which service
ID, what the tunnel is offered, the connection's settings, how it ends
(stdin's EOF, stdout closed, the peer's reset, a refusal, the proxy
stopping) and what the end says (L{StdioEnd}: the exit status is made of it).
"""

from __future__ import annotations

from typing import Any, List, Optional

import twisted.internet.stdio
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.stdio import StdioEnd, StdioSide, choose_service_id
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import LocalConnection
from tests.fakes.local import RecordingTunnelConnection
from tests.fakes.transport import TCPLikeTransport
from tests.support.logs import logs, texts
from tests.support.payloads import unique_payload


class StandardIOs:
    """Builds standard input and output as a string transport, as C{StandardIO} would."""

    def __init__(self) -> None:
        self.transports: List[StringTransport] = []
        self.protocols: List[Any] = []
        self.reactors: List[Any] = []

    def __call__(self, protocol: Any, reactor: Any = None) -> StringTransport:
        transport = TCPLikeTransport()
        self.transports.append(transport)
        self.protocols.append(protocol)
        self.reactors.append(reactor)
        protocol.makeConnection(transport)
        return transport


class StdioTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.flow = InboundFlow()
        self.ends: List[StdioEnd] = []
        self.offered: List[tuple[str, LocalConnection]] = []
        self.connection: Optional[RecordingTunnelConnection] = RecordingTunnelConnection("B")
        self.ready = True
        self.stdio = StandardIOs()

    def accept(self, service_id: str, local: LocalConnection) -> Any:
        self.offered.append((service_id, local))
        return self.connection

    def side(self, service_id: Optional[str] = None, **kwargs: Any) -> StdioSide:
        kwargs.setdefault("standard_io", self.stdio)
        return StdioSide(
            self.reactor,
            self.flow,
            service_id=service_id,
            accept=self.accept,
            session_ready=lambda: self.ready,
            on_end=self.ends.append,
            **kwargs,
        )

    def opened(self, **kwargs: Any) -> tuple[StdioSide, StringTransport]:
        side = self.side(**kwargs)
        side.services_ready({"B": "0"})
        return side, self.stdio.transports[-1]

    # -- which service, what the tunnel is offered

    def test_named_service_among_several(self) -> None:
        side = self.side("B")
        side.services_ready({"A": "1", "B": "2"})
        self.assertEqual(side.service_id, "B")
        self.assertEqual([service_id for service_id, _ in self.offered], ["B"])

    def test_several_without_a_name(self) -> None:
        error = self.assertRaises(FatalTunnelError, choose_service_id, None, ["A", "B"])
        self.assertEqual(
            str(error),
            "The tunnel has several service ids (A, B): name one with --stdio SERVICE_ID",
        )

    def test_tunnel_offered_the_connection_itself(self) -> None:
        """The tunnel gets the stdio connection, and stdin's bytes reach the tunnel's end."""
        side, _ = self.opened()
        ((_, local),) = self.offered
        self.assertIs(local, side.protocol)
        data = unique_payload(1000)
        assert side.protocol is not None
        side.protocol.dataReceived(data)
        assert self.connection is not None
        self.assertEqual(self.connection.data, [data])

    def test_accepted_logged(self) -> None:
        with logs() as captured:
            self.opened()
        self.assertIn(
            "Standard input and output are a connection for service id B",
            texts(captured, LogLevel.info),
        )

    def test_built_on_the_sides_reactor(self) -> None:
        self.opened()
        self.assertEqual(self.stdio.reactors, [self.reactor])

    def test_default_is_twisteds_standard_io(self) -> None:
        """Without a C{standard_io}, Twisted's C{StandardIO} is used, on the side's reactor."""
        self.patch(twisted.internet.stdio, "StandardIO", self.stdio)
        side = self.side(standard_io=None)
        side.services_ready({"B": "0"})
        self.assertEqual(len(self.stdio.transports), 1)
        self.assertEqual(self.stdio.protocols, [side.protocol])
        self.assertEqual(self.stdio.reactors, [self.reactor])

    def test_settings_reach_the_connection(self) -> None:
        """C{tcp.write_buffer_size} bounds stdout's backlog like any local connection's."""
        websocket = StringTransport()
        self.flow.attach(websocket)
        side, _ = self.opened(sockets=LocalSockets(backlog_limit=10))
        assert side.protocol is not None
        side.protocol.pauseProducing()  # stdout's pipe is full
        side.protocol.write(unique_payload(10))
        self.assertTrue(self.flow.websocket_paused)

    def test_source_only(self) -> None:
        error = self.assertRaises(
            FatalTunnelError, self.side().connect, RecordingTunnelConnection()
        )
        self.assertEqual(str(error), "A source local proxy does not connect to local services")

    # -- how it ends

    def lost(self, transport: StringTransport) -> None:
        """Standard input and output are closed (the transport tells its protocol)."""
        (protocol,) = [
            p
            for t, p in zip(self.stdio.transports, self.stdio.protocols, strict=True)
            if t is transport
        ]
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_refused(self) -> None:
        """The tunnel refuses it: closed at once, and the end says so."""
        self.connection = None
        _, transport = self.opened()
        self.assertTrue(transport.disconnecting)
        self.lost(transport)
        self.assertEqual(
            [(e.session_lost, e.refused) for e in self.ends], [(False, True)], self.ends
        )

    def test_peer_reset(self) -> None:
        """The peer resets it: stdout is flushed and closed; the session did not go first."""
        side, transport = self.opened()
        assert side.protocol is not None and self.connection is not None
        side.protocol.write(b"last words")
        side.protocol.close()
        self.assertEqual((transport.value(), transport.disconnecting), (b"last words", True))
        side.protocol.readConnectionLost()  # stdin's EOF comes after
        self.lost(transport)
        self.assertEqual(self.connection.lost, 0, "the tunnel closed it: not told back")
        self.assertEqual([(e.session_lost, e.refused) for e in self.ends], [(False, False)])

    def test_stdin_eof(self) -> None:
        side, transport = self.opened()
        assert side.protocol is not None and self.connection is not None
        side.protocol.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        self.lost(transport)
        self.assertEqual(self.connection.lost, 1)
        self.assertEqual([(e.session_lost, e.refused) for e in self.ends], [(False, False)])

    def test_stdout_closed(self) -> None:
        side, transport = self.opened()
        assert side.protocol is not None and self.connection is not None
        side.protocol.writeConnectionLost()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.connection.lost, 1)

    def test_end_while_the_session_is_down(self) -> None:
        """stdin's EOF while the WebSocket is gone: the end says the session went first."""
        side, transport = self.opened()
        assert side.protocol is not None
        self.ready = False
        side.protocol.readConnectionLost()
        self.lost(transport)
        self.assertEqual([(e.session_lost, e.refused) for e in self.ends], [(True, False)])

    def test_stop_closes(self) -> None:
        """The proxy stopping closes the connection (what was written is flushed first)."""
        side, transport = self.opened()
        assert side.protocol is not None
        side.protocol.write(b"flushed")
        side.stop()
        self.assertEqual((transport.value(), transport.disconnecting), (b"flushed", True))

    def test_stop_before_ready(self) -> None:
        """Stopped before the tunnel was ready: there is nothing to close yet."""
        side = self.side()
        side.stop()
        self.assertEqual((self.stdio.transports, self.ends), ([], []))
