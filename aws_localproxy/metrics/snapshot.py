# -*- test-case-name: tests.metrics.test_snapshot -*-
# mypy: disallow-untyped-calls=False
# (this module calls twisted.web and endpoint APIs that have no annotations)
"""
What a running local proxy is doing, as numbers: a plain snapshot and a
Prometheus scrape.

Counting costs the data path next to nothing: plain int attributes bumped
where the bytes pass (L{aws_localproxy.protocol.service_state.ServiceCounters} per service
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
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from aws_localproxy.proxy.service import LocalProxyService

__all__ = [
    "ServiceMetrics",
    "TunnelMetrics",
    "snapshot",
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
