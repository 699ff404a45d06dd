"""
The start-up check of aws_localproxy.proxy.service on the masker the
WebSocket will use: a proxy whose uploads will be masked in pure Python
says so, loudly, as it starts.
"""

from __future__ import annotations

from typing import Any, List

import autobahn.websocket
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.proxy.service import LocalProxyService
from aws_localproxy.upstream import masking


class SlowMaskingWarningTests(SynchronousTestCase):
    def start(self) -> List[str]:
        """Start (and stop) a source proxy on a memory reactor; its warning lines."""
        events: List[Any] = []
        self.patch(LocalProxyService, "log", Logger(observer=events.append))
        proxy = LocalProxyService(
            ProxyConfig(mode=Mode.SOURCE, access_token="t" * 8, endpoint_host="127.0.0.1"),
            MemoryReactorClock(),
        )
        proxy.startService()
        proxy.stopService()
        return [formatEvent(event) for event in events if event["log_level"] is LogLevel.warn]

    def test_python_masking_is_announced(self) -> None:
        """
        The masker the WebSocket calls is the pure-Python one: the box is
        logged, whatever Autobahn's own USES_NVX says (here it says NVX).
        """
        if hasattr(autobahn.websocket, "USES_NVX"):  # Autobahn 24.4.2 has no such name
            self.patch(autobahn.websocket, "USES_NVX", True)
        self.patch(masking, "_nvx", None)
        self.assertEqual(self.start(), list(masking.SLOW_MASKING_WARNING))

    def test_nvx_masking_is_not(self) -> None:
        if masking.masker_in_use() != "nvx":
            self.patch(masking, "_nvx", object())  # stands for NVX: only its presence is read
        self.assertEqual(self.start(), [])
