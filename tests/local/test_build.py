"""
L{aws_localproxy.local.build}: the local side a configuration asks for, its
entry points reaching the tunnel that is built after it.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings import Settings
from aws_localproxy.local.build import TunnelEntry, build_local_side
from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.local.destination import DEFAULT_DESTINATION_HOST, DestinationSide
from aws_localproxy.local.source import SourceSide
from aws_localproxy.local.stdio import StdioSide
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import LocalConnection, TunnelConnection, Wait
from tests.fakes.local import RecordingTunnelConnection
from tests.fakes.transport import TCPLikeTransport


class RecordingTunnel:
    """The tunnel's entry points, recording what the local side asks."""

    def __init__(self) -> None:
        self.ready = True
        self.calls: List[Tuple[str, str]] = []
        self.answer: Optional[TunnelConnection] = RecordingTunnelConnection()

    def local_connection_offered(
        self, service_id: str, local: LocalConnection
    ) -> TunnelConnection | Wait | None:
        self.calls.append(("offered", service_id))
        return self.answer

    def local_connection_accepted(
        self, service_id: str, local: LocalConnection
    ) -> TunnelConnection | None:
        self.calls.append(("accepted", service_id))
        return self.answer

    def local_connection_given_up(self, service_id: str, wait: Wait) -> None:
        self.calls.append(("given up", service_id))


def config(mode: Mode = Mode.SOURCE, **kwargs: Any) -> ProxyConfig:
    return ProxyConfig(mode=mode, access_token="t" * 8, endpoint_host="127.0.0.1", **kwargs)


class BuildTests(SynchronousTestCase):
    def build(self, proxy_config: ProxyConfig, **kwargs: Any) -> Any:
        self.reactor = MemoryReactorClock()
        self.tunnel: Optional[TunnelEntry] = None
        self.fatal: List[BaseException] = []
        self.ended: List[Any] = []

        def tunnel() -> TunnelEntry:
            assert self.tunnel is not None, "the side reached the tunnel before it was built"
            return self.tunnel

        options: dict = dict(
            on_fatal=self.fatal.append,
            on_stdio_end=self.ended.append,
            source_endpoints={},
            destination_endpoints={},
        )
        options.update(kwargs)
        return build_local_side(self.reactor, proxy_config, InboundFlow(), tunnel, **options)

    def test_source(self) -> None:
        """A source listens on its bind address; a new connection is offered to the tunnel."""
        settings = Settings(ws_open_handshake_timeout_ms=4000, ws_retry_delay_ms=1500)
        side = self.build(config(bind_address="127.0.0.2", settings=settings))
        self.assertIsInstance(side, SourceSide)
        self.assertEqual(side.hold_timeout, 5.5)
        tunnel = self.tunnel = RecordingTunnel()
        side.services_ready({"ssh": "5555"})
        ((port, factory, _, interface),) = self.reactor.tcpServers
        self.assertEqual((port, interface), (5555, "127.0.0.2"))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(TCPLikeTransport())
        self.assertEqual(tunnel.calls, [("offered", "ssh")])
        self.assertIs(protocol.tunnel_connection, tunnel.answer)

    def test_source_gives_up_through_the_tunnel(self) -> None:
        """A connection held until the proxy stops is given up to the tunnel."""
        side = self.build(config())
        tunnel = self.tunnel = RecordingTunnel()
        tunnel.answer = Wait("a test")  # type: ignore[assignment]
        side.services_ready({"ssh": "5555"})
        protocol = self.reactor.tcpServers[0][1].buildProtocol(None)
        protocol.makeConnection(TCPLikeTransport())
        side.stop()
        self.assertEqual(tunnel.calls, [("offered", "ssh"), ("given up", "ssh")])

    def test_destination(self) -> None:
        side = self.build(config(Mode.DESTINATION, service_map={"ssh": "22"}))
        self.assertIsInstance(side, DestinationSide)
        self.assertEqual(side.default_host, DEFAULT_DESTINATION_HOST)
        side = self.build(
            config(Mode.DESTINATION, service_map={"ssh": "22"}, bind_address="10.0.0.5")
        )
        self.assertEqual(side.default_host, "10.0.0.5")

    def test_stdio(self) -> None:
        """C{--stdio}: its one connection is accepted (it cannot wait) by the tunnel."""
        built: List[LocalStreamProtocol] = []
        side = self.build(config(stdio=True, stdio_service_id="ssh"))
        self.assertIsInstance(side, StdioSide)
        tunnel = self.tunnel = RecordingTunnel()
        side._standard_io = lambda protocol, reactor: built.append(protocol)
        side.services_ready({"ssh": "0"})
        (protocol,) = built
        protocol.makeConnection(TCPLikeTransport())
        self.assertEqual(tunnel.calls, [("accepted", "ssh")])
        # Whether the session went first, when the connection ends, is the tunnel's.
        tunnel.ready = False
        protocol.close()
        protocol.connectionLost(None)
        (end,) = self.ended
        self.assertTrue(end.session_lost)
