# -*- test-case-name: tests.test_metrics -*-
# mypy: disallow-untyped-calls=False
# (this module calls twisted.web and endpoint APIs that have no annotations)
"""
What a running local proxy is doing, as numbers: a plain snapshot and a
Prometheus scrape.

Counting costs the data path next to nothing: plain int attributes bumped
where the bytes pass (L{aws_localproxy.streams.ServiceCounters} per service
ID, the tunnel's and the connector's own totals).  Everything else happens
at scrape time: L{snapshot} reads those attributes into frozen values, and
L{ProxyCollector} turns a snapshot into metric families.  Each
L{LocalProxyService} has its own C{CollectorRegistry} (never
C{prometheus_client}'s global one), so any number of tunnels can live in one
process, each scraped on its own.

No label carries a token or the host of a credential: the labels are the
proxy's mode and the service ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from aws_localproxy.endpoints import resolve_bind_address

if TYPE_CHECKING:
    from aws_localproxy.service import LocalProxyService

__all__ = [
    "ServiceMetrics",
    "TunnelMetrics",
    "snapshot",
    "ProxyCollector",
    "registry_for",
    "MetricsPage",
    "listen_metrics",
]


@dataclass(frozen=True)
class ServiceMetrics:
    """
    One service ID, since the proxy started.

    Bytes are DATA payload bytes and messages DATA records; I{sent} is towards
    the tunnel (read from local connections), I{received} from it (written
    to local connections).
    """

    service_id: str
    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int
    connections_opened: int
    connections_active: int
    connections_refused: int
    connections_reset: int
    connections_closed: int


@dataclass(frozen=True)
class TunnelMetrics:
    """
    The whole tunnel, since the proxy started.

    @ivar bytes_sent: record bytes written to the WebSocket (length prefixes
        included; control records too), over every session.
    @ivar bytes_received: WebSocket payload bytes received.
    @ivar session_up: a WebSocket session is open now.
    @ivar last_state_change: when it last opened or closed (the reactor's
        clock: seconds since the epoch for a real reactor).
    @ivar reconnects: sessions opened after the first.
    @ivar last_ping_rtt: seconds from a ping to its pong, the latest
        measured (C{None} before the first).
    @ivar paused_seconds: seconds the WebSocket was not read because a local
        connection could not take more (back-pressure).
    """

    mode: str
    session_up: bool
    last_state_change: float
    sessions: int
    reconnects: int
    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int
    last_ping_rtt: Optional[float]
    paused_seconds: float
    services: Mapping[str, ServiceMetrics] = field(default_factory=dict)


def snapshot(proxy: LocalProxyService) -> TunnelMetrics:
    """The numbers of C{proxy} now (cheap: reads attributes, copies nothing big)."""
    tunnel = proxy.tunnel
    connector = proxy._connector
    active: dict[str, int] = {}
    services: dict[str, ServiceMetrics] = {}
    if tunnel is not None:
        session = tunnel._session
        if session is not None:
            for service_id, service in session.services.items():
                active[service_id] = len(service.connections)
        for service_id, c in tunnel.counters.items():
            services[service_id] = ServiceMetrics(
                service_id=service_id,
                bytes_sent=c.bytes_sent,
                bytes_received=c.bytes_received,
                messages_sent=c.messages_sent,
                messages_received=c.messages_received,
                connections_opened=c.connections_opened,
                connections_active=active.get(service_id, 0),
                connections_refused=c.connections_refused,
                connections_reset=c.connections_reset,
                connections_closed=c.connections_closed,
            )
    sessions = connector.sessions if connector is not None else 0
    return TunnelMetrics(
        mode=proxy.config.mode.value,
        session_up=connector.session_up if connector is not None else False,
        last_state_change=connector.state_changed_at if connector is not None else 0.0,
        sessions=sessions,
        reconnects=max(0, sessions - 1),
        bytes_sent=connector.bytes_sent if connector is not None else 0,
        bytes_received=tunnel.bytes_received if tunnel is not None else 0,
        messages_sent=connector.records_sent if connector is not None else 0,
        messages_received=tunnel.messages_received if tunnel is not None else 0,
        last_ping_rtt=_last_rtt(connector),
        paused_seconds=_paused_seconds(proxy),
        services=services,
    )


def _last_rtt(connector: Any) -> Optional[float]:
    scheduler = connector.scheduler if connector is not None else None
    return None if scheduler is None else scheduler.last_rtt


def _paused_seconds(proxy: LocalProxyService) -> float:
    return proxy.inbound.paused_seconds_now()


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
