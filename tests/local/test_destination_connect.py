"""
L{aws_localproxy.local.destination}'s connects, on a MemoryReactorClock and
given endpoints: the lines an operator reads (word for word), the retries
and the reason the tunnel is told, what the tunnel wrote before the socket
was there, the settings the connected socket gets, given endpoints and
service IDs, and a stop that gives up every connect in progress.
"""

from __future__ import annotations

import gc
from typing import Any, List, Optional

from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.destination import DestinationSide
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from tests.fakes.local import RecordingTunnelConnection
from tests.fakes.transport import TCPLikeTransport
from tests.support.helpers import wait_until
from tests.support.logs import logs, texts
from tests.support.payloads import unique_payload

reactor: Any = _reactor


class _Address:
    """The peer of an in-process connection: neither a host nor a path."""


class SocketTransport(TCPLikeTransport):
    """A transport with a read size, as Twisted's socket transports have."""

    bufferSize = 65536


@implementer(IStreamClientEndpoint)
class GivenEndpoint:
    """
    An endpoint an embedding application hands over: each connect fails
    with the next of C{errors}, then connects to a string transport.
    """

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.attempts = 0
        self.pending: List[Deferred[Any]] = []
        self.transports: List[StringTransport] = []
        self.hold = False

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        if self.errors:
            return fail(self.errors.pop(0))
        if self.hold:
            d: Deferred[Any] = Deferred()
            self.pending.append(d)
            return d
        protocol = factory.buildProtocol(None)
        transport = SocketTransport(peerAddress=_Address())
        self.transports.append(transport)
        protocol.makeConnection(transport)
        return succeed(protocol)


class _Refusal(Exception):
    """An error that carries its text as C{message} (as Twisted's ConnectError subclasses may)."""

    message = "the application said no"

    def __str__(self) -> str:
        return "not this text"


class _Silent(Exception):
    """An error without text."""


class Harness(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.websocket = StringTransport()
        self.flow = InboundFlow()
        self.flow.attach(self.websocket)

    def side(self, endpoints: Optional[dict] = None, **kwargs: Any) -> DestinationSide:
        kwargs.setdefault("sockets", LocalSockets(retry_count=1, retry_delay=0.5))
        side = DestinationSide(self.reactor, self.flow, **kwargs)
        side.services_ready(endpoints if endpoints is not None else {"ssh": "127.0.0.1:22"})
        return side

    def connect_tcp(self, index: int = 0, **kwargs: Any) -> Any:
        """The socket of the C{index}th TCP connect attempt connects; its protocol."""
        protocol = self.reactor.tcpClients[index][2].buildProtocol(None)
        protocol.makeConnection(
            SocketTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 22), **kwargs)
        )
        return protocol

    def refuse_tcp(self, index: int = 0) -> None:
        """
        The C{index}th TCP connect attempt is refused; Twisted's
        HostnameEndpoint reports it when its next attempt would start (0.3 s).
        """
        self.reactor.tcpClients[index][2].clientConnectionFailed(None, ConnectionRefusedError())
        self.reactor.advance(0.3)


class LogTests(Harness):
    """What an operator reads about each connect, word for word."""

    def test_tcp(self) -> None:
        side = self.side()
        with logs() as captured:
            side.connect(RecordingTunnelConnection(destination=True))
            self.connect_tcp()
        self.assertEqual(
            texts(captured, LogLevel.info),
            [
                "Attempting to establish tcp socket connection to: 127.0.0.1:22",
                "Connected to 127.0.0.1, port: 22",
            ],
        )

    def test_unix(self) -> None:
        side = self.side({"ssh": "/run/app.sock"})
        with logs() as captured:
            side.connect(RecordingTunnelConnection(destination=True))
            protocol = self.reactor.unixClients[0][1].buildProtocol(None)
            protocol.makeConnection(StringTransport(peerAddress=_Address()))
        self.assertEqual(
            texts(captured, LogLevel.info),
            [
                "Attempting to establish tcp socket connection to: /run/app.sock",
                "Connected to Unix socket: /run/app.sock",
            ],
        )

    def test_given_endpoint(self) -> None:
        """An in-process endpoint has no peer address to show: the configured endpoint is named."""
        side = self.side({"ssh": "in-process"}, client_endpoints={"ssh": GivenEndpoint()})
        with logs() as captured:
            side.connect(RecordingTunnelConnection(destination=True))
        self.assertEqual(
            texts(captured, LogLevel.info),
            [
                "Attempting to establish tcp socket connection to: in-process",
                "Connected to in-process",
            ],
        )

    def test_failures(self) -> None:
        """Each failed attempt is an error line with the reason; the tunnel gets the last reason."""
        refused = ConnectionRefusedError()
        endpoint = GivenEndpoint(refused, _Refusal(), _Silent())
        side = self.side(
            {"ssh": "app"},
            client_endpoints={"ssh": endpoint},
            sockets=LocalSockets(retry_count=2, retry_delay=0.5),
        )
        connection = RecordingTunnelConnection(destination=True)
        with logs() as captured:
            side.connect(connection)
            self.reactor.advance(0.5)
            self.reactor.advance(0.5)
        self.assertEqual(
            texts(captured, LogLevel.error),
            [
                f"Could not connect to destination app -- {refused}",
                "Could not connect to destination app -- the application said no",
                "Could not connect to destination app -- _Silent",
            ],
        )
        self.assertEqual(connection.failed, ["_Silent"])

    def test_bytes_dropped_when_no_connection(self) -> None:
        side = self.side(sockets=LocalSockets(retry_count=0))
        connection = RecordingTunnelConnection(destination=True)
        pending = side.connect(connection)
        pending.write(unique_payload(7, seed=1))
        pending.write(unique_payload(5, seed=2))
        with logs() as captured:
            self.refuse_tcp()
        self.assertEqual(
            texts(captured, LogLevel.warn),
            ["Dropping 12 bytes for destination 127.0.0.1:22: no connection could be made"],
        )
        self.assertEqual(len(connection.failed), 1)

    def test_no_bytes_no_warning(self) -> None:
        side = self.side(sockets=LocalSockets(retry_count=0))
        side.connect(RecordingTunnelConnection(destination=True))
        with logs() as captured:
            self.refuse_tcp()
        self.assertEqual(texts(captured, LogLevel.warn), [])


class RetryTests(Harness):
    def test_no_retries(self) -> None:
        """C{tcp.connection_retry_count} 0: one attempt, then the tunnel hears why."""
        side = self.side(sockets=LocalSockets(retry_count=0, retry_delay=0.5))
        connection = RecordingTunnelConnection(destination=True)
        side.connect(connection)
        self.refuse_tcp()
        self.assertEqual(connection.failed, [str(ConnectionRefusedError())])
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_retries_for_ever(self) -> None:
        """A negative count retries for ever: the tunnel hears nothing until it connects."""
        side = self.side(sockets=LocalSockets(retry_count=-1, retry_delay=0.5))
        connection = RecordingTunnelConnection(destination=True)
        side.connect(connection)
        for attempt in range(20):
            self.refuse_tcp(attempt)
            self.reactor.advance(0.5)
        self.assertEqual((len(self.reactor.tcpClients), connection.failed), (21, []))
        self.connect_tcp(20)
        self.assertEqual(len(connection.replaced), 1)

    def test_failure_unblocks_the_websocket(self) -> None:
        """Bytes held for a connect that failed no longer hold the WebSocket."""
        side = self.side(sockets=LocalSockets(retry_count=0), pending_limit=10)
        pending = side.connect(RecordingTunnelConnection(destination=True))
        pending.write(unique_payload(10))
        self.assertTrue(self.flow.websocket_paused)
        self.refuse_tcp()
        self.assertFalse(self.flow.websocket_paused)

    def test_nothing_left_connecting(self) -> None:
        side = self.side(sockets=LocalSockets(retry_count=0))
        side.connect(RecordingTunnelConnection(destination=True))
        side.connect(RecordingTunnelConnection(destination=True))
        self.assertEqual(len(side.connecting), 2)
        self.refuse_tcp(0)
        self.connect_tcp(1)
        self.assertEqual(side.connecting, set())

    def test_timeout(self) -> None:
        """Each attempt is bounded by the connect timeout (30 s unless told)."""
        self.side().connect(RecordingTunnelConnection(destination=True))
        self.side(connect_timeout=5).connect(RecordingTunnelConnection(destination=True))
        self.assertEqual([c[3] for c in self.reactor.tcpClients], [30, 5])

    def test_tunnel_error_not_swallowed(self) -> None:
        """An exception from the tunnel's side of a failed connect is logged, not lost."""

        class Broken(RecordingTunnelConnection):
            def connect_failed(self, reason: str) -> None:
                raise RuntimeError("the tunnel broke")

        side = self.side(sockets=LocalSockets(retry_count=0))
        side.connect(Broken(destination=True))
        self.refuse_tcp()
        del side
        self.reactor.tcpClients.clear()  # the last references to the failed attempt
        gc.collect()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class PendingTests(Harness):
    """What the tunnel does to the connection before its socket is there."""

    def test_pending_limit_counts_every_write(self) -> None:
        side = self.side(pending_limit=10)
        pending = side.connect(RecordingTunnelConnection(destination=True))
        pending.write(unique_payload(6, seed=1))
        self.assertFalse(self.flow.websocket_paused)
        pending.write(unique_payload(4, seed=2))  # exactly the limit
        self.assertTrue(self.flow.websocket_paused)

    def test_default_pending_limit(self) -> None:
        side = self.side()
        pending = side.connect(RecordingTunnelConnection(destination=True))
        pending.write(unique_payload(131075))
        self.assertFalse(self.flow.websocket_paused)
        pending.write(b"!")
        self.assertTrue(self.flow.websocket_paused)

    def test_written_in_order_then_through(self) -> None:
        """Bytes held while connecting go first, later writes after them, in order."""
        side = self.side()
        pending = side.connect(RecordingTunnelConnection(destination=True))
        before = [unique_payload(100, seed=i) for i in range(3)]
        for data in before:
            pending.write(data)
        protocol = self.connect_tcp()
        after = unique_payload(100, seed=9)
        pending.write(after)  # the tunnel may still hold the stand-in
        self.assertEqual(protocol.transport.value(), b"".join(before) + after)

    def test_resumed_before_connected(self) -> None:
        side = self.side()
        pending = side.connect(RecordingTunnelConnection(destination=True))
        pending.pause_reading()
        pending.resume_reading()
        protocol = self.connect_tcp()
        self.assertEqual(protocol.transport.producerState, "producing")

    def test_never_paused(self) -> None:
        side = self.side()
        side.connect(RecordingTunnelConnection(destination=True))
        protocol = self.connect_tcp()
        self.assertEqual(protocol.transport.producerState, "producing")


class ConnectedTests(Harness):
    """The connected socket is a local connection like any other."""

    def test_reads_reach_the_tunnel(self) -> None:
        side = self.side()
        connection = RecordingTunnelConnection(destination=True)
        side.connect(connection)
        protocol = self.connect_tcp()
        data = unique_payload(300)
        protocol.dataReceived(data)
        self.assertEqual(connection.data, [data])

    def test_settings_reach_the_socket(self) -> None:
        side = self.side(sockets=LocalSockets(backlog_limit=10, read_size=2048))
        pending = side.connect(RecordingTunnelConnection(destination=True))
        self.connect_tcp()
        protocol = pending.local  # type: ignore[attr-defined]
        self.assertEqual(protocol.transport.bufferSize, 2048)
        protocol.pauseProducing()  # the application does not read
        protocol.write(unique_payload(10))
        self.assertTrue(self.flow.websocket_paused)


class ServiceTests(Harness):
    def test_connect_before_service_ids(self) -> None:
        side = DestinationSide(self.reactor, self.flow)
        error = self.assertRaises(
            FatalTunnelError, side.connect, RecordingTunnelConnection(destination=True)
        )
        self.assertEqual(str(error), "Receive invalid service id ssh")

    def test_given_endpoint_then_configured_ones(self) -> None:
        """A given endpoint for one service ID; the others' texts are still parsed and used."""
        given = GivenEndpoint()
        side = self.side({"a": "x", "b": "127.0.0.1:23"}, client_endpoints={"a": given})
        side.connect(RecordingTunnelConnection("a", destination=True))
        side.connect(RecordingTunnelConnection("b", destination=True))
        self.assertEqual(given.attempts, 1)
        self.assertEqual([(c[0], c[1]) for c in self.reactor.tcpClients], [("127.0.0.1", 23)])

    def test_given_endpoint_for_a_service_the_tunnel_lacks(self) -> None:
        given = GivenEndpoint()
        side = self.side({"ssh": "22"}, client_endpoints={"web": given})
        error = self.assertRaises(
            FatalTunnelError, side.connect, RecordingTunnelConnection("web", destination=True)
        )
        self.assertEqual(str(error), "Receive invalid service id web")
        self.assertEqual(given.attempts, 0)


class StopTests(Harness):
    """The proxy stopping gives up every connect in progress, quietly."""

    def test_stop_while_connecting(self) -> None:
        given = GivenEndpoint()
        given.hold = True
        side = self.side({"ssh": "app"}, client_endpoints={"ssh": given}, pending_limit=10)
        connection = RecordingTunnelConnection(destination=True)
        pending = side.connect(connection)
        pending.write(unique_payload(10))
        self.assertTrue(self.flow.websocket_paused)
        side.stop()
        self.assertFalse(self.flow.websocket_paused)
        self.assertEqual((connection.failed, connection.replaced), ([], []))
        self.assertEqual(side.connecting, set())
        self.assertTrue(given.pending[0].called, "the connect was cancelled")
        pending.write(unique_payload(20))  # late bytes: dropped, the WebSocket is not held
        self.assertFalse(self.flow.websocket_paused)
        del pending, side, given
        gc.collect()  # a cancelled connect is no error to log (trial fails a test that logs one)

    def test_stop_between_attempts(self) -> None:
        side = self.side(sockets=LocalSockets(retry_count=5, retry_delay=0.5))
        connection = RecordingTunnelConnection(destination=True)
        side.connect(connection)
        self.refuse_tcp()
        side.stop()
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.tcpClients), 1, "no attempt after the stop")
        self.assertEqual(connection.failed, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_leaves_connected_sockets(self) -> None:
        """Connected sockets are the tunnel's to close; stop only gives up connects."""
        side = self.side()
        side.connect(RecordingTunnelConnection(destination=True))
        protocol = self.connect_tcp()
        side.stop()
        self.assertFalse(protocol.transport.disconnecting)


class _Application(Factory):
    """A local application's listener: fires C{accepted} with its first connection."""

    noisy = False

    def __init__(self) -> None:
        self.accepted: Deferred[Protocol] = Deferred()

    def buildProtocol(self, addr: Any) -> Protocol:
        protocol = Protocol()
        reactor.callLater(0, self.accepted.callback, protocol)
        return protocol


class RealSocketTests(TestCase):
    """A connect to a real listening socket."""

    timeout = 20

    async def test_connect_logs_only_its_own_lines(self) -> None:
        """No "Starting factory" line from Twisted for each connection the tunnel starts."""
        application = _Application()
        port = reactor.listenTCP(0, application, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        side = DestinationSide(reactor, InboundFlow())
        side.services_ready({"ssh": f"127.0.0.1:{number}"})
        connection = RecordingTunnelConnection(destination=True)
        with logs() as captured:
            side.connect(connection)
            accepted = await application.accepted
            await wait_until(lambda: connection.replaced)
        self.addCleanup(accepted.transport.abortConnection)
        ((_, local),) = connection.replaced
        self.addCleanup(local.transport.abortConnection)
        self.assertEqual(
            texts(captured),
            [
                f"Attempting to establish tcp socket connection to: 127.0.0.1:{number}",
                f"Connected to 127.0.0.1, port: {number}",
            ],
        )
