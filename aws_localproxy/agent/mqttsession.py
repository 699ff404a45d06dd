# -*- test-case-name: tests.agent.test_mqtt -*-
# mypy: disallow-untyped-calls=False
# (this module calls Twisted APIs that have no annotations)
"""
One MQTT session on the reactor: paho-mqtt's protocol engine over a Twisted connection.

paho-mqtt (2.x) does the MQTT protocol: packets, CONNECT/CONNACK,
SUBSCRIBE, QoS 1 acknowledgements, keep-alive pings.  Its own way to
connect (C{Client.connect}/C{reconnect}) resolves the name, connects and
does the TLS handshake I{blocking}; here Twisted makes the connection
instead (L{aws_localproxy.agent.broker}), so nothing blocks, and paho is
handed a socket-like object (L{_TransportSocket}) that reads from what the
transport delivered and writes to the transport.  paho's socket callbacks
tell when it has bytes to send; its C{loop_read}/C{loop_write}/C{loop_misc}
run on the reactor thread, so every paho callback (connect, message,
disconnect) arrives on the reactor thread too.  paho starts no thread.

The one seam into paho that is not public API is C{Client._create_socket}
(present in paho-mqtt 2.0 to 2.2, what C{reconnect} calls to get its
socket), overridden in L{aws_localproxy.adapters.paho_private}: setup.py
pins paho-mqtt below 3, the adapter's canary fails if it moves, and a paho
without it is refused (each attempt at a session logs why).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional
from typing import Protocol as TypingProtocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from aws_localproxy.adapters.paho_private import HandedSocketClient, PahoSeamMissing
from aws_localproxy.agent.broker import BrokerConfig

__all__ = ["MqttSession", "SessionOwner"]


class SessionOwner(TypingProtocol):
    """What an L{MqttSession} needs from the client that keeps sessions up."""

    reactor: Any
    broker: BrokerConfig
    client_id: str
    keepalive: int
    connack_timeout: float

    def on_message(self, topic: str, payload: bytes) -> None:
        """A message arrived on a subscribed topic."""

    def session_ready(self, session: MqttSession) -> None:
        """The broker accepted C{session}."""

    def subscribed(self, session: MqttSession, topic: str) -> None:
        """The broker acknowledged C{session}'s subscription to C{topic}."""

    def session_ended(self, session: MqttSession, reason: Failure) -> None:
        """C{session}'s connection is gone (accepted or not)."""


class _TransportSocket:
    """
    The socket paho reads and writes: bytes the transport delivered, and the
    transport to write to.  It never blocks: C{recv} with nothing buffered
    raises C{BlockingIOError} (paho's "try again later"), and returns
    C{b""} (end of stream) once the connection is gone.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._buffer = bytearray()
        self.lost = False

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def recv(self, size: int) -> bytes:
        if self._buffer:
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            return chunk
        if self.lost:
            return b""
        raise BlockingIOError()

    def send(self, data: bytes) -> int:
        if self.lost:
            raise ConnectionError("the connection to the broker is gone")
        self._transport.write(bytes(data))
        return len(data)

    def setblocking(self, flag: bool) -> None:
        pass

    def close(self) -> None:
        if not self.lost:
            self._transport.loseConnection()

    def fileno(self) -> int:
        return -1


class MqttSession(Protocol):
    """
    One MQTT session over one Twisted connection.

    Created by its L{SessionOwner} (an
    L{aws_localproxy.agent.mqtt.MqttClientService}) for each connection
    attempt; tells it when the broker accepted the session, acknowledged a
    subscription, and when the connection ended.
    """

    log = Logger()

    def __init__(self, owner: SessionOwner) -> None:
        self._owner = owner
        self._reactor = owner.reactor
        self.client: Optional[HandedSocketClient] = None
        self._socket: Optional[_TransportSocket] = None
        self._write_call: Optional[IDelayedCall] = None
        self._connack_deadline: Optional[IDelayedCall] = None
        self._ticker: Optional[LoopingCall] = None
        self.accepted = False
        self.ended: Deferred[None] = Deferred()
        self._subscriptions: Dict[int, str] = {}

    # -- Twisted side ------------------------------------------------------------

    def connectionMade(self) -> None:
        owner = self._owner
        self._socket = _TransportSocket(self.transport)
        try:
            client = HandedSocketClient(
                CallbackAPIVersion.VERSION2,
                client_id=owner.client_id,
                clean_session=True,
                protocol=paho.MQTTv311,
            )
        except PahoSeamMissing as error:  # this paho cannot be handed our connection
            self.log.error("Could not start an MQTT session: {error}", error=str(error))
            self._abort()
            return
        client.transport_socket = self._socket
        client.suppress_exceptions = True
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_log = self._on_log
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = lambda *_: None
        self.client = client
        try:
            client.connect_async(owner.broker.host, owner.broker.port, keepalive=owner.keepalive)
            rc = client.reconnect()
        except Exception as error:
            self.log.error("Could not start an MQTT session: {error}", error=str(error))
            self._abort()
            return
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.log.warn("Could not start an MQTT session: {error}", error=paho.error_string(rc))
            self._abort()
            return
        self._connack_deadline = self._reactor.callLater(owner.connack_timeout, self._no_connack)
        self._ticker = LoopingCall(self._misc)
        self._ticker.clock = self._reactor
        self._ticker.start(1.0, now=False)

    def dataReceived(self, data: bytes) -> None:
        sock, client = self._socket, self.client
        if sock is None or client is None:
            return
        sock.feed(data)
        while sock.buffered and client.socket() is not None:
            before = sock.buffered
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or sock.buffered == before:
                break

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        for call in (self._write_call, self._connack_deadline):
            if call is not None and call.active():
                call.cancel()
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        if self._socket is not None:
            self._socket.lost = True
        if self.client is not None and self.client.socket() is not None:
            # paho reads the end of the stream and runs its disconnect path.
            self.client.loop_read()
        self._owner.session_ended(self, reason)
        self.ended.callback(None)

    # -- what the service asks ----------------------------------------------------

    def subscribe(self, topic: str, qos: int = 1) -> None:
        assert self.client is not None
        rc, mid = self.client.subscribe(topic, qos=qos)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._subscriptions[mid] = topic

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Queue C{payload} for C{topic}; C{False} when the session cannot take it."""
        if self.client is None:
            return False
        info = self.client.publish(topic, payload, qos=qos)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def disconnect(self) -> Deferred[None]:
        """Send DISCONNECT and close; fires once the connection is gone."""
        if self.client is not None and self.accepted and self.client.socket() is not None:
            self.client.disconnect()
            self._flush()
        if self.transport is not None:
            self.transport.loseConnection()
        return self._wait_ended()

    def _wait_ended(self) -> Deferred[None]:
        if self.ended.called:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self.ended.addBoth(lambda _: d.callback(None))
        return d

    # -- paho's side (all on the reactor thread) ------------------------------------

    def _register_write(self, *_: Any) -> None:
        if self._write_call is None or not self._write_call.active():
            self._write_call = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        if self.client is not None and self.client.socket() is not None:
            self.client.loop_write()

    def _misc(self) -> None:
        if self.client is not None and self.client.socket() is not None:
            self.client.loop_misc()

    def _no_connack(self) -> None:
        self._connack_deadline = None
        self.log.warn(
            "The MQTT broker {broker} did not accept the session within {seconds} s",
            broker=self._owner.broker.url,
            seconds=self._owner.connack_timeout,
        )
        self._abort()

    def _abort(self) -> None:
        """Drop the connection at once (a TLS or TCP transport both can)."""
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self._connack_deadline is not None and self._connack_deadline.active():
            self._connack_deadline.cancel()
        self._connack_deadline = None
        if reason.is_failure:
            self.log.error(
                "The MQTT broker {broker} refused the session: {reason}",
                broker=self._owner.broker.url,
                reason=str(reason),
            )
            return
        self.accepted = True
        self._later(self._owner.session_ready, self)

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        topic = self._subscriptions.pop(mid, "?")
        failed = [r for r in reasons if r.is_failure]
        if failed:
            self.log.error(
                "The MQTT broker refused the subscription to {topic}: {reason}",
                topic=topic,
                reason=str(failed[0]),
            )
            return
        self._later(self._owner.subscribed, self, topic)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._later(self._deliver, message.topic, bytes(message.payload))

    def _deliver(self, topic: str, payload: bytes) -> None:
        try:
            self._owner.on_message(topic, payload)
        except Exception:
            self.log.failure("A message on {topic} could not be handled", topic=topic)

    def _later(self, function: Callable[..., None], *args: Any) -> None:
        """
        Run C{function} after paho's callback returned: paho holds a lock
        (not re-entrant) while it runs a callback, and code reached from one
        (a Deferred's callbacks) may call paho again, e.g. to disconnect.
        """
        self._reactor.callLater(0, function, *args)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def _on_log(self, client: Any, userdata: Any, level: int, text: str) -> None:
        if level in (paho.MQTT_LOG_ERR, paho.MQTT_LOG_WARNING):
            self.log.info("MQTT: {text}", text=text)
