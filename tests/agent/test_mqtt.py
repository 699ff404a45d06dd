"""
paho-mqtt driven on the reactor, on a StringTransport and a Clock: the
bytes of CONNECT/SUBSCRIBE/PUBACK written, a broker's bytes fed in, the
backoff between attempts.
"""

from __future__ import annotations

import struct
from typing import Any, List, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from aws_localproxy.adapters import paho_private
from aws_localproxy.agent.broker import parse_broker_url
from aws_localproxy.agent.mqtt import MqttClientService
from aws_localproxy.agent.mqttsession import MqttSession

CONNACK_OK = b"\x20\x02\x00\x00"
CONNACK_NOT_AUTHORIZED = b"\x20\x02\x00\x05"


def suback(mid: int) -> bytes:
    return b"\x90\x03" + struct.pack(">H", mid) + b"\x01"


def publish_qos1(topic: str, payload: bytes, mid: int) -> bytes:
    body = struct.pack(">H", len(topic)) + topic.encode() + struct.pack(">H", mid) + payload
    assert len(body) < 128
    return bytes([0x32, len(body)]) + body


class StringTransportEndpoint:
    """Connects each protocol to a new StringTransport, or fails while C{refuse} is set."""

    def __init__(self) -> None:
        self.transports: List[StringTransport] = []
        self.protocols: List[Any] = []
        self.refuse = False
        self.attempts = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        if self.refuse:
            return fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.transports.append(transport)
        self.protocols.append(protocol)
        d: Deferred[Any] = Deferred()
        d.callback(protocol)
        return d


class MqttClientTests(TestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.endpoint = StringTransportEndpoint()
        self.messages: List[Tuple[str, bytes]] = []
        self.client = MqttClientService(
            self.clock,
            parse_broker_url("mqtt://broker:1883"),
            "dev1",
            ["$aws/things/dev1/tunnels/notify"],
            lambda topic, payload: self.messages.append((topic, payload)),
            backoff=lambda failures: [1.0, 2.0, 4.0][min(failures, 2)],
            endpoint=self.endpoint,  # type: ignore[arg-type]
        )

    def written(self, index: int = -1) -> bytes:
        self.clock.advance(0)
        transport = self.endpoint.transports[index]
        value = transport.value()
        transport.clear()
        return value

    def feed(self, data: bytes, index: int = -1) -> None:
        self.endpoint.protocols[index].dataReceived(data)
        self.clock.advance(0)

    def connect_and_subscribe(self) -> None:
        self.client.startService()
        connect = self.written()
        self.assertEqual(connect[0], 0x10)
        self.assertIn(b"MQTT\x04", connect)
        self.assertIn(b"dev1", connect)
        self.feed(CONNACK_OK)
        subscribe = self.written()
        self.assertEqual(subscribe[0], 0x82)
        self.assertIn(b"$aws/things/dev1/tunnels/notify\x01", subscribe)
        (mid,) = struct.unpack(">H", subscribe[2:4])
        self.assertFalse(self.client.is_ready)
        self.feed(suback(mid))
        self.assertTrue(self.client.is_ready)

    def test_session_subscribe_and_message(self) -> None:
        self.connect_and_subscribe()
        # A message split across two reads, then another in the same read as a third.
        message = publish_qos1("$aws/things/dev1/tunnels/notify", b'{"a": 1}', 7)
        self.feed(message[:5])
        self.assertEqual(self.messages, [])
        self.feed(message[5:] + publish_qos1("$aws/things/dev1/tunnels/notify", b"2", 8))
        self.assertEqual(
            self.messages,
            [
                ("$aws/things/dev1/tunnels/notify", b'{"a": 1}'),
                ("$aws/things/dev1/tunnels/notify", b"2"),
            ],
        )
        self.assertEqual(self.written(), b"\x40\x02\x00\x07\x40\x02\x00\x08")

    def test_publish_queued_until_connected(self) -> None:
        self.endpoint.refuse = True
        self.client.startService()
        self.client.publish("t", b"x")
        self.endpoint.refuse = False
        self.clock.advance(1.0)
        self.written()
        self.feed(CONNACK_OK)
        subscribe_and_publish = self.written()
        self.assertIn(b"\x32\x06\x00\x01t", subscribe_and_publish)

    def test_backoff_grows_and_resets(self) -> None:
        self.endpoint.refuse = True
        self.client.startService()
        self.assertEqual(self.endpoint.attempts, 1)
        self.clock.advance(0.9)
        self.assertEqual(self.endpoint.attempts, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.endpoint.attempts, 2)
        self.clock.advance(2.0)
        self.assertEqual(self.endpoint.attempts, 3)
        self.clock.advance(3.9)
        self.assertEqual(self.endpoint.attempts, 3)
        self.endpoint.refuse = False
        self.clock.advance(0.1)
        self.assertEqual(self.endpoint.attempts, 4)
        self.written()
        self.feed(CONNACK_OK)
        self.assertEqual(self.client.sessions, 1)
        # The session drops: the next attempt waits the first delay again.
        self.endpoint.protocols[-1].connectionLost(Failure(ConnectionRefusedError()))
        self.clock.advance(0.9)
        self.assertEqual(self.endpoint.attempts, 4)
        self.clock.advance(0.1)
        self.assertEqual(self.endpoint.attempts, 5)

    def test_refused_session_retries(self) -> None:
        self.client.startService()
        self.written()
        self.feed(CONNACK_NOT_AUTHORIZED)
        self.assertTrue(self.endpoint.transports[-1].disconnecting)
        self.endpoint.protocols[-1].connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.client.sessions, 0)
        self.clock.advance(1.0)
        self.assertEqual(self.endpoint.attempts, 2)

    def test_paho_without_the_seam_is_refused(self) -> None:
        """
        A paho whose reconnect no longer takes our socket is never asked to
        connect (it would connect by itself, blocking): each attempt logs
        why and drops the connection.
        """
        self.patch(paho_private, "HANDS_SOCKET", False)
        errors: List[str] = []
        self.patch(MqttSession, "log", Logger(observer=lambda e: errors.append(e["error"])))
        self.client.startService()
        self.assertEqual(self.written(), b"")
        self.assertTrue(self.endpoint.transports[-1].disconnecting)
        self.assertEqual(len(errors), 1)
        self.assertIn("Client._create_socket", errors[0])

    def test_no_connack_aborts(self) -> None:
        self.client.startService()
        self.clock.advance(29)
        self.assertFalse(self.endpoint.transports[-1].disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.endpoint.transports[-1].disconnecting)

    def test_keepalive_ping(self) -> None:
        self.connect_and_subscribe()
        # paho times pings by the monotonic clock; pretend the last traffic was long ago.
        client = self.endpoint.protocols[-1].client
        client._last_msg_out -= 61
        client._last_msg_in = client._last_msg_out
        self.clock.advance(1.0)
        self.assertEqual(self.written(), b"\xc0\x00")

    def test_stop_sends_disconnect(self) -> None:
        self.connect_and_subscribe()
        transport = self.endpoint.transports[-1]
        done = self.client.stopService()
        self.assertIn(b"\xe0\x00", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertFalse(done.called)
        self.endpoint.protocols[-1].connectionLost(Failure(ConnectionRefusedError()))
        self.assertTrue(done.called)
        self.clock.advance(10)
        self.assertEqual(self.endpoint.attempts, 1)

    def test_stop_during_backoff(self) -> None:
        self.endpoint.refuse = True
        self.client.startService()
        self.client.stopService()
        self.clock.advance(10)
        self.assertEqual(self.endpoint.attempts, 1)
