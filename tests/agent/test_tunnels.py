"""The tunnel manager's decisions, with stand-in proxies (no sockets)."""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from aws_localproxy.agent.notification import TunnelNotification
from aws_localproxy.agent.tunnels import TunnelManager
from aws_localproxy.config.proxy_config import ProxyConfig
from aws_localproxy.config.settings import Settings
from aws_localproxy.protocol.constants import Mode


class FakeProxy:
    def __init__(self, config: ProxyConfig, reactor: Any) -> None:
        self.config = config
        self.running = False
        self.stopped = 0
        self._finished: Deferred[int] = Deferred()

    @property
    def when_finished(self) -> Deferred[int]:
        return self._finished

    def startService(self) -> None:
        self.running = True

    def stopService(self) -> None:
        self.running = False
        self.stopped += 1
        if not self._finished.called:
            self._finished.callback(0)

    def service_closed(self, code: int = 0) -> None:
        self._finished.callback(code)


def template(**changes: Any) -> ProxyConfig:
    values: dict[str, Any] = dict(
        mode=Mode.DESTINATION,
        access_token="placeholder",
        endpoint_host="data.tunneling.iot.us-east-1.amazonaws.com",
        service_map={"SSH": "22", "WEB": "127.0.0.1:80"},
        capath="/etc/ca",
    )
    values.update(changes)
    return ProxyConfig(**values)


def note(
    token: str = "token-1", services: Any = ("SSH",), region: str = "eu-west-1"
) -> TunnelNotification:
    return TunnelNotification(token, region, tuple(services))


class TunnelManagerTests(TestCase):
    def setUp(self) -> None:
        self.events: List[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.proxies: List[FakeProxy] = []
        self.secrets: List[str] = []

    def manager(self, **kwargs: Any) -> TunnelManager:
        def factory(config: ProxyConfig, reactor: Any) -> FakeProxy:
            proxy = FakeProxy(config, reactor)
            self.proxies.append(proxy)
            return proxy

        kwargs.setdefault("endpoint_from_region", True)
        return TunnelManager(
            MemoryReactorClock(),
            kwargs.pop("template", template()),
            proxy_factory=factory,
            on_secret=self.secrets.append,
            **kwargs,
        )

    def logged(self) -> str:
        return "\n".join(
            formatEvent(e) or "" for e in self.events if e["log_level"] >= LogLevel.info
        )

    def test_bad_arguments(self) -> None:
        """A source template or no tunnel at all is refused at construction."""
        with self.assertRaises(ValueError) as caught:
            self.manager(template=template(mode=Mode.SOURCE))
        self.assertEqual(str(caught.exception), "the agent's template must be a destination")
        with self.assertRaises(ValueError) as caught:
            self.manager(max_tunnels=0)
        self.assertEqual(str(caught.exception), "max_tunnels must be at least 1")

    def test_config_of_a_destination(self) -> None:
        manager = self.manager()
        running = manager.open(note(services=["WEB"]))
        assert running is not None
        config = self.proxies[0].config
        self.assertTrue(self.proxies[0].running)
        self.assertEqual(config.access_token, "token-1")
        self.assertEqual(config.mode, Mode.DESTINATION)
        self.assertEqual(dict(config.service_map), {"WEB": "127.0.0.1:80"})
        self.assertEqual(config.endpoint_host, "data.tunneling.iot.eu-west-1.amazonaws.com")
        self.assertEqual(config.capath, "/etc/ca")
        assert config.client_token is not None
        self.assertEqual(len(config.client_token), 64)
        self.assertEqual(self.secrets, ["token-1", config.client_token])
        self.assertNotIn("token-1", self.logged())
        self.assertNotIn(config.client_token, self.logged())

    def test_endpoint_override(self) -> None:
        manager = self.manager(
            template=template(endpoint_host="127.0.0.1", endpoint_port=4443),
            endpoint_from_region=False,
        )
        manager.open(note())
        self.assertEqual(
            (self.proxies[0].config.endpoint_host, self.proxies[0].config.endpoint_port),
            ("127.0.0.1", 4443),
        )

    def test_each_tunnel_its_own_client_token(self) -> None:
        manager = self.manager()
        manager.open(note("a"))
        manager.open(note("b"))
        self.assertNotEqual(
            self.proxies[0].config.client_token, self.proxies[1].config.client_token
        )

    def test_unmapped_service_refused(self) -> None:
        manager = self.manager()
        self.assertIsNone(manager.open(note(services=["SSH", "DB"])))
        self.assertEqual(self.proxies, [])
        self.assertIn(
            "Refused a tunnel for services SSH, DB: no local mapping for service ID DB (-d)",
            self.logged(),
        )

    def test_no_services_with_named_mapping_refused(self) -> None:
        self.assertIsNone(self.manager().open(note(services=[])))
        self.assertIn("names no service ID", self.logged())

    def test_v1_mapping(self) -> None:
        manager = self.manager(template=template(service_map={"": "22"}))
        manager.open(note(services=["SSH"]))
        self.assertEqual(dict(self.proxies[0].config.service_map), {"": "22"})
        self.assertIsNone(manager.open(note("t2", services=["A", "B"])))
        self.assertIn("a single endpoint without a service ID", self.logged())

    def test_config_dir_lookup(self) -> None:
        manager = self.manager(
            template=template(service_map={}, config_files=(("f", "SSH = 22\n"),)),
            lookup_endpoints=lambda ids: {"SSH": "2222"},
        )
        manager.open(note(services=["SSH"]))
        self.assertEqual(dict(self.proxies[0].config.service_map), {"SSH": "2222"})
        self.assertEqual(self.proxies[0].config.config_files, ())
        self.assertIsNone(manager.open(note("t2", services=["WEB"])))
        self.assertIn("no local mapping for service ID WEB (--config-dir)", self.logged())

    def test_cap(self) -> None:
        manager = self.manager(max_tunnels=2)
        manager.open(note("a"))
        manager.open(note("b"))
        self.assertIsNone(manager.open(note("c")))
        self.assertIn("2 tunnels are open, the most allowed (--max-tunnels)", self.logged())
        self.proxies[0].service_closed()
        self.assertIsNotNone(manager.open(note("c")))

    def test_repeated_notification_ignored(self) -> None:
        manager = self.manager()
        manager.open(note("a"))
        self.assertIsNone(manager.open(note("a")))
        self.assertEqual(len(self.proxies), 1)
        self.assertIn("Ignored a repeated notification for tunnel #1", self.logged())

    def test_end_cleans_up(self) -> None:
        manager = self.manager()
        manager.open(note("a"))
        manager.open(note("b"))
        self.proxies[0].service_closed(0)
        self.assertEqual([t.number for t in manager.tunnels], [2])
        self.assertEqual(manager.ended, [(1, 0)])
        self.assertEqual(self.proxies[0].stopped, 1)
        self.assertIn("Tunnel #1 ended (exit code 0); 1 open", self.logged())

    def test_stop_stops_all(self) -> None:
        manager = self.manager()
        manager.open(note("a"))
        manager.open(note("b"))
        done = manager.stop()
        self.assertTrue(done.called)
        self.assertEqual([p.running for p in self.proxies], [False, False])
        self.assertEqual(manager.tunnels, [])
        self.assertIsNone(manager.open(note("c")))

    def test_source_template_refused(self) -> None:
        self.assertRaises(ValueError, self.manager, template=template(mode=Mode.SOURCE))

    def test_bad_region_endpoint(self) -> None:
        manager = self.manager(template=template(settings=Settings(endpoint_format="%s:notaport")))
        self.assertIsNone(manager.open(note()))
        self.assertIn(
            "Refused a tunnel for services SSH: Invalid endpoint specified", self.logged()
        )


class BrokenProxy(FakeProxy):
    def startService(self) -> None:
        raise RuntimeError("cannot start")


class StartFailureTests(TestCase):
    def test_a_proxy_that_cannot_start_is_forgotten(self) -> None:
        manager = TunnelManager(
            MemoryReactorClock(),
            template(),
            endpoint_from_region=True,
            max_tunnels=1,
            proxy_factory=BrokenProxy,
        )
        self.assertIsNone(manager.open(note("a")))
        self.assertEqual(manager.tunnels, [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
