"""
Tests for a source's connections that wait for the tunnel (issue 18, part 3):
L{aws_localproxy.local.source.SourceSide} holds a connection the tunnel answers
with L{Wait} unread, starts it when the tunnel says so, and refuses it after
its bound; wired to a real L{Tunnel}, a connection accepted during a
reconnect starts once SERVICE_IDS arrives.
"""

from __future__ import annotations

import socket
from typing import Any, List, Tuple, Union

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aws_localproxy.config.settings import Settings
from aws_localproxy.local.connection import LocalStreamProtocol
from aws_localproxy.local.source import DEFAULT_HOLD_TIMEOUT, SourceSide
from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.protocol.interfaces import LocalConnection, TunnelConnection, Wait
from aws_localproxy.protocol.wire import MessageDecoder
from tests.fakes.local import RecordingTunnelConnection
from tests.fakes.peer import FakePeer, service_ids, summary
from tests.fakes.transport import TCPLikeTransport
from tests.fakes.tunnel import PeerTunnel
from tests.support.helpers import wait_until
from tests.support.logs import logs, texts

NOT_YET = Wait("the tunnel is not ready (a test)")

Answer = Union[TunnelConnection, Wait, None]


class Scripted:
    """The tunnel's answers, scripted: what C{accept} returns, and what it was asked."""

    def __init__(self) -> None:
        self.answer: Answer = NOT_YET
        self.asked: List[str] = []
        #: The local connections offered, in order.
        self.offered: List[LocalConnection] = []
        self.given_up: List[Tuple[str, str]] = []

    def accept(self, service_id: str, local: LocalConnection) -> Answer:
        self.asked.append(service_id)
        self.offered.append(local)
        return self.answer

    def give_up(self, service_id: str, wait: Wait) -> None:
        self.given_up.append((service_id, wait.reason))


class HoldingTests(SynchronousTestCase):
    """The holding itself, on a MemoryReactorClock and string transports."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.tunnel = Scripted()
        self.side = SourceSide(
            self.reactor,
            InboundFlow(),
            "127.0.0.1",
            accept=self.tunnel.accept,
            given_up=self.tunnel.give_up,
            on_fatal=lambda e: None,
        )
        self.side.services_ready({"ssh": "5555"})
        self.factory = self.reactor.tcpServers[0][1]

    def client(self) -> Tuple[LocalStreamProtocol, TCPLikeTransport]:
        protocol = self.factory.buildProtocol(None)
        transport = TCPLikeTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_held_unread(self) -> None:
        """A connection the tunnel cannot start yet stays open, its reading paused."""
        protocol, transport = self.client()
        self.assertEqual(transport.producerState, "paused")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.side.waiting, 1)

    def test_started_when_told(self) -> None:
        """When the tunnel says so, the waiting connection starts and is read."""
        protocol, transport = self.client()
        self.side.offer_waiting()
        self.assertEqual(self.side.waiting, 1, "still waiting while the tunnel says Wait")
        connection = RecordingTunnelConnection()
        self.tunnel.answer = connection
        self.side.offer_waiting()
        self.assertEqual(self.side.waiting, 0)
        self.assertIs(protocol.tunnel_connection, connection)
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"after")
        self.assertEqual(connection.data, [b"after"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_in_order(self) -> None:
        """Waiting connections are offered again oldest first."""
        first, _ = self.client()
        second, _ = self.client()
        del self.tunnel.offered[:]
        self.tunnel.answer = RecordingTunnelConnection()
        self.side.offer_waiting()
        self.assertEqual(self.tunnel.offered, [first, second])
        self.assertEqual(self.side.waiting, 0)

    def test_refused_after_the_bound(self) -> None:
        """After C{hold_timeout} the connection is refused, with a line that says why."""
        protocol, transport = self.client()
        self.reactor.advance(DEFAULT_HOLD_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.side.waiting, 0)
        ((service_id, reason),) = self.tunnel.given_up
        self.assertEqual(service_id, "ssh")
        self.assertIn("the tunnel is not ready (a test), still after 32.5 s", reason)
        # Offering again does not bring it back.
        self.tunnel.answer = RecordingTunnelConnection()
        self.side.offer_waiting()
        self.assertIsNone(protocol.tunnel_connection)

    def test_refused_when_the_tunnel_says_so(self) -> None:
        """The tunnel may refuse a waiting connection (its service is gone)."""
        _, transport = self.client()
        self.tunnel.answer = None
        self.side.offer_waiting()
        self.assertTrue(transport.disconnecting)
        self.assertEqual((self.side.waiting, self.reactor.getDelayedCalls()), (0, []))

    def test_client_gone(self) -> None:
        """A waiting connection whose client goes away is forgotten: no timer, no offer."""
        protocol, _ = self.client()
        protocol.connectionLost()
        self.assertEqual((self.side.waiting, self.reactor.getDelayedCalls()), (0, []))
        self.tunnel.asked.clear()
        self.side.offer_waiting()
        self.assertEqual(self.tunnel.asked, [])
        self.assertEqual(self.tunnel.given_up, [])

    def test_stop_refuses(self) -> None:
        """The proxy stopping refuses the waiting connections."""
        _, transport = self.client()
        self.side.stop()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.tunnel.given_up, [("ssh", "the local proxy is stopping")])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_bound_from_settings(self) -> None:
        """The default bound is the WebSocket connect timeout plus one retry delay."""
        settings = Settings()
        self.assertEqual(
            DEFAULT_HOLD_TIMEOUT,
            (settings.ws_open_handshake_timeout_ms + settings.ws_retry_delay_ms) / 1000,
        )
        self.assertGreaterEqual(DEFAULT_HOLD_TIMEOUT, settings.ws_open_handshake_timeout_ms / 1000)


def wired(reactor: object) -> Tuple[SourceSide, PeerTunnel, FakePeer]:
    """A source side and a tunnel, wired as L{LocalProxyService} wires them."""
    side = SourceSide(
        reactor,
        InboundFlow(),
        "127.0.0.1",
        accept=lambda service_id, local: tunnel.local_connection_offered(service_id, local),
        given_up=lambda service_id, wait: tunnel.local_connection_given_up(service_id, wait),
        on_fatal=lambda e: None,
    )
    peer = FakePeer()
    tunnel = PeerTunnel(Mode.SOURCE, peer, side, service_map={"ssh": "0"})
    tunnel.waiting_may_start = side.offer_waiting
    return side, tunnel, peer


def sent(peer: FakePeer) -> List[tuple]:
    return [summary(m) for m in MessageDecoder().feed(b"".join(peer.records))]


class ReconnectTests(SynchronousTestCase):
    """A connection accepted between a new WebSocket and its SERVICE_IDS."""

    def session_lost(self, clock: MemoryReactorClock) -> Tuple[PeerTunnel, FakePeer, Any]:
        """
        A source whose tunnel had its service IDs and lost its WebSocket;
        gives the tunnel, its peer and the ``ssh`` listener's factory.
        """
        _, tunnel, peer = wired(clock)
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("ssh"))
        factory = clock.tcpServers[0][1]
        tunnel.session_ended()
        return tunnel, peer, factory

    def test_waits_for_service_ids(self) -> None:
        """It is held, then started by the SERVICE_IDS (on main: refused at once)."""
        clock = MemoryReactorClock()
        tunnel, peer, factory = self.session_lost(clock)
        tunnel.session_started(SUBPROTOCOL_V3)
        protocol = factory.buildProtocol(None)
        transport = TCPLikeTransport()
        with logs() as captured:
            protocol.makeConnection(transport)
        self.assertIn(
            "Holding connection from 192.168.1.1:54321 for service id ssh: the tunnel is not ready "
            "(connecting, reconnecting or waiting for its service ids)",
            texts(captured, LogLevel.info),
        )
        self.assertEqual((transport.producerState, transport.disconnecting), ("paused", False))
        self.assertEqual(peer.records, [])
        tunnel.data_received(service_ids("ssh"))
        self.assertEqual(sent(peer), [("STREAM_START", "ssh", 1, 1)])
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"hello")
        self.assertEqual(sent(peer)[-1], ("DATA", "ssh", 1, 1, b"hello"))

    def test_refused_if_the_tunnel_stays_down(self) -> None:
        """No SERVICE_IDS within the bound: refused, and counted as refused."""
        clock = MemoryReactorClock()
        tunnel, peer, factory = self.session_lost(clock)
        protocol = factory.buildProtocol(None)
        transport = TCPLikeTransport()
        protocol.makeConnection(transport)
        with logs() as captured:
            clock.advance(DEFAULT_HOLD_TIMEOUT)
        self.assertTrue(transport.disconnecting)
        (line,) = [t for t in texts(captured, LogLevel.info) if t.startswith("Refusing")]
        self.assertEqual(
            line,
            "Refusing connection for service id ssh: the tunnel is not ready (connecting, "
            "reconnecting or waiting for its service ids), still after 32.5 s (how long a "
            "connection waits: the WebSocket connect timeout plus one retry delay)",
        )
        self.assertEqual(tunnel.counters["ssh"].connections_refused, 1)


class RealSocketTests(TestCase):
    """The same over real sockets: nothing is read from a held connection."""

    @inlineCallbacks
    def test_bytes_wait_in_the_socket(self) -> None:
        side, tunnel, peer = wired(reactor)
        self.addCleanup(side.stop)
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("ssh"))
        port = yield side.listening_port("ssh")
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3)
        client = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(client.close)
        client.sendall(b"early bytes")
        yield wait_until(lambda: side.waiting == 1)
        (waiting,) = side._waiting
        for _ in range(5):  # reactor turns in which a read would have happened
            yield deferLater(reactor, 0, lambda: None)
        self.assertEqual((waiting.early, peer.records), ([], []))
        self.assertTrue(waiting.protocol._reading_paused)
        tunnel.data_received(service_ids("ssh"))
        yield wait_until(lambda: len(sent(peer)) >= 2)
        self.assertEqual(
            sent(peer), [("STREAM_START", "ssh", 1, 1), ("DATA", "ssh", 1, 1, b"early bytes")]
        )
        tunnel.session_ended()
