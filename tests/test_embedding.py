"""
The embedding API: destination service IDs served by in-process factories
(L{FactoryEndpoint}), sources on any server endpoint, the connected/closed
hooks, and L{LocalTunnelService} run next to an application.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

import aws_localproxy
from aws_localproxy import ClosedTunnel, ConnectedTunnel, FactoryEndpoint, LocalProxyService
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.testing import LocalTunnelService
from tests.support.e2e import Client, E2ETestCase, Echo, pattern_chunk
from tests.support.helpers import wait_until


class Refuse(Factory):
    def buildProtocol(self, addr: Any) -> None:  # type: ignore[override]
        return None


class PublicNamesTests(TestCase):
    def test_all_is_the_exports(self) -> None:
        """C{__all__} (written out for pydoctor) names every lazy export and nothing else."""
        exports = ["__version__", *aws_localproxy._EXPORTS]
        self.assertEqual(sorted(aws_localproxy.__all__), sorted(exports))
        for name in aws_localproxy.__all__:
            self.assertTrue(hasattr(aws_localproxy, name), name)


class FactoryEndpointTests(TestCase):
    @inlineCallbacks
    def test_connects_to_a_new_protocol_of_the_factory(self) -> Any:
        served: List[Echo] = []

        def make() -> Echo:
            protocol = Echo()
            served.append(protocol)
            return protocol

        endpoint = FactoryEndpoint(reactor, Factory.forProtocol(make))
        client = yield connectProtocol(endpoint, Client())
        data = b"".join(pattern_chunk(offset, 65536) for offset in range(0, 1 << 20, 65536))
        client.transport.write(data)
        received = yield client.wait_for(len(data))
        self.assertEqual(received, data)
        self.assertEqual(len(served), 1)
        client.transport.loseConnection()
        yield client.closed

    def test_refused_by_the_factory(self) -> Any:
        d = FactoryEndpoint(reactor, Refuse()).connect(Factory.forProtocol(Client))
        return self.assertFailure(d, ConnectError)


class EmbeddedProxyTests(E2ETestCase):
    def embedded(self, mode: Mode, token: str, **embedding: Any) -> LocalProxyService:
        service = self.tunnel_service
        config = ProxyConfig(
            mode=mode,
            access_token=token,
            endpoint_host=service.host,
            endpoint_port=service.port,
            capath=service.capath,
        )
        proxy = LocalProxyService(config, reactor, **embedding)
        proxy.startService()
        self.addCleanup(lambda: proxy.stopService() if proxy.running else None)
        return proxy

    @inlineCallbacks
    def test_factory_destination_and_unix_source_with_hooks(self) -> Any:
        directory = tempfile.mkdtemp(prefix="lp-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "app.sock")
        tunnel_id, source_token, destination_token = self.tunnel_service.open_tunnel(["APP"])
        connected: List[ConnectedTunnel] = []
        closed: List[ClosedTunnel] = []
        destination = self.embedded(
            Mode.DESTINATION,
            destination_token,
            destination_factories={"APP": Factory.forProtocol(Echo)},
            on_connected=connected.append,
            on_closed=closed.append,
        )
        yield destination.connected
        source = self.embedded(
            Mode.SOURCE,
            source_token,
            source_endpoints={"APP": UNIXServerEndpoint(reactor, path)},
        )
        yield source.connected
        client = yield connectProtocol(UNIXClientEndpoint(reactor, path), Client())
        client.transport.write(b"no tcp port anywhere")
        self.assertEqual((yield client.wait_for(20)), b"no tcp port anywhere")
        self.assertEqual(len(connected), 1)
        self.assertEqual(connected[0].service_ids, ("APP",))
        self.assertEqual(connected[0].subprotocol, "aws.iot.securetunneling-3.0")
        self.assertEqual(connected[0].session, 1)

        # A dropped WebSocket: closed (not by the service), then connected again.
        self.tunnel_service.drop_connections(tunnel_id, "destination")
        yield wait_until(lambda: len(connected) == 2)
        self.assertEqual(len(closed), 1)
        self.assertFalse(closed[0].closed_by_service)
        self.assertEqual(closed[0].service_ids, ("APP",))
        self.assertEqual(closed[0].session, 1)
        self.assertEqual(connected[1].session, 2)

        # CloseTunnel: closed by the service, with its reason.
        self.tunnel_service.close_tunnel(tunnel_id)
        self.assertEqual((yield destination.when_finished), 0)
        self.assertEqual(len(closed), 2)
        self.assertTrue(closed[1].closed_by_service)
        self.assertEqual(closed[1].code, 1000)
        self.assertEqual(closed[1].reason, "Tunnel closed")

    def test_wrong_mode_is_refused(self) -> None:
        config = ProxyConfig(mode=Mode.SOURCE, access_token="t" * 8, endpoint_host="127.0.0.1")
        self.assertRaises(
            ValueError,
            LocalProxyService,
            config,
            reactor,
            destination_factories={"APP": Factory.forProtocol(Echo)},
        )
        config = ProxyConfig(mode=Mode.DESTINATION, access_token="t" * 8, endpoint_host="h")
        self.assertRaises(
            ValueError,
            LocalProxyService,
            config,
            reactor,
            source_endpoints={"APP": UNIXServerEndpoint(reactor, "/x")},
        )

    def test_public_api(self) -> None:
        self.assertIs(aws_localproxy.LocalProxyService, LocalProxyService)
        self.assertIn("FactoryEndpoint", dir(aws_localproxy))
        self.assertRaises(AttributeError, getattr, aws_localproxy, "nothing")


class LocalTunnelServiceTests(TestCase):
    @inlineCallbacks
    def test_runs_next_to_an_application(self) -> Any:
        service = LocalTunnelService(reactor, self.mktemp(), stop_reactor_on_failure=False)
        service.startService()
        running = yield service.ready
        self.assertEqual(running.host, "127.0.0.1")
        tunnel_id, _, _ = running.open_tunnel(["APP"])
        self.assertEqual(running.connection_state(tunnel_id, "source"), "DISCONNECTED")
        yield service.stopService()

    def test_failure_leaves_the_reactor_running(self) -> None:
        """An embedding application hears of the failure on ready; its reactor goes on."""

        class Running:
            running = True
            stops = 0

            def stop(self) -> None:
                self.stops += 1

        for stop_reactor, stops in ((False, 0), (True, 1)):
            fake = Running()
            service = LocalTunnelService(fake, None, stop_reactor_on_failure=stop_reactor)
            service.startService()
            self.failureResultOf(service.ready, ValueError)
            self.assertEqual(fake.stops, stops)
        self.flushLoggedErrors(ValueError)
