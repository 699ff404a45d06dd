"""
L{aws_localproxy.local.connection} under back-pressure and at its ends: the
settings that reach the socket (read size, TCP_NODELAY, read back from it),
the WebSocket held only while the socket is full and past the bound, a lost
or refused connection that relays nothing more, and a close that arrives
after every byte written before it, in order, on a real socket whose peer
reads late.
"""

from __future__ import annotations

import socket
from typing import Any, List

from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aws_localproxy.config.settings import LocalSockets
from aws_localproxy.local.connection import LocalStreamProtocol, describe_peer
from aws_localproxy.protocol.inbound_flow import InboundFlow
from tests.fakes.local import RecordingTunnelConnection
from tests.fakes.transport import TCPLikeTransport
from tests.support.helpers import wait_until
from tests.support.logs import logs, texts
from tests.support.payloads import assert_same_bytes, unique_payload

reactor: Any = _reactor


class SocketTransport(TCPLikeTransport):
    """A transport with a read size, as Twisted's socket transports have."""

    bufferSize = 65536


def connected(
    transport: StringTransport, sockets: LocalSockets = LocalSockets(), flow: Any = None
) -> tuple[LocalStreamProtocol, RecordingTunnelConnection, InboundFlow]:
    flow = flow or InboundFlow()
    connection = RecordingTunnelConnection()
    protocol = LocalStreamProtocol(flow, connection, sockets=sockets)
    protocol.makeConnection(transport)
    return protocol, connection, flow


class _Unreachable:
    def getPeer(self) -> Any:
        raise OSError("not connected")


class _NoAddress:
    def getPeer(self) -> Any:
        return "a pipe"


class DescribePeerTests(SynchronousTestCase):
    """How a connection's other end is named in the log."""

    def test_tcp(self) -> None:
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.1.2.3", 40000))
        self.assertEqual(describe_peer(transport), "10.1.2.3:40000")

    def test_unix(self) -> None:
        transport = StringTransport(peerAddress=UNIXAddress("/run/app.sock"))
        self.assertEqual(describe_peer(transport), "/run/app.sock")

    def test_unix_path_not_utf8(self) -> None:
        """A path that is not UTF-8 is still named, its odd bytes replaced."""
        transport = StringTransport(peerAddress=UNIXAddress(b"/run/\xff.sock"))
        self.assertEqual(describe_peer(transport), "/run/\ufffd.sock")

    def test_neither(self) -> None:
        self.assertEqual(describe_peer(_NoAddress()), "a pipe")

    def test_no_peer(self) -> None:
        self.assertEqual(describe_peer(_Unreachable()), "unknown")


class SettingsTests(SynchronousTestCase):
    def test_read_size(self) -> None:
        """C{tcp.read_buffer_size} is the most bytes one read of the socket takes."""
        transport = SocketTransport()
        connected(transport, LocalSockets(read_size=4096))
        self.assertEqual(transport.bufferSize, 4096)

    def test_default_read_size_is_twisteds(self) -> None:
        transport = SocketTransport()
        connected(transport)
        self.assertEqual(transport.bufferSize, 65536)


class LifetimeTests(SynchronousTestCase):
    def test_disconnect_logged(self) -> None:
        transport = TCPLikeTransport(peerAddress=IPv4Address("TCP", "10.1.2.3", 40000))
        protocol, _, _ = connected(transport)
        with logs() as captured:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(texts(captured, LogLevel.info), ["Disconnected from: 10.1.2.3:40000"])

    def test_nothing_written_after_the_socket_is_gone(self) -> None:
        transport = TCPLikeTransport()
        protocol, _, _ = connected(transport)
        protocol.write(b"before")
        protocol.connectionLost(Failure(ConnectionDone()))
        protocol.write(b"after")
        self.assertEqual(transport.value(), b"before")

    def test_refused_connection_relays_nothing(self) -> None:
        """A refused connection is not the tunnel's: neither its bytes nor its end reach it."""
        transport = TCPLikeTransport()
        protocol, connection, _ = connected(transport)
        protocol.refuse()
        protocol.dataReceived(b"late")
        protocol.write(b"late")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((connection.data, connection.lost), ([], 0))
        self.assertEqual(transport.value(), b"")

    def test_refused_then_closed_closes_once(self) -> None:
        transport = TCPLikeTransport()
        protocol, _, flow = connected(transport)
        protocol.refuse()
        protocol.close()  # the proxy stopping closes what is left
        self.assertTrue(transport.disconnecting)
        self.assertFalse(flow.websocket_paused)

    def test_resume_before_connected(self) -> None:
        """Paused and resumed before its socket is connected: read once connected."""
        protocol = LocalStreamProtocol(InboundFlow(), RecordingTunnelConnection())
        protocol.pause_reading()
        protocol.resume_reading()
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.producerState, "producing")


class BackPressureTests(SynchronousTestCase):
    """The WebSocket is held only while this socket is full and past its bound."""

    def setUp(self) -> None:
        self.websocket = StringTransport()
        self.flow = InboundFlow()
        self.flow.attach(self.websocket)
        self.transport = TCPLikeTransport()
        self.protocol, _, _ = connected(
            self.transport, LocalSockets(backlog_limit=100), flow=self.flow
        )

    def test_drained_socket_counts_from_zero(self) -> None:
        """After the socket drained, writes are not counted against the bound."""
        self.protocol.pauseProducing()
        self.protocol.write(unique_payload(99, seed=1))
        self.protocol.resumeProducing()
        self.protocol.write(unique_payload(500, seed=2))
        self.assertFalse(self.flow.websocket_paused)

    def test_full_again_counts_from_zero(self) -> None:
        self.protocol.pauseProducing()
        self.protocol.write(unique_payload(99, seed=1))
        self.protocol.resumeProducing()
        self.protocol.pauseProducing()
        self.protocol.write(unique_payload(99, seed=2))
        self.assertFalse(self.flow.websocket_paused)
        self.protocol.write(unique_payload(1, seed=3))
        self.assertTrue(self.flow.websocket_paused)

    def test_bound_from_settings(self) -> None:
        """C{tcp.write_buffer_size} is the bound: exactly that many bytes past a full socket."""
        for limit in (10, 1000):
            flow = InboundFlow()
            flow.attach(StringTransport())
            protocol, _, _ = connected(TCPLikeTransport(), LocalSockets(backlog_limit=limit), flow)
            protocol.pauseProducing()
            protocol.write(unique_payload(limit - 1))
            self.assertFalse(flow.websocket_paused, limit)
            protocol.write(b"!")
            self.assertTrue(flow.websocket_paused, limit)


class RealSocketTests(TestCase):
    """On a real socket whose peer reads late."""

    timeout = 30

    async def accepted(
        self, sockets: LocalSockets = LocalSockets()
    ) -> tuple[LocalStreamProtocol, socket.socket, RecordingTunnelConnection, InboundFlow]:
        made: Deferred[LocalStreamProtocol] = Deferred()
        flow = InboundFlow()
        flow.attach(StringTransport())
        connection = RecordingTunnelConnection()
        factory = Factory.forProtocol(
            lambda: LocalStreamProtocol(flow, connection, on_made=made.callback, sockets=sockets)
        )
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        peer = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(peer.close)
        protocol = await made
        self.addCleanup(protocol.transport.abortConnection)
        return protocol, peer, connection, flow

    async def test_no_delay_read_back(self) -> None:
        """Nagle is off on the accepted socket: a small write is not held for an ACK."""
        protocol, _, _, _ = await self.accepted()
        handle = protocol.transport.getHandle()
        self.assertNotEqual(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)

    async def test_reads_cut_to_the_read_size(self) -> None:
        protocol, peer, connection, _ = await self.accepted(LocalSockets(read_size=1000))
        data = unique_payload(20_000)
        peer.sendall(data)
        await wait_until(lambda: sum(map(len, connection.data)) >= len(data))
        assert_same_bytes(self, b"".join(connection.data), data)
        self.assertLessEqual(max(map(len, connection.data)), 1000)

    async def test_close_after_back_pressure_delivers_every_byte(self) -> None:
        """
        Far more than the socket takes is written while the peer does not
        read: the WebSocket is held, then released as the peer reads; the
        close that follows the writes arrives after all of them, in order.
        """
        protocol, peer, _, flow = await self.accepted(LocalSockets(backlog_limit=64 * 1024))
        chunks: List[bytes] = [unique_payload(16 * 1024, seed=i) for i in range(512)]
        held = False
        for chunk in chunks:
            protocol.write(chunk)
            held = held or flow.websocket_paused
        self.assertTrue(held, "8 MiB to a peer that does not read holds the WebSocket")
        protocol.close()
        received = bytearray()
        peer.setblocking(False)

        def drain() -> bool:
            while True:
                try:
                    data = peer.recv(1 << 16)
                except BlockingIOError:
                    return False
                if not data:
                    return True
                received.extend(data)

        await wait_until(drain, timeout=10, step=0.01)
        assert_same_bytes(self, bytes(received), b"".join(chunks))
        self.assertFalse(flow.websocket_paused)
