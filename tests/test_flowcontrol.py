"""
Back-pressure both ways, on StringTransports (iosim never pauses producers).
"""

from __future__ import annotations

from typing import List

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.flowcontrol import FlowControl
from aws_localproxy.localconn import LocalStreamProtocol


class RecordingTunnelConnection:
    service_id = "ssh"
    connection_id = 1

    def __init__(self) -> None:
        self.data: List[bytes] = []
        self.lost = 0

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def connection_lost(self) -> None:
        self.lost += 1

    def connect_failed(self, reason: str) -> None:  # pragma: no cover
        raise AssertionError(reason)


def local(flow: FlowControl) -> tuple[LocalStreamProtocol, StringTransport, RecordingTunnelConnection]:
    connection = RecordingTunnelConnection()
    protocol = LocalStreamProtocol(flow, connection)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, connection


class OutboundTests(SynchronousTestCase):
    """Local -> tunnel: a full WebSocket pauses every local read."""

    def test_one_aggregate_producer(self) -> None:
        flow = FlowControl()
        websocket = StringTransport()
        flow.attach_websocket(websocket)
        self.assertTrue(websocket.streaming)
        self.assertIsNotNone(websocket.producer)

    def test_pause_and_resume_all_locals(self) -> None:
        flow = FlowControl()
        websocket = StringTransport()
        flow.attach_websocket(websocket)
        _, first, _ = local(flow)
        _, second, _ = local(flow)
        websocket.producer.pauseProducing()
        self.assertEqual((first.producerState, second.producerState), ("paused", "paused"))
        websocket.producer.resumeProducing()
        self.assertEqual((first.producerState, second.producerState), ("producing", "producing"))

    def test_new_local_starts_paused(self) -> None:
        flow = FlowControl()
        websocket = StringTransport()
        flow.attach_websocket(websocket)
        websocket.producer.pauseProducing()
        _, transport, _ = local(flow)
        self.assertEqual(transport.producerState, "paused")

    def test_detach_resumes_locals(self) -> None:
        """A stale session's producer cannot keep local reads paused."""
        flow = FlowControl()
        websocket = StringTransport()
        flow.attach_websocket(websocket)
        _, transport, _ = local(flow)
        old_producer = websocket.producer
        old_producer.pauseProducing()
        flow.detach_websocket()
        self.assertEqual(transport.producerState, "producing")
        old_producer.pauseProducing()
        self.assertEqual(transport.producerState, "producing")


class InboundTests(SynchronousTestCase):
    """Tunnel -> local: a full local socket pauses the WebSocket."""

    def test_local_registers_as_producer(self) -> None:
        protocol, transport, _ = local(FlowControl())
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)

    def test_full_local_pauses_websocket(self) -> None:
        flow = FlowControl()
        websocket = StringTransport()
        flow.attach_websocket(websocket)
        protocol, transport, _ = local(flow)
        protocol.pauseProducing()  # what Twisted does when the send buffer is full
        self.assertEqual(websocket.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(websocket.producerState, "producing")

    def test_waits_for_every_blocked_local(self) -> None:
        flow = FlowControl()
        websocket = StringTransport()
        flow.attach_websocket(websocket)
        first, _, _ = local(flow)
        second, _, _ = local(flow)
        first.pauseProducing()
        second.pauseProducing()
        first.resumeProducing()
        self.assertEqual(websocket.producerState, "paused")
        second.resumeProducing()
        self.assertEqual(websocket.producerState, "producing")

    def test_lost_local_unblocks(self) -> None:
        flow = FlowControl()
        websocket = StringTransport()
        flow.attach_websocket(websocket)
        protocol, _, connection = local(flow)
        protocol.pauseProducing()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(websocket.producerState, "producing")
        self.assertEqual(connection.lost, 1)

    def test_new_session_starts_paused_when_blocked(self) -> None:
        flow = FlowControl()
        protocol, _, _ = local(flow)
        protocol.pauseProducing()
        websocket = StringTransport()
        flow.attach_websocket(websocket)
        self.assertEqual(websocket.producerState, "paused")


class LocalStreamProtocolTests(SynchronousTestCase):
    def test_relays_both_ways(self) -> None:
        protocol, transport, connection = local(FlowControl())
        protocol.dataReceived(b"abc")
        protocol.write(b"xyz")
        self.assertEqual(connection.data, [b"abc"])
        self.assertEqual(transport.value(), b"xyz")

    def test_close_by_tunnel_is_not_reported_back(self) -> None:
        protocol, transport, connection = local(FlowControl())
        protocol.close()
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(connection.lost, 0)

    def test_local_close_is_reported(self) -> None:
        protocol, _, connection = local(FlowControl())
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(connection.lost, 1)

    def test_nothing_relayed_after_close(self) -> None:
        protocol, transport, connection = local(FlowControl())
        protocol.close()
        protocol.dataReceived(b"late")
        protocol.write(b"late")
        self.assertEqual(connection.data, [])
        self.assertEqual(transport.value(), b"")
