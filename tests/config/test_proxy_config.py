"""
Tests for aws_localproxy.config.proxy_config: a ProxyConfig built in code gets the same
checks as one the option parser builds, and says where to connect and listen.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings import Settings
from aws_localproxy.protocol.constants import Mode

TOKEN = "tok-" + "a" * 40


def config(**changes: Any) -> ProxyConfig:
    values: dict[str, Any] = dict(
        mode=Mode.SOURCE, access_token=TOKEN, endpoint_host="data.example"
    )
    values.update(changes)
    return ProxyConfig(**values)


class InvalidConfigTests(SynchronousTestCase):
    def test_each_rule(self) -> None:
        for changes, message in [
            ({"access_token": ""}, "an access token is required"),
            ({"endpoint_host": ""}, "a proxy endpoint host is required"),
            ({"endpoint_port": 0}, "invalid proxy endpoint port: 0"),
            ({"endpoint_port": 65536}, "invalid proxy endpoint port: 65536"),
            ({"verbosity": 7}, "verbosity must be 0..6, not 7"),
            ({"stdio": True, "mode": Mode.DESTINATION}, "stdio works in source mode only"),
            ({"stdio": True, "service_map": {"": "5555"}}, "stdio has no -s/-d mapping"),
            ({"stdio_service_id": "ssh"}, "stdio_service_id needs stdio"),
            ({"metrics_port": 65536}, "invalid metrics port: 65536"),
            ({"metrics_address": ""}, "a metrics address is required"),
        ]:
            e = self.assertRaises(ValueError, config, **changes)
            self.assertEqual(str(e), message)

    def test_valid_edges(self) -> None:
        config(endpoint_port=65535, verbosity=0, metrics_port=0)
        config(stdio=True, stdio_service_id="ssh")

    def test_secrets_not_in_repr(self) -> None:
        text = repr(config(client_token="c" * 32, web_proxy="http://user:pw@proxy:3128"))
        for secret in (TOKEN, "c" * 32, "pw@proxy"):
            self.assertNotIn(secret, text)


class AddressTests(SynchronousTestCase):
    def test_websocket_url(self) -> None:
        self.assertEqual(
            config().websocket_url, "wss://data.example/tunnel?local-proxy-mode=source"
        )
        self.assertEqual(
            config(mode=Mode.DESTINATION, endpoint_host="::1", endpoint_port=8443).websocket_url,
            "wss://[::1]:8443/tunnel?local-proxy-mode=destination",
        )
        self.assertEqual(
            config(use_tls=False, endpoint_port=80).websocket_url,
            "ws://data.example/tunnel?local-proxy-mode=source",
        )
        self.assertEqual(
            config(use_tls=False, endpoint_port=443).websocket_url,
            "ws://data.example:443/tunnel?local-proxy-mode=source",
        )

    def test_listen_address(self) -> None:
        self.assertEqual(config().listen_address, "localhost")
        self.assertEqual(
            config(settings=Settings(default_bind_address="0.0.0.0")).listen_address, "0.0.0.0"
        )
        self.assertEqual(config(bind_address="::1").listen_address, "::1")
