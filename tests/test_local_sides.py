"""
The source's listeners and the destination's connectors, on a MemoryReactorClock.
"""

from __future__ import annotations

from typing import List

from twisted.internet.error import CannotListenError, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.destination import DestinationSide, parse_destination
from aws_localproxy.errors import FatalTunnelError
from aws_localproxy.flowcontrol import InboundFlow
from aws_localproxy.source import SourceSide, listen_port_of


class ParseTests(SynchronousTestCase):
    def test_destination_forms(self) -> None:
        self.assertEqual(parse_destination("22"), ("127.0.0.1", 22))
        self.assertEqual(parse_destination("22", "10.0.0.5"), ("10.0.0.5", 22))
        self.assertEqual(parse_destination("Example.COM:8080"), ("example.com", 8080))
        self.assertEqual(parse_destination("[::1]:22"), ("::1", 22))
        self.assertEqual(parse_destination("fe80::1:22"), ("fe80::1", 22))
        self.assertEqual(parse_destination("/run/app.sock"), "/run/app.sock")

    def test_destination_errors(self) -> None:
        for bad in ("host:", "host:99999", ":22", "[::1]22", "[::1]:x"):
            self.assertRaises(FatalTunnelError, parse_destination, bad)

    def test_listen_port(self) -> None:
        self.assertEqual(listen_port_of("5555"), 5555)
        self.assertEqual(listen_port_of("127.0.0.1:5555"), 5555)
        self.assertEqual(listen_port_of("0"), 0)
        self.assertRaises(FatalTunnelError, listen_port_of, "ssh")
        self.assertRaises(FatalTunnelError, listen_port_of, "70000")


class FailingListenReactor(MemoryReactorClock):
    """Refuses the first C{failures} listenTCP calls."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def listenTCP(self, port, factory, backlog=50, interface=""):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise CannotListenError(interface, port, OSError("address in use"))
        return super().listenTCP(port, factory, backlog, interface)


class SourceSideTests(SynchronousTestCase):
    def make(self, reactor: MemoryReactorClock, retries: int = 2) -> SourceSide:
        self.fatal: List[BaseException] = []
        return SourceSide(
            reactor, InboundFlow(), "127.0.0.1", retry_count=retries, retry_delay=1.0,
            on_fatal=self.fatal.append,
        )

    def test_listens_per_service_on_bind_address(self) -> None:
        reactor = MemoryReactorClock()
        side = self.make(reactor)
        side.services_ready({"ssh": "5555", "web": "127.0.0.1:8080"})
        ports = sorted((p[0], p[3]) for p in reactor.tcpServers)
        self.assertEqual(ports, [(5555, "127.0.0.1"), (8080, "127.0.0.1")])

    def test_listeners_kept_across_sessions(self) -> None:
        """A second SERVICE_IDS (after a reconnect) does not re-listen."""
        reactor = MemoryReactorClock()
        side = self.make(reactor)
        side.services_ready({"ssh": "5555"})
        side.services_ready({"ssh": "5555"})
        self.assertEqual(len(reactor.tcpServers), 1)

    def test_listen_retried_then_works(self) -> None:
        reactor = FailingListenReactor(failures=2)
        side = self.make(reactor, retries=2)
        side.services_ready({"ssh": "5555"})
        self.assertEqual(reactor.tcpServers, [])
        reactor.advance(1.0)
        reactor.advance(1.0)
        self.assertEqual(len(reactor.tcpServers), 1)
        self.assertEqual(self.fatal, [])
        self.assertEqual(self.successResultOf(side.listening_port("ssh")), 5555)

    def test_listen_retries_exhausted_is_fatal(self) -> None:
        reactor = FailingListenReactor(failures=10)
        side = self.make(reactor, retries=2)
        side.services_ready({"ssh": "5555"})
        for _ in range(5):
            reactor.advance(1.0)
        self.assertEqual(len(self.fatal), 1)
        self.assertIsInstance(self.fatal[0], FatalTunnelError)


class RecordingConnection:
    service_id = "ssh"
    connection_id = 1

    def __init__(self) -> None:
        self.failed: List[str] = []
        self.data: List[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def connection_lost(self) -> None:
        pass

    def connect_failed(self, reason: str) -> None:
        self.failed.append(reason)


class DestinationSideTests(SynchronousTestCase):
    def make(self, retries: int = 1) -> tuple[DestinationSide, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        side = DestinationSide(reactor, InboundFlow(), retry_count=retries, retry_delay=0.5,
                               pending_limit=10)
        side.services_ready({"ssh": "127.0.0.1:22"})
        return side, reactor

    def test_connects_to_endpoint(self) -> None:
        side, reactor = self.make()
        side.connect(RecordingConnection())
        self.assertEqual([(c[0], c[1]) for c in reactor.tcpClients], [("127.0.0.1", 22)])

    def test_unknown_service_is_fatal(self) -> None:
        side, _ = self.make()
        connection = RecordingConnection()
        connection.service_id = "other"
        self.assertRaises(FatalTunnelError, side.connect, connection)

    def test_retries_then_reports_failure(self) -> None:
        side, reactor = self.make(retries=1)
        connection = RecordingConnection()
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
        connection = RecordingConnection()
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

    def test_close_while_connecting_cancels(self) -> None:
        side, reactor = self.make()
        connection = RecordingConnection()
        pending = side.connect(connection)
        pending.close()
        reactor.advance(10)
        self.assertEqual(connection.failed, [])
