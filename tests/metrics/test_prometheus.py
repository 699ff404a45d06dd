"""
L{aws_localproxy.metrics.prometheus.MetricsPageService}: the metrics page as
a service, on a MemoryReactorClock.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from aws_localproxy.metrics.prometheus import MetricsPageService, registry_for
from aws_localproxy.metrics.snapshot import snapshot
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.errors import FatalTunnelError


class NotPaused:
    def paused_seconds_now(self) -> float:
        return 0.0


class ListeningPort:
    """A listening port that records its stop; the stop fires when the test says."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stops: List[Deferred[None]] = []

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", self.port)

    def stopListening(self) -> Deferred[None]:
        stopped: Deferred[None] = Deferred()
        self.stops.append(stopped)
        return stopped


class Reactor(MemoryReactorClock):
    """Listens on L{ListeningPort}s (port 0: 40000), or refuses with C{refusal}."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: List[ListeningPort] = []
        self.refusal: Optional[Exception] = None

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if self.refusal is not None:
            raise self.refusal
        super().listenTCP(port, factory, backlog, interface)
        listening = ListeningPort(port or 40000)
        self.ports.append(listening)
        return listening


class MetricsPageServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = Reactor()
        self.failures: List[BaseException] = []
        registry = registry_for(lambda: snapshot(Mode.SOURCE, None, None, NotPaused()))
        self.page = MetricsPageService(
            self.reactor, registry, 0, "127.0.0.1", on_failure=self.failures.append
        )

    def test_listens_while_running(self) -> None:
        """Started, it serves the page and says where; stopped, it stops listening."""
        address = self.page.address
        self.assertNoResult(address)
        self.assertEqual(self.reactor.tcpServers, [])
        with capturedLogs() as events:
            self.page.startService()
        ((port, site, _, interface),) = self.reactor.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        self.assertIsInstance(site, Site)
        self.assertEqual(self.successResultOf(address).port, 40000)
        self.assertEqual(self.successResultOf(self.page.address).port, 40000)
        self.assertEqual(
            [formatEvent(event) for event in events],
            ["Serving metrics on http://127.0.0.1:40000/metrics"],
        )
        stopped = self.page.stopService()
        (listening,) = self.reactor.ports
        self.assertNoResult(stopped)
        listening.stops[0].callback(None)
        self.successResultOf(stopped)
        self.assertFalse(self.page.running)
        self.assertEqual(self.failures, [])

    def test_cannot_listen(self) -> None:
        """A port it cannot listen on is fatal for the proxy, with the reason."""
        self.reactor.refusal = CannotListenError("127.0.0.1", 9464, OSError("in use"))
        self.page.startService()
        (failure,) = self.failures
        self.assertIsInstance(failure, FatalTunnelError)
        self.assertTrue(str(failure).startswith("Cannot serve metrics on 127.0.0.1:0: "))
        self.assertIn("in use", str(failure))
        self.failureResultOf(self.page.address, CannotListenError)
        self.successResultOf(self.page.stopService())

    def test_stop_before_start(self) -> None:
        """A proxy that ends before it starts its children stops a page that never listened."""
        self.successResultOf(self.page.stopService())
        self.assertEqual(self.reactor.tcpServers, [])
