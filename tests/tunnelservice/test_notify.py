"""
The local tunnel service's side: which API calls notify a thing, with what,
and ``localtunnel``'s MQTT options.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python import usage
from twisted.trial.unittest import TestCase

from aws_localproxy.agent.notification import notify_topic, parse_notification
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.notify import TunnelNotifier
from aws_localproxy.tunnelservice.server import start_tunnel_service
from aws_localproxy.tunnelservice.tap import Options
from tests.support.e2e import boto3_missing, tunneling_client


class NotifyHookTests(TestCase):
    skip = boto3_missing

    @inlineCallbacks
    def setUp(self) -> Any:
        self.notified: List[Tuple[str, str, Sequence[str]]] = []
        self.running = yield start_tunnel_service(
            reactor, self.mktemp(), notify=lambda *args: self.notified.append(args)
        )
        self.addCleanup(self.running.stop)
        self.client = tunneling_client(self, self.running)

    def call(self, method: str, **kwargs: Any) -> Any:
        return deferToThread(getattr(self.client, method), **kwargs)

    @inlineCallbacks
    def test_open_with_thing_name_notifies(self) -> Any:
        opened = yield self.call(
            "open_tunnel", destinationConfig={"thingName": "dev1", "services": ["SSH", "WEB"]}
        )
        self.assertEqual(
            self.notified, [("dev1", opened["destinationAccessToken"], ["SSH", "WEB"])]
        )

    @inlineCallbacks
    def test_open_without_thing_name_does_not(self) -> Any:
        yield self.call("open_tunnel", destinationConfig={"services": ["SSH"]})
        yield self.call("open_tunnel")
        self.assertEqual(self.notified, [])

    @inlineCallbacks
    def test_rotating_the_destination_notifies(self) -> Any:
        opened = yield self.call(
            "open_tunnel", destinationConfig={"thingName": "dev1", "services": ["SSH"]}
        )
        yield self.call(
            "rotate_tunnel_access_token", tunnelId=opened["tunnelId"], clientMode="SOURCE"
        )
        self.assertEqual(len(self.notified), 1)
        rotated = yield self.call(
            "rotate_tunnel_access_token", tunnelId=opened["tunnelId"], clientMode="DESTINATION"
        )
        self.assertEqual(self.notified[-1], ("dev1", rotated["destinationAccessToken"], ["SSH"]))
        tunnel = self.running.registry.get(opened["tunnelId"])
        self.assertEqual(
            tunnel.slot(Mode.DESTINATION).access_token, rotated["destinationAccessToken"]
        )


class FakeMqtt:
    running = True

    def __init__(self) -> None:
        self.published: List[Tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))


class NotifierTests(TestCase):
    def test_publishes_the_notification(self) -> None:
        mqtt = FakeMqtt()
        notifier = TunnelNotifier(reactor, None, "eu-west-1", mqtt=mqtt)  # type: ignore[arg-type]
        notifier.notify("dev1", "the-token", ["SSH"])
        ((topic, payload),) = mqtt.published
        self.assertEqual(topic, notify_topic("dev1"))
        parsed = parse_notification(payload)
        self.assertEqual(
            (parsed.client_access_token, parsed.region, parsed.services),
            ("the-token", "eu-west-1", ("SSH",)),
        )


class LocaltunnelOptionsTests(TestCase):
    def test_mqtt_broker(self) -> None:
        options = Options()
        options.parseOptions(["--mqtt-broker", "mqtt://127.0.0.1:1883"])
        broker = options["mqtt-broker-config"]
        self.assertEqual((broker.host, broker.port, broker.use_tls), ("127.0.0.1", 1883, False))

    def test_without(self) -> None:
        options = Options()
        options.parseOptions([])
        self.assertIsNone(options["mqtt-broker-config"])

    def test_errors(self) -> None:
        for args, message in [
            (
                ["--mqtt-broker", "http://h"],
                "--mqtt-broker: the broker URL must start with mqtt://",
            ),
            (["--mqtt-cert", "/c"], "need --mqtt-broker"),
            (["--mqtt-broker", "mqtt://h", "--mqtt-cert", "c", "--mqtt-key", "k"], "need TLS"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                Options().parseOptions(args)
            self.assertIn(message, str(caught.exception))
