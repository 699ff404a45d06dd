# -*- test-case-name: tests.metrics.test_snapshot -*-
"""
What a running local proxy is doing, as numbers: a plain snapshot and a
Prometheus scrape.

Counting costs the data path next to nothing: plain int attributes bumped
where the bytes pass (L{aws_localproxy.protocol.service_state.ServiceCounters} per service
ID, the tunnel's and the connector's own totals).  Everything else happens
at scrape time: L{snapshot} reads those figures into frozen values, and
L{aws_localproxy.metrics.prometheus.ProxyCollector} turns a snapshot into
metric families.  Each L{aws_localproxy.proxy.service.LocalProxyService}
has its own C{CollectorRegistry} (never C{prometheus_client}'s global one),
so any number of tunnels can live in one process, each scraped on its own.

The metrics sit above the tunnel and the link and below the proxy: they
read the objects they are handed through their public, read-only figures
(L{TunnelFigures}, L{LinkFigures}, L{PauseFigures}), never a private
attribute, and never the proxy that hands them over.

No label carries a token or the host of a credential: the labels are the
proxy's mode and the service ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Protocol

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.service_state import ServiceCounters

__all__ = [
    "ServiceMetrics",
    "TunnelMetrics",
    "TunnelFigures",
    "LinkFigures",
    "PauseFigures",
    "snapshot",
]


class TunnelFigures(Protocol):
    """
    What the metrics read from the tunnel (L{aws_localproxy.protocol.tunnel.Tunnel}):
    public, read-only figures only.
    """

    @property
    def counters(self) -> Mapping[str, ServiceCounters]:
        """Service ID -> what it carried, for the life of the tunnel."""

    @property
    def active_connections(self) -> Mapping[str, int]:
        """Service ID -> connections open now (the current session's)."""

    @property
    def bytes_received(self) -> int:
        """WebSocket payload bytes received."""

    @property
    def messages_received(self) -> int:
        """Tunnel messages received."""

    @property
    def session_up(self) -> bool:
        """A WebSocket session is open now."""

    @property
    def bytes_sent(self) -> int:
        """Record bytes written to the WebSocket over every session."""

    @property
    def records_sent(self) -> int:
        """Records written to the WebSocket over every session."""

    @property
    def last_ping_rtt(self) -> Optional[float]:
        """The latest ping's round trip, in seconds."""


class LinkFigures(Protocol):
    """
    What the metrics read from the link to the service
    (L{aws_localproxy.upstream.connector.TunnelConnector}): public, read-only
    figures only.
    """

    @property
    def sessions(self) -> int:
        """WebSocket sessions opened so far."""

    @property
    def state_changed_at(self) -> float:
        """When the WebSocket last opened or closed (the reactor's clock)."""


class PauseFigures(Protocol):
    """What the metrics read from inbound flow control (L{aws_localproxy.protocol.inbound_flow.InboundFlow})."""

    def paused_seconds_now(self) -> float:
        """Seconds the WebSocket was not read, a pause under way counted up to now."""


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


def snapshot(
    mode: Mode,
    tunnel: Optional[TunnelFigures],
    link: Optional[LinkFigures],
    inbound: PauseFigures,
) -> TunnelMetrics:
    """
    The numbers of one proxy now (cheap: reads figures, copies nothing big).

    C{tunnel} and C{link} are C{None} before the proxy has built them.
    """
    services: dict[str, ServiceMetrics] = {}
    if tunnel is not None:
        active = tunnel.active_connections
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
    sessions = link.sessions if link is not None else 0
    return TunnelMetrics(
        mode=mode.value,
        session_up=tunnel.session_up if tunnel is not None else False,
        last_state_change=link.state_changed_at if link is not None else 0.0,
        sessions=sessions,
        reconnects=max(0, sessions - 1),
        bytes_sent=tunnel.bytes_sent if tunnel is not None else 0,
        bytes_received=tunnel.bytes_received if tunnel is not None else 0,
        messages_sent=tunnel.records_sent if tunnel is not None else 0,
        messages_received=tunnel.messages_received if tunnel is not None else 0,
        last_ping_rtt=tunnel.last_ping_rtt if tunnel is not None else None,
        paused_seconds=inbound.paused_seconds_now(),
        services=services,
    )
