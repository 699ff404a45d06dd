"""
Tests for L{aws_localproxy.protocol.tunnel} in source mode.
"""

from __future__ import annotations

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.errors import RecoverableTunnelError
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.service_state import INT32_MAX
from aws_localproxy.protocol.wire import Limits, Message
from tests.fakes.local import FakeLocalConnection
from tests.fakes.peer import ctl, data, service_ids
from tests.fakes.tunnel import SSH, TWO, make_tunnel, shown_v3, started
from tests.support.logs import logs, texts


class SourceV3Tests(SynchronousTestCase):
    """A V3 source: one stream per service, many connections."""

    def setUp(self) -> None:
        self.tunnel, self.peer, self.local = started(Mode.SOURCE, TWO)

    def accept(self, service_id: str = "ssh"):
        local = FakeLocalConnection()
        connection = self.tunnel.local_connection_accepted(service_id, local)
        assert connection is not None
        return connection, local

    def test_first_connection_stream_start(self) -> None:
        """The first connection sends StreamStart stream 1, connection 1, with the reference's logs."""
        with logs() as captured:
            connection, local = self.accept()
        self.assertEqual(self.peer.take(), [("STREAM_START", "ssh", 1, 1)])
        self.assertEqual((connection.service_id, connection.connection_id), ("ssh", 1))
        self.assertIn("creating tcp connection id 1", texts(captured, LogLevel.info))
        self.assertIn(
            "Sending stream start, setting new stream ID to: 1, service id: ssh",
            texts(captured, LogLevel.debug),
        )

    def test_stream_start_bytes(self) -> None:
        """The StreamStart record is byte for byte what the reference sends."""
        tunnel, peer, local = started(Mode.SOURCE, {"ssh1": "5555"})
        tunnel.local_connection_accepted("ssh1", FakeLocalConnection())
        self.assertEqual(
            peer.records, [bytes.fromhex("000c080210012a047373683138 01".replace(" ", ""))]
        )

    def test_later_connections(self) -> None:
        """Later connections send ConnectionStart on the same stream with new IDs."""
        self.accept()
        with logs() as captured:
            self.accept()
            self.accept()
        self.assertEqual(
            self.peer.take(),
            [
                ("STREAM_START", "ssh", 1, 1),
                ("CONNECTION_START", "ssh", 1, 2),
                ("CONNECTION_START", "ssh", 1, 3),
            ],
        )
        self.assertIn(
            " sending connection start for service id: ssh connection id: 2",
            texts(captured, LogLevel.info),
        )

    def test_services_independent(self) -> None:
        """Each service has its own stream and connection numbering."""
        self.accept("ssh")
        self.accept("ssh")
        self.accept("web")
        self.assertEqual(
            self.peer.take(),
            [
                ("STREAM_START", "ssh", 1, 1),
                ("CONNECTION_START", "ssh", 1, 2),
                ("STREAM_START", "web", 1, 1),
            ],
        )

    def test_data_both_ways(self) -> None:
        """Local bytes go out as DATA after the start; tunnel DATA goes to its connection."""
        c1, l1 = self.accept()
        c2, l2 = self.accept()
        c1.data_received(b"one")
        c2.data_received(b"two")
        self.tunnel.data_received(data("ssh", 1, 2, b"to two") + data("ssh", 1, 1, b"to one"))
        self.assertEqual(
            self.peer.take(),
            [
                ("STREAM_START", "ssh", 1, 1),
                ("CONNECTION_START", "ssh", 1, 2),
                ("DATA", "ssh", 1, 1, b"one"),
                ("DATA", "ssh", 1, 2, b"two"),
            ],
        )
        self.assertEqual((l1.data, l2.data), (b"to one", b"to two"))

    def test_data_chunked(self) -> None:
        """Local bytes are sent in DATA records of at most max_payload_size, one per call."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH, limits=Limits(1000, 100))
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        peer.records.clear()
        payload = bytes(range(256)) * 2
        connection.data_received(payload)
        sent = peer.messages()
        self.assertEqual([len(m.payload) for m in sent], [100] * 5 + [12])
        self.assertEqual(b"".join(m.payload for m in sent), payload)

    def test_local_close_v3(self) -> None:
        """A local close flushes its data, then sends ConnectionReset once; others live."""
        c1, l1 = self.accept()
        c2, l2 = self.accept()
        c1.data_received(b"last words")
        c1.connection_lost()
        c1.connection_lost()
        c1.data_received(b"after")
        self.assertEqual(
            self.peer.take()[2:],
            [("DATA", "ssh", 1, 1, b"last words"), ("CONNECTION_RESET", "ssh", 1, 1)],
        )
        self.assertFalse(l2.closed)
        # The stream goes on: the next connection is a ConnectionStart on stream 1.
        self.accept()
        self.assertEqual(self.peer.take(), [("CONNECTION_START", "ssh", 1, 3)])
        # Data for the closed connection is dropped.
        self.tunnel.data_received(data("ssh", 1, 1, b"late"))
        self.assertEqual(l1.written, [])

    def test_connection_reset_received(self) -> None:
        """
        ConnectionReset closes that local connection only and is answered once
        with a ConnectionReset of its own, as the reference's close path does.
        """
        c1, l1 = self.accept()
        c2, l2 = self.accept()
        self.peer.records.clear()
        with logs() as captured:
            self.tunnel.data_received(ctl(Message.CONNECTION_RESET, "ssh", 1, 1))
        self.assertTrue(l1.closed)
        self.assertFalse(l2.closed)
        self.assertIn(
            "Handling explicit reset by closing TCP for service id: ssh connection id: 1",
            texts(captured, LogLevel.debug),
        )
        self.assertEqual(self.peer.take(), [("CONNECTION_RESET", "ssh", 1, 1)])
        c1.connection_lost()  # the I/O layer may still report it: nothing more
        self.assertEqual(self.peer.records, [])

    def test_connection_reset_stale_stream(self) -> None:
        """D6: a ConnectionReset for another stream, or stream 0, is dropped."""
        c1, l1 = self.accept()
        self.tunnel.data_received(
            ctl(Message.CONNECTION_RESET, "ssh", 9, 1) + ctl(Message.CONNECTION_RESET, "ssh", 0, 1)
        )
        self.assertFalse(l1.closed)

    def test_connection_reset_unknown_connection(self) -> None:
        """A ConnectionReset for an unknown connection ID is ignored."""
        c1, l1 = self.accept()
        with logs() as captured:
            self.tunnel.data_received(ctl(Message.CONNECTION_RESET, "ssh", 1, 5))
        self.assertFalse(l1.closed)
        self.assertIn(
            "Ignoring explicit reset... TCP socket has been deleted",
            texts(captured, LogLevel.debug),
        )

    def test_stream_reset_received(self) -> None:
        """P3/P4: StreamReset closes the service's connections only; reading goes on."""
        c1, l1 = self.accept("ssh")
        c2, l2 = self.accept("ssh")
        c3, l3 = self.accept("web")
        self.peer.records.clear()
        self.tunnel.data_received(
            ctl(Message.STREAM_RESET, "ssh", 1) + data("web", 1, 1, b"still here")
        )
        self.assertTrue(l1.closed and l2.closed)
        self.assertFalse(l3.closed)
        self.assertEqual(l3.data, b"still here")
        c1.connection_lost()
        self.assertEqual(self.peer.records, [])
        # The next ssh connection starts stream 2; connection IDs keep counting.
        self.accept("ssh")
        self.assertEqual(self.peer.take(), [("STREAM_START", "ssh", 2, 3)])

    def test_two_services_reset_together(self) -> None:
        """P4: resets of two services in one payload each complete on their own."""
        self.accept("ssh")
        self.accept("web")
        self.tunnel.data_received(
            ctl(Message.STREAM_RESET, "ssh", 1) + ctl(Message.STREAM_RESET, "web", 1)
        )
        self.peer.records.clear()
        self.accept("web")
        self.accept("ssh")
        self.assertEqual(
            self.peer.take(), [("STREAM_START", "web", 2, 2), ("STREAM_START", "ssh", 2, 2)]
        )

    def test_stale_stream_reset(self) -> None:
        """A StreamReset of an old stream, or of stream 0, is dropped."""
        c1, l1 = self.accept()
        with logs() as captured:
            self.tunnel.data_received(
                ctl(Message.STREAM_RESET, "ssh", 7) + ctl(Message.STREAM_RESET, "ssh", 0)
            )
        self.assertFalse(l1.closed)
        self.assertIn("Message received with streamid not set", texts(captured, LogLevel.warn))
        self.assertIn("Stale message received. Dropping", texts(captured, LogLevel.debug))

    def test_stale_data(self) -> None:
        """DATA of an old stream, or stream 0, never reaches a connection."""
        c1, l1 = self.accept()
        self.tunnel.data_received(ctl(Message.STREAM_RESET, "ssh", 1))
        c2, l2 = self.accept()
        self.tunnel.data_received(
            data("ssh", 1, 2, b"old") + data("ssh", 0, 2, b"zero") + data("ssh", 2, 2, b"new")
        )
        self.assertEqual(l2.data, b"new")

    def test_no_stream_yet(self) -> None:
        """
        D7: DATA and resets before any stream are dropped with the reference's
        warning; the DATA, of a stream this source never started (a previous
        process's), is answered with a StreamReset of that stream, naming its
        connection, once.
        """
        with logs() as captured:
            self.tunnel.data_received(
                data("ssh", 1, 1, b"x")
                + ctl(Message.STREAM_RESET, "ssh", 1)
                + ctl(Message.CONNECTION_RESET, "ssh", 1, 1)
                + data("ssh", 1, 1, b"y")
            )
        self.assertIn(
            "No stream found for service id: ssh. Ignore stream id: 1",
            texts(captured, LogLevel.warn),
        )
        self.assertEqual(self.peer.take(), [("STREAM_RESET", "ssh", 1, 1)])

    def test_wrong_direction_starts(self) -> None:
        """D8: StreamStart/ConnectionStart sent to a source are ignored with a warning."""
        c1, l1 = self.accept()
        with logs() as captured:
            self.tunnel.data_received(
                ctl(Message.STREAM_START, "ssh", 5, 1) + ctl(Message.CONNECTION_START, "ssh", 1, 9)
            )
        self.assertEqual(len(texts(captured, LogLevel.warn)), 2)
        self.assertFalse(l1.closed)
        self.assertEqual(self.peer.take(), [("STREAM_START", "ssh", 1, 1)])
        self.assertEqual(self.tunnel.peer_version, PeerVersion.V3)

    def test_ignore_handler_before_first_connection(self) -> None:
        """Before its first connection a service ignores every control message."""
        self.tunnel.data_received(
            ctl(Message.CONNECTION_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_RESET, "ssh", 1, 1)
            + ctl(0, "ssh")
            + ctl(77, "ssh")
        )
        self.assertEqual(self.peer.records, [])

    def test_unknown_type_in_transfer(self) -> None:
        """During transfer: UNKNOWN and a new type end the session (recoverable) unless ignorable."""
        self.accept()
        self.tunnel.data_received(ctl(77, "ssh", ignorable=True) + ctl(0, "ssh", ignorable=True))
        error = self.assertRaises(RecoverableTunnelError, self.tunnel.data_received, ctl(0, "ssh"))
        self.assertEqual(
            str(error),
            "Unexpected message type received during control message handling "
            "during data transfer: 0",
        )
        error = self.assertRaises(RecoverableTunnelError, self.tunnel.data_received, ctl(8, "ssh"))
        self.assertEqual(
            str(error),
            "Unrecognized message type received during control message handling "
            "during data transfer: 8",
        )

    def test_unknown_service_refused(self) -> None:
        """A connection for a service ID the session does not have is refused."""
        self.assertIsNone(self.tunnel.local_connection_accepted("rdp", FakeLocalConnection()))

    def test_max_active_connections(self) -> None:
        """S3: a connection over max_active_connections is refused; a closed one frees a place."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH, max_active_connections=3)
        connections = [
            tunnel.local_connection_accepted("ssh", FakeLocalConnection()) for _ in range(3)
        ]
        with logs() as captured:
            self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertTrue(texts(captured, LogLevel.warn))
        self.assertEqual(len(peer.records), 3)
        connections[1].connection_lost()
        self.assertIsNotNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual(peer.take()[-1], ("CONNECTION_START", "ssh", 1, 4))

    def test_default_max_active_connections(self) -> None:
        """S3: the 129th connection of a service is refused, not a crash."""
        accepted = [
            self.tunnel.local_connection_accepted("ssh", FakeLocalConnection()) for _ in range(129)
        ]
        self.assertEqual(sum(c is not None for c in accepted), 128)
        self.assertIsNone(accepted[-1])
        self.assertIsNotNone(self.tunnel.local_connection_accepted("web", FakeLocalConnection()))

    def test_200_connections(self) -> None:
        """200 simultaneous V3 connections each keep their own data."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH, max_active_connections=200)
        pairs = []
        for _ in range(200):
            local = FakeLocalConnection()
            pairs.append((tunnel.local_connection_accepted("ssh", local), local))
        for connection, _ in pairs:
            connection.data_received(b"from %d" % (connection.connection_id,))
        tunnel.data_received(
            b"".join(
                data("ssh", 1, c.connection_id, b"to %d" % (c.connection_id,)) for c, _ in pairs
            )
        )
        sent = peer.take()
        self.assertEqual(sent[0], ("STREAM_START", "ssh", 1, 1))
        self.assertEqual(sent[1:200], [("CONNECTION_START", "ssh", 1, i) for i in range(2, 201)])
        self.assertEqual(sent[200:], [("DATA", "ssh", 1, i, b"from %d" % i) for i in range(1, 201)])
        for connection, local in pairs:
            self.assertEqual(local.data, b"to %d" % (connection.connection_id,))
        for connection, _ in pairs[::2]:
            connection.connection_lost()
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 1, i) for i in range(1, 201, 2)])
        self.assertFalse(any(local.closed for _, local in pairs))

    def test_stream_id_wraps(self) -> None:
        """After INT32_MAX the next stream ID is 1."""
        service = self.tunnel._session.services["ssh"]  # type: ignore[union-attr]
        service.stream_id = INT32_MAX - 1
        for expected in (INT32_MAX, 1):
            self.accept()
            self.tunnel.data_received(ctl(Message.STREAM_RESET, "ssh", expected))
        starts = [m for m in self.peer.take() if m[0] == "STREAM_START"]
        self.assertEqual([m[2] for m in starts], [INT32_MAX, 1])


class SourceOldPeerTests(SynchronousTestCase):
    """A source with -y V2 / -y V1: one connection at a time, a stream per connection."""

    def test_v2_stream_per_connection(self) -> None:
        """Each connection gets a StreamStart with a new stream and no connection ID."""
        tunnel, peer, _ = started(Mode.SOURCE, TWO, peer_version=PeerVersion.V2)
        local = FakeLocalConnection()
        with logs() as captured:
            connection = tunnel.local_connection_accepted("ssh", local)
        assert connection is not None
        self.assertEqual(connection.connection_id, 0)
        self.assertIn(
            "Falling back to older protocol, setting new connection id to 0",
            texts(captured, LogLevel.info),
        )
        connection.data_received(b"hello")
        tunnel.data_received(data("ssh", 1, 0, b"back"))
        self.assertEqual(local.data, b"back")
        with logs() as captured:
            connection.connection_lost()
        self.assertIn(
            "simultaneous connections are not enabled, sending stream reset",
            texts(captured, LogLevel.info),
        )
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(
            peer.take(),
            [
                ("STREAM_START", "ssh", 1, 0),
                ("DATA", "ssh", 1, 0, b"hello"),
                ("STREAM_RESET", "ssh", 1, 0),
                ("STREAM_START", "ssh", 2, 0),
            ],
        )

    def test_v2_second_connection_refused(self) -> None:
        """S3: a second simultaneous connection of a service is refused, the first lives on."""
        tunnel, peer, _ = started(Mode.SOURCE, TWO, peer_version=PeerVersion.V2)
        first = FakeLocalConnection()
        tunnel.local_connection_accepted("ssh", first)
        with logs() as captured:
            self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertTrue(texts(captured, LogLevel.warn))
        self.assertFalse(first.closed)
        self.assertIsNotNone(tunnel.local_connection_accepted("web", FakeLocalConnection()))
        self.assertEqual(
            peer.take(), [("STREAM_START", "ssh", 1, 0), ("STREAM_START", "web", 1, 0)]
        )

    def test_v2_stream_reset_received(self) -> None:
        """A StreamReset closes the connection; the next one starts a new stream."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH, peer_version=PeerVersion.V2)
        local = FakeLocalConnection()
        tunnel.local_connection_accepted("ssh", local)
        tunnel.data_received(ctl(Message.STREAM_RESET, "ssh", 1))
        self.assertTrue(local.closed)
        self.assertIsNotNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual(peer.take()[-1], ("STREAM_START", "ssh", 2, 0))

    def test_v1_no_service_id(self) -> None:
        """With -y V1 messages carry no service ID and incoming ones are routed to the service."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH, peer_version=PeerVersion.V1)
        local = FakeLocalConnection()
        connection = tunnel.local_connection_accepted("ssh", local)
        assert connection is not None
        connection.data_received(b"x")
        tunnel.data_received(data("", 1, 0, b"y") + data("whatever", 1, 0, b"z"))
        self.assertEqual(local.data, b"yz")
        tunnel.data_received(ctl(Message.STREAM_RESET, "", 1))
        self.assertTrue(local.closed)
        self.assertEqual(peer.take(), [("STREAM_START", "", 1, 0), ("DATA", "", 1, 0, b"x")])

    def test_v1_data_before_stream(self) -> None:
        """
        D7: in V1 mode DATA and StreamReset before any stream are dropped, no
        crash; the DATA is answered with a V1 StreamReset of its stream.
        """
        tunnel, peer, _ = started(Mode.SOURCE, SSH, peer_version=PeerVersion.V1)
        tunnel.data_received(data("", 1, 0, b"y") + ctl(Message.STREAM_RESET, "", 1))
        self.assertEqual(peer.take(), [("STREAM_RESET", "", 1, 0)])


class SourceRefusalReasonTests(SynchronousTestCase):
    """
    A refused or ignored event says why, in one line: the operator's only
    clue when an application's connection is dropped at once.
    """

    def refused(self, tunnel, service_id: str = "ssh") -> list[str]:
        with logs() as captured:
            self.assertIsNone(tunnel.local_connection_accepted(service_id, FakeLocalConnection()))
        return texts(captured, LogLevel.warn)

    def test_unknown_service(self) -> None:
        """A listener whose service ID the session lacks: the ID is named."""
        tunnel, peer, _ = started(Mode.SOURCE, TWO)
        self.assertEqual(
            self.refused(tunnel, "rdp"), ["Refusing connection for unknown service id rdp"]
        )
        self.assertEqual(peer.records, [])

    def test_max_active_connections(self) -> None:
        """At the limit: the count and the setting that sets it are named."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH, max_active_connections=2)
        for _ in range(2):
            tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(
            self.refused(tunnel),
            [
                "Refusing connection for service id ssh: 2 connections are active, "
                "the maximum (tcp.max_active_connections)"
            ],
        )
        self.assertEqual(len(peer.records), 2)

    def test_older_peer(self) -> None:
        """Towards a V2 or V1 peer: the peer's version is named."""
        for version in (PeerVersion.V2, PeerVersion.V1):
            tunnel, _, _ = started(Mode.SOURCE, SSH, peer_version=version)
            tunnel.local_connection_accepted("ssh", FakeLocalConnection())
            self.assertEqual(
                self.refused(tunnel),
                [
                    "Refusing connection for service id ssh: simultaneous connections "
                    "are not enabled towards a V%d peer" % (int(version),)
                ],
            )

    def test_starts_sent_to_a_source(self) -> None:
        """StreamStart / ConnectionStart from the peer: the type and service are named."""
        tunnel, _, _ = started(Mode.SOURCE, SSH)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        with logs() as captured:
            tunnel.data_received(
                ctl(Message.STREAM_START, "ssh", 5, 1) + ctl(Message.CONNECTION_START, "ssh", 1, 9)
            )
        self.assertEqual(
            texts(captured, LogLevel.warn),
            [
                "Ignoring STREAM_START for service id ssh: a source does not accept it",
                "Ignoring CONNECTION_START for service id ssh: a source does not accept it",
            ],
        )

    def test_control_before_any_stream(self) -> None:
        """A control message for a service without a stream is dropped, and the debug log says so."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        with logs() as captured:
            tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 1, 1))
        self.assertIn(
            "Ignoring CONNECTION_START for service id ssh: no active stream",
            texts(captured, LogLevel.debug),
        )
        self.assertEqual(peer.records, [])


class SourceUnsentRecordsTests(SynchronousTestCase):
    """
    The source's side of the destination's restart regression
    (tests.protocol.test_destination_rules.RestartWithUnsentRecordsTests): while the
    WebSocket transport is full, a connection closes with bytes queued and
    the next one starts.  The source numbers streams and connections
    itself and never reuses an ID within a session, so the old connection's
    last bytes and reset go out in order, under IDs the new one does not
    carry, and nothing of the old connection is sent after its reset.
    """

    def paused(self, peer_version: PeerVersion):
        tunnel, peer, _ = make_tunnel(Mode.SOURCE, SSH, peer_version)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh"))
        shown_v3(tunnel)
        return tunnel, peer, scheduler

    def accept(self, tunnel):
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        return connection

    def old_then_new(self, peer_version: PeerVersion) -> list:
        """
        With the scheduler paused: a connection's last bytes, its close and
        the next connection's first bytes; what the peer got once resumed.
        """
        tunnel, peer, scheduler = self.paused(peer_version)
        first = self.accept(tunnel)
        scheduler.pauseProducing()
        first.data_received(b"last words")
        first.connection_lost()
        self.accept(tunnel).data_received(b"next")
        scheduler.resumeProducing()
        return peer.take()

    def test_v2_stream_reset_after_the_last_bytes_and_before_the_next_stream(self) -> None:
        """V2 format: the old stream's DATA, its StreamReset, then the new stream."""
        self.assertEqual(
            self.old_then_new(PeerVersion.V2),
            [
                ("STREAM_START", "ssh", 1, 0),
                ("DATA", "ssh", 1, 0, b"last words"),
                ("STREAM_RESET", "ssh", 1, 0),
                ("STREAM_START", "ssh", 2, 0),
                ("DATA", "ssh", 2, 0, b"next"),
            ],
        )

    def test_v3_connection_reset_after_the_last_bytes_new_connection_id(self) -> None:
        """
        V3 format: the next connection starts at once under a new connection
        ID; the old one's ConnectionReset follows its last byte.
        """
        self.assertEqual(
            self.old_then_new(PeerVersion.V3),
            [
                ("STREAM_START", "ssh", 1, 1),
                ("CONNECTION_START", "ssh", 1, 2),
                ("DATA", "ssh", 1, 1, b"last words"),
                ("DATA", "ssh", 1, 2, b"next"),
                ("CONNECTION_RESET", "ssh", 1, 1),
            ],
        )
