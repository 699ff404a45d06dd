"""
Canary tests of aws_localproxy.adapters.paho_private: the one private part
of paho-mqtt the device agent uses, C{Client._create_socket}.  They fail
with a message naming it when a paho-mqtt release moves it; run them on a
new release before raising setup.py's ceiling on paho-mqtt.
"""

from __future__ import annotations

from typing import List

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.adapters import paho_private
from aws_localproxy.adapters.paho_private import HandedSocketClient, PahoSeamMissing
from aws_localproxy.adapters.seams import code_uses


class HandedSocket:
    """What paho is handed: records what it sends, has nothing to read."""

    def __init__(self) -> None:
        self.sent: List[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def recv(self, size: int) -> bytes:
        raise BlockingIOError()

    def setblocking(self, flag: bool) -> None:
        pass

    def close(self) -> None:
        pass

    def fileno(self) -> int:
        return -1


def client() -> HandedSocketClient:
    return HandedSocketClient(CallbackAPIVersion.VERSION2, client_id="dev1", protocol=paho.MQTTv311)


class CreateSocketCanaryTests(SynchronousTestCase):
    def test_reconnect_asks_create_socket(self) -> None:
        self.assertTrue(
            code_uses(paho.Client, "reconnect", "_create_socket"),
            "paho-mqtt's Client.reconnect no longer gets its socket from Client._create_socket",
        )
        self.assertTrue(paho_private.HANDS_SOCKET)

    def test_the_handed_socket_carries_connect(self) -> None:
        """C{reconnect} uses the handed socket (no connection of its own) and writes CONNECT to it."""
        mqtt = client()
        sock = HandedSocket()
        mqtt.transport_socket = sock
        mqtt.connect_async("broker.invalid", 1883, keepalive=60)
        self.assertEqual(mqtt.reconnect(), MQTTErrorCode.MQTT_ERR_SUCCESS)
        self.assertIs(mqtt.socket(), sock, "paho-mqtt no longer keeps the socket _create_socket gave")
        mqtt.loop_write()
        connect = b"".join(sock.sent)
        self.assertEqual(connect[:1], b"\x10", "paho-mqtt wrote no CONNECT to the handed socket")
        self.assertIn(b"dev1", connect)

    def test_nothing_handed(self) -> None:
        mqtt = client()
        mqtt.connect_async("broker.invalid", 1883)
        self.assertRaises(ConnectionError, mqtt.reconnect)

    def test_refused_without_the_seam(self) -> None:
        self.patch(paho_private, "HANDS_SOCKET", False)
        error = self.assertRaises(PahoSeamMissing, client)
        self.assertIn("Client._create_socket", str(error))
        self.assertIn("paho-mqtt>=2.0,<3", str(error))
