# -*- test-case-name: tests.agent.test_e2e -*-
# mypy: disallow-untyped-calls=False
# (this module calls Twisted APIs that have no annotations)
"""
L{AgentService}: the device agent as one Twisted C{IService}.

It joins two parts that know nothing of each other: the MQTT client
(L{aws_localproxy.agent.mqtt}), subscribed to the thing's notify topic, and
the L{TunnelManager}, which runs a destination per tunnel.  Each message is
parsed (L{aws_localproxy.agent.notification}); what is not a usable
destination notification is logged and dropped.  When the broker is away
the tunnels already open keep running: they talk to the tunneling service,
not to the broker.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from aws_localproxy.agent.mqtt import MqttClientService
from aws_localproxy.agent.notification import (
    NotificationError,
    WrongClientMode,
    notify_topic,
    parse_notification,
)
from aws_localproxy.agent.tunnels import TunnelManager

__all__ = ["AgentService"]


class AgentService(Service):
    """
    Subscribes to C{$aws/things/<thing_name>/tunnels/notify} and opens a
    destination for each notification.

    @ivar mqtt: the L{MqttClientService} (C{when_ready()}: subscribed).
    @ivar tunnels: the L{TunnelManager} (its C{tunnels}: running destinations).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        thing_name: str,
        tunnels: TunnelManager,
        mqtt: Optional[MqttClientService] = None,
        *,
        broker: Any = None,
        client_id: Optional[str] = None,
        **mqtt_options: Any,
    ) -> None:
        """
        Give either C{mqtt} (a client whose C{on_message} this service sets)
        or C{broker} (a L{aws_localproxy.agent.broker.BrokerConfig}, with
        C{client_id} defaulting to the thing name and C{mqtt_options} for
        L{MqttClientService}).
        """
        self.thing_name = thing_name
        self.topic = notify_topic(thing_name)
        self.tunnels = tunnels
        if mqtt is None:
            if broker is None:
                raise ValueError("give an MQTT client or a broker")
            mqtt = MqttClientService(
                reactor, broker, client_id or thing_name, [self.topic], **mqtt_options
            )
        mqtt.on_message = self.message_received
        if self.topic not in mqtt.subscriptions:
            mqtt.subscriptions = (*mqtt.subscriptions, self.topic)
        self.mqtt = mqtt

    def startService(self) -> None:
        super().startService()
        self.log.info(
            "Agent for thing {thing_name}: waiting for tunnel notifications on {topic}",
            thing_name=self.thing_name,
            topic=self.topic,
        )
        self.mqtt.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return gatherResults([self.mqtt.stopService(), self.tunnels.stop()]).addCallback(
            lambda _: None
        )

    def message_received(self, topic: str, payload: bytes) -> None:
        """One message from the broker: open a destination, or log why not."""
        if topic != self.topic:
            self.log.info("Ignored a message on {topic}", topic=topic)
            return
        try:
            notification = parse_notification(payload)
        except WrongClientMode as e:
            self.log.info("Ignored a tunnel notification: {why}", why=str(e))
            return
        except NotificationError as e:
            self.log.warn("Ignored a malformed tunnel notification: {why}", why=str(e))
            return
        self.log.info(
            "Tunnel notification for services {services} in {region}",
            services=", ".join(notification.services) or "(none)",
            region=notification.region,
        )
        self.tunnels.open(notification)
