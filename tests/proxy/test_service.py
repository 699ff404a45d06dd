"""
L{aws_localproxy.proxy.service.LocalProxyService}'s wiring, on a
MemoryReactorClock: the metrics page is a child service started and stopped
with the proxy.  (Whole proxies over real sockets: tests.e2e.test_proxy and
tests.test_embedding.)
"""

from __future__ import annotations

import os
from typing import Any, List

from twisted.application.service import IServiceCollection
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.metrics.prometheus import MetricsPageService
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.proxy.service import LocalProxyService


def source_config(**kwargs: Any) -> ProxyConfig:
    kwargs.setdefault("client_token", "c" * 40)
    return ProxyConfig(mode=Mode.SOURCE, access_token="t" * 8, endpoint_host="127.0.0.1", **kwargs)


class MetricsPageChildTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def test_child_started_once_connecting(self) -> None:
        """The page listens once the proxy is connecting, as the log says in order."""
        proxy = LocalProxyService(source_config(metrics_port=0), self.reactor)
        self.assertTrue(IServiceCollection.providedBy(proxy))
        page = proxy.getServiceNamed("metrics")
        self.assertIsInstance(page, MetricsPageService)
        self.assertFalse(page.running)
        with capturedLogs() as events:
            proxy.startService()
        self.assertTrue(page.running)
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.assertEqual(
            [
                formatEvent(event).split(" on ")[0]
                for event in events
                if event["log_level"] == LogLevel.info
            ],
            [
                "Starting proxy in source mode",
                "Attempting to establish web socket connection with endpoint wss://127.0.0.1:443",
                "Serving metrics",
            ],
        )
        self.assertEqual(self.successResultOf(proxy.metrics_address).port, 0)
        self.successResultOf(proxy.stopService())
        self.assertFalse(page.running)

    def test_no_page_without_a_port(self) -> None:
        proxy = LocalProxyService(source_config(), self.reactor)
        self.assertEqual(list(proxy), [])
        proxy.startService()
        self.assertEqual(self.reactor.tcpServers, [])
        self.assertNoResult(proxy.metrics_address)
        self.successResultOf(proxy.stopService())

    def test_no_page_when_the_proxy_cannot_start(self) -> None:
        """A proxy that ends before connecting (its client token file fails) serves no page."""
        path = os.path.join(self.mktemp(), "missing", "client-token")
        proxy = LocalProxyService(
            source_config(metrics_port=0, client_token=None, client_token_file=path),
            self.reactor,
        )
        codes: List[int] = []
        proxy.when_finished.addCallback(codes.append)
        proxy.startService()
        self.assertEqual(codes, [1])
        self.assertFalse(proxy.getServiceNamed("metrics").running)
        self.assertEqual(self.reactor.tcpServers, [])
        self.successResultOf(proxy.stopService())
