"""
L{aws_localproxy.local.source}: the source's listeners, on a MemoryReactorClock.
"""

from __future__ import annotations

from typing import Any, Dict, List

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.source import SourceSide
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from tests.fakes.local import ignore_given_up, refuse_every_connection

#: A source side's tunnel and fatal errors, for tests that reach neither.
UNWIRED: Dict[str, Any] = dict(
    accept=refuse_every_connection, given_up=ignore_given_up, on_fatal=lambda error: None
)


class BadEndpointTests(SynchronousTestCase):
    """The endpoint grammar's errors reach the tunnel as fatal errors, word for word."""

    def test_source_listen_port(self) -> None:
        side = SourceSide(MemoryReactorClock(), InboundFlow(), "127.0.0.1", **UNWIRED)
        for bad, message in (
            ("ssh", "Invalid listen port in port mapping: ssh"),
            ("70000", "Invalid listen port in port mapping: 70000"),
        ):
            error = self.assertRaises(FatalTunnelError, side.services_ready, {"ssh": bad})
            self.assertEqual(str(error), message)


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
            reactor,
            InboundFlow(),
            "127.0.0.1",
            accept=refuse_every_connection,
            given_up=ignore_given_up,
            sockets=LocalSockets(retry_count=retries, retry_delay=1.0),
            on_fatal=self.fatal.append,
        )

    def test_listens_per_service_on_bind_address(self) -> None:
        reactor = MemoryReactorClock()
        side = self.make(reactor)
        side.services_ready({"ssh": "5555", "web": "127.0.0.1:8080"})
        ports = sorted((p[0], p[3]) for p in reactor.tcpServers)
        self.assertEqual(ports, [(5555, "127.0.0.1"), (8080, "127.0.0.1")])

    def test_descriptions(self) -> None:
        """A tcp description without interface= listens on the bind address; unix: on its path."""
        reactor = MemoryReactorClock()
        side = self.make(reactor)
        side.services_ready(
            {"web": "tcp:8080", "v6": "tcp6:8081:interface=\\:\\:1", "ssh": "unix:/tmp/x.sock"}
        )
        ports = sorted((p[0], p[3]) for p in reactor.tcpServers)
        self.assertEqual(ports, [(8080, "127.0.0.1"), (8081, "::1")])
        self.assertEqual([u[0] for u in reactor.unixServers], ["/tmp/x.sock"])

    def test_given_endpoint_wins(self) -> None:
        from twisted.internet.endpoints import UNIXServerEndpoint

        reactor = MemoryReactorClock()
        side = SourceSide(
            reactor,
            InboundFlow(),
            "127.0.0.1",
            **UNWIRED,
            server_endpoints={"ssh": UNIXServerEndpoint(reactor, "/tmp/given.sock")},
        )
        side.services_ready({"ssh": "5555"})
        self.assertEqual(reactor.tcpServers, [])
        self.assertEqual([u[0] for u in reactor.unixServers], ["/tmp/given.sock"])

    def test_unnamed_service(self) -> None:
        """A tunnel without service IDs has one service, "": it gets a listener like any other."""
        reactor = MemoryReactorClock()
        side = self.make(reactor)
        side.services_ready({"": "0"})
        self.assertEqual([(p[0], p[3]) for p in reactor.tcpServers], [(0, "127.0.0.1")])
        self.assertEqual(self.fatal, [])

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


class SourceStopTests(SynchronousTestCase):
    def test_second_stop_waits_for_the_first(self) -> None:
        """The proxy's end stops the listeners, then stopService again: both wait for them."""
        from twisted.internet.defer import Deferred

        reactor = MemoryReactorClock()
        side = SourceSide(reactor, InboundFlow(), "127.0.0.1", **UNWIRED)
        side.services_ready({"ssh": "5555"})
        listening = side._ports["ssh"]
        stopped: Deferred[None] = Deferred()
        listening.stopListening = lambda: stopped  # type: ignore[method-assign]
        first, second = side.stop(), side.stop()
        self.assertNoResult(first)
        self.assertNoResult(second)
        stopped.callback(None)
        self.successResultOf(first)
        self.successResultOf(second)
