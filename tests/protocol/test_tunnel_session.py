"""
Tests for L{aws_localproxy.protocol.tunnel_session}: what one session leaves,
counts and sends once its connections, streams and the session itself end
(peer resets drop what was queued, our resets follow the bytes already read,
connection IDs skip those in use, nothing after the end).  Driven through a
real L{Tunnel} on the fakes of L{tests.fakes}.
"""

from __future__ import annotations

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.service_state import UINT32_MAX
from aws_localproxy.protocol.wire import Message
from tests.fakes.local import FakeLocalConnection
from tests.fakes.peer import ctl, data, service_ids
from tests.fakes.tunnel import SSH, make_tunnel, started
from tests.support.logs import logs, texts


class SessionStateTests(SynchronousTestCase):
    """What is left, counted and sent once connections, streams and sessions end."""

    def paused_source(self, peer_version: PeerVersion = PeerVersion.V3):
        """A started source whose scheduler can be paused (the WebSocket buffer full)."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH, peer_version)
        scheduler = OutboundScheduler(peer.send_record, max_payload=tunnel.limits.max_payload_size)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh"))
        return tunnel, peer, scheduler

    def test_peer_reset_drops_what_was_queued(self) -> None:
        """Bytes still queued for a connection the peer resets are dropped; only the answer goes."""
        tunnel, peer, scheduler = self.paused_source()
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        peer.take()
        scheduler.pauseProducing()
        connection.data_received(b"never sent")
        tunnel.data_received(ctl(Message.CONNECTION_RESET, "ssh", 1, 1))
        scheduler.resumeProducing()
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 1, 1)])

    def test_v2_peer_reset_not_answered(self) -> None:
        """Towards a V2 peer a stream reset closes the connection and nothing is answered."""
        tunnel, peer, _ = self.paused_source(PeerVersion.V2)
        local = FakeLocalConnection()
        tunnel.local_connection_accepted("ssh", local)
        peer.take()
        tunnel.data_received(ctl(Message.STREAM_RESET, "ssh", 1))
        self.assertTrue(local.closed)
        self.assertEqual(peer.records, [])

    def test_resets_counted(self) -> None:
        """connections_reset counts the peer's connection and stream resets, not our own closes."""
        tunnel, peer, local = started(Mode.SOURCE, SSH)
        connections = [
            tunnel.local_connection_accepted("ssh", FakeLocalConnection()) for _ in range(4)
        ]
        counters = tunnel.counters_for("ssh")
        connections[0].connection_lost()
        self.assertEqual(counters.connections_reset, 0)
        tunnel.data_received(ctl(Message.CONNECTION_RESET, "ssh", 1, 2))
        self.assertEqual(counters.connections_reset, 1)
        tunnel.data_received(ctl(Message.CONNECTION_RESET, "ssh", 1, 2))
        self.assertEqual(counters.connections_reset, 1)
        tunnel.data_received(ctl(Message.STREAM_RESET, "ssh", 1))
        self.assertEqual(counters.connections_reset, 3)

    def test_our_stream_reset_not_counted(self) -> None:
        """A stream we reset (V2 fall-back with several connections) is not a peer reset."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        for _ in range(2):
            tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        with logs() as captured:
            tunnel.data_received(data("ssh", 1, 0, b"v2 data"))
        self.assertEqual(tunnel.counters_for("ssh").connections_reset, 0)
        self.assertIn(("STREAM_RESET", "ssh", 1, 0), peer.take())
        self.assertIn(
            "The peer sent no connection ID while service id ssh has 2 connections: "
            "V2 format cannot carry them, resetting the stream",
            texts(captured, LogLevel.warn),
        )

    def test_connection_ids_skip_those_in_use(self) -> None:
        """After wrapping past UINT32_MAX, IDs still held by open connections are skipped."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        first = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        second = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert first is not None and second is not None
        tunnel._session.services["ssh"].last_connection_id = UINT32_MAX - 1  # type: ignore[union-attr]
        ids = [
            tunnel.local_connection_accepted("ssh", FakeLocalConnection()).connection_id  # type: ignore[union-attr]
            for _ in range(2)
        ]
        self.assertEqual(ids, [UINT32_MAX, 3])

    def test_nothing_after_the_session(self) -> None:
        """Once the WebSocket is gone: not ready, nothing sent, a late accept is refused."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        local = FakeLocalConnection()
        connection = tunnel.local_connection_accepted("ssh", local)
        assert connection is not None
        peer.take()
        tunnel.session_ended()
        self.assertTrue(local.closed)
        self.assertFalse(tunnel.ready)
        connection.data_received(b"late")
        connection.connection_lost()
        self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual(peer.records, [])


class CloseAllTests(SynchronousTestCase):
    """
    C{TunnelSession.close_all} while the session goes on.  Regression (found
    by the state machine, tests.protocol.test_tunnel_fuzz, "DATA of L0 after
    its reset"): a second SERVICE_IDS closes every connection while bytes
    they read are still queued (the WebSocket transport is full).  Those
    bytes are not sent afterwards: the session no longer has the
    connections, so they would follow the connection's reset or reach a new
    connection that takes the same IDs.
    """

    def paused_session(self, mode: Mode):
        """A tunnel in a V3 session with its service IDs, on a scheduler a test can pause."""
        tunnel, peer, local = make_tunnel(mode, SSH)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh"))
        return tunnel, peer, local, scheduler

    def test_late_service_ids_source(self) -> None:
        """
        A source: the peer's DATA for the closed connection is answered with
        its ConnectionReset, a control record, which goes first: the queued
        bytes would follow their connection's reset.
        """
        tunnel, peer, _, scheduler = self.paused_session(Mode.SOURCE)
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", 1, 1)])
        scheduler.pauseProducing()
        connection.data_received(b"queued")
        tunnel.data_received(service_ids("ssh") + data("ssh", 1, 1, b"in flight"))
        scheduler.resumeProducing()
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 1, 1)])
        self.assertTrue(scheduler.idle)

    def test_late_service_ids_destination(self) -> None:
        """
        The same at a destination, whose source then starts its stream again
        under the same IDs (a restarted source counting from 1): the closed
        connection's queued bytes would reach the new connection.
        """
        tunnel, peer, local, scheduler = self.paused_session(Mode.DESTINATION)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        old, _ = local.connection("ssh", 1)
        scheduler.pauseProducing()
        old.data_received(b"for the old client")
        tunnel.data_received(service_ids("ssh") + ctl(Message.STREAM_START, "ssh", 1, 1))
        scheduler.resumeProducing()
        self.assertEqual(peer.take(), [])
        self.assertEqual(len(local.connections), 2)
