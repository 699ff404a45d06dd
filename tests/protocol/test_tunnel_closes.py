"""
Every close arrives, through a tunneling service that does not reset streams
when a peer goes or re-attaches (the AWS guide says it "may"; it need not):

 - a stopping proxy resets every open connection before it closes its
   WebSocket (L{Tunnel.reset_every_connection}), each reset after the bytes
   already queued for its connection;
 - DATA that no connection of the session can take is answered with a reset
   once, when that is the only way the peer learns its connection is gone
   (a restarted or reconnected peer), and never in a way that could end a
   live stream of the peer.

Scripted at the L{Tunnel} level, without I/O.
"""

from __future__ import annotations

from typing import List

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.tunnel_session import RESETS_REMEMBERED
from aws_localproxy.protocol.wire import Message
from tests.fakes.local import FakeLocalConnection
from tests.fakes.peer import FakePeer, ctl, data, service_ids
from tests.fakes.tunnel import SSH, TWO, PeerTunnel, make_tunnel, shown_v3, started
from tests.fakes.tunneling_service import (
    MemoryTunnelingService,
    join_destination,
    join_source,
    pump,
)


def paused_source(
    service_map=TWO, peer_version: PeerVersion = PeerVersion.V3, *, shown: bool = True
) -> tuple[PeerTunnel, FakePeer, OutboundScheduler]:
    """A source in a session whose scheduler the test pauses and resumes."""
    tunnel, peer, _ = make_tunnel(Mode.SOURCE, service_map, peer_version)
    scheduler = OutboundScheduler(peer.send_record)
    tunnel.session_started(SUBPROTOCOL_V3, scheduler)
    tunnel.data_received(service_ids(*service_map))
    if shown:
        shown_v3(tunnel)
    return tunnel, peer, scheduler


class StopResetsTests(SynchronousTestCase):
    """L{Tunnel.reset_every_connection}: what a stopping proxy sends before its close frame."""

    def test_source_v3_resets_each_stream_after_its_bytes(self) -> None:
        """
        A V3 source: one StreamReset per stream, naming one of its
        connections, after the bytes already queued for every connection of
        the stream; the local sockets are closed (flushing).  Failed before: a
        stop sent no reset at all.  (ConnectionResets alone leave the stream
        current at the reference destination, which then drops a restarted
        source's StreamStart.)
        """
        tunnel, peer, scheduler = paused_source()
        clients = [FakeLocalConnection() for _ in range(3)]
        ssh1 = tunnel.local_connection_accepted("ssh", clients[0])
        ssh2 = tunnel.local_connection_accepted("ssh", clients[1])
        web1 = tunnel.local_connection_accepted("web", clients[2])
        assert ssh1 is not None and ssh2 is not None and web1 is not None
        peer.take()
        scheduler.pauseProducing()
        ssh1.data_received(b"last words")
        ssh2.data_received(b"and more")
        web1.data_received(b"w" * 5)
        tunnel.reset_every_connection()
        self.assertEqual(peer.take(), [])
        self.assertEqual([client.closed for client in clients], [True] * 3)
        scheduler.resumeProducing()
        sent = peer.take()
        self.assertEqual(
            sorted(m for m in sent if m[0] != "DATA"),
            [("STREAM_RESET", "ssh", 1, 1), ("STREAM_RESET", "web", 1, 1)],
        )
        for data_record, reset in [
            (("DATA", "ssh", 1, 1, b"last words"), ("STREAM_RESET", "ssh", 1, 1)),
            (("DATA", "ssh", 1, 2, b"and more"), ("STREAM_RESET", "ssh", 1, 1)),
            (("DATA", "web", 1, 1, b"wwwww"), ("STREAM_RESET", "web", 1, 1)),
        ]:
            self.assertLess(sent.index(data_record), sent.index(reset))
        self.assertEqual(len(sent), 5)
        self.assertTrue(scheduler.idle)

    def test_once(self) -> None:
        """A second call (a second signal) sends nothing more."""
        tunnel, peer, _ = paused_source(SSH)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        peer.take()
        tunnel.reset_every_connection()
        tunnel.reset_every_connection()
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 1, 1)])

    def test_source_v2_resets_each_stream(self) -> None:
        """Towards a V2 peer (one connection a stream): a StreamReset per stream, after its bytes."""
        tunnel, peer, scheduler = paused_source(peer_version=PeerVersion.V2)
        ssh = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.local_connection_accepted("web", FakeLocalConnection())
        assert ssh is not None
        peer.take()
        scheduler.pauseProducing()
        ssh.data_received(b"bye")
        tunnel.reset_every_connection()
        scheduler.resumeProducing()
        sent = peer.take()
        self.assertEqual(
            sent,
            [
                ("DATA", "ssh", 1, 0, b"bye"),
                ("STREAM_RESET", "ssh", 1, 0),
                ("STREAM_RESET", "web", 1, 0),
            ],
        )

    def test_source_version_not_shown_yet(self) -> None:
        """
        The peer has not shown its version: the StreamReset every version
        understands, naming the connection (as when a client closes).
        """
        tunnel, peer, _ = paused_source(SSH, shown=False)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        peer.take()
        tunnel.reset_every_connection()
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 1, 1)])

    def test_v1_session(self) -> None:
        """A V1 session: a StreamReset without a service ID."""
        tunnel, peer, _ = make_tunnel(Mode.SOURCE, {"": "5555"})
        tunnel.session_started(SUBPROTOCOL_V1)
        client = FakeLocalConnection()
        tunnel.local_connection_accepted("", client)
        peer.take()
        tunnel.reset_every_connection()
        self.assertEqual(peer.take(), [("STREAM_RESET", "", 1, 0)])
        self.assertTrue(client.closed)

    def test_destination_v3(self) -> None:
        """
        A stopping destination resets the source's stream (naming its first
        connection), and a start that arrives before its close frame is
        answered with a reset instead of a new application connection.
        """
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 5, 1) + ctl(Message.CONNECTION_START, "ssh", 5, 2)
        )
        app1, app2 = (connection for _, connection in local.connections)
        app1_end = local.connections[0][0]
        app1_end.data_received(b"reply")
        peer.take()
        tunnel.reset_every_connection()
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 5, 1)])
        self.assertTrue(app1.closed and app2.closed)
        tunnel.data_received(
            ctl(Message.CONNECTION_START, "ssh", 5, 3) + data("ssh", 5, 3, b"late")
        )
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 5, 3)])
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 6, 1))
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 6, 1)])
        self.assertEqual(len(local.connections), 2)

    def test_source_refuses_new_connections(self) -> None:
        """While the last resets go out, a new client is refused, not started."""
        tunnel, peer, _ = paused_source(SSH)
        tunnel.reset_every_connection()
        self.assertIsNone(tunnel.local_connection_offered("ssh", FakeLocalConnection()))
        self.assertEqual(peer.take(), [])

    def test_source_v3_stream_without_connections(self) -> None:
        """
        A V3 stream whose connections have all closed is still the peer's
        current stream: a stop ends it with a StreamReset naming the last
        connection.  Without it the reference destination keeps that stream
        and drops a restarted source's StreamStart while resetting it.
        """
        tunnel, peer, _ = paused_source(SSH)
        ssh1 = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        ssh2 = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert ssh1 is not None and ssh2 is not None
        ssh1.connection_lost()
        ssh2.connection_lost()
        self.assertEqual(
            peer.take(),
            [
                ("STREAM_START", "ssh", 1, 1),
                ("CONNECTION_START", "ssh", 1, 2),
                ("CONNECTION_RESET", "ssh", 1, 1),
                ("CONNECTION_RESET", "ssh", 1, 2),
            ],
        )
        tunnel.reset_every_connection()
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 1, 2)])

    def test_source_v2_ended_stream_not_reset_again(self) -> None:
        """In V2 format a local close already ended the stream: a stop sends nothing more."""
        tunnel, peer, _ = paused_source(SSH, peer_version=PeerVersion.V2)
        ssh = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert ssh is not None
        ssh.connection_lost()
        self.assertEqual(
            peer.take(), [("STREAM_START", "ssh", 1, 0), ("STREAM_RESET", "ssh", 1, 0)]
        )
        tunnel.reset_every_connection()
        self.assertEqual(peer.take(), [])

    def test_without_session(self) -> None:
        """No session (stopping while connecting): nothing to do, nothing raised."""
        tunnel, peer, _ = make_tunnel(Mode.SOURCE, SSH)
        tunnel.reset_every_connection()
        self.assertEqual(peer.take(), [])


class UndeliverableDataTests(SynchronousTestCase):
    """DATA that no connection of the session can take is answered once, or not at all."""

    def test_destination_without_the_stream(self) -> None:
        """
        A destination whose session knows no stream (it restarted or
        reconnected) answers the source's DATA with a StreamReset of that
        stream, naming the connection; further DATA of the stream, of any
        connection, gets nothing more.  Failed before: dropped in silence.
        """
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(data("ssh", 7, 3, b"old"))
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 7, 3)])
        tunnel.data_received(
            data("ssh", 7, 3, b"more") + data("ssh", 7, 4, b"other") + data("ssh", 7, 3, b"x")
        )
        self.assertEqual(peer.take(), [])
        self.assertEqual(local.connections, [])

    def test_destination_answer_withdrawn_by_a_repeated_start(self) -> None:
        """
        A source that repeats its stream IDs after a restart (the reference
        starts at 1): our answer to its old process's DATA, if still queued
        when the new process's StreamStart with that ID arrives, is withdrawn
        with the old stream's records instead of resetting the new stream.
        """
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, SSH)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh"))
        scheduler.pauseProducing()
        tunnel.data_received(data("ssh", 1, 1, b"old process"))
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        scheduler.resumeProducing()
        self.assertNotIn(("STREAM_RESET", "ssh", 1, 1), peer.take())
        self.assertEqual(len(local.connections), 1)
        self.assertFalse(local.connections[0][1].closed)

    def test_destination_stale_stream_beside_the_current(self) -> None:
        """DATA of a stream other than the current one: its StreamReset, once; the current goes on."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 9, 1))
        tunnel.data_received(data("ssh", 8, 1, b"stale") + data("ssh", 8, 1, b"stale"))
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 8, 1)])
        tunnel.data_received(data("ssh", 9, 1, b"live"))
        self.assertEqual(local.connections[0][1].data, b"live")
        self.assertFalse(local.connections[0][1].closed)

    def test_destination_v2_format(self) -> None:
        """A V2 source's DATA (no connection ID) of an unknown stream: a plain StreamReset."""
        tunnel, peer, _ = started(Mode.DESTINATION, SSH)
        tunnel.data_received(data("ssh", 4, 0, b"v2"))
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 4, 0)])

    def test_destination_v1_format(self) -> None:
        """A V1 source's DATA (no service ID) of an unknown stream: a V1 StreamReset."""
        tunnel, peer, _ = make_tunnel(Mode.DESTINATION, {"": "22"})
        tunnel.session_started(SUBPROTOCOL_V1)
        tunnel.data_received(data("", 4, 0, b"v1"))
        self.assertEqual(peer.take(), [("STREAM_RESET", "", 4, 0)])

    def test_destination_current_stream_unknown_connection_not_answered(self) -> None:
        """
        A destination does not answer DATA of its current stream that no
        connection takes: it reset that connection itself, and an answer
        could overtake the source's start of a new connection with that ID.
        """
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 9, 1))
        local.connections[0][0].connection_lost()
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 9, 1)])
        tunnel.data_received(data("ssh", 9, 1, b"in flight") + data("ssh", 9, 5, b"?"))
        self.assertEqual(peer.take(), [])

    def test_destination_stream_it_reset_not_answered(self) -> None:
        """DATA in flight for a V2 stream the destination reset itself: no second reset."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH, peer_version=PeerVersion.V2)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 9))
        local.connections[0][0].connection_lost()
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 9, 0)])
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 10))
        tunnel.data_received(data("ssh", 9, 0, b"in flight"))
        self.assertEqual(peer.take(), [])

    def test_source_reconnected_connection_unknown(self) -> None:
        """
        A source's new session (a reconnect) keeps its stream ID: DATA of that
        stream for a connection the old session closed without telling is
        answered with a ConnectionReset of that connection, once.
        """
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("ssh"))
        peer.take()
        tunnel.data_received(data("ssh", 1, 1, b"for the old client") + data("ssh", 1, 1, b"more"))
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 1, 1)])

    def test_source_connection_it_reset_not_answered(self) -> None:
        """DATA in flight for a connection the source reset itself: no second reset."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        first = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert first is not None
        first.connection_lost()
        peer.take()
        tunnel.data_received(data("ssh", 1, 1, b"in flight"))
        self.assertEqual(peer.take(), [])

    def test_source_stream_never_started(self) -> None:
        """
        A restarted source gets DATA of its previous process's stream: a
        StreamReset of that stream (naming the connection), once per stream.
        """
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        tunnel.data_received(
            data("ssh", 4242, 1, b"old") + data("ssh", 4242, 2, b"old") + data("ssh", 4243, 1, b"")
        )
        self.assertEqual(
            peer.take(), [("STREAM_RESET", "ssh", 4242, 1), ("STREAM_RESET", "ssh", 4243, 1)]
        )

    def test_source_answer_goes_before_its_own_stream_of_that_id(self) -> None:
        """
        A source answers DATA of a stream it has not started with that
        stream's StreamReset; when its next stream takes the same ID (here:
        its first, stream 1), the answer, queued first, goes out before the
        new StreamStart even while the WebSocket transport is full.  Records
        arrive in order (V3 guide: "delivered reliably and in order"), so the
        peer applies the reset to its own stream 1 or ignores it, never to
        the stream that starts after it.  The new connection's bytes and its
        own reset follow (a StreamReset naming it: the peer has not shown its
        version yet).  The state machine's model once took the answer for the
        new connection's reset.
        """
        tunnel, peer, _ = make_tunnel(Mode.SOURCE, SSH)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh"))
        scheduler.pauseProducing()
        tunnel.data_received(data("ssh", 1, 1, b"not ours"))
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        connection.data_received(b"new")
        connection.connection_lost()
        scheduler.resumeProducing()
        self.assertEqual(
            peer.take(),
            [
                ("STREAM_RESET", "ssh", 1, 1),
                ("STREAM_START", "ssh", 1, 1),
                ("DATA", "ssh", 1, 1, b"new"),
                ("STREAM_RESET", "ssh", 1, 1),
            ],
        )

    def test_source_stream_reset_answer_after_the_closing_connections_bytes(self) -> None:
        """
        Regression (found by the state machine, tests.protocol.test_tunnel_fuzz,
        "DATA of L0 after its reset"): a V3 source's connection closes with
        bytes still queued (the WebSocket transport is full), so its lane
        holds them and its ConnectionReset; then the peer falls back to V2
        with DATA of the stream without a connection ID, which no connection
        takes and is answered with a StreamReset of the stream.  That reset
        ends the closing connection at the peer too: like every reset of
        ours it goes after the bytes already read (failed before: it went
        first, as a control record, and the connection's last bytes followed
        it, to be dropped by the peer as stale).
        """
        tunnel, peer, scheduler = paused_source(SSH)
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        peer.take()
        scheduler.pauseProducing()
        connection.data_received(b"last words")
        connection.connection_lost()
        tunnel.data_received(data("ssh", 1, 0, b"from a V2 peer"))
        scheduler.resumeProducing()
        self.assertEqual(
            peer.take(),
            [
                ("DATA", "ssh", 1, 1, b"last words"),
                ("CONNECTION_RESET", "ssh", 1, 1),
                ("STREAM_RESET", "ssh", 1, 0),
            ],
        )

    def test_destination_old_stream_reset_answer_after_its_closing_connections_bytes(
        self,
    ) -> None:
        """
        The same at a destination: a connection of stream 1 closes with bytes
        queued, the source starts stream 2, and DATA of stream 1 still in
        flight is answered with stream 1's StreamReset, after the closed
        connection's last bytes and ConnectionReset.
        """
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, SSH)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh") + ctl(Message.STREAM_START, "ssh", 1, 1))
        old, _ = local.connection("ssh", 1)
        scheduler.pauseProducing()
        old.data_received(b"last words")
        old.connection_lost()
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 2, 1) + data("ssh", 1, 1, b"late"))
        scheduler.resumeProducing()
        self.assertEqual(
            peer.take(),
            [
                ("DATA", "ssh", 1, 1, b"last words"),
                ("CONNECTION_RESET", "ssh", 1, 1),
                ("STREAM_RESET", "ssh", 1, 1),
            ],
        )

    def test_source_v2_current_stream_without_connection(self) -> None:
        """V2 format: DATA of the current stream after its connection is gone (reconnect): a StreamReset."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH, peer_version=PeerVersion.V2)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("ssh"))
        peer.take()
        tunnel.data_received(data("ssh", 1, 0, b"x"))
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 1, 0)])

    def test_not_answered(self) -> None:
        """No stream ID, or an unknown service ID: nothing to name, nothing sent."""
        tunnel, peer, _ = started(Mode.DESTINATION, SSH)
        tunnel.data_received(data("ssh", 0, 1, b"x") + data("nope", 3, 1, b"x"))
        self.assertEqual(peer.take(), [])

    def test_bounded_memory(self) -> None:
        """
        The memory of answers is bounded: a flood of made-up stream IDs is
        answered one for one (never more) and the memory does not grow past
        its bound.
        """
        tunnel, peer, _ = started(Mode.DESTINATION, SSH)
        count = RESETS_REMEMBERED + 10
        tunnel.data_received(b"".join(data("ssh", n, 1, b"") for n in range(1, count + 1)))
        self.assertEqual(len(peer.take()), count)
        session = tunnel._session
        assert session is not None
        self.assertEqual(len(session._resets_sent), RESETS_REMEMBERED)


class RestartedPeerConversationTests(SynchronousTestCase):
    """
    A source and a destination talking through a service that does not reset
    streams, while one of them restarts (a new L{Tunnel}, same tunnel).
    """

    def setUp(self) -> None:
        self.service = MemoryTunnelingService()

    def test_restarted_destination_closes_the_old_clients(self) -> None:
        """
        The destination restarts; the source's clients of the old stream
        learn it at their next bytes and are closed, while a connection of
        the source's next stream works.  Failed before: their bytes were
        dropped and the clients hung.
        """
        source = join_source(self.service, lambda: 0)
        destination, _ = join_destination(self.service)
        clients = [FakeLocalConnection() for _ in range(2)]
        ends = []
        for client in clients:  # the second once the destination showed it speaks V3
            ends.append(source.local_connection_accepted("ssh", client))
            pump(source, destination, self.service)
        self.assertNotIn(None, ends)
        destination.session_ended()  # the old destination process is gone
        destination, local = join_destination(self.service)
        assert ends[0] is not None
        ends[0].data_received(b"anyone there?")
        pump(source, destination, self.service)
        self.assertEqual([client.closed for client in clients], [True, True])
        self.assertEqual(local.connections, [])
        client = FakeLocalConnection()
        end = source.local_connection_accepted("ssh", client)
        assert end is not None
        end.data_received(b"hello")
        pump(source, destination, self.service)
        self.assertEqual(local.connections[0][1].data, b"hello")
        self.assertFalse(client.closed)

    def test_restarted_source_closes_the_old_applications(self) -> None:
        """
        Our source restarts (a new stream ID); the old application
        connection's next bytes reach it and are answered, so the destination
        closes the application connection.  Failed before: it stayed open.
        """
        old = join_source(self.service, lambda: 0)
        destination, local = join_destination(self.service)
        old.local_connection_accepted("ssh", FakeLocalConnection())
        pump(old, destination, self.service)
        old.session_ended()  # SIGKILL: nothing sent
        new = join_source(self.service, lambda: 5000)
        app_end, app = local.connections[0]
        app_end.data_received(b"prompt> ")
        pump(new, destination, self.service)
        self.assertTrue(app.closed)

    def test_stale_reset_does_not_end_the_live_stream(self) -> None:
        """
        The answer to old DATA can reach a peer that has moved on to a new
        stream: its stream-ID check drops it, the new stream goes on.  Here
        the old DATA reaches the new source after its StreamStart.
        """
        destination, local = join_destination(self.service)
        old = join_source(self.service, lambda: 0)
        old.local_connection_accepted("ssh", FakeLocalConnection())
        pump(old, destination, self.service)
        local.connections[0][0].data_received(b"late")
        in_flight = list(self.service.destination_out)
        self.service.destination_out.clear()
        old.session_ended()
        new = join_source(self.service, lambda: 5000)
        client = FakeLocalConnection()
        new.local_connection_accepted("ssh", client)
        pump(new, destination, self.service)
        for record in in_flight:
            new.data_received(record)
        self.assertEqual(
            [summary[0:3] for summary in _decoded(self.service.source_out)],
            [("STREAM_RESET", "ssh", 1)],
        )
        pump(new, destination, self.service)
        new_app_end, new_app = local.connections[-1]
        self.assertFalse(new_app.closed)
        new_app_end.data_received(b"still here")
        pump(new, destination, self.service)
        self.assertEqual(client.data, b"still here")
        self.assertFalse(client.closed)


def _decoded(records: List[bytes]) -> List[tuple]:
    from aws_localproxy.protocol.wire import decode_all
    from tests.fakes.peer import summary

    return [summary(message) for record in records for message in decode_all(record)]
