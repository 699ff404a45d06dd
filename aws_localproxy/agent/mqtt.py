# -*- test-case-name: tests.agent.test_mqtt -*-
# mypy: disallow-untyped-calls=False
# (this module calls Twisted APIs that have no annotations)
"""
An MQTT client that stays connected, on the reactor.

L{MqttClientService} keeps one session up (each session is an
L{aws_localproxy.agent.mqttsession.MqttSession}: paho-mqtt's protocol
engine over a Twisted connection): connect, subscribe, and after a failure
or a drop connect again with an exponential backoff (Twisted's
C{backoffPolicy}), reset once a CONNACK accepted a session.  Publishes
wait in a bounded queue while no session is up.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, Optional, Sequence, Tuple

import attrs
from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from aws_localproxy.agent.broker import BrokerConfig, broker_endpoint
from aws_localproxy.agent.mqttsession import MqttSession

__all__ = ["MqttClientService", "MqttSession", "MessageHandler"]

#: (topic, payload) of a message that arrived on a subscribed topic.
MessageHandler = Callable[[str, bytes], None]

#: Queued publishes while no session is up; the oldest go first.
MAX_QUEUED_PUBLISHES = 1000


def _topics(subscriptions: Sequence[str]) -> Tuple[str, ...]:
    return tuple(subscriptions)


def _backoff(backoff: Optional[Callable[[int], float]]) -> Callable[[int], float]:
    """The given backoff, or 1 s doubling to 60 s, plus up to 1 s of jitter."""
    return backoff or backoffPolicy(1.0, 60.0, 2.0, jitter=random.random)


@attrs.define(eq=False, repr=False)
class MqttClientService(Service):
    """
    An MQTT client that stays connected, as a Twisted C{IService}.

    Subscribes to C{subscriptions} (QoS 1) on every session and calls
    C{on_message(topic, payload)} on the reactor thread for each message.
    C{publish} sends at QoS 1, queuing while no session is up.  What it is
    given is what each L{MqttSession} reads (its L{SessionOwner} side).

    @ivar backoff: seconds to wait before attempt I{n} after I{n} failures in
        a row (default: 1 s doubling to 60 s, plus up to 1 s of jitter).
    @ivar endpoint: how to reach the broker (default: from C{broker}, built
        at once, so a bad CA or key file is an error at start, not on every
        attempt).
    """

    log = Logger()

    reactor: Any
    broker: BrokerConfig
    client_id: str
    subscriptions: Tuple[str, ...] = attrs.field(default=(), converter=_topics)
    on_message: MessageHandler = lambda topic, payload: None
    keepalive: int = attrs.field(kw_only=True, default=60)
    connack_timeout: float = attrs.field(kw_only=True, default=30.0)
    _backoff: Callable[[int], float] = attrs.field(kw_only=True, default=None, converter=_backoff)
    _endpoint: IStreamClientEndpoint = attrs.field(kw_only=True)
    _session: Optional[MqttSession] = attrs.field(init=False, default=None)
    _attempt: Optional[Deferred[Any]] = attrs.field(init=False, default=None)
    _retry: Optional[IDelayedCall] = attrs.field(init=False, default=None)
    _failures: int = attrs.field(init=False, default=0)
    _queued: List[Tuple[str, bytes]] = attrs.field(init=False, factory=list)
    _subscribed_topics: set[str] = attrs.field(init=False, factory=set)
    _ready_waiters: List[Deferred[None]] = attrs.field(init=False, factory=list)
    #: Sessions the broker accepted, since start (a reconnect adds one).
    sessions: int = attrs.field(init=False, default=0)

    @_endpoint.default
    def _broker_endpoint(self) -> IStreamClientEndpoint:
        return broker_endpoint(self.reactor, self.broker)

    # -- IService -------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._connect()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            self._attempt.cancel()
        session, self._session = self._session, None
        if session is not None:
            return session.disconnect()
        return succeed(None)

    # -- public -------------------------------------------------------------------------

    @property
    def is_ready(self) -> bool:
        """Whether a session is up and every subscription acknowledged."""
        return self._session is not None and self._subscribed_topics >= set(self.subscriptions)

    def when_ready(self) -> Deferred[None]:
        """Fires once a session is up with its subscriptions acknowledged (now, if it is)."""
        if self.is_ready:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._ready_waiters.append(d)
        return d

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 now, or as soon as a session is up."""
        if self._session is not None and self._session.publish(topic, payload):
            return
        if len(self._queued) >= MAX_QUEUED_PUBLISHES:
            dropped, _ = self._queued.pop(0)
            self.log.warn("No MQTT session: dropped a queued message for {topic}", topic=dropped)
        self._queued.append((topic, payload))

    # -- connection attempts --------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if not self.running:
            return
        self.log.info("Connecting to the MQTT broker {broker}", broker=self.broker.url)
        factory = Factory.forProtocol(lambda: MqttSession(self))
        factory.noisy = False
        attempt = self._endpoint.connect(factory)
        self._attempt = attempt
        attempt.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, session: MqttSession) -> None:
        self._attempt = None

    def _connect_failed(self, failure: Failure) -> None:
        self._attempt = None
        if not self.running:
            return
        self._retry_later(failure.getErrorMessage())

    def _retry_later(self, why: str) -> None:
        if not self.running or self._retry is not None:
            return
        self._failures += 1
        delay = self._backoff(self._failures - 1)
        self.log.warn(
            "No connection to the MQTT broker {broker} ({why}); retrying in {delay:.1f} s",
            broker=self.broker.url,
            why=why,
            delay=delay,
        )
        self._retry = self.reactor.callLater(delay, self._connect)

    # -- what sessions report (the mqttsession.SessionOwner side) ----------------------------

    def session_ready(self, session: MqttSession) -> None:
        if not self.running:
            session.disconnect()
            return
        self._session = session
        self._failures = 0
        self.sessions += 1
        self._subscribed_topics = set()
        self.log.info("Connected to the MQTT broker {broker}", broker=self.broker.url)
        for topic in self.subscriptions:
            session.subscribe(topic)
        queued, self._queued = self._queued, []
        for topic, payload in queued:
            self.publish(topic, payload)
        if not self.subscriptions:
            self._fire_ready()

    def subscribed(self, session: MqttSession, topic: str) -> None:
        if session is not self._session:
            return
        self._subscribed_topics.add(topic)
        self.log.info("Subscribed to {topic}", topic=topic)
        if self.is_ready:
            self._fire_ready()

    def _fire_ready(self) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(None)

    def session_ended(self, session: MqttSession, reason: Failure) -> None:
        was_current = session is self._session
        if was_current:
            self._session = None
            self._subscribed_topics = set()
        if not self.running:
            return
        if was_current:
            self.log.warn(
                "Lost the connection to the MQTT broker {broker}: {why}",
                broker=self.broker.url,
                why=reason.getErrorMessage(),
            )
        self._retry_later(
            "connection lost" if was_current else f"no session accepted: {reason.getErrorMessage()}"
        )
