"""
L{aws_localproxy.local.connection}: one local connection on a StringTransport
(iosim never pauses producers): relaying, bounds, and closes that arrive.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.protocol.inbound_flow import InboundFlow
from tests.fakes.local import RecordingTunnelConnection
from tests.support.helpers import readable_bytes
from tests.support.payloads import unique_payload

reactor: Any = _reactor


def local(
    flow: InboundFlow | None = None, backlog_limit: int = 100
) -> tuple[LocalStreamProtocol, StringTransport, RecordingTunnelConnection]:
    connection = RecordingTunnelConnection()
    protocol = LocalStreamProtocol(
        flow or InboundFlow(), connection, sockets=LocalSockets(backlog_limit=backlog_limit)
    )
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, connection


class RelayTests(SynchronousTestCase):
    def test_relays_both_ways(self) -> None:
        protocol, transport, connection = local()
        protocol.dataReceived(b"abc")
        protocol.write(b"xyz")
        self.assertEqual(connection.data, [b"abc"])
        self.assertEqual(transport.value(), b"xyz")

    def test_registers_as_its_transports_producer(self) -> None:
        protocol, transport, _ = local()
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)

    def test_local_close_is_reported_once(self) -> None:
        protocol, _, connection = local()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(connection.lost, 1)

    def test_pause_and_resume_reading(self) -> None:
        """The outbound lane's back-pressure stops reading this socket only."""
        protocol, transport, _ = local()
        protocol.pause_reading()
        self.assertEqual(transport.producerState, "paused")
        protocol.resume_reading()
        self.assertEqual(transport.producerState, "producing")

    def test_pause_before_connected_applies_on_connect(self) -> None:
        protocol = LocalStreamProtocol(InboundFlow(), RecordingTunnelConnection())
        protocol.pause_reading()
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.producerState, "paused")


class BacklogTests(SynchronousTestCase):
    """Tunnel -> local: the WebSocket pauses only once this connection is past its bound."""

    def setUp(self) -> None:
        self.websocket = StringTransport()
        self.flow = InboundFlow()
        self.flow.attach(self.websocket)
        self.protocol, self.transport, _ = local(self.flow, backlog_limit=100)

    def test_full_socket_alone_does_not_pause(self) -> None:
        self.protocol.pauseProducing()  # Twisted: the socket's buffer is full
        self.protocol.write(b"x" * 99)
        self.assertEqual(self.websocket.producerState, "producing")

    def test_past_the_bound_pauses_websocket(self) -> None:
        self.protocol.pauseProducing()
        first, second = unique_payload(60, seed=1), unique_payload(40, seed=2)
        self.protocol.write(first)
        self.protocol.pauseProducing()  # Twisted says it again on every write while full
        self.protocol.write(second)
        self.assertEqual(self.websocket.producerState, "paused")
        # Held back from the tunnel, not from the socket: every byte, in order.
        self.assertEqual(self.transport.value(), first + second)
        self.protocol.resumeProducing()  # drained
        self.assertEqual(self.websocket.producerState, "producing")

    def test_lost_connection_unblocks(self) -> None:
        self.protocol.pauseProducing()
        self.protocol.write(b"x" * 100)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.websocket.producerState, "producing")

    def test_close_unblocks(self) -> None:
        """A connection the tunnel closes no longer holds the other connections up."""
        self.protocol.pauseProducing()
        self.protocol.write(b"x" * 100)
        self.protocol.close()
        self.assertEqual(self.websocket.producerState, "producing")


class CloseTests(SynchronousTestCase):
    def test_close_by_tunnel_is_not_reported_back(self) -> None:
        protocol, transport, connection = local()
        protocol.close()
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(connection.lost, 0)

    def test_close_unregisters_producer_first(self) -> None:
        """
        Regression: Twisted never closes a transport whose streaming producer
        is paused (its buffer drains, it resumes the producer instead), so a
        back-pressured connection closed by a reset stayed open for ever.
        """
        protocol, transport, _ = local()
        protocol.pauseProducing()  # the socket's buffer is full
        protocol.write(b"last bytes")
        protocol.close()
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"last bytes")

    def test_refuse_unregisters_producer_first(self) -> None:
        protocol, transport, _ = local()
        protocol.refuse()
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)

    def test_nothing_relayed_after_close(self) -> None:
        protocol, transport, connection = local()
        protocol.close()
        protocol.dataReceived(b"late")
        protocol.write(b"late")
        self.assertEqual(connection.data, [])
        self.assertEqual(transport.value(), b"")

    def test_close_is_idempotent(self) -> None:
        protocol, transport, _ = local()
        protocol.close()
        protocol.close()
        self.assertTrue(transport.disconnecting)


class SendNowTests(TestCase):
    """On a real socket, a write from the tunnel leaves in the same reactor turn."""

    async def test_write_is_on_the_socket_when_it_returns(self) -> None:
        made: Deferred[LocalStreamProtocol] = Deferred()
        factory = Factory.forProtocol(
            lambda: LocalStreamProtocol(
                InboundFlow(), RecordingTunnelConnection(), on_made=made.callback
            )
        )
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        peer = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(peer.close)
        protocol = await made
        protocol.write(b"hello")
        self.assertEqual(readable_bytes(peer), 5)
        self.assertNotIn(protocol.transport, reactor.getWriters())
        protocol.close()
