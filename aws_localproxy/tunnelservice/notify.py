# -*- test-case-name: tests.agent.test_e2e -*-
# mypy: disallow-untyped-calls=False
# (this module calls Twisted APIs that have no annotations)
"""
The local tunnel service's device notifications: ``localtunnel --mqtt-broker URL``.

The AWS tunneling service tells a device about a tunnel opened for it (an
OpenTunnel with a C{destinationConfig} naming a thing, or a rotation of the
destination's token) by publishing on ``$aws/things/<thingName>/tunnels/notify``
the destination's access token, the client mode, the region and the
services.  L{TunnelNotifier} does the same to any MQTT broker, with the
message the agent parses (L{aws_localproxy.agent.notification}), so that
the whole device flow runs on one machine.  Messages go out at QoS 1 and
wait (in memory) while the broker is away.  The token is never logged.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from aws_localproxy.agent.broker import BrokerConfig
from aws_localproxy.agent.mqtt import MqttClientService
from aws_localproxy.agent.notification import encode_notification, notify_topic

__all__ = ["TunnelNotifier"]


class TunnelNotifier(Service):
    """Publishes destination notifications to one MQTT broker."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        broker: BrokerConfig,
        region: str,
        client_id: str = "localtunnel",
        mqtt: Optional[MqttClientService] = None,
    ) -> None:
        self.region = region
        self.mqtt = mqtt or MqttClientService(reactor, broker, client_id)

    def startService(self) -> None:
        super().startService()
        self.mqtt.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.mqtt.stopService() if self.mqtt.running else succeed(None)

    def notify(self, thing_name: str, access_token: str, services: Sequence[str]) -> None:
        """Tell C{thing_name} about its destination's C{access_token}."""
        topic = notify_topic(thing_name)
        self.mqtt.publish(topic, encode_notification(access_token, self.region, services))
        self.log.info(
            "Notified thing {thing_name} on {topic} (services {services})",
            thing_name=thing_name,
            topic=topic,
            services=list(services),
        )
