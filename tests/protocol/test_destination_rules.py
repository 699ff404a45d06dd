"""
Tests for L{aws_localproxy.protocol.tunnel} in destination mode.
"""

from __future__ import annotations

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.errors import RecoverableTunnelError
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.wire import Message
from tests.fakes.local import FakeLocalConnection
from tests.fakes.peer import ctl, data, service_ids
from tests.fakes.tunnel import SSH, TWO, make_tunnel, started
from tests.support.logs import logs, texts


class DestinationV3Tests(SynchronousTestCase):
    """A V3 destination: connects per StreamStart/ConnectionStart."""

    def setUp(self) -> None:
        self.tunnel, self.peer, self.local = started(Mode.DESTINATION, TWO)

    def test_waiting(self) -> None:
        """After SERVICE_IDS nothing connects until a StreamStart."""
        self.assertTrue(self.tunnel.ready)
        self.assertEqual(self.local.connections, [])

    def test_stream_start_connects(self) -> None:
        """StreamStart opens a local connection; DATA flows both ways after it."""
        with logs() as captured:
            self.tunnel.data_received(
                ctl(Message.STREAM_START, "ssh", 4, 1) + data("ssh", 4, 1, b"request")
            )
        connection, local = self.local.connection("ssh", 1)
        self.assertEqual(local.data, b"request")
        self.assertIn(
            "Setting up dest socket with tcp connection id 1", texts(captured, LogLevel.info)
        )
        self.assertIn("Received service id : ssh, stream id: 4", texts(captured, LogLevel.debug))
        connection.data_received(b"response")
        self.assertEqual(self.peer.take(), [("DATA", "ssh", 4, 1, b"response")])
        self.assertEqual(self.tunnel.peer_version, PeerVersion.V3)

    def test_connected_local_replaces_its_stand_in(self) -> None:
        """
        The local side's stand-in (still connecting) is replaced by the
        connected socket: DATA goes to the socket from then on.  A stand-in
        the connection no longer holds replaces nothing.
        """
        self.tunnel.data_received(ctl(Message.STREAM_START, "ssh", 4, 1))
        connection, stand_in = self.local.connection("ssh", 1)
        connected, stranger = FakeLocalConnection("connected"), FakeLocalConnection("stranger")
        connection.replace_local(stranger, FakeLocalConnection("other"))
        self.tunnel.data_received(data("ssh", 4, 1, b"one"))
        connection.replace_local(stand_in, connected)
        self.tunnel.data_received(data("ssh", 4, 1, b"two"))
        self.assertEqual((stand_in.data, connected.data), (b"one", b"two"))

    def test_connection_start(self) -> None:
        """ConnectionStart on the current stream opens another connection."""
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + data("ssh", 1, 2, b"two")
            + data("ssh", 1, 1, b"one")
        )
        self.assertEqual(self.local.connection("ssh", 1)[1].data, b"one")
        self.assertEqual(self.local.connection("ssh", 2)[1].data, b"two")

    def test_connection_start_wrong_stream(self) -> None:
        """D6: a ConnectionStart for another stream is dropped with a warning."""
        self.tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        with logs() as captured:
            self.tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 2, 2))
        self.assertEqual(len(self.local.connections), 1)
        self.assertTrue(texts(captured, LogLevel.warn))

    def test_connection_start_stream_zero(self) -> None:
        """A ConnectionStart without stream ID is a recoverable error."""
        self.tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        error = self.assertRaises(
            RecoverableTunnelError,
            self.tunnel.data_received,
            ctl(Message.CONNECTION_START, "ssh", 0, 2),
        )
        self.assertEqual(str(error), "No stream ID set for connection start message!")

    def test_stream_start_stream_zero(self) -> None:
        """A StreamStart without stream ID is a recoverable error."""
        error = self.assertRaises(
            RecoverableTunnelError,
            self.tunnel.data_received,
            ctl(Message.STREAM_START, "ssh", 0, 1),
        )
        self.assertEqual(str(error), "No stream ID set for stream start message!")

    def test_connection_start_while_waiting(self) -> None:
        """While waiting, a ConnectionStart starts the stream like a StreamStart."""
        self.tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 3, 2))
        connection, _ = self.local.connection("ssh", 2)
        connection.data_received(b"x")
        self.assertEqual(self.peer.take(), [("DATA", "ssh", 3, 2, b"x")])

    def test_duplicate_connection_id(self) -> None:
        """A ConnectionStart for a live connection ID resets that connection."""
        self.tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        self.tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 1, 1))
        self.assertTrue(self.local.connection("ssh", 1)[1].closed)
        self.assertEqual(self.peer.take(), [("CONNECTION_RESET", "ssh", 1, 1)])

    def test_same_stream_start_is_a_new_stream(self) -> None:
        """
        Issue 18: a StreamStart for the current stream ID (a restarted source
        counting from 1 again) is a new stream: the old connections get what
        they were sent and close, the new connection gets the new stream's
        bytes and none reach the old one; nothing is sent for the old stream
        (a StreamReset would carry the new stream's ID).
        """
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + data("ssh", 1, 1, b"before restart")
        )
        with logs() as captured:
            self.tunnel.data_received(
                ctl(Message.STREAM_START, "ssh", 1, 1) + data("ssh", 1, 1, b"after restart")
            )
        old1, old2, new = [local for _, local in self.local.connections]
        self.assertEqual(old1.data, b"before restart")
        self.assertTrue(old1.closed and old2.closed)
        self.assertFalse(new.closed)
        self.assertEqual(new.data, b"after restart")
        self.assertEqual(self.peer.take(), [])
        self.assertEqual(
            texts(captured, LogLevel.warn),
            [
                "Stream start received for the current stream id 1 of service id ssh: "
                "the source started again; closing the stream's connections"
            ],
        )
        connection = self.local.connection("ssh", 1)[0]
        connection.data_received(b"reply")
        self.assertEqual(self.peer.take(), [("DATA", "ssh", 1, 1, b"reply")])

    def test_same_stream_start_drops_the_old_unsent_bytes(self) -> None:
        """
        What an old connection had read but not yet sent is dropped: sent
        after the repeated StreamStart it would reach the restarted source as
        the new connection's bytes.
        """
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, SSH)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh") + ctl(Message.STREAM_START, "ssh", 1, 1))
        scheduler.pauseProducing()
        local.connection("ssh", 1)[0].data_received(b"for the old client")
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        local.connection("ssh", 1)[0].data_received(b"for the new client")
        scheduler.resumeProducing()
        self.assertEqual(peer.take(), [("DATA", "ssh", 1, 1, b"for the new client")])

    def test_restarted_source_connection_ids_start_again(self) -> None:
        """
        After the repeated StreamStart the restarted source's ConnectionStarts
        (IDs 2, 3, ... again) open new connections: the old ones with those
        IDs are gone, so none is taken for a reused live ID and reset.
        """
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + ctl(Message.CONNECTION_START, "ssh", 1, 3)
        )
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + data("ssh", 1, 2, b"two")
            + data("ssh", 1, 3, b"stale")
        )
        self.assertEqual(self.peer.take(), [])
        self.assertEqual(
            [local.closed for _, local in self.local.connections], [True] * 3 + [False] * 2
        )
        self.assertEqual(self.local.connection("ssh", 2)[1].data, b"two")
        self.assertEqual(self.local.connection("ssh", 2, index=0)[1].data, b"")
        self.assertEqual(self.local.connection("ssh", 3)[1].data, b"")

    def test_restarted_v2_source(self) -> None:
        """
        A V2 source restarted with the same stream ID, after a V3 stream with
        two connections: nothing is reset (falling back to V2 finds the old
        stream already gone), the new stream's one connection opens.
        """
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1) + ctl(Message.CONNECTION_START, "ssh", 1, 2)
        )
        self.tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1) + data("ssh", 1, 0, b"v2"))
        self.assertEqual(self.peer.take(), [])
        self.assertEqual(self.tunnel.peer_version, PeerVersion.V2)
        self.assertEqual(self.local.connections[-1][1].data, b"v2")
        self.assertEqual([local.closed for _, local in self.local.connections], [True, True, False])

    def test_new_stream_start_during_transfer(self) -> None:
        """D1: a new StreamStart closes the old connections and starts the new stream at once."""
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + ctl(Message.STREAM_START, "web", 1, 1)
        )
        with logs() as captured:
            self.tunnel.data_received(
                ctl(Message.STREAM_START, "ssh", 2, 1) + data("ssh", 2, 1, b"new stream")
            )
        old1, old2, web, new = [local for _, local in self.local.connections]
        self.assertTrue(old1.closed and old2.closed)
        self.assertFalse(web.closed)
        self.assertEqual(new.data, b"new stream")
        self.assertEqual(old1.written, [])
        self.assertEqual(
            texts(captured, LogLevel.warn),
            [
                "Stream start received during data transfer for service id :ssh"
                "with new stream id: 2",
                "Reset this stream",
            ],
        )
        # Old-stream data is stale now.
        self.tunnel.data_received(data("ssh", 1, 1, b"old"))
        self.assertEqual(new.data, b"new stream")

    def test_stream_reset(self) -> None:
        """StreamReset closes the service's connections and it waits for a new stream."""
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + ctl(Message.STREAM_START, "web", 1, 1)
        )
        self.tunnel.data_received(ctl(Message.STREAM_RESET, "ssh", 1))
        closed = [local.closed for _, local in self.local.connections]
        self.assertEqual(closed, [True, True, False])
        self.assertEqual(self.peer.records, [])
        # Waiting: a ConnectionStart starts a stream again.
        self.tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 2, 3))
        self.assertEqual(len(self.local.connections), 4)

    def test_connection_reset(self) -> None:
        """ConnectionReset of the current stream closes that connection only."""
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1) + ctl(Message.CONNECTION_START, "ssh", 1, 2)
        )
        self.tunnel.data_received(
            ctl(Message.CONNECTION_RESET, "ssh", 5, 1)  # D6: another stream
            + ctl(Message.CONNECTION_RESET, "ssh", 1, 2)
        )
        self.assertEqual([local.closed for _, local in self.local.connections], [False, True])

    def test_waiting_no_ops(self) -> None:
        """While waiting, resets are no-ops."""
        self.tunnel.data_received(
            ctl(Message.STREAM_RESET, "ssh", 1)
            + ctl(Message.CONNECTION_RESET, "ssh", 1, 1)
            + ctl(Message.SESSION_RESET, "ssh")
        )
        self.assertEqual(self.peer.records, [])
        self.assertEqual(self.local.connections, [])

    def test_local_close(self) -> None:
        """A local close sends ConnectionReset once; the stream stays in transfer."""
        self.tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        connection, _ = self.local.connection("ssh", 1)
        connection.data_received(b"bye")
        connection.connection_lost()
        connection.connection_lost()
        self.tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 1, 2))
        self.assertEqual(
            self.peer.take(),
            [("DATA", "ssh", 1, 1, b"bye"), ("CONNECTION_RESET", "ssh", 1, 1)],
        )
        self.assertEqual(len(self.local.connections), 2)

    def test_connect_failed_connection_start(self) -> None:
        """D4: a failed ConnectionStart resets that connection only."""
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1) + ctl(Message.CONNECTION_START, "ssh", 1, 2)
        )
        connection, local = self.local.connection("ssh", 2)
        connection.connect_failed("refused")
        connection.connect_failed("refused")
        self.assertEqual(self.peer.take(), [("CONNECTION_RESET", "ssh", 1, 2)])
        self.assertFalse(self.local.connection("ssh", 1)[1].closed)
        self.tunnel.data_received(data("ssh", 1, 1, b"still"))
        self.assertEqual(self.local.connection("ssh", 1)[1].data, b"still")

    def test_connect_failed_stream_start(self) -> None:
        """
        Issue 18: the first connection of a V3 stream that cannot connect is
        answered with a ConnectionReset for it, like any V3 connection (a
        StreamReset without a connection ID makes aws-c-iot drop its whole
        WebSocket); the stream and its other connections go on.
        """
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1) + ctl(Message.CONNECTION_START, "ssh", 1, 2)
        )
        connection, _ = self.local.connection("ssh", 1)
        connection.connect_failed("refused")
        self.assertEqual(self.peer.take(), [("CONNECTION_RESET", "ssh", 1, 1)])
        second = self.local.connection("ssh", 2)[1]
        self.assertFalse(second.closed)
        self.tunnel.data_received(data("ssh", 1, 2, b"still") + data("ssh", 1, 1, b"gone"))
        self.assertEqual(second.data, b"still")
        # The source's next connection starts on the same stream.
        self.tunnel.data_received(
            ctl(Message.CONNECTION_START, "ssh", 1, 3) + data("ssh", 1, 3, b"3")
        )
        self.assertEqual(self.local.connection("ssh", 3)[1].data, b"3")

    def test_connect_failed_only_connection(self) -> None:
        """The stream's only connection failing leaves the stream open for the next one."""
        self.tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        self.local.connection("ssh", 1)[0].connect_failed("refused")
        self.assertEqual(self.peer.take(), [("CONNECTION_RESET", "ssh", 1, 1)])
        self.tunnel.data_received(
            ctl(Message.CONNECTION_START, "ssh", 1, 2) + data("ssh", 1, 2, b"2")
        )
        self.assertEqual(self.local.connection("ssh", 2)[1].data, b"2")
        self.assertEqual(self.peer.take(), [])

    def test_stream_reset_follows_a_closing_connections_last_bytes(self) -> None:
        """
        Regression (found by the state machine): a connection that closed with
        bytes still queued (its lane no longer in the service's table) had
        them sent after a StreamReset of its stream, so the peer dropped them.
        (A V3 stream is reset when the peer turns out to be V2 while it
        carries several connections.)
        """
        tunnel = make_tunnel(Mode.DESTINATION, TWO)[0]
        scheduler = OutboundScheduler(self.peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh", "web"))
        tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + ctl(Message.CONNECTION_START, "ssh", 1, 3)
        )
        self.peer.records.clear()
        local_side = tunnel._local  # type: ignore[attr-defined]
        second = local_side.connection("ssh", 2)[0]
        scheduler.pauseProducing()
        second.data_received(b"last words")
        second.connection_lost()
        tunnel.data_received(data("ssh", 1, 0, b"V2 now"))
        scheduler.resumeProducing()
        self.assertEqual(
            self.peer.take(),
            [
                ("DATA", "ssh", 1, 2, b"last words"),
                ("CONNECTION_RESET", "ssh", 1, 2),
                ("STREAM_RESET", "ssh", 1, 0),
            ],
        )

    def test_connect_fails_synchronously(self) -> None:
        """A connect that fails inside LocalSide.connect is reset and its local closed."""
        self.local.fail_synchronously = True
        self.tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        self.assertEqual(self.peer.take(), [("CONNECTION_RESET", "ssh", 1, 1)])
        self.assertTrue(self.local.connections[0][1].closed)

    def test_unknown_types(self) -> None:
        """
        Waiting and transfer: UNKNOWN and new types end the session (recoverable:
        the peer cannot stop the process), ignorable ones are skipped.
        """
        self.tunnel.data_received(ctl(9, "ssh", ignorable=True))
        error = self.assertRaises(RecoverableTunnelError, self.tunnel.data_received, ctl(0, "ssh"))
        self.assertEqual(
            str(error), "Unexpected message type received while waiting for stream start: 0"
        )
        error = self.assertRaises(RecoverableTunnelError, self.tunnel.data_received, ctl(9, "ssh"))
        self.assertEqual(
            str(error), "Unrecognized message type received while waiting for stream start: 9"
        )
        tunnel, _, _ = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        tunnel.data_received(ctl(9, "ssh", ignorable=True))
        error = self.assertRaises(RecoverableTunnelError, tunnel.data_received, ctl(0, "ssh"))
        self.assertIn("during data transfer: 0", str(error))
        error = self.assertRaises(RecoverableTunnelError, tunnel.data_received, ctl(12, "ssh"))
        self.assertIn("during data transfer: 12", str(error))


class DestinationOldPeerTests(SynchronousTestCase):
    """A destination whose source speaks V2 or V1."""

    def test_v2_source_falls_back(self) -> None:
        """A StreamStart without connection ID switches to V2 format for the session."""
        tunnel, peer, local = started(Mode.DESTINATION, TWO)
        with logs() as captured:
            tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 0) + data("ssh", 1, 0, b"q"))
        self.assertEqual(tunnel.peer_version, PeerVersion.V2)
        self.assertIn("reverting to v2 message format", texts(captured, LogLevel.debug))
        connection, conn_local = local.connection("ssh", 0)
        self.assertEqual(conn_local.data, b"q")
        connection.data_received(b"a")
        connection.connection_lost()
        self.assertEqual(peer.take(), [("DATA", "ssh", 1, 0, b"a"), ("STREAM_RESET", "ssh", 1, 0)])
        # Back to waiting: the next StreamStart connects again.
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 2, 0))
        self.assertEqual(len(local.connections), 2)

    def test_v2_connect_failed(self) -> None:
        """In V2 format a failed connect is a StreamReset."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH, peer_version=PeerVersion.V2)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 0))
        local.connections[0][0].connect_failed("refused")
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 1, 0)])

    def test_v2_peer_connect_failed(self) -> None:
        """A V2 source (no connection ID, no -y) gets a StreamReset for a failed connect."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 0))
        local.connections[0][0].connect_failed("refused")
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 1, 0)])
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 2, 0))
        self.assertEqual(len(local.connections), 2)

    def test_v1_peer_connect_failed(self) -> None:
        """A V1 session: a failed connect is a StreamReset without service ID."""
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, {"": "22"})
        tunnel.session_started(SUBPROTOCOL_V1)
        tunnel.data_received(ctl(Message.STREAM_START, "", 1, 0))
        local.connections[0][0].connect_failed("refused")
        self.assertEqual(peer.take(), [("STREAM_RESET", "", 1, 0)])

    def test_v1_peer_with_v1_flag(self) -> None:
        """-y V1: a StreamStart without service ID reaches the only service."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH, peer_version=PeerVersion.V1)
        tunnel.data_received(ctl(Message.STREAM_START, "", 1, 0) + data("", 1, 0, b"hi"))
        connection, conn_local = local.connection("ssh", 0)
        self.assertEqual(conn_local.data, b"hi")
        connection.data_received(b"yo")
        self.assertEqual(peer.take(), [("DATA", "", 1, 0, b"yo")])

    def test_v1_format_map_keeps_empty_id(self) -> None:
        """A V1-format -d with several received IDs serves messages without service ID."""
        tunnel, peer, local = started(Mode.DESTINATION, {"": "22"}, ["a", "b"])
        tunnel.data_received(ctl(Message.STREAM_START, "", 1, 0))
        connection, _ = local.connection("", 0)
        connection.data_received(b"x")
        self.assertEqual(peer.take(), [("DATA", "", 1, 0, b"x")])


class RestartWithUnsentRecordsTests(SynchronousTestCase):
    """
    Regression (found by the state machine, tests.protocol.test_tunnel_fuzz): a
    source that starts a stream again under the same stream ID (a restarted
    source counting from 1) while the WebSocket transport is full.  Records
    of the old stream that are still queued (a closed connection's last
    bytes, its ConnectionReset, the StreamReset of a failed connect, the
    reset that refused a start) carry the same IDs as the new stream's: sent
    after the new StreamStart, the source would deliver the old bytes to its
    new client and take the old reset for the new connection's.  They are
    dropped: the repeated StreamStart tells that the source has forgotten
    the old stream.
    """

    def paused(self, peer_version: PeerVersion = PeerVersion.V3, **kwargs):
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, SSH, peer_version, **kwargs)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh"))
        return tunnel, peer, local, scheduler

    def test_v2_failed_connect_reset_not_sent_after_the_restart(self) -> None:
        """
        The state machine's example: a V2 source (StreamReset format),
        C{tcp.max_active_connections} 1; the local connect fails while the
        scheduler is paused, and the source starts the same stream again.  The
        old StreamReset is not sent ahead of the new connection's DATA (the
        source would reset its new client and drop the bytes).
        """
        tunnel, peer, local, scheduler = self.paused(PeerVersion.V2, max_active_connections=1)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 2))
        scheduler.pauseProducing()
        local.connections[0][0].connect_failed("refused")
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 2))
        new = local.connections[1][0]
        new.data_received(b"reply")
        new.connection_lost()
        scheduler.resumeProducing()
        self.assertEqual(
            peer.take(), [("DATA", "ssh", 2, 0, b"reply"), ("STREAM_RESET", "ssh", 2, 0)]
        )

    def test_v3_failed_connect_reset_not_sent_after_the_restart(self) -> None:
        """The same with a V3 source: the failed connect's ConnectionReset is dropped."""
        tunnel, peer, local, scheduler = self.paused()
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        scheduler.pauseProducing()
        local.connection("ssh", 1)[0].connect_failed("refused")
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        local.connection("ssh", 1)[0].data_received(b"reply")
        scheduler.resumeProducing()
        self.assertEqual(peer.take(), [("DATA", "ssh", 1, 1, b"reply")])
        self.assertFalse(local.connection("ssh", 1)[1].closed)

    def test_v3_closed_connection_bytes_not_sent_after_the_restart(self) -> None:
        """
        A connection closed by its application with bytes still queued: its
        DATA and ConnectionReset would reach the restarted source's new
        connection 1.
        """
        tunnel, peer, local, scheduler = self.paused()
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        scheduler.pauseProducing()
        old = local.connection("ssh", 1)[0]
        old.data_received(b"for the old client")
        old.connection_lost()
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        local.connection("ssh", 1)[0].data_received(b"for the new client")
        scheduler.resumeProducing()
        self.assertEqual(peer.take(), [("DATA", "ssh", 1, 1, b"for the new client")])

    def test_v2_closed_connection_bytes_not_sent_after_the_restart(self) -> None:
        """The same in V2 format: the old DATA and StreamReset name the same stream."""
        tunnel, peer, local, scheduler = self.paused(PeerVersion.V2)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1))
        scheduler.pauseProducing()
        old = local.connections[0][0]
        old.data_received(b"for the old client")
        old.connection_lost()
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1))
        local.connections[1][0].data_received(b"for the new client")
        scheduler.resumeProducing()
        self.assertEqual(peer.take(), [("DATA", "ssh", 1, 0, b"for the new client")])

    def test_refusal_not_sent_after_the_restart(self) -> None:
        """
        The ConnectionReset that refused a start over C{tcp.max_active_connections}
        names connection 2 of the old stream: the restarted source's own
        connection 2 must not get it.
        """
        tunnel, peer, local, scheduler = self.paused(max_active_connections=1)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        scheduler.pauseProducing()
        tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 1, 2))
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 2))
        local.connection("ssh", 2)[0].data_received(b"two")
        scheduler.resumeProducing()
        self.assertEqual(peer.take(), [("DATA", "ssh", 1, 2, b"two")])

    def test_other_streams_records_still_sent(self) -> None:
        """
        Only the repeated stream's records are dropped: a new stream ID leaves
        the old stream's last bytes and reset to be sent (the peer reads them
        as the old stream's), and another service's records are untouched.
        """
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, TWO)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh", "web"))
        tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1) + ctl(Message.STREAM_START, "web", 1, 1)
        )
        scheduler.pauseProducing()
        for service_id in ("ssh", "web"):
            connection = local.connection(service_id, 1)[0]
            connection.data_received(service_id.encode())
            connection.connection_lost()
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 2, 1))
        scheduler.resumeProducing()
        self.assertEqual(
            sorted(peer.take()),
            sorted(
                [
                    ("DATA", "ssh", 1, 1, b"ssh"),
                    ("CONNECTION_RESET", "ssh", 1, 1),
                    ("DATA", "web", 1, 1, b"web"),
                    ("CONNECTION_RESET", "web", 1, 1),
                ]
            ),
        )
