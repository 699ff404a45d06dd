# -*- test-case-name: tests.e2e.test_proxy -*-
# mypy: disallow-untyped-calls=False
# (this module subclasses Twisted's MultiService, whose methods have no annotations)
"""
L{LocalProxyService}: one local proxy as a Twisted C{IService}.

The console script, ``twistd localproxy`` and an application that embeds a
proxy all build it from one validated L{ProxyConfig}.  It wires the layers
together and owns nothing else::

    local sockets  <->  SourceSide / DestinationSide / StdioSide  (+ InboundFlow)
                   <->  Tunnel                        (protocol rules, no I/O)
                   <->  TunnelClientProtocol          (Autobahn WebSocket)
                   <->  TunnelConnector               (connect, retry, reconnect)
                   <->  TLS  <->  web proxy or direct TCP

What it wires comes from the layers below: the local side from
L{aws_localproxy.local.build}, the client token from
L{aws_localproxy.config.client_token}, the metrics page (a child service)
from L{aws_localproxy.metrics.prometheus}, and how a ``--stdio`` proxy ends
from L{aws_localproxy.proxy.stdio_exit}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IAddress,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger

from aws_localproxy.config.client_token import ClientTokenFileError, client_token_for
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.local.build import LocalSides, build_local_side
from aws_localproxy.local.destination import DestinationSide
from aws_localproxy.local.outcome import Outcome
from aws_localproxy.local.source import SourceSide
from aws_localproxy.local.stdio import StdioEnd
from aws_localproxy.metrics.snapshot import TunnelMetrics, snapshot
from aws_localproxy.protocol.constants import MAX_WEBSOCKET_FRAME_SIZE, Mode
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.scheduler import OutboundSettings
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.proxy.stdio_exit import end_after_stdio
from aws_localproxy.proxy.tunnel_events import ClosedTunnel, ConnectedTunnel
from aws_localproxy.upstream.connector import EXIT_FAILURE, RetryPolicy, TunnelConnector
from aws_localproxy.upstream.link import display_url, tunnel_client_factory, websocket_endpoint
from aws_localproxy.upstream.masking import SLOW_MASKING_WARNING, masker_in_use
from aws_localproxy.upstream.websocket import CloseOutcome

if TYPE_CHECKING:
    from aws_localproxy.metrics.prometheus import MetricsPageService

__all__ = ["LocalProxyService", "ConnectedTunnel", "ClosedTunnel", "run_proxy"]

#: Seconds a stopping proxy waits for the resets of its open connections (and
#: the bytes queued before them) to be written to the WebSocket before it
#: closes it anyway; Autobahn's close handshake (2 s) comes on top, so a stop
#: takes at most about 5 s even on a dead WebSocket.
STOP_FLUSH_TIMEOUT = 3.0


class LocalProxyService(MultiService):
    """
    A source or destination local proxy, embeddable in any Twisted application.

    L{connected} and L{when_finished} are properties that return a new
    Deferred on each access, so any number of callers can wait on them.

    Besides the endpoints its L{ProxyConfig} names, an application can serve
    a destination's service ID from a protocol factory in the same process
    (C{destination_factories}: no TCP port), connect it with any client
    endpoint (C{destination_endpoints}), or make a source's service ID accept
    on any server endpoint (C{source_endpoints}); those service IDs need no
    entry in C{config.service_map}.

    With C{config.metrics_port}, the metrics page is a child service (named
    C{"metrics"}), started once the proxy is connecting and stopped with it.
    """

    log = Logger()

    def __init__(
        self,
        config: ProxyConfig,
        reactor: Any = None,
        *,
        on_secret: Optional[Callable[[str], None]] = None,
        destination_factories: Optional[Mapping[str, IProtocolFactory]] = None,
        destination_endpoints: Optional[Mapping[str, IStreamClientEndpoint]] = None,
        source_endpoints: Optional[Mapping[str, IStreamServerEndpoint]] = None,
        on_connected: Optional[Callable[[ConnectedTunnel], None]] = None,
        on_closed: Optional[Callable[[ClosedTunnel], None]] = None,
    ) -> None:
        """
        @param on_secret: called with every secret the service makes up
            itself (a generated client token) before it is sent anywhere;
            the console script redacts them from the log with it.
        @param destination_factories: destination only: service ID -> the
            C{IProtocolFactory} that answers its connections in this process.
        @param destination_endpoints: destination only: service ID -> the
            C{IStreamClientEndpoint} its connections are made with.
        @param source_endpoints: source only: service ID -> the
            C{IStreamServerEndpoint} it accepts connections on.
        @param on_connected: called with a L{ConnectedTunnel} each time a
            session has its service IDs (the first one and every reconnect).
        @param on_closed: called with a L{ClosedTunnel} each time an open
            session ends.
        """
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.config = config
        self._reactor = reactor
        self._connected = Outcome[ConnectedTunnel]()
        self._finished_with = Outcome[int]()
        self._connector: Optional[TunnelConnector] = None
        self._local: Optional[LocalSides] = None
        self.tunnel: Optional[Tunnel] = None
        self.inbound = InboundFlow(reactor.seconds)
        self._on_secret = on_secret
        self._on_connected = on_connected
        self._on_closed = on_closed
        self._last_connected: Optional[ConnectedTunnel] = None
        given_destinations = dict(destination_endpoints or {})
        for service_id, factory in (destination_factories or {}).items():
            from aws_localproxy.local.inprocess import FactoryEndpoint

            given_destinations[service_id] = FactoryEndpoint(reactor, factory)
        self._destination_endpoints = given_destinations
        self._source_endpoints = dict(source_endpoints or {})
        if config.mode is Mode.SOURCE and given_destinations:
            raise ValueError("destination factories and endpoints need a destination local proxy")
        if config.mode is Mode.DESTINATION and self._source_endpoints:
            raise ValueError("source endpoints need a source local proxy")
        if config.stdio and self._source_endpoints:
            raise ValueError("source endpoints cannot be used with stdio")
        #: The client token sent on every connect (set by L{startService}).
        self.client_token: Optional[str] = None
        self._metrics_registry: Optional[Any] = None
        self._metrics_page: Optional[MetricsPageService] = None
        if config.metrics_port is not None:
            from aws_localproxy.metrics.prometheus import MetricsPageService

            self._metrics_page = MetricsPageService(
                reactor,
                self.metrics_registry,
                config.metrics_port,
                config.metrics_address,
                on_failure=self._fatal,
            )
            self._metrics_page.setServiceParent(self)

    # -- IService -----------------------------------------------------------------------

    def startService(self) -> None:
        # Service's, not MultiService's: the children (the metrics page)
        # start at the end, once the proxy is wired and connecting.
        Service.startService(self)
        config = self.config
        settings = config.settings
        self.log.info("Starting proxy in {mode} mode", mode=config.mode.value)
        # The masker the WebSocket will call, not Autobahn's USES_NVX (which
        # an Autobahn without NVX masking does not even define).
        if masker_in_use() != "nvx":
            for line in SLOW_MASKING_WARNING:
                self.log.warn("{line}", line=line)
        try:
            self.client_token = client_token_for(
                config.client_token, config.client_token_file, self._on_secret
            )
        except ClientTokenFileError as error:
            self.log.critical("{error}", error=str(error))
            self._finished(EXIT_FAILURE)
            return
        # The side's entry points reach the tunnel built just after it.
        local = self._local = build_local_side(
            self._reactor,
            config,
            self.inbound,
            lambda: tunnel,
            on_fatal=self._fatal,
            on_stdio_end=self._stdio_ended,
            source_endpoints=self._source_endpoints,
            destination_endpoints=self._destination_endpoints,
        )
        tunnel = self.tunnel = Tunnel(
            config.mode,
            local,
            service_map=self._service_map(),
            peer_version=config.peer_version,
            lookup_endpoints=_lookup(config),
            limits=settings.limits,
            max_active_connections=settings.tcp_max_active_connections,
            # Each session's scheduler is built from these (one per WebSocket).
            outbound=OutboundSettings(
                clock=self._reactor,
                lane_limit=settings.ws_write_buffer_size,
                frame_limit=MAX_WEBSOCKET_FRAME_SIZE,
            ),
            inbound=self.inbound,
        )
        if isinstance(local, SourceSide):
            tunnel.waiting_may_start = local.offer_waiting
        try:
            endpoint = websocket_endpoint(self._reactor, config)
        except Exception as error:
            self.log.critical("{error}", error=str(error))
            self._finished(EXIT_FAILURE)
            return
        self._connector = TunnelConnector(
            self._reactor,
            endpoint,
            lambda connector: tunnel_client_factory(
                self._reactor, config, connector, self.client_token
            ),
            self.tunnel,
            display_url=display_url(config),
            retries=RetryPolicy(
                retry_count=settings.ws_connect_retry_count,
                retry_delay=settings.ws_retry_delay_ms / 1000,
                reconnect_on_data_error=settings.ws_reconnect_on_data_error,
            ),
            on_ready=self._ready,
            on_closed=self._session_closed,
        )
        self._connector.finished.addBoth(self._finished)
        self._connector.start()
        for child in self:
            child.startService()

    def stopService(self) -> Deferred[None]:
        # MultiService's: not running any more, the children stopped.
        waits: List[Deferred[Any]] = [super().stopService()]
        if self._connector is not None:
            # An open session resets every connection first, so the peer closes
            # its side even through a service that does not reset streams; the
            # session's end (when the WebSocket closes) ends the tunnel's.
            waits.append(self._connector.stop(STOP_FLUSH_TIMEOUT))
        if self._local is not None:
            waits.append(maybeDeferred(self._local.stop))
        if self.tunnel is not None and not self.tunnel.session_up:
            self.tunnel.session_ended()
        from twisted.internet.defer import gatherResults

        return gatherResults(waits).addCallback(lambda _: None)

    # -- public helpers -----------------------------------------------------------------

    def metrics(self) -> TunnelMetrics:
        """What the proxy carried so far and its state now (a frozen snapshot)."""
        return snapshot(self.config.mode, self.tunnel, self._connector, self.inbound)

    @property
    def metrics_registry(self) -> Any:
        """
        This proxy's own Prometheus C{CollectorRegistry} (what ``--metrics-port``
        serves), built on first use: a proxy that exports nothing does not load
        C{prometheus_client}.
        """
        if self._metrics_registry is None:
            from aws_localproxy.metrics.prometheus import registry_for

            self._metrics_registry = registry_for(self.metrics)
        return self._metrics_registry

    @property
    def metrics_address(self) -> Deferred[IAddress]:
        """
        The address the metrics listener is bound to (fires once it listens;
        never without C{config.metrics_port}).
        """
        if self._metrics_page is None:
            return Deferred()
        return self._metrics_page.address

    @property
    def connected(self) -> Deferred[ConnectedTunnel]:
        """
        Fires with a L{ConnectedTunnel} when the first session has its service
        IDs (a source is then about to listen: L{listening_port} gives the
        ports); fails if the proxy ends before that.
        """
        return self._connected.wait()

    @property
    def when_finished(self) -> Deferred[int]:
        """
        Fires with the exit code of the proxy: 0 when the service closed the
        tunnel or the proxy was stopped; 1 for a fatal error, a rejected
        handshake, or connect retries used up.
        """
        return self._finished_with.wait()

    def listening_port(self, service_id: str) -> Deferred[int]:
        """
        The bound port of a source's listener for C{service_id} (fires once it
        listens); fails with C{ValueError} for a listener without a port (a
        Unix socket: see L{listening_address}).
        """
        if self._source is None:
            raise RuntimeError("only a running source local proxy listens")
        return self._source.listening_port(service_id)

    def listening_address(self, service_id: str) -> Deferred[IAddress]:
        """
        The bound address of a source's listener for C{service_id} (fires once
        it listens): an C{IPv4Address}/C{IPv6Address}, a C{UNIXAddress}, or
        whatever the listening endpoint reports.
        """
        if self._source is None:
            raise RuntimeError("only a running source local proxy listens")
        return self._source.listening_address(service_id)

    def bound_ports(self) -> Mapping[str, int]:
        """Service ID -> port of every listener open now (source only)."""
        return self._source.bound_ports() if self._source is not None else {}

    @property
    def _source(self) -> Optional[SourceSide]:
        """The local side, if it is a source's listeners."""
        return self._local if isinstance(self._local, SourceSide) else None

    # -- wiring -------------------------------------------------------------------------

    def _service_map(self) -> Mapping[str, str]:
        """The configured mapping plus the service IDs the application serves itself."""
        mapping = dict(self.config.service_map)
        given: Mapping[str, Any] = {**self._destination_endpoints, **self._source_endpoints}
        for service_id, endpoint in given.items():
            mapping[service_id] = repr(endpoint)
        return mapping

    def _ready(self, tunnel: Tunnel) -> None:
        connector = self._connector
        protocol = connector.protocol if connector is not None else None
        subprotocol = (protocol.websocket_protocol_in_use if protocol is not None else "") or ""
        connected = ConnectedTunnel(
            subprotocol,
            tunnel.service_ids,
            tunnel.endpoints,
            session=connector.sessions if connector is not None else 1,
        )
        self._last_connected = connected
        self._connected.succeed(connected)
        if self._on_connected is not None:
            try:
                self._on_connected(connected)
            except Exception:
                self.log.failure("The on_connected hook failed")

    def _session_closed(self, outcome: CloseOutcome) -> None:
        connected, self._last_connected = self._last_connected, None
        if self._on_closed is None:
            return
        connector = self._connector
        closed = ClosedTunnel(
            subprotocol=connected.subprotocol if connected is not None else "",
            service_ids=connected.service_ids if connected is not None else (),
            reason=outcome.reason,
            code=outcome.code,
            closed_by_service=outcome.closed_by_service,
            session=connector.sessions if connector is not None else 0,
        )
        self._on_closed(closed)

    def _stdio_ended(self, end: StdioEnd) -> None:
        # Not from inside the tunnel's own call that closed the connection.
        self._reactor.callLater(0, self._finish_stdio, end)

    def _finish_stdio(self, end: StdioEnd) -> None:
        if self._connector is not None and self.tunnel is not None:
            end_after_stdio(end, self.tunnel.scheduler, self._connector, self._reactor)

    def _fatal(self, error: BaseException) -> None:
        if self._connector is not None:
            self._connector.fail(error)

    def _finished(self, code: Any) -> Any:
        if not isinstance(code, int):
            self.log.failure("The local proxy failed", code)
            code = EXIT_FAILURE
        if self._local is not None and not isinstance(self._local, DestinationSide):
            # (A destination's connects still under way end with the session.)
            self._local.stop()
        self._connected.fail(RuntimeError(f"the local proxy ended (exit code {code})"))
        self._finished_with.succeed(code)
        return None


def _lookup(config: ProxyConfig) -> Any:
    if not config.config_files:
        return None
    from aws_localproxy.config.config_dir import make_lookup

    return make_lookup(config.config_files)


def run_proxy(
    reactor: Any, config: ProxyConfig, on_secret: Optional[Callable[[str], None]] = None
) -> Deferred[int]:
    """
    Run one local proxy until it ends; fires with the exit code.

    SIGINT and SIGTERM stop it cleanly (local connections closed, a close frame
    sent) before the reactor stops.  C{on_secret}: see L{LocalProxyService}.
    """
    service = LocalProxyService(config, reactor, on_secret=on_secret)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    return service.when_finished
