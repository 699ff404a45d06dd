"""
L{aws_localproxy.local.destination}: the destination's connectors, on a MemoryReactorClock.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.local.destination import DestinationSide
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from tests.fakes.local import RecordingTunnelConnection


class BadEndpointTests(SynchronousTestCase):
    """The endpoint grammar's errors reach the tunnel as fatal errors, word for word."""

    def test_destination_endpoint(self) -> None:
        side = DestinationSide(MemoryReactorClock(), InboundFlow())
        for bad, message in (
            ("host:", "Invalid port in destination endpoint: host:"),
            ("host:99999", "Invalid port in destination endpoint: host:99999"),
            ("[::1]22", "Invalid destination endpoint: [::1]22"),
        ):
            error = self.assertRaises(FatalTunnelError, side.services_ready, {"ssh": bad})
            self.assertEqual(str(error), message)

    def test_bad_description(self) -> None:
        side = DestinationSide(MemoryReactorClock(), InboundFlow())
        error = self.assertRaises(
            FatalTunnelError, side.services_ready, {"ssh": "tcp:host=example"}
        )
        self.assertIn("Invalid destination endpoint description 'tcp:host=example'", str(error))


class DestinationSideTests(SynchronousTestCase):
    def make(self, retries: int = 1) -> tuple[DestinationSide, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        side = DestinationSide(
            reactor,
            InboundFlow(),
            sockets=LocalSockets(retry_count=retries, retry_delay=0.5),
            pending_limit=10,
        )
        side.services_ready({"ssh": "127.0.0.1:22"})
        return side, reactor

    def test_connects_to_endpoint(self) -> None:
        side, reactor = self.make()
        side.connect(RecordingTunnelConnection(destination=True))
        self.assertEqual([(c[0], c[1]) for c in reactor.tcpClients], [("127.0.0.1", 22)])

    def test_unnamed_service(self) -> None:
        """A tunnel without service IDs: the one endpoint (-d PORT) is its service "" one."""
        reactor = MemoryReactorClock()
        side = DestinationSide(reactor, InboundFlow())
        side.services_ready({"": "2222"})
        side.connect(RecordingTunnelConnection("", destination=True))
        self.assertEqual([(c[0], c[1]) for c in reactor.tcpClients], [("127.0.0.1", 2222)])

    def test_destination_forms(self) -> None:
        reactor = MemoryReactorClock()
        side = DestinationSide(reactor, InboundFlow(), default_host="10.0.0.5")
        side.services_ready(
            {
                "a": "22",
                "b": "[::1]:23",
                "c": "/run/app.sock",
                "d": "unix:/run/d.sock",
                "e": "tcp:host=127.0.0.1:port=24",
            }
        )
        for service_id in "abcde":
            connection = RecordingTunnelConnection(destination=True)
            connection.service_id = service_id
            side.connect(connection)
        hosts = {
            sid: (side.endpoint_for(sid)._hostText, side.endpoint_for(sid)._port)  # type: ignore[attr-defined]
            for sid in "ab"
        }
        self.assertEqual(hosts, {"a": ("10.0.0.5", 22), "b": ("::1", 23)})
        self.assertEqual(
            [(c[0], c[1]) for c in reactor.tcpClients if c[1] == 24], [("127.0.0.1", 24)]
        )
        self.assertEqual(
            sorted(u[0] for u in reactor.unixClients), ["/run/app.sock", "/run/d.sock"]
        )

    def test_unknown_service_is_fatal(self) -> None:
        side, _ = self.make()
        connection = RecordingTunnelConnection(destination=True)
        connection.service_id = "other"
        self.assertRaises(FatalTunnelError, side.connect, connection)

    def test_retries_then_reports_failure(self) -> None:
        side, reactor = self.make(retries=1)
        connection = RecordingTunnelConnection(destination=True)
        side.connect(connection)
        reactor.tcpClients[0][2].clientConnectionFailed(None, ConnectionRefusedError())
        reactor.advance(0.4)
        self.assertEqual(connection.failed, [])
        reactor.advance(0.5)
        self.assertEqual(len(reactor.tcpClients), 2)
        reactor.tcpClients[1][2].clientConnectionFailed(None, ConnectionRefusedError())
        reactor.advance(0.4)
        self.assertEqual(len(connection.failed), 1)

    def test_writes_buffered_and_flow_blocked_until_connected(self) -> None:
        side, reactor = self.make()
        connection = RecordingTunnelConnection(destination=True)
        pending = side.connect(connection)
        pending.write(b"0123456789ab")  # over the pending limit of 10
        self.assertTrue(side.inbound._blocked)
        from twisted.internet.testing import StringTransport

        factory = reactor.tcpClients[0][2]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"0123456789ab")
        self.assertFalse(side.inbound._blocked)

    def test_connected_socket_replaces_the_stand_in(self) -> None:
        """Once connected, the tunnel is told to write to the socket's protocol itself."""
        side, reactor = self.make()
        connection = RecordingTunnelConnection(destination=True)
        pending = side.connect(connection)
        self.assertEqual(connection.replaced, [])
        reactor.tcpClients[0][2].buildProtocol(None).makeConnection(StringTransport())
        local = getattr(pending, "local", None)
        self.assertIsInstance(local, LocalStreamProtocol)
        self.assertEqual(connection.replaced, [(pending, local)])

    def test_closed_while_connecting_replaces_nothing(self) -> None:
        """A connection the tunnel closed while it connected is flushed and closed, not handed over."""
        side, reactor = self.make()
        connection = RecordingTunnelConnection(destination=True)
        pending = side.connect(connection)
        pending.close()
        reactor.tcpClients[0][2].buildProtocol(None).makeConnection(StringTransport())
        self.assertEqual(connection.replaced, [])

    def test_reading_paused_while_connecting_and_after(self) -> None:
        """The lane's back-pressure reaches the socket, whether it came before the connect or after."""
        side, reactor = self.make()
        pending = side.connect(RecordingTunnelConnection(destination=True))
        pending.pause_reading()
        protocol = reactor.tcpClients[0][2].buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.producerState, "paused")
        pending.resume_reading()
        self.assertEqual(transport.producerState, "producing")
        pending.pause_reading()
        self.assertEqual(transport.producerState, "paused")

    def test_close_while_connecting_cancels(self) -> None:
        side, reactor = self.make()
        connection = RecordingTunnelConnection(destination=True)
        pending = side.connect(connection)
        pending.close()
        reactor.advance(10)
        self.assertEqual(connection.failed, [])
