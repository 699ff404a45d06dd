# -*- test-case-name: tests.local.test_build -*-
"""
Which local side a proxy has, built from its configuration: standard input
and output (C{--stdio}), a source's listeners, or a destination's
connectors.

The tunnel and its local side need each other: the tunnel is built with its
side, and the side calls the tunnel's entry points for local connections.
So the side is built first, with entry points that reach the tunnel through
C{tunnel}, a callable that returns it once it is built.  Nothing calls them
before: a side listens, or opens standard input and output, only once the
tunnel has its service IDs.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Union

from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.local.destination import DEFAULT_DESTINATION_HOST, DestinationSide
from aws_localproxy.local.source import SourceSide
from aws_localproxy.local.stdio import StdioEnd, StdioSide
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import LocalConnection, TunnelConnection, Wait

__all__ = ["TunnelEntry", "LocalSides", "build_local_side"]

#: The local side of a proxy: one of the three.
LocalSides = Union[SourceSide, DestinationSide, StdioSide]


class TunnelEntry(Protocol):
    """What a local side calls on the tunnel (C{Tunnel}'s entry points for local connections)."""

    @property
    def ready(self) -> bool:
        """The session has its service IDs."""

    def local_connection_offered(
        self, service_id: str, local: LocalConnection
    ) -> TunnelConnection | Wait | None:
        """A source's new (or waiting) connection: start it, hold it, or refuse it."""

    def local_connection_accepted(
        self, service_id: str, local: LocalConnection
    ) -> TunnelConnection | None:
        """A connection that cannot wait (C{--stdio}): start it or refuse it."""

    def local_connection_given_up(self, service_id: str, wait: Wait) -> None:
        """A waiting connection was refused."""


def build_local_side(
    reactor: Any,
    config: ProxyConfig,
    inbound: InboundFlow,
    tunnel: Callable[[], TunnelEntry],
    *,
    on_fatal: Callable[[BaseException], None],
    on_stdio_end: Callable[[StdioEnd], None],
    source_endpoints: Mapping[str, IStreamServerEndpoint],
    destination_endpoints: Mapping[str, IStreamClientEndpoint],
) -> LocalSides:
    """
    The local side C{config} asks for.

    @param tunnel: returns the tunnel, once it is built (see the module's
        docstring); the side's entry points reach it through this.
    @param on_fatal: a source told of an error that ends the proxy (it
        cannot listen).
    @param on_stdio_end: C{--stdio}: told once how the connection ended.
    @param source_endpoints: source: service ID -> the server endpoint an
        embedding application gave for it.
    @param destination_endpoints: destination: service ID -> the client
        endpoint an embedding application gave for it.
    """
    settings = config.settings
    if config.stdio:
        return StdioSide(
            reactor,
            inbound,
            service_id=config.stdio_service_id,
            accept=lambda service_id, local: tunnel().local_connection_accepted(service_id, local),
            session_ready=lambda: tunnel().ready,
            on_end=on_stdio_end,
            sockets=settings.local_sockets,
        )
    if config.mode is Mode.SOURCE:
        return SourceSide(
            reactor,
            inbound,
            config.listen_address,
            accept=lambda service_id, local: tunnel().local_connection_offered(service_id, local),
            given_up=lambda service_id, wait: tunnel().local_connection_given_up(service_id, wait),
            on_fatal=on_fatal,
            server_endpoints=source_endpoints,
            sockets=settings.local_sockets,
            # A connection waits for a reconnect at least as long as one
            # connect attempt may take, plus the delay before the next.
            hold_timeout=(settings.ws_open_handshake_timeout_ms + settings.ws_retry_delay_ms)
            / 1000,
        )
    return DestinationSide(
        reactor,
        inbound,
        default_host=config.bind_address or DEFAULT_DESTINATION_HOST,
        pending_limit=settings.tcp_write_buffer_size,
        client_endpoints=destination_endpoints,
        sockets=settings.local_sockets,
    )
