# -*- test-case-name: tests.upstream.test_link -*-
"""
How a local proxy reaches the AWS tunneling service, from its L{ProxyConfig}.

The endpoint of one connect attempt (direct TCP or through the web proxy,
then TLS with the configured CAs and host check) and the WebSocket factory
with the ``websocket.*`` settings.  L{aws_localproxy.proxy.service} builds the
connector with them; L{aws_localproxy.upstream.connector} decides when to use them.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings import Settings
from aws_localproxy.upstream.tls_layer import wrap_client_tls
from aws_localproxy.upstream.tls_options import service_tls_options, trust_root
from aws_localproxy.upstream.webproxy import service_endpoint
from aws_localproxy.upstream.websocket import SessionEvents, TunnelClientFactory

__all__ = ["display_url", "websocket_endpoint", "tunnel_client_factory"]

log = Logger()


def display_url(config: ProxyConfig) -> str:
    """The service's URL as logs show it: scheme, host and port (no path, no token)."""
    scheme = "wss" if config.use_tls else "ws"
    return f"{scheme}://{config.endpoint_host}:{config.endpoint_port}"


def websocket_endpoint(reactor: Any, config: ProxyConfig) -> IStreamClientEndpoint:
    """
    The endpoint one connect attempt uses: TCP, or CONNECT through the web
    proxy, then TLS unless the URL is ``ws://``.  Raises for a web proxy or
    CA directory that cannot be used.
    """
    if config.web_proxy:
        log.info(
            "Found Web proxy information in the environment variables, "
            "will use it to connect via the proxy."
        )
    raw = service_endpoint(
        reactor,
        config.web_proxy,
        config.no_proxy,
        config.endpoint_host,
        config.endpoint_port,
        trust_root=trust_root(config.capath),
        verify_tls=config.verify_tls,
        timeout=max(config.settings.ws_open_handshake_timeout_ms / 1000, 1),
    )
    if not config.use_tls:
        return raw
    tls = service_tls_options(config.endpoint_host, config.capath, config.verify_tls)
    return wrap_client_tls(tls, raw)


def tunnel_client_factory(
    reactor: Any, config: ProxyConfig, events: SessionEvents, client_token: Optional[str]
) -> TunnelClientFactory:
    """The WebSocket factory of every connect attempt, reporting to C{events} (the connector)."""
    settings = config.settings
    return TunnelClientFactory(
        reactor,
        url=config.websocket_url,
        display_url=display_url(config),
        events=events,
        access_token=config.access_token,
        client_token=client_token,
        subprotocol=settings.ws_subprotocol,
        ping_period=settings.ws_ping_period_ms / 1000,
        pong_timeout=settings.ws_pong_timeout_ms / 1000,
        open_handshake_timeout=settings.ws_open_handshake_timeout_ms / 1000,
        read_buffer_size=(
            None
            if settings.ws_read_buffer_size == Settings().ws_read_buffer_size
            else settings.ws_read_buffer_size
        ),
        socket_buffer_size=settings.service_socket_buffer_size,
    )
