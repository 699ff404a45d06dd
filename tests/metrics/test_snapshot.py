"""
L{aws_localproxy.metrics.snapshot}: the snapshot read from plain figures,
then metrics end to end: two proxies in one process, each with its own
registry and HTTP listener, scraped after a known transfer and parsed with
prometheus_client's own text parser.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, Tuple

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, readBody

from aws_localproxy.metrics.snapshot import ServiceMetrics, snapshot
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.service_state import ServiceCounters
from tests.support.e2e import TEST_SETTINGS, E2ETestCase, Echo, new_client_token
from tests.support.helpers import wait_until

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class Paused:
    def paused_seconds_now(self) -> float:
        return 1.5


class SnapshotTests(SynchronousTestCase):
    """The snapshot is made of the figures it is handed, and of nothing else."""

    def test_nothing_built_yet(self) -> None:
        metrics = snapshot(Mode.SOURCE, None, None, Paused())
        self.assertEqual(
            (metrics.mode, metrics.session_up, metrics.sessions, metrics.reconnects),
            ("source", False, 0, 0),
        )
        self.assertEqual((metrics.bytes_sent, metrics.bytes_received), (0, 0))
        self.assertIsNone(metrics.last_ping_rtt)
        self.assertEqual(metrics.paused_seconds, 1.5)
        self.assertEqual(metrics.services, {})

    def test_figures(self) -> None:
        ssh = ServiceCounters("ssh")
        ssh.bytes_sent, ssh.bytes_received, ssh.messages_sent = 10, 20, 3
        ssh.messages_received, ssh.connections_opened, ssh.connections_refused = 4, 5, 1
        ssh.connections_reset, ssh.connections_closed = 2, 1
        rdp = ServiceCounters("rdp")
        tunnel = SimpleNamespace(
            counters={"ssh": ssh, "rdp": rdp},
            active_connections={"ssh": 2},
            bytes_received=700,
            messages_received=9,
            session_up=True,
            bytes_sent=800,
            records_sent=11,
            last_ping_rtt=0.02,
        )
        link = SimpleNamespace(sessions=3, state_changed_at=1234.5)
        metrics = snapshot(Mode.DESTINATION, tunnel, link, Paused())  # type: ignore[arg-type]
        self.assertEqual(metrics.mode, "destination")
        self.assertEqual((metrics.sessions, metrics.reconnects, metrics.session_up), (3, 2, True))
        self.assertEqual(metrics.last_state_change, 1234.5)
        self.assertEqual((metrics.bytes_sent, metrics.messages_sent), (800, 11))
        self.assertEqual((metrics.bytes_received, metrics.messages_received), (700, 9))
        self.assertEqual(metrics.last_ping_rtt, 0.02)
        self.assertEqual(
            metrics.services["ssh"],
            ServiceMetrics("ssh", 10, 20, 3, 4, 5, 2, 1, 2, 1),
        )
        self.assertEqual(metrics.services["rdp"].connections_active, 0)


class MetricsTests(E2ETestCase):
    timeout = 60

    @inlineCallbacks
    def scrape(self, proxy: Any) -> Any:
        address = yield proxy.metrics_address
        response = yield Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{address.port}/metrics".encode()
        )
        self.assertEqual(response.code, 200)
        self.assertIn(b"text/plain", response.headers.getRawHeaders(b"content-type")[0])
        body = yield readBody(response)
        return body.decode()

    @inlineCallbacks
    def start_pair(self, echo_port: int) -> Any:
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["ssh"])
        self.tunnel_id = tunnel_id
        self.tokens = (source_token, destination_token)
        self.destination = self.proxy(
            Mode.DESTINATION,
            destination_token,
            {"ssh": f"127.0.0.1:{echo_port}"},
            client_token=new_client_token(),
            metrics_port=0,
        )
        yield self.destination.connected
        self.source = self.proxy(
            Mode.SOURCE,
            source_token,
            {},
            client_token=new_client_token(),
            metrics_port=0,
            settings=TEST_SETTINGS,
        )
        yield self.source.connected
        port = yield self.source.listening_port("ssh")
        return port

    @inlineCallbacks
    def test_scrape_after_known_transfer(self) -> Any:
        echo_port = yield self.listen(Echo)
        port = yield self.start_pair(echo_port)
        size = 300_000
        client = yield self.connect(port)
        client.transport.write(b"m" * size)
        yield client.wait_for(size)

        source = parse((yield self.scrape(self.source)))
        src = (("mode", "source"),)
        svc = (("mode", "source"), ("service_id", "ssh"))
        self.assertEqual(source[("localproxy_service_sent_bytes_total", svc)], size)
        self.assertEqual(source[("localproxy_service_received_bytes_total", svc)], size)
        self.assertGreaterEqual(source[("localproxy_service_sent_messages_total", svc)], 1)
        self.assertGreaterEqual(source[("localproxy_service_received_messages_total", svc)], 1)
        # Every DATA record of the service, plus its StreamStart.
        self.assertGreaterEqual(
            source[("localproxy_tunnel_sent_messages_total", src)],
            source[("localproxy_service_sent_messages_total", svc)] + 1,
        )
        self.assertEqual(source[("localproxy_service_connections_opened_total", svc)], 1)
        self.assertEqual(source[("localproxy_service_connections_active", svc)], 1)
        self.assertEqual(source[("localproxy_session_up", src)], 1)
        self.assertEqual(source[("localproxy_reconnects_total", src)], 0)
        self.assertGreater(source[("localproxy_tunnel_sent_bytes_total", src)], size)
        self.assertGreater(source[("localproxy_tunnel_received_bytes_total", src)], size)
        self.assertGreater(source[("localproxy_session_state_change_timestamp_seconds", src)], 1e9)
        self.assertIn(("localproxy_backpressure_paused_seconds_total", src), source)

        # The plain snapshot says the same.
        snapshot = self.source.metrics()
        self.assertEqual(snapshot.services["ssh"].bytes_sent, size)
        self.assertEqual(snapshot.services["ssh"].bytes_received, size)
        self.assertTrue(snapshot.session_up)

        # Each proxy has its own registry: the destination's scrape is its own.
        destination_text = yield self.scrape(self.destination)
        destination = parse(destination_text)
        dst = (("mode", "destination"), ("service_id", "ssh"))
        self.assertEqual(destination[("localproxy_service_received_bytes_total", dst)], size)
        self.assertEqual(destination[("localproxy_service_sent_bytes_total", dst)], size)
        self.assertNotIn('mode="source"', destination_text)

        # The client closes: closed at the source, reset at the destination.
        client.transport.loseConnection()
        yield client.closed
        yield wait_until(lambda: self.destination.metrics().services["ssh"].connections_reset == 1)
        self.assertEqual(self.source.metrics().services["ssh"].connections_closed, 1)
        self.assertEqual(self.source.metrics().services["ssh"].connections_active, 0)
        yield wait_until(lambda: self.destination.metrics().services["ssh"].connections_active == 0)

        # A dropped WebSocket: session down then up again, one reconnect.
        before = self.source.metrics().last_state_change
        self.tunnel_service.drop_connections(self.tunnel_id)
        yield wait_until(
            lambda: (
                self.source.metrics().reconnects == 1
                and self.source.metrics().session_up
                and self.source.tunnel.ready
            )
        )
        source = parse((yield self.scrape(self.source)))
        self.assertEqual(source[("localproxy_reconnects_total", src)], 1)
        self.assertEqual(source[("localproxy_session_up", src)], 1)
        self.assertGreater(self.source.metrics().last_state_change, before)
        # Counters survive the reconnect.
        self.assertEqual(source[("localproxy_service_sent_bytes_total", svc)], size)

        for text in (destination_text, (yield self.scrape(self.source))):
            for token in self.tokens:
                self.assertNotIn(token, text)
            self.assertNotIn(self.source.client_token, text)

    @inlineCallbacks
    def test_refused_connection_counted(self) -> Any:
        """A destination that cannot connect: refused there, reset at the source."""
        from tests.support.helpers import free_port

        port = yield self.start_pair(free_port())
        client = yield self.connect(port)
        yield client.closed
        yield wait_until(
            lambda: self.destination.metrics().services["ssh"].connections_refused == 1
        )
        yield wait_until(lambda: self.source.metrics().services["ssh"].connections_reset == 1)

    def test_snapshot_before_start(self) -> None:
        from aws_localproxy.config.proxy_config import ProxyConfig
        from aws_localproxy.proxy.service import LocalProxyService

        proxy = LocalProxyService(
            ProxyConfig(mode=Mode.SOURCE, access_token="t" * 8, endpoint_host="127.0.0.1"),
            reactor,
        )
        metrics = proxy.metrics()
        self.assertFalse(metrics.session_up)
        self.assertEqual(metrics.services, {})
        self.assertIsNone(metrics.last_ping_rtt)
        self.assertIsInstance(ServiceMetrics.__dataclass_fields__, dict)
