"""Tests for aws_localproxy.upstream.link: the endpoint and WebSocket factory a proxy reaches the service with."""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings import Settings
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.upstream.link import display_url, tunnel_client_factory, websocket_endpoint
from aws_localproxy.upstream.tls_layer import BatchingTLSEndpoint


def config(**changes: Any) -> ProxyConfig:
    values: dict[str, Any] = dict(
        mode=Mode.SOURCE,
        access_token="secret-access-token",
        endpoint_host="data.tunneling.iot.us-east-1.amazonaws.com",
        service_map={"SSH": "5555"},
    )
    values.update(changes)
    return ProxyConfig(**values)


class DisplayURLTests(SynchronousTestCase):
    def test_scheme_host_port(self) -> None:
        self.assertEqual(
            display_url(config()), "wss://data.tunneling.iot.us-east-1.amazonaws.com:443"
        )
        self.assertEqual(
            display_url(config(endpoint_host="127.0.0.1", endpoint_port=8080, use_tls=False)),
            "ws://127.0.0.1:8080",
        )


class EndpointTests(SynchronousTestCase):
    def test_plain_websocket_is_direct_tcp(self) -> None:
        endpoint = websocket_endpoint(
            MemoryReactorClock(), config(endpoint_host="127.0.0.1", use_tls=False)
        )
        self.assertIsInstance(endpoint, HostnameEndpoint)

    def test_tls_wraps_the_connection(self) -> None:
        endpoint = websocket_endpoint(MemoryReactorClock(), config())
        self.assertIsInstance(endpoint, BatchingTLSEndpoint)
        assert isinstance(endpoint, BatchingTLSEndpoint)
        self.assertIsInstance(endpoint.wrapped, HostnameEndpoint)

    def test_web_proxy_is_logged(self) -> None:
        with capturedLogs() as events:
            websocket_endpoint(MemoryReactorClock(), config(web_proxy="http://127.0.0.1:3128"))
        self.assertTrue(any("via the proxy" in e["log_format"] for e in events))


class FactoryTests(SynchronousTestCase):
    def test_settings_reach_the_factory(self) -> None:
        settings = dataclasses.replace(Settings(), ws_ping_period_ms=5000)
        factory = tunnel_client_factory(
            MemoryReactorClock(), config(settings=settings), events=None, client_token="c" * 32
        )
        self.assertEqual(factory.autoPingInterval, 5.0)
        self.assertEqual(factory.request_headers["client-token"], "c" * 32)
        self.assertEqual(
            factory.display_url, "wss://data.tunneling.iot.us-east-1.amazonaws.com:443"
        )
        self.assertIsNone(factory.read_buffer_size)  # the default: Autobahn's own
        factory = tunnel_client_factory(
            MemoryReactorClock(),
            config(settings=dataclasses.replace(Settings(), ws_read_buffer_size=4096)),
            events=None,
            client_token=None,
        )
        self.assertEqual(factory.read_buffer_size, 4096)
        self.assertNotIn("client-token", factory.request_headers)
