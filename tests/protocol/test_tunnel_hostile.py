"""
Hostile and malformed input from the peer: the proxy never dies of it.

Every malformed record the protocol's rules name either ends the session
with a clear error (the connector closes the WebSocket, resets every local
connection and reconnects under the retry rules: its part is
L{tests.upstream.test_connector.ConnectorRecoveryTests}) or is ignored where
the rules say it is safe to ignore; in both cases no byte ever reaches a local
connection it was not sent to.  The destination's
C{tcp.max_active_connections} is checked exactly at the limit, with one
reset per refused connection.
"""

from __future__ import annotations

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.errors import RecoverableTunnelError
from aws_localproxy.protocol.wire import Limits, Message
from tests.fakes.hostile_peer import (
    DATA_WITH_EXTRA_FIELD,
    ENDS_SESSION,
    IGNORED,
    PARSE,
    field_key,
    raw_body,
)
from tests.fakes.local import FakeLocalConnection, FakeLocalSide
from tests.fakes.peer import FakePeer, ctl, data, service_ids
from tests.fakes.tunnel import TWO, PeerTunnel, started
from tests.support.logs import logs, texts


class TransferFixture:
    """
    A V3 destination with two services in transfer: ssh connections 1 and 2,
    web connection 1, each sent a first line.  L{check_no_crosstalk} proves
    every local connection holds only what was addressed to it.
    """

    def __init__(self, test: SynchronousTestCase, **kwargs) -> None:
        self.test = test
        self.tunnel, self.peer, self.local = started(Mode.DESTINATION, TWO, **kwargs)
        self.tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + ctl(Message.STREAM_START, "web", 1, 1)
            + data("ssh", 1, 1, b"ssh-1;")
            + data("ssh", 1, 2, b"ssh-2;")
            + data("web", 1, 1, b"web-1;")
        )
        self.ssh1 = self.local.connection("ssh", 1)[1]
        self.ssh2 = self.local.connection("ssh", 2)[1]
        self.web1 = self.local.connection("web", 1)[1]
        self.peer.records.clear()

    def check_no_crosstalk(self, extra: bytes = b"") -> None:
        self.test.assertEqual(self.ssh1.data, b"ssh-1;" + extra)
        self.test.assertEqual(self.ssh2.data, b"ssh-2;")
        self.test.assertEqual(self.web1.data, b"web-1;")

    def all_closed_once(self) -> bool:
        return all(c.close_calls == 1 for c in (self.ssh1, self.ssh2, self.web1))


class MalformedEndsSessionTests(SynchronousTestCase):
    """Each malformed record ends the session with its error line; locals close once."""

    def test_each_ends_session(self) -> None:
        for name, record, error_text in ENDS_SESSION:
            fixture = TransferFixture(self)
            # The bad record comes in the same payload as good DATA around it: what
            # precedes is delivered, nothing after it is.
            payload = data("ssh", 1, 1, b"before") + record + data("ssh", 1, 1, b"after")
            error = self.assertRaises(RecoverableTunnelError, fixture.tunnel.data_received, payload)
            self.assertTrue(str(error).startswith(error_text), "%s: %r" % (name, str(error)))
            # What the connector does with a RecoverableTunnelError.
            fixture.tunnel.session_ended()
            if error_text.startswith(PARSE):
                # The decoder fails on the whole payload: nothing of it is delivered.
                fixture.check_no_crosstalk()
            else:
                fixture.check_no_crosstalk(b"before")
            self.assertTrue(fixture.all_closed_once(), name)
            self.assertFalse(fixture.tunnel.ready, name)

    def test_same_in_split_frames(self) -> None:
        """The bad record split byte by byte over WebSocket frames ends the session the same."""
        for name, record, error_text in ENDS_SESSION:
            fixture = TransferFixture(self)
            raised = None
            for i in range(len(record)):
                try:
                    fixture.tunnel.data_received(record[i : i + 1])
                except RecoverableTunnelError as error:
                    raised = error
                    break
            self.assertIsNotNone(raised, name)
            self.assertTrue(str(raised).startswith(error_text), name)
            fixture.tunnel.session_ended()
            fixture.check_no_crosstalk()
            self.assertTrue(fixture.all_closed_once(), name)

    def test_over_length_prefix(self) -> None:
        """A length prefix over message.max_size ends the session before its body arrives."""
        tunnel, peer, local = started(Mode.DESTINATION, TWO, limits=Limits(1000, 500))
        error = self.assertRaises(RecoverableTunnelError, tunnel.data_received, b"\x03\xe9")
        self.assertIn("message length 1001 exceeds the maximum of 1000", str(error))

    def test_length_prefix_at_limit(self) -> None:
        """A record of exactly message.max_size is read (the bound is inclusive)."""
        tunnel, peer, local = started(Mode.DESTINATION, TWO, limits=Limits(1000, 500))
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        body = Message(
            type=Message.DATA, streamId=1, serviceId="ssh", connectionId=1, payload=b"p" * 500
        ).SerializeToString()
        # Pad with an ignorable unknown field up to exactly 1000 bytes.
        pad = 1000 - len(body) - 3
        body += field_key(15, 2) + bytes((pad & 0x7F | 0x80, pad >> 7)) + b"\x00" * pad
        self.assertEqual(len(body), 1000)
        tunnel.data_received(raw_body(body))
        self.assertEqual(local.connection("ssh", 1)[1].data, b"p" * 500)

    def test_payload_at_limit(self) -> None:
        """A payload of exactly 63 KiB is delivered whole."""
        fixture = TransferFixture(self)
        payload = b"y" * 64512
        fixture.tunnel.data_received(data("ssh", 1, 1, payload))
        fixture.check_no_crosstalk(payload)

    def test_stream_start_before_service_ids(self) -> None:
        """A destination's StreamStart before SERVICE_IDS ends the session."""
        peer, local = FakePeer(), FakeLocalSide()
        tunnel = PeerTunnel(Mode.DESTINATION, peer, local, service_map=TWO)
        tunnel.session_started(SUBPROTOCOL_V3)
        self.assertRaises(
            RecoverableTunnelError, tunnel.data_received, ctl(Message.STREAM_START, "ssh", 1, 1)
        )

    def test_unknown_type_while_waiting(self) -> None:
        """A non-ignorable unknown type for a service with no stream yet ends the session too."""
        tunnel, peer, local = started(Mode.DESTINATION, TWO)
        error = self.assertRaises(RecoverableTunnelError, tunnel.data_received, ctl(42, "ssh"))
        self.assertEqual(
            str(error),
            "Unrecognized message type received while waiting for stream start: 42",
        )

    def test_source_unknown_type(self) -> None:
        """A source in transfer ends the session for a non-ignorable unknown type."""
        tunnel, peer, local = started(Mode.SOURCE, TWO)
        mine = FakeLocalConnection()
        tunnel.local_connection_accepted("ssh", mine)
        error = self.assertRaises(
            RecoverableTunnelError, tunnel.data_received, ctl(42, "ssh", 1, 1)
        )
        self.assertIn(": 42", str(error))
        tunnel.session_ended()
        self.assertEqual(mine.close_calls, 1)


class MalformedIgnoredTests(SynchronousTestCase):
    """Records the rules let a proxy ignore: nothing changes, the transfer goes on."""

    def test_each_ignored(self) -> None:
        for name, record in IGNORED:
            fixture = TransferFixture(self)
            fixture.tunnel.data_received(record + data("ssh", 1, 1, b"after"))
            fixture.check_no_crosstalk(b"after")
            for connection in (fixture.ssh1, fixture.ssh2, fixture.web1):
                self.assertEqual(connection.close_calls, 0, name)
            self.assertTrue(fixture.tunnel.ready, name)
            self.assertEqual(len(fixture.local.connections), 3, name)

    def test_extra_field_ignored(self) -> None:
        """A field the schema does not have is skipped; the DATA is delivered to its connection."""
        fixture = TransferFixture(self)
        fixture.tunnel.data_received(DATA_WITH_EXTRA_FIELD)
        fixture.check_no_crosstalk(b"extra")

    def test_starts_sent_to_a_source(self) -> None:
        """StreamStart and ConnectionStart sent to a source are ignored with a warning."""
        tunnel, peer, local = started(Mode.SOURCE, TWO)
        mine = FakeLocalConnection()
        tunnel.local_connection_accepted("ssh", mine)
        peer.records.clear()
        with logs() as captured:
            tunnel.data_received(
                ctl(Message.STREAM_START, "ssh", 5, 1)
                + ctl(Message.CONNECTION_START, "ssh", 1, 1)
                + ctl(Message.CONNECTION_START, "ssh", 1, 7)
                + data("ssh", 1, 1, b"mine")
            )
        self.assertEqual(mine.data, b"mine")
        self.assertEqual(mine.close_calls, 0)
        self.assertEqual(peer.records, [])
        self.assertEqual(len(texts(captured, LogLevel.warn)), 3)

    def test_v2_peer_data_reaches_only_connection(self) -> None:
        """Toward a V2 peer (no connection IDs) DATA reaches the service's one connection only."""
        tunnel, peer, local = started(Mode.DESTINATION, TWO)
        tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 0)
            + ctl(Message.STREAM_START, "web", 1, 0)
            + data("ssh", 1, 0, b"s")
            + data("web", 1, 0, b"w")
            + data("ssh", 1, 5, b"t")
        )
        self.assertEqual(tunnel.peer_version, PeerVersion.V2)
        self.assertEqual(local.connection("ssh", 0)[1].data, b"st")
        self.assertEqual(local.connection("web", 0)[1].data, b"w")


class DestinationMaxActiveTests(SynchronousTestCase):
    """tcp.max_active_connections on a destination: exactly N open, a reset per refused one."""

    def fill(self, limit: int, asked: int):
        tunnel, peer, local = started(Mode.DESTINATION, TWO, max_active_connections=limit)
        records = ctl(Message.STREAM_START, "ssh", 1, 1) + b"".join(
            ctl(Message.CONNECTION_START, "ssh", 1, i) for i in range(2, asked + 1)
        )
        tunnel.data_received(records)
        return tunnel, peer, local

    def test_at_the_limit(self) -> None:
        """N asks with a limit of N: N local connections, no reset."""
        tunnel, peer, local = self.fill(3, 3)
        self.assertEqual(len(local.connections), 3)
        self.assertEqual(peer.take(), [])

    def test_one_over(self) -> None:
        """N+1 asks: N connections, one ConnectionReset for the refused one, warned once."""
        with logs() as captured:
            tunnel, peer, local = self.fill(3, 4)
        self.assertEqual(len(local.connections), 3)
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 1, 4)])
        warnings = [t for t in texts(captured, LogLevel.warn) if "tcp.max_active_connections" in t]
        self.assertEqual(len(warnings), 1)

    def test_a_reset_per_refused(self) -> None:
        """1,000 ConnectionStarts with the default limit: 128 open, 872 resets, one each."""
        tunnel, peer, local = started(Mode.DESTINATION, TWO)
        tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + b"".join(ctl(Message.CONNECTION_START, "ssh", 1, i) for i in range(2, 1001))
        )
        self.assertEqual(len(local.connections), 128)
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 1, i) for i in range(129, 1001)])
        # The other service has its own count.
        tunnel.data_received(ctl(Message.STREAM_START, "web", 1, 1))
        self.assertEqual(len(local.connections), 129)

    def test_refused_connection_data_dropped(self) -> None:
        """DATA for a refused connection ID reaches no connection."""
        tunnel, peer, local = self.fill(1, 2)
        tunnel.data_received(data("ssh", 1, 2, b"refused") + data("ssh", 1, 1, b"kept"))
        self.assertEqual(len(local.connections), 1)
        self.assertEqual(local.connection("ssh", 1)[1].data, b"kept")

    def test_place_freed_by_reset(self) -> None:
        """A ConnectionReset from the peer frees its place: the next ask is accepted."""
        tunnel, peer, local = self.fill(2, 3)
        peer.take()
        tunnel.data_received(
            ctl(Message.CONNECTION_RESET, "ssh", 1, 2) + ctl(Message.CONNECTION_START, "ssh", 1, 4)
        )
        self.assertEqual(len(local.connections), 3)
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 1, 2)])
        tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 1, 5))
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "ssh", 1, 5)])

    def test_place_freed_by_local_close(self) -> None:
        """A local connection that closes frees its place."""
        tunnel, peer, local = self.fill(2, 2)
        connection, _ = local.connection("ssh", 2)
        connection.connection_lost()
        peer.take()
        tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 1, 3))
        self.assertEqual(len(local.connections), 3)
        self.assertEqual(peer.take(), [])

    def test_place_freed_by_failed_connect(self) -> None:
        """A connection whose local connect failed frees its place."""
        tunnel, peer, local = self.fill(2, 2)
        connection, _ = local.connection("ssh", 2)
        connection.connect_failed("refused")
        peer.take()
        tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 1, 3))
        self.assertEqual(peer.take(), [])
        self.assertEqual(len(local.connections), 3)

    def test_stream_reset_clears_count(self) -> None:
        """After a StreamReset the full limit is available to the next stream."""
        tunnel, peer, local = self.fill(2, 2)
        tunnel.data_received(
            ctl(Message.STREAM_RESET, "ssh", 1)
            + ctl(Message.STREAM_START, "ssh", 2, 1)
            + ctl(Message.CONNECTION_START, "ssh", 2, 2)
        )
        self.assertEqual(len(local.connections), 4)
        self.assertEqual(peer.take(), [])

    def test_limit_one_refuses_connection_start(self) -> None:
        """A limit of 1: the StreamStart's connection opens, every ConnectionStart is reset."""
        tunnel, peer, local = self.fill(1, 3)
        self.assertEqual(len(local.connections), 1)
        self.assertEqual(
            peer.take(),
            [("CONNECTION_RESET", "ssh", 1, 2), ("CONNECTION_RESET", "ssh", 1, 3)],
        )

    def test_session_end_clears_count(self) -> None:
        """A new session starts with no connections counted."""
        tunnel, peer, local = self.fill(2, 2)
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(
            service_ids("ssh", "web")
            + ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
        )
        self.assertEqual(len(local.connections), 4)
        self.assertEqual(peer.take(), [])


class FallbackWithSeveralConnectionsTests(SynchronousTestCase):
    """
    A peer that stops sending connection IDs while a stream carries several
    connections: V2 format cannot tell them apart, so that stream is reset
    (after the bytes already read, in their own connections' records) rather
    than its connections' DATA going out under one ID.
    """

    def test_source_stream_reset(self) -> None:
        tunnel, peer, _ = started(Mode.SOURCE, TWO)
        first, second, web = FakeLocalConnection(), FakeLocalConnection(), FakeLocalConnection()
        c1 = tunnel.local_connection_accepted("ssh", first)
        c2 = tunnel.local_connection_accepted("ssh", second)
        cw = tunnel.local_connection_accepted("web", web)
        assert c1 is not None and c2 is not None and cw is not None
        peer.take()
        # Held in their lanes (the WebSocket is busy) when the fall-back comes.
        scheduler = tunnel._session.outbound
        scheduler.pauseProducing()
        c1.data_received(b"one")
        c2.data_received(b"two")
        with logs() as captured:
            tunnel.data_received(data("web", 1, 0, b"v2 reply"))
        self.assertEqual(tunnel.peer_version, PeerVersion.V2)
        self.assertEqual(web.data, b"v2 reply")
        # ssh had two connections: its stream is reset, both closed.
        self.assertEqual(first.close_calls, 1)
        self.assertEqual(second.close_calls, 1)
        self.assertEqual(web.close_calls, 0)
        self.assertTrue(any("connection ID" in t for t in texts(captured, LogLevel.warn)), captured)
        c1.data_received(b"late")
        cw.data_received(b"web data")
        scheduler.resumeProducing()
        self.assertEqual(
            peer.take(),
            [
                ("DATA", "ssh", 1, 1, b"one"),
                ("DATA", "ssh", 1, 2, b"two"),
                ("STREAM_RESET", "ssh", 1, 0),
                ("DATA", "web", 1, 0, b"web data"),
            ],
        )

    def test_destination_stream_reset(self) -> None:
        tunnel, peer, local = started(Mode.DESTINATION, TWO)
        tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1)
            + ctl(Message.CONNECTION_START, "ssh", 1, 2)
            + ctl(Message.STREAM_START, "web", 1, 1)
        )
        (c1, l1), (c2, l2), (cw, lw) = local.connections
        peer.take()
        scheduler = tunnel._session.outbound
        scheduler.pauseProducing()
        c1.data_received(b"one")
        tunnel.data_received(data("web", 1, 0, b"w"))
        self.assertEqual((l1.close_calls, l2.close_calls, lw.close_calls), (1, 1, 0))
        self.assertEqual(lw.data, b"w")
        cw.data_received(b"back")
        scheduler.resumeProducing()
        self.assertEqual(
            peer.take(),
            [
                ("DATA", "ssh", 1, 1, b"one"),
                ("STREAM_RESET", "ssh", 1, 0),
                ("DATA", "web", 1, 0, b"back"),
            ],
        )

    def test_connection_start_without_id_ignored(self) -> None:
        """
        A ConnectionStart with no connection ID names no connection (and a V2
        peer sends none): it is ignored, not a second connection under ID 0.
        """
        tunnel, peer, local = started(Mode.DESTINATION, TWO)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        with logs() as captured:
            tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 1, 0))
        self.assertEqual(len(local.connections), 1)
        self.assertEqual(tunnel.peer_version, PeerVersion.V3)
        self.assertTrue(texts(captured, LogLevel.warn))
        tunnel.data_received(data("ssh", 1, 1, b"still"))
        self.assertEqual(local.connections[0][1].data, b"still")
        self.assertEqual(peer.take(), [])


class FallbackThenConnectionStartTests(SynchronousTestCase):
    """
    Regression (found by the state machine): after a fall-back to V2, a
    ConnectionStart opened a second connection of the stream beside the one
    opened under a V3 connection ID, so the single-connection format had two.
    """

    def test_second_connection_resets_the_stream(self) -> None:
        tunnel, peer, local = started(Mode.DESTINATION, TWO)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 3, 1))
        tunnel.data_received(data("ssh", 3, 0, b"v2 data"))  # no connection ID: a V2 peer
        self.assertEqual(tunnel.peer_version, PeerVersion.V2)
        peer.take()
        tunnel.data_received(ctl(Message.CONNECTION_START, "ssh", 3, 1))
        self.assertEqual(len(local.connections), 1)
        self.assertTrue(local.connection("ssh", 1)[1].closed)
        self.assertEqual(peer.take(), [("STREAM_RESET", "ssh", 3, 0)])
        session = tunnel._session
        assert session is not None
        self.assertEqual(session.services["ssh"].connections, {})
