"""
L{aws_localproxy.local.source}'s listeners over their life, on a fake
reactor whose ports say whether they still listen: the lines an operator
reads (word for word), binds retried, a repeated SERVICE_IDS or a stop
racing a retry (one listener, the port taken once, none left after the
stop, no fatal error), the bound addresses it reports, and the connections
it accepts (what the tunnel is offered, what it logs, what a held one keeps).
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.local.source import SourceSide, describe_address
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import LocalConnection, Wait
from tests.fakes.local import RecordingTunnelConnection
from tests.fakes.transport import TCPLikeTransport
from tests.support.logs import logs, texts
from tests.support.payloads import unique_payload

#: What the fake reactor's refused binds say.
IN_USE = OSError("address in use")


@implementer(IListeningPort)
class Port:
    """A listener of the fake reactor: listening until stopped."""

    def __init__(self, address: Any, factory: Any) -> None:
        self.address = address
        self.factory = factory
        self.listening = True

    def getHost(self) -> Any:
        return self.address

    def startListening(self) -> None:
        pass

    def stopListening(self) -> Deferred[None]:
        self.listening = False
        return succeed(None)


class PortsReactor(MemoryReactorClock):
    """
    Refuses the first C{failures} binds (address in use); port 0 gets the
    next free port from 40001 on, as the system would pick one.
    """

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.binds = 0
        self.ports: List[Port] = []
        self._next = 40001

    def _bind(self, address: Any, factory: Any, interface: str, port: Any) -> Port:
        self.binds += 1
        if self.failures:
            self.failures -= 1
            raise CannotListenError(interface, port, IN_USE)
        port = Port(address, factory)
        self.ports.append(port)
        return port

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Port:  # type: ignore[override]
        bound = port
        if port == 0 and not self.failures:
            bound, self._next = self._next, self._next + 1
        return self._bind(
            IPv4Address("TCP", interface or "0.0.0.0", bound), factory, interface, port
        )

    def listenUNIX(self, address: str, factory: Any, *args: Any, **kwargs: Any) -> Port:  # type: ignore[override]
        return self._bind(UNIXAddress(address), factory, "", address)

    def listening(self) -> List[Any]:
        """The addresses listened on now."""
        return [port.address for port in self.ports if port.listening]


@implementer(IStreamServerEndpoint)
class GivenEndpoint:
    """
    An endpoint an embedding application hands over: each listen fails
    with the next of C{errors}, or (C{hold}) waits for the test.
    """

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.hold = False
        self.pending: List[Deferred[Any]] = []

    def listen(self, factory: Any) -> Deferred[Any]:
        if self.errors:
            return fail(self.errors.pop(0))
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        if not self.hold:
            d.callback(Port(UNIXAddress("/given.sock"), factory))
        return d

    def __repr__(self) -> str:
        return "<the application's endpoint>"


class _Refusal(Exception):
    message = "the application said no"

    def __str__(self) -> str:
        return "not this text"


class _Silent(Exception):
    pass


@contextmanager
def bounded(seconds: float = 5.0) -> Iterator[None]:
    """
    Fail what runs inside after C{seconds}: a call that loops for ever
    without calling out (offering no connection) fails instead of hanging.
    """

    def expired(signum: int, frame: Any) -> None:
        raise AssertionError(f"still running after {seconds:g} s: an endless loop")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Tunnel:
    """The tunnel's answers to the side: C{answers} in turn (then the last one, for ever)."""

    #: More answers than any test asks for: a loop that keeps asking fails.
    LIMIT = 100

    def __init__(self) -> None:
        self.answers: List[Any] = [None]
        self.offered: List[Tuple[str, LocalConnection]] = []
        self.given_up: List[Tuple[str, str]] = []
        self.on_accept: Any = None

    def accept(self, service_id: str, local: LocalConnection) -> Any:
        self.offered.append((service_id, local))
        if len(self.offered) > self.LIMIT:
            raise AssertionError("the side keeps offering connections")
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if self.on_accept is not None:
            self.on_accept()
        return answer

    def give_up(self, service_id: str, wait: Wait) -> None:
        self.given_up.append((service_id, wait.reason))


class Harness(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = PortsReactor()
        self.tunnel = Tunnel()
        self.fatal: List[BaseException] = []
        self.flow = InboundFlow()

    def side(self, **kwargs: Any) -> SourceSide:
        kwargs.setdefault("sockets", LocalSockets(retry_count=2, retry_delay=1.0))
        return SourceSide(
            self.reactor,
            self.flow,
            "127.0.0.1",
            accept=self.tunnel.accept,
            given_up=self.tunnel.give_up,
            on_fatal=self.fatal.append,
            **kwargs,
        )

    def fatal_messages(self) -> List[str]:
        return [str(error) for error in self.fatal]

    def client(
        self, port: Optional[Port] = None, host: Any = None
    ) -> Tuple[LocalStreamProtocol, TCPLikeTransport]:
        """A client connects to C{port} (the first one by default)."""
        port = port or self.reactor.ports[0]
        protocol = port.factory.buildProtocol(None)
        transport = TCPLikeTransport(
            hostAddress=host or port.address,
            peerAddress=IPv4Address("TCP", "192.168.1.1", 54321),
        )
        protocol.makeConnection(transport)
        return protocol, transport


class DescribeAddressTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(describe_address(IPv4Address("TCP", "127.0.0.1", 5555)), "port 5555")
        self.assertEqual(describe_address(UNIXAddress("/run/ssh.sock")), "/run/ssh.sock")
        self.assertEqual(describe_address(_Named("/run/web.sock")), "/run/web.sock")
        self.assertEqual(describe_address(_Named(b"/run/db.sock")), "/run/db.sock")
        self.assertEqual(describe_address(_Nameless()), "<nameless>")


class _Named:
    def __init__(self, name: Any) -> None:
        self.name = name


class _Nameless:
    def __repr__(self) -> str:
        return "<nameless>"


class ListeningTests(Harness):
    """Each listener's lines and the address it reports."""

    def test_port(self) -> None:
        side = self.side()
        with logs() as captured:
            side.services_ready({"ssh": "5555"})
        self.assertEqual(
            texts(captured, LogLevel.info),
            ["calling setup from loop", "Listening for new connection on port 5555"],
        )
        self.assertEqual(self.successResultOf(side.listening_port("ssh")), 5555)
        self.assertEqual(side.bound_ports(), {"ssh": 5555})

    def test_port_picked_by_the_system(self) -> None:
        """Port 0: the port the system picked is logged as the new port mapping."""
        side = self.side()
        with logs() as captured:
            side.services_ready({"ssh": "0"})
        self.assertEqual(
            texts(captured, LogLevel.info),
            [
                "calling setup from loop",
                "Listening for new connection on port 40001",
                "Listen port assigned for service id ssh. New port mapping: ",
                "ssh = 40001",
            ],
        )
        self.assertEqual(self.successResultOf(side.listening_port("ssh")), 40001)

    def test_description_with_port_0(self) -> None:
        """A description is not the reference's form: no port mapping lines for it."""
        side = self.side()
        with logs() as captured:
            side.services_ready({"ssh": "tcp:0"})
        self.assertEqual(
            texts(captured, LogLevel.info),
            ["calling setup from loop", "Listening for new connection on port 40001"],
        )

    def test_unix(self) -> None:
        side = self.side()
        with logs() as captured:
            side.services_ready({"ssh": "unix:/tmp/x.sock", "web": "8080"})
        self.assertEqual(
            texts(captured, LogLevel.info),
            [
                "calling setup from loop",
                "Listening for new connection on /tmp/x.sock for service id ssh",
                "calling setup from loop",
                "Listening for new connection on port 8080",
            ],
        )
        address = self.successResultOf(side.listening_address("ssh"))
        self.assertEqual(address, UNIXAddress("/tmp/x.sock"))
        failure = self.failureResultOf(side.listening_port("ssh"), ValueError)
        self.assertEqual(
            str(failure.value), f"service id ssh listens on {address!r}, not on a port"
        )
        self.assertEqual(side.bound_ports(), {"web": 8080})

    def test_address_asked_before_listening(self) -> None:
        side = self.side()
        address = side.listening_address("ssh")
        port = side.listening_port("ssh")
        self.assertNoResult(address)
        side.services_ready({"ssh": "5555"})
        self.assertEqual(self.successResultOf(address), IPv4Address("TCP", "127.0.0.1", 5555))
        self.assertEqual(self.successResultOf(port), 5555)

    def test_no_ports_before_listening(self) -> None:
        self.assertEqual(self.side().bound_ports(), {})

    def test_source_only(self) -> None:
        error = self.assertRaises(
            FatalTunnelError, self.side().connect, RecordingTunnelConnection()
        )
        self.assertEqual(str(error), "A source local proxy does not connect to local services")


class BindFailureTests(Harness):
    """A bind that fails: each attempt logged with its reason, the last one fatal."""

    def test_port(self) -> None:
        self.reactor.failures = 10
        side = self.side(sockets=LocalSockets(retry_count=1, retry_delay=1.0))
        with logs() as captured:
            side.services_ready({"ssh": "5555"})
            self.reactor.advance(1.0)
        reason = str(CannotListenError("127.0.0.1", 5555, IN_USE))
        self.assertEqual(
            texts(captured, LogLevel.error),
            [f"Could not bind to address: 127.0.0.1:5555 -- {reason}"] * 2,
        )
        self.assertEqual(
            self.fatal_messages(),
            ["Source local proxy fails to bind address 127.0.0.1:5555 for service id ssh"],
        )

    def test_description(self) -> None:
        self.reactor.failures = 10
        side = self.side(sockets=LocalSockets(retry_count=0))
        with logs() as captured:
            side.services_ready({"ssh": "unix:/tmp/x.sock"})
        reason = str(CannotListenError("", "/tmp/x.sock", IN_USE))
        self.assertEqual(
            texts(captured, LogLevel.error), [f"Could not listen on unix:/tmp/x.sock -- {reason}"]
        )
        self.assertEqual(
            self.fatal_messages(),
            ["Source local proxy fails to listen on unix:/tmp/x.sock for service id ssh"],
        )

    def test_given_endpoint_reasons(self) -> None:
        """The reason is the error's message, else its text, else its type's name."""
        given = GivenEndpoint(OSError("no such device"), _Refusal(), _Silent())
        side = self.side(server_endpoints={"ssh": given})
        with logs() as captured:
            side.services_ready({"ssh": "5555"})
            self.reactor.advance(1.0)
            self.reactor.advance(1.0)
        self.assertEqual(
            texts(captured, LogLevel.error),
            [
                "Could not listen on <the application's endpoint> -- no such device",
                "Could not listen on <the application's endpoint> -- the application said no",
                "Could not listen on <the application's endpoint> -- _Silent",
            ],
        )
        self.assertEqual(
            self.fatal_messages(),
            [
                "Source local proxy fails to listen on <the application's endpoint> "
                "for service id ssh"
            ],
        )

    def test_no_retries(self) -> None:
        """C{tcp.connection_retry_count} 0: one bind, and its failure is fatal at once."""
        self.reactor.failures = 10
        side = self.side(sockets=LocalSockets(retry_count=0, retry_delay=1.0))
        side.services_ready({"ssh": "5555"})
        self.assertEqual(len(self.fatal), 1)
        self.reactor.advance(10)
        self.assertEqual((self.reactor.binds, len(self.fatal)), (1, 1))

    def test_retries_for_ever(self) -> None:
        self.reactor.failures = 30
        side = self.side(sockets=LocalSockets(retry_count=-1, retry_delay=1.0))
        side.services_ready({"ssh": "5555"})
        for _ in range(30):
            self.reactor.advance(1.0)
        self.assertEqual(self.fatal, [])
        self.assertEqual(self.reactor.listening(), [IPv4Address("TCP", "127.0.0.1", 5555)])


class RaceTests(Harness):
    """A bind retry racing a repeated SERVICE_IDS, or a stop."""

    def test_repeated_service_ids_during_a_retry(self) -> None:
        """A reconnect's SERVICE_IDS while the bind waits to retry: the port is taken once."""
        self.reactor.failures = 1
        side = self.side()
        side.services_ready({"ssh": "5555"})
        side.services_ready({"ssh": "5555"})
        side.services_ready({"ssh": "5555"})
        self.reactor.advance(1.0)
        self.reactor.advance(1.0)
        self.assertEqual(self.reactor.binds, 2)
        self.assertEqual(self.reactor.listening(), [IPv4Address("TCP", "127.0.0.1", 5555)])
        self.assertEqual(self.fatal, [])

    def test_new_service_id_in_a_later_session(self) -> None:
        """A later SERVICE_IDS with one more service: it gets a listener; the others keep theirs."""
        side = self.side()
        side.services_ready({"ssh": "5555"})
        side.services_ready({"ssh": "5555", "web": "8080"})
        self.assertEqual(
            self.reactor.listening(),
            [IPv4Address("TCP", "127.0.0.1", 5555), IPv4Address("TCP", "127.0.0.1", 8080)],
        )

    def test_stop_during_a_retry(self) -> None:
        """Stopped while the bind waits to retry: no retry, no fatal error, nothing listening."""
        self.reactor.failures = 1
        side = self.side()
        side.services_ready({"ssh": "5555"})
        address = side.listening_address("ssh")
        stopped = side.stop()
        self.successResultOf(stopped)
        self.reactor.advance(10)
        self.assertEqual((self.reactor.binds, self.reactor.listening()), (1, []))
        self.assertEqual(self.fatal, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        failure = self.failureResultOf(address, CancelledError)
        self.assertEqual(str(failure.value), "the local proxy stopped")

    def test_stop_while_binding(self) -> None:
        """Stopped while a given endpoint still binds: cancelled quietly, no fatal error."""
        given = GivenEndpoint()
        given.hold = True
        side = self.side(server_endpoints={"ssh": given})
        side.services_ready({"ssh": "5555"})
        with logs() as captured:
            self.successResultOf(side.stop())
        self.assertTrue(given.pending[0].called, "the bind was cancelled")
        self.assertEqual(texts(captured, LogLevel.error), [])
        self.assertEqual(self.fatal, [])

    def test_stop_stops_every_listener(self) -> None:
        side = self.side()
        side.services_ready({"ssh": "5555", "web": "unix:/tmp/web.sock"})
        self.assertEqual(len(self.reactor.listening()), 2)
        self.successResultOf(side.stop())
        self.assertEqual(self.reactor.listening(), [])
        self.assertEqual(side.bound_ports(), {})

    def test_service_ids_after_stop(self) -> None:
        """A SERVICE_IDS still delivered after the stop leaves no listener behind."""
        side = self.side()
        side.stop()
        side.services_ready({"ssh": "5555"})
        self.assertEqual(self.reactor.listening(), [])
        self.assertEqual(self.fatal, [])

    def test_bind_failing_after_stop(self) -> None:
        """A SERVICE_IDS after the stop whose bind fails: not retried, and no fatal error."""
        side = self.side()
        side.stop()
        self.reactor.failures = 5
        side.services_ready({"ssh": "5555"})
        self.reactor.advance(5)
        self.assertEqual((self.reactor.binds, self.fatal), (1, []))


class AcceptTests(Harness):
    """Accepted connections: what the tunnel is offered and what is logged."""

    def test_tunnel_offered_the_connection(self) -> None:
        self.tunnel.answers = [RecordingTunnelConnection()]
        side = self.side()
        side.services_ready({"ssh": "5555"})
        protocol, _ = self.client()
        self.assertEqual(self.tunnel.offered, [("ssh", protocol)])

    def test_tcp_logged(self) -> None:
        self.tunnel.answers = [RecordingTunnelConnection()]
        self.side().services_ready({"ssh": "5555"})
        with logs() as captured:
            self.client()
        self.assertEqual(
            texts(captured, LogLevel.info),
            ["Accepted tcp connection on port 5555 from 192.168.1.1:54321"],
        )

    def test_unix_logged(self) -> None:
        self.tunnel.answers = [RecordingTunnelConnection()]
        self.side().services_ready({"ssh": "unix:/tmp/x.sock"})
        with logs() as captured:
            self.client()
        self.assertEqual(
            texts(captured, LogLevel.info),
            ["Accepted connection on /tmp/x.sock for service id ssh"],
        )

    def test_held_unix_logged_when_started(self) -> None:
        self.tunnel.answers = [Wait("not yet"), RecordingTunnelConnection()]
        side = self.side()
        side.services_ready({"ssh": "unix:/tmp/x.sock"})
        self.client()
        with logs() as captured, bounded():
            side.offer_waiting()
        self.assertEqual(
            texts(captured, LogLevel.info),
            ["Accepted connection on /tmp/x.sock for service id ssh"],
        )

    def test_settings_reach_accepted_connections(self) -> None:
        """C{tcp.write_buffer_size} bounds each accepted connection's backlog."""
        self.tunnel.answers = [RecordingTunnelConnection()]
        self.flow.attach(TCPLikeTransport())
        side = self.side(sockets=LocalSockets(backlog_limit=10))
        side.services_ready({"ssh": "5555"})
        protocol, _ = self.client()
        protocol.pauseProducing()  # the client does not read
        protocol.write(unique_payload(10))
        self.assertTrue(self.flow.websocket_paused)


class HoldTests(Harness):
    """Connections the tunnel cannot start yet."""

    def setUp(self) -> None:
        super().setUp()
        self.side_ = self.side()
        self.side_.services_ready({"ssh": "5555"})

    def offer_waiting(self) -> None:
        """The tunnel says connections may start (bounded: a pass that never ends fails)."""
        with bounded():
            self.side_.offer_waiting()

    def test_bytes_delivered_while_held_go_first(self) -> None:
        """A transport that delivers although paused: those bytes reach the tunnel first."""
        connection = RecordingTunnelConnection()
        self.tunnel.answers = [Wait("not yet"), connection]
        protocol, _ = self.client()
        early = [unique_payload(50, seed=1), unique_payload(50, seed=2)]
        for data in early:
            protocol.dataReceived(data)
        self.offer_waiting()
        later = unique_payload(50, seed=3)
        protocol.dataReceived(later)
        self.assertEqual(connection.data, early + [later])

    def test_latest_reason_given_when_refused(self) -> None:
        """Refused after the bound: with the reason the tunnel gave last."""
        self.tunnel.answers = [Wait("first reason"), Wait("second reason")]
        self.client()
        self.offer_waiting()
        self.reactor.advance(self.side_.hold_timeout)
        ((service_id, reason),) = self.tunnel.given_up
        self.assertTrue(reason.startswith("second reason, still after 32.5 s"), reason)

    def test_offered_once_per_call(self) -> None:
        """A connection that keeps waiting is asked about once per offer, not in a loop."""
        self.tunnel.answers = [Wait("not yet")]
        self.client()
        self.offer_waiting()
        self.offer_waiting()
        self.assertEqual(len(self.tunnel.offered), 3)

    def test_started_once_when_the_start_says_more_may_start(self) -> None:
        """
        Starting a connection may tell the side, from inside the tunnel's
        answer, that more may start: each waiting connection is still
        offered once, in order, and started once.
        """
        self.tunnel.answers = [Wait("not yet")]
        first, _ = self.client()
        second, _ = self.client()
        del self.tunnel.offered[:]
        self.tunnel.answers = [RecordingTunnelConnection(), RecordingTunnelConnection()]
        self.tunnel.on_accept = self.side_.offer_waiting
        self.offer_waiting()
        self.assertEqual(self.tunnel.offered, [("ssh", first), ("ssh", second)])
        self.assertEqual(self.side_.waiting, 0)

    def test_connection_after_stop(self) -> None:
        """A connection accepted as the proxy stops: refused, and the tunnel told why."""
        self.tunnel.answers = [Wait("not yet")]
        self.side_.stop()
        _, transport = self.client()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.tunnel.given_up, [("ssh", "the local proxy is stopping")])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
