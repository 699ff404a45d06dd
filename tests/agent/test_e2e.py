"""
The device agent end to end: the local tunnel service notifies through
Debian's mosquitto, the agent starts destinations, sources carry bytes to
a local echo service.  All on 127.0.0.1 with ports the OS picks.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from aws_localproxy.agent.broker import parse_broker_url
from aws_localproxy.agent.notification import notify_topic
from aws_localproxy.agent.options import AgentOptions, make_agent
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.model import CONNECTED
from aws_localproxy.tunnelservice.notify import TunnelNotifier
from aws_localproxy.tunnelservice.server import start_tunnel_service
from tests.support.agent import Mosquitto, issue_client_certificate, mosquitto_missing
from tests.support.deadlines import EVENT, scaled
from tests.support.e2e import E2ETestCase, Echo, aws_cli, boto3_missing, tunneling_client
from tests.support.helpers import sleep


def fast_backoff(failures: int) -> float:
    return 0.2


class AgentE2ETestCase(E2ETestCase):
    """A tunnel service that notifies, a broker, an echo service and an agent for thing dev1."""

    if mosquitto_missing:
        skip = mosquitto_missing
    elif boto3_missing:
        skip = boto3_missing

    timeout = scaled(60)
    tls_broker = False
    thing_name = "dev1"

    @inlineCallbacks
    def setUp(self) -> Any:
        self.keep_log()
        self.events: List[Dict[str, Any]] = []
        self.sources: Dict[str, Any] = {}
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.cert_dir = os.path.abspath(self.mktemp())
        self.tunnel_service = yield self.within(
            start_tunnel_service(
                reactor, self.cert_dir, notify=lambda *args: self.notifier.notify(*args)
            ),
            EVENT,
            "the local tunnel service did not start",
        )
        self.addCleanup(self.tunnel_service.stop)
        self.broker = Mosquitto(
            os.path.abspath(self.mktemp()), tls_cert_dir=self.cert_dir if self.tls_broker else None
        )
        yield self.broker.start()
        self.addCleanup(self.broker.stop)
        publisher = self.broker_config("localtunnel")
        self.notifier = TunnelNotifier(reactor, publisher, "us-east-1")
        self.notifier.mqtt._backoff = fast_backoff
        self.notifier.startService()
        self.addCleanup(self.notifier.stopService)
        self.echo_port = yield self.listen(Echo)
        self.agent = yield self.start_agent()
        self.client = tunneling_client(self, self.tunnel_service)

    def broker_config(self, name: str) -> Any:
        if not self.tls_broker:
            return parse_broker_url(self.broker.url)
        paths = issue_client_certificate(self.cert_dir, name, os.path.abspath(self.mktemp()))
        return parse_broker_url(
            self.broker.url,
            ca_file=self.tunnel_service.ca_file,
            cert_file=paths["cert"],
            key_file=paths["key"],
        )

    def agent_args(self, *extra: str) -> List[str]:
        args = [
            "--thing-name",
            self.thing_name,
            "--mqtt-broker",
            self.broker.url,
            "-d",
            f"SSH=127.0.0.1:{self.echo_port},WEB=127.0.0.1:{self.echo_port}",
            "-e",
            self.tunnel_service.endpoint,
            "-c",
            self.tunnel_service.capath,
            "--max-tunnels",
            "5",
        ]
        if self.tls_broker:
            paths = issue_client_certificate(
                self.cert_dir, self.thing_name, os.path.abspath(self.mktemp())
            )
            args += [
                "--mqtt-ca",
                self.tunnel_service.ca_file,
                "--mqtt-cert",
                paths["cert"],
                "--mqtt-key",
                paths["key"],
            ]
        return args + list(extra)

    @inlineCallbacks
    def start_agent(self, *extra: str, wait: bool = True) -> Any:
        options = AgentOptions(environ={})
        options.parseOptions(self.agent_args(*extra))
        assert options.agent is not None
        agent = make_agent(reactor, options.agent, backoff=fast_backoff)
        agent.startService()
        self.addCleanup(agent.stopService)
        if wait:
            yield self.within(
                agent.mqtt.when_ready(), EVENT, "the agent's MQTT session did not start"
            )
        return agent

    def open_tunnel(self, services: Sequence[str], thing_name: Optional[str] = None) -> Any:
        """OpenTunnel through boto3 (in a thread); fires with (tunnel ID, source token)."""

        def call() -> Tuple[str, str]:
            opened = self.client.open_tunnel(
                destinationConfig={
                    "thingName": thing_name or self.thing_name,
                    "services": list(services),
                }
            )
            return opened["tunnelId"], opened["sourceAccessToken"]

        return deferToThread(call)

    def close_tunnel(self, tunnel_id: str) -> Any:
        return deferToThread(self.client.close_tunnel, tunnelId=tunnel_id)

    @inlineCallbacks
    def opened_and_connected(self, services: Sequence[str] = ("SSH",)) -> Any:
        """Open a tunnel for the thing and wait until the agent's destination is connected."""
        tunnel_id, source_token = yield self.open_tunnel(services)
        yield self.service_state(tunnel_id, Mode.DESTINATION, CONNECTED)
        return tunnel_id, source_token

    @inlineCallbacks
    def echo_through(self, source_token: str, service_id: str = "SSH", payload: bytes = b"") -> Any:
        """Start a source with C{source_token}; send bytes through C{service_id}; returns the echo."""
        source = self.proxy(Mode.SOURCE, source_token, {})
        yield self.connected(source)
        port = yield self.listening(source, service_id)
        client = yield self.connect(port)
        payload = payload or os.urandom(50_000)
        client.transport.write(payload)
        echoed = yield client.wait_for(len(payload))
        self.assertEqual(echoed, payload)
        self.sources[source_token] = source
        return source

    def log_text(self) -> str:
        """What was logged at info and above (Autobahn's debug dumps of requests carry
        tokens; the console script redacts them there, see test_agent_demo)."""
        shown = [e for e in self.events if e.get("log_level", LogLevel.info) >= LogLevel.info]
        return "\n".join(formatEvent(e) or "" for e in shown)


class AgentFlowTests(AgentE2ETestCase):
    @inlineCallbacks
    def test_notification_opens_a_destination(self) -> Any:
        tunnel_id, source_token = yield self.opened_and_connected(["SSH", "WEB"])
        self.assertEqual(len(self.agent.tunnels.tunnels), 1)
        yield self.echo_through(source_token, "SSH")
        yield self.echo_through_second_service(source_token)
        destination_token = (
            self.tunnel_service.registry.get(tunnel_id).slot(Mode.DESTINATION).access_token
        )
        self.assertNotIn(destination_token, self.log_text())
        self.assertNotIn(source_token, self.log_text())

    @inlineCallbacks
    def echo_through_second_service(self, source_token: str) -> Any:
        # The source from echo_through is still connected; connect to its WEB port.
        source = self.proxies_for(source_token)
        port = yield self.listening(source, "WEB")
        client = yield self.connect(port)
        client.transport.write(b"web bytes")
        echoed = yield client.wait_for(9)
        self.assertEqual(echoed, b"web bytes")

    def proxies_for(self, token: str) -> Any:
        return self.sources[token]

    @inlineCallbacks
    def test_several_tunnels_and_close_ends_the_right_one(self) -> Any:
        opened = []
        for _ in range(3):
            opened.append((yield self.opened_and_connected()))
        self.assertEqual(len(self.agent.tunnels.tunnels), 3)
        for _, source_token in opened:
            yield self.echo_through(source_token)
        numbers = [t.number for t in self.agent.tunnels.tunnels]
        yield self.close_tunnel(opened[1][0])
        yield self.until(
            lambda: len(self.agent.tunnels.tunnels) == 2,
            "the agent did not end the closed tunnel's destination",
            state=lambda: f"{len(self.agent.tunnels.tunnels)} tunnel(s) open",
        )
        self.assertEqual([n for n, _ in self.agent.tunnels.ended], [numbers[1]])
        self.assertEqual([t.number for t in self.agent.tunnels.tunnels], [numbers[0], numbers[2]])
        # The other two still carry bytes, over the sources already connected.
        for index in (0, 2):
            source = self.proxies_for(opened[index][1])
            port = yield self.listening(source, "SSH")
            client = yield self.connect(port)
            client.transport.write(b"still here")
            self.assertEqual((yield client.wait_for(10)), b"still here")

    @inlineCallbacks
    def test_bad_notifications_are_ignored(self) -> Any:
        topic = notify_topic(self.thing_name)
        tunnel_id, source_token = yield self.open_tunnel(["SSH"], thing_name="someone-else")
        token = self.tunnel_service.registry.get(tunnel_id).slot(Mode.DESTINATION).access_token

        def message(**fields: Any) -> bytes:
            body = {
                "clientAccessToken": token,
                "clientMode": "destination",
                "region": "us-east-1",
                "services": ["SSH"],
            }
            body.update(fields)
            return json.dumps({k: v for k, v in body.items() if v is not None}).encode()

        for payload in [
            b"{not json",
            message(clientMode="source"),
            message(clientAccessToken=None),
            message(services=["DB"]),
            message(services="SSH"),
        ]:
            self.notifier.mqtt.publish(topic, payload)
        # Then a good one, so we know the bad ones were all seen first.
        self.notifier.mqtt.publish(topic, message())
        yield self.service_state(tunnel_id, Mode.DESTINATION, CONNECTED)
        self.assertEqual(len(self.agent.tunnels.tunnels), 1)
        text = self.log_text()
        self.assertIn("Ignored a malformed tunnel notification: the notification is not JSON", text)
        self.assertIn(
            "Ignored a tunnel notification: the notification is for client mode 'source'", text
        )
        self.assertIn("the notification has no clientAccessToken", text)
        self.assertIn(
            "Refused a tunnel for services DB: no local mapping for service ID DB (-d)", text
        )
        self.assertIn("the notification's services is not a list of strings", text)
        self.assertNotIn(token, text)
        yield self.echo_through(source_token)

    @inlineCallbacks
    def test_broker_restart_is_survived(self) -> Any:
        _, first_token = yield self.opened_and_connected()
        source = yield self.echo_through(first_token)
        sessions = self.agent.mqtt.sessions
        yield self.broker.restart()
        # The open tunnel never needed the broker.
        port = yield self.listening(source, "SSH")
        client = yield self.connect(port)
        client.transport.write(b"during the restart")
        self.assertEqual((yield client.wait_for(18)), b"during the restart")
        yield self.until(
            lambda: self.agent.mqtt.sessions > sessions and self.agent.mqtt.is_ready,
            "the agent did not get a new MQTT session after the broker's restart",
        )
        yield self.until(
            lambda: self.notifier.mqtt.is_ready,
            "the tunnel service's notifier did not reconnect to the broker",
        )
        _, second_token = yield self.opened_and_connected()
        yield self.echo_through(second_token)
        self.assertEqual(len(self.agent.tunnels.tunnels), 2)

    @inlineCallbacks
    def test_max_tunnels(self) -> Any:
        yield self.within(self.agent.stopService(), EVENT, "the agent did not stop")
        self.agent = yield self.start_agent("--max-tunnels", "1")
        yield self.opened_and_connected()
        tunnel_id, _ = yield self.open_tunnel(["SSH"])
        yield self.until(
            lambda: "the most allowed (--max-tunnels)" in self.log_text(),
            "the agent did not log that it refused a tunnel over --max-tunnels",
        )
        self.assertEqual(len(self.agent.tunnels.tunnels), 1)
        self.assertEqual(
            self.tunnel_service.connection_state(tunnel_id, Mode.DESTINATION), "DISCONNECTED"
        )

    @inlineCallbacks
    def test_aws_cli_open_tunnel(self) -> Any:
        opened = yield aws_cli(
            self,
            self.tunnel_service,
            "open-tunnel",
            "--destination-config",
            f"thingName={self.thing_name},services=SSH",
        )
        yield self.service_state(opened["tunnelId"], Mode.DESTINATION, CONNECTED)
        yield self.echo_through(opened["sourceAccessToken"])


class AgentTLSBrokerTests(AgentE2ETestCase):
    """mosquitto with TLS, requiring client certificates from the local tunnel service's CA."""

    tls_broker = True

    @inlineCallbacks
    def test_notification_opens_a_destination(self) -> Any:
        _, source_token = yield self.opened_and_connected()
        yield self.echo_through(source_token)

    @inlineCallbacks
    def test_no_client_certificate_no_session(self) -> Any:
        options = AgentOptions(environ={})
        options.parseOptions(
            [
                "--thing-name",
                "dev2",
                "--mqtt-broker",
                self.broker.url,
                "--mqtt-ca",
                self.tunnel_service.ca_file,
                "-d",
                "SSH=22",
            ]
        )
        assert options.agent is not None
        agent = make_agent(reactor, options.agent, backoff=fast_backoff)
        agent.startService()
        self.addCleanup(agent.stopService)
        yield self.until(
            lambda: "No connection to the MQTT broker" in self.log_text(),
            "the agent without a client certificate did not log that it has no broker",
        )
        yield sleep(0.3)
        self.assertEqual(agent.mqtt.sessions, 0)
