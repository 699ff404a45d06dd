# -*- test-case-name: tests.metrics.test_prometheus,tests.metrics.test_snapshot -*-
# twisted.web and the endpoints are not annotated.
# mypy: disallow-untyped-calls=False
"""
The metrics as Prometheus sees them: a collector per proxy and the page
``--metrics-port`` serves, as a child service of its proxy.

Kept apart from L{aws_localproxy.metrics.snapshot} (the counters and their snapshot)
so that a proxy which exports nothing never imports C{prometheus_client} or
twisted.web: the service builds its registry on first use.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from aws_localproxy.config.local_endpoints import resolve_bind_address
from aws_localproxy.local.outcome import Outcome
from aws_localproxy.metrics.snapshot import TunnelMetrics
from aws_localproxy.protocol.errors import FatalTunnelError

__all__ = [
    "ProxyCollector",
    "registry_for",
    "MetricsPage",
    "listen_metrics",
    "MetricsPageService",
]

_SERVICE_COUNTERS = (
    (
        "bytes_sent",
        "localproxy_service_sent_bytes",
        "DATA payload bytes read from local connections of the service ID, sent to the tunnel",
    ),
    (
        "bytes_received",
        "localproxy_service_received_bytes",
        "DATA payload bytes received from the tunnel for the service ID, written to its local connections",
    ),
    (
        "messages_sent",
        "localproxy_service_sent_messages",
        "DATA messages sent to the tunnel for the service ID",
    ),
    (
        "messages_received",
        "localproxy_service_received_messages",
        "DATA messages received from the tunnel for the service ID",
    ),
    (
        "connections_opened",
        "localproxy_service_connections_opened",
        "Local connections the tunnel took for the service ID",
    ),
    (
        "connections_refused",
        "localproxy_service_connections_refused",
        "Local connections refused (tunnel not ready, over tcp.max_active_connections) or that could not be opened",
    ),
    (
        "connections_reset",
        "localproxy_service_connections_reset",
        "Connections ended by the peer (connection, stream or session reset)",
    ),
    (
        "connections_closed",
        "localproxy_service_connections_closed",
        "Connections ended by their local socket",
    ),
)


#: The tunnel's families, in the order of a scrape: (kind, TunnelMetrics attribute, name, help).
_TUNNEL_FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    (
        "counter",
        "bytes_sent",
        "localproxy_tunnel_sent_bytes",
        "Record bytes written to the WebSocket (length prefixes and control records included)",
    ),
    (
        "counter",
        "bytes_received",
        "localproxy_tunnel_received_bytes",
        "WebSocket payload bytes received from the tunnel",
    ),
    (
        "counter",
        "messages_sent",
        "localproxy_tunnel_sent_messages",
        "Tunnel messages (records) sent, control messages included",
    ),
    (
        "counter",
        "messages_received",
        "localproxy_tunnel_received_messages",
        "Tunnel messages received, control messages included",
    ),
    ("counter", "sessions", "localproxy_sessions", "WebSocket sessions opened"),
    ("counter", "reconnects", "localproxy_reconnects", "WebSocket sessions opened after the first"),
    ("gauge", "session_up", "localproxy_session_up", "1 while a WebSocket session is open"),
    (
        "gauge",
        "last_state_change",
        "localproxy_session_state_change_timestamp_seconds",
        "When the WebSocket session last opened or closed",
    ),
    (
        "gauge",
        "last_ping_rtt",
        "localproxy_ping_rtt_seconds",
        "Round-trip time of the latest ping answered by the service",
    ),
    (
        "counter",
        "paused_seconds",
        "localproxy_backpressure_paused_seconds",
        "Seconds the WebSocket was not read because a local connection was full",
    ),
)


class ProxyCollector:
    """A C{prometheus_client} collector reading one proxy's L{snapshot} at each scrape."""

    def __init__(self, source: Callable[[], TunnelMetrics]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        # Without describe() the registry would call collect() at registration,
        # before the proxy runs.
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        return self._families(self._source())

    def _families(self, metrics: Optional[TunnelMetrics]) -> Iterator[Metric]:
        mode = [metrics.mode] if metrics is not None else []

        def counter(name: str, documentation: str, value: float) -> Metric:
            family = CounterMetricFamily(name, documentation, labels=["mode"])
            if metrics is not None:
                family.add_metric(mode, value)
            return family

        def gauge(name: str, documentation: str, value: Optional[float]) -> Metric:
            family = GaugeMetricFamily(name, documentation, labels=["mode"])
            if metrics is not None and value is not None:
                family.add_metric(mode, value)
            return family

        m = metrics
        for kind, attribute, name, documentation in _TUNNEL_FAMILIES:
            value = getattr(m, attribute) if m else None
            if kind == "counter":
                yield counter(name, documentation, value or 0)
            else:
                yield gauge(name, documentation, None if value is None else float(value))

        services = list(m.services.values()) if m else []
        for attribute, name, documentation in _SERVICE_COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["mode", "service_id"])
            for service in services:
                family.add_metric(mode + [service.service_id], getattr(service, attribute))
            yield family
        active = GaugeMetricFamily(
            "localproxy_service_connections_active",
            "Connections of the service ID open now",
            labels=["mode", "service_id"],
        )
        for service in services:
            active.add_metric(mode + [service.service_id], service.connections_active)
        yield active


def registry_for(source: Callable[[], TunnelMetrics]) -> CollectorRegistry:
    """A registry of its own holding one L{ProxyCollector}."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ProxyCollector(source))
    return registry


class MetricsPage(Resource):
    """The Prometheus text exposition of one registry, rendered in the reactor thread."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._registry)

    render_HEAD = render_GET


def listen_metrics(
    reactor: Any, registry: CollectorRegistry, port: int, address: str
) -> Deferred[IListeningPort]:
    """
    Serve C{registry} over HTTP on C{address}:C{port} (any path); fires with
    the listening port.

    @raise OSError: C{address} does not resolve.
    """
    site = Site(MetricsPage(registry))
    site.noisy = False
    site.displayTracebacks = False
    address = resolve_bind_address(address)
    endpoint: Any
    if ":" in address:
        endpoint = TCP6ServerEndpoint(reactor, port, interface=address)
    else:
        endpoint = TCP4ServerEndpoint(reactor, port, interface=address)
    listening: Deferred[IListeningPort] = endpoint.listen(site)
    return listening


class MetricsPageService(Service):
    """
    The page ``--metrics-port`` serves, as a child service of its proxy: it
    listens while the proxy runs, and a port it cannot listen on ends the
    proxy.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        registry: CollectorRegistry,
        port: int,
        address: str,
        *,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        """
        @param registry: what the page serves (the proxy's own registry).
        @param port: the TCP port to listen on (0: one the system picks).
        @param address: the address to listen on (a name is resolved).
        @param on_failure: told why the page cannot be served; the proxy ends.
        """
        self.name = "metrics"
        self._reactor = reactor
        self._registry = registry
        self._port_number = port
        self._address = address
        self._on_failure = on_failure
        self._listening: Optional[IListeningPort] = None
        self._bound = Outcome[IAddress]()

    @property
    def address(self) -> Deferred[IAddress]:
        """The address the page is served on (fires once it listens; fails if it cannot)."""
        return self._bound.wait()

    def startService(self) -> None:
        super().startService()
        try:
            d = listen_metrics(self._reactor, self._registry, self._port_number, self._address)
        except OSError as error:
            d = fail(error)
        d.addCallbacks(self._listening_on, self._cannot_listen)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        listening, self._listening = self._listening, None
        stopped = listening.stopListening() if listening is not None else None
        return stopped if isinstance(stopped, Deferred) else succeed(None)

    def _listening_on(self, listening: IListeningPort) -> None:
        if not self.running:
            listening.stopListening()
            return
        self._listening = listening
        bound = listening.getHost()
        host = getattr(bound, "host", self._address)
        shown = f"[{host}]" if ":" in host else host
        self.log.info(
            "Serving metrics on http://{address}:{port}/metrics",
            address=shown,
            port=getattr(bound, "port", self._port_number),
        )
        self._bound.succeed(bound)

    def _cannot_listen(self, failure: Failure) -> None:
        message = (
            f"Cannot serve metrics on {self._address}:{self._port_number}: "
            f"{failure.getErrorMessage()}"
        )
        self._bound.fail(failure)
        self._on_failure(FatalTunnelError(message))
