"""
Tests for L{aws_localproxy.protocol.tunnel}: sessions, SERVICE_IDS, dispatch rules.

Conversations are scripted with fake peer and local objects that record
every call (L{tests.fakes}): no sockets, no reactor.
"""

from __future__ import annotations

from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import (
    SUBPROTOCOL_V1,
    SUBPROTOCOL_V2,
    SUBPROTOCOL_V3,
    Mode,
    PeerVersion,
)
from aws_localproxy.protocol.errors import FatalTunnelError, RecoverableTunnelError
from aws_localproxy.protocol.interfaces import (
    TunnelConnection,
)
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.service_ids import (
    NO_PORT_MAPPING,
    NO_SERVICE_IDS_TO_LOOK_UP,
    NOT_ENOUGH_SERVICE_IDS,
    WRONG_CONFIGURATION,
)
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.protocol.wire import (
    Limits,
    Message,
    control_message,
    decode_all,
)
from tests.fakes.local import FakeLocalConnection, FakeLocalSide
from tests.fakes.peer import FakePeer, ctl, data, service_ids
from tests.fakes.tunnel import SSH, TWO, PeerTunnel, make_tunnel, shown_v3, started
from tests.support.logs import logs, texts


class TunnelConnectionTests(SynchronousTestCase):
    """What the tunnel hands a local side for each connection."""

    def test_tunnel_connection(self) -> None:
        """What the tunnel hands out is a TunnelConnection."""
        tunnel, peer, local = started(Mode.SOURCE, SSH)
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertIsInstance(connection, TunnelConnection)


class SessionTests(SynchronousTestCase):
    """Session start, SERVICE_IDS and the ready state."""

    def test_not_ready_before_service_ids(self) -> None:
        """Until SERVICE_IDS arrives nothing is set up and a source refuses connections."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH)
        tunnel.session_started(SUBPROTOCOL_V3)
        self.assertFalse(tunnel.ready)
        self.assertEqual(local.ready_calls, [])
        self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual(peer.records, [])

    def test_destination_refuses_local_connections(self) -> None:
        """A destination never accepts local connections."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual(peer.records, [])

    def test_service_ids_ready(self) -> None:
        """SERVICE_IDS matching the map makes the tunnel ready and tells the local side."""
        tunnel, peer, local = started(Mode.SOURCE, TWO, ["web", "ssh"])
        self.assertTrue(tunnel.ready)
        self.assertEqual(tunnel.service_ids, ("web", "ssh"))
        self.assertEqual(dict(tunnel.endpoints), TWO)
        self.assertEqual(local.ready_calls, [TWO])
        self.assertEqual(tunnel.mode, Mode.SOURCE)
        self.assertEqual(tunnel.peer_version, PeerVersion.V3)

    def test_before_start_ignored(self) -> None:
        """Bytes outside a session are ignored."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH)
        tunnel.data_received(service_ids("ssh"))
        self.assertFalse(tunnel.ready)

    def test_bytes_after_service_ids_processed(self) -> None:
        """P2 fix: messages in the same payload after SERVICE_IDS are handled at once."""
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, SSH)
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(
            service_ids("ssh") + ctl(Message.STREAM_START, "ssh", 1, 1) + data("ssh", 1, 1, b"hi")
        )
        _, conn = local.connection("ssh", 1)
        self.assertEqual(conn.data, b"hi")

    def test_split_messages(self) -> None:
        """A message split across payloads is reassembled."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH)
        tunnel.session_started(SUBPROTOCOL_V3)
        record = service_ids("ssh")
        for i in range(len(record)):
            tunnel.data_received(record[i : i + 1])
        self.assertTrue(tunnel.ready)

    def test_parse_error_recoverable(self) -> None:
        """Bytes that do not parse are a recoverable error with the reference's message."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH)
        tunnel.session_started(SUBPROTOCOL_V3)
        error = self.assertRaises(RecoverableTunnelError, tunnel.data_received, b"\x00\x02\xff\xff")
        self.assertTrue(
            str(error).startswith("Could not parse web socket binary frame into message: ")
        )

    def test_too_large_recoverable(self) -> None:
        """A length prefix over the limit is a recoverable error."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH, limits=Limits(1000, 500))
        tunnel.session_started(SUBPROTOCOL_V3)
        self.assertRaises(RecoverableTunnelError, tunnel.data_received, b"\x04\x00")

    def test_new_session_resets(self) -> None:
        """
        A new session waits for SERVICE_IDS again and restarts connection IDs;
        a source's stream IDs go on from the last session's (issue 18: a
        destination may still hold the old stream, and a repeated ID is taken
        for it by the reference).
        """
        tunnel, peer, local = started(Mode.SOURCE, SSH)
        first = FakeLocalConnection()
        tunnel.local_connection_accepted("ssh", first)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.session_ended()
        self.assertTrue(first.closed)
        tunnel.session_started(SUBPROTOCOL_V3)
        self.assertFalse(tunnel.ready)
        tunnel.data_received(service_ids("ssh"))
        peer.records.clear()
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", 2, 1)])
        self.assertEqual(len(local.ready_calls), 2)

    def test_session_ended_closes_and_silences(self) -> None:
        """After session_ended every local connection is closed and nothing is sent."""
        tunnel, peer, local = started(Mode.SOURCE, TWO)
        a, b = FakeLocalConnection(), FakeLocalConnection()
        ca = tunnel.local_connection_accepted("ssh", a)
        cb = tunnel.local_connection_accepted("web", b)
        assert ca is not None and cb is not None
        peer.records.clear()
        tunnel.session_ended()
        self.assertTrue(a.closed and b.closed)
        self.assertFalse(tunnel.ready)
        ca.data_received(b"late")
        ca.connection_lost()
        cb.connection_lost()
        tunnel.data_received(data("ssh", 1, 1, b"x"))
        self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual(peer.records, [])
        self.assertEqual(a.written, [])
        tunnel.session_ended()  # idempotent
        self.assertEqual(a.close_calls, 1)

    def test_session_started_twice(self) -> None:
        """A session started without ending the previous one ends it first."""
        tunnel, peer, local = started(Mode.SOURCE, SSH)
        a = FakeLocalConnection()
        tunnel.local_connection_accepted("ssh", a)
        tunnel.session_started(SUBPROTOCOL_V3)
        self.assertTrue(a.closed)
        self.assertFalse(tunnel.ready)

    def test_v2_subprotocol_keeps_format(self) -> None:
        """A 2.0 subprotocol changes nothing by itself (the reference ignores its value)."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH)
        tunnel.session_started(SUBPROTOCOL_V2)
        tunnel.data_received(service_ids("ssh"))
        self.assertEqual(tunnel.peer_version, PeerVersion.V3)

    def test_before_service_ids_ignored(self) -> None:
        """P1 fix: control messages before SERVICE_IDS are ignored and reading goes on."""
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, SSH)
        tunnel.session_started(SUBPROTOCOL_V3)
        with logs() as captured:
            tunnel.data_received(
                ctl(Message.SESSION_RESET)
                + ctl(Message.CONNECTION_START, "ssh", 1, 2)
                + ctl(Message.CONNECTION_RESET, "ssh", 1, 2)
                + ctl(Message.STREAM_RESET, "ssh", 1)
                + ctl(0)
                + ctl(42)
                + data("ssh", 1, 1, b"x")
                + service_ids("ssh")
            )
        self.assertTrue(tunnel.ready)
        self.assertEqual(local.connections, [])
        self.assertIn(
            "Expect:Message_Type_SERVICE_IDS. Ignore message type: 4",
            texts(captured, LogLevel.debug),
        )

    def test_stream_start_before_service_ids_destination(self) -> None:
        """A destination given a StreamStart before SERVICE_IDS reconnects (reference)."""
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, SSH)
        tunnel.session_started(SUBPROTOCOL_V3)
        error = self.assertRaises(
            RecoverableTunnelError, tunnel.data_received, ctl(Message.STREAM_START, "ssh", 1, 1)
        )
        self.assertEqual(
            str(error), "Receive stream start before receiving service ids. Cannot forward data."
        )

    def test_stream_start_before_service_ids_source(self) -> None:
        """D8: a source ignores a StreamStart before SERVICE_IDS with a warning."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH)
        tunnel.session_started(SUBPROTOCOL_V3)
        with logs() as captured:
            tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1) + service_ids("ssh"))
        self.assertTrue(tunnel.ready)
        self.assertTrue(texts(captured, LogLevel.warn))


class ServiceIdsValidationTests(SynchronousTestCase):
    """SERVICE_IDS against the configured mapping."""

    def assertFatal(self, mode, service_map, ids, message, **kwargs) -> None:
        tunnel, peer, local = make_tunnel(mode, service_map, **kwargs)
        tunnel.session_started(SUBPROTOCOL_V3)
        error = self.assertRaises(FatalTunnelError, tunnel.data_received, service_ids(*ids))
        self.assertEqual(str(error), message)
        self.assertFalse(tunnel.ready)
        self.assertEqual(local.ready_calls, [])

    def test_wrong_id(self) -> None:
        """A received ID that is not configured is fatal."""
        self.assertFatal(Mode.SOURCE, SSH, ["rdp"], WRONG_CONFIGURATION)
        self.assertEqual(
            WRONG_CONFIGURATION,
            "Wrong configurations detected in local proxy. "
            "Please starts local proxy with right sets of service ids.",
        )

    def test_count_mismatch(self) -> None:
        """More, or fewer, configured IDs than received is fatal."""
        self.assertFatal(Mode.DESTINATION, TWO, ["ssh"], WRONG_CONFIGURATION)
        self.assertFatal(Mode.DESTINATION, SSH, ["ssh", "web"], WRONG_CONFIGURATION)
        self.assertFatal(Mode.SOURCE, SSH, [], WRONG_CONFIGURATION)

    def test_duplicates(self) -> None:
        """Duplicate received IDs are dropped with a warning before validation."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, TWO)
        tunnel.session_started(SUBPROTOCOL_V3)
        with logs() as captured:
            tunnel.data_received(service_ids("ssh", "web", "ssh"))
        self.assertEqual(tunnel.service_ids, ("ssh", "web"))
        self.assertIn("Duplicate service Id received, ignore: ssh", texts(captured, LogLevel.warn))

    def test_v1_format_renamed(self) -> None:
        """A V1-format map takes the single received ID, and says so."""
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, {"": "22"})
        tunnel.session_started(SUBPROTOCOL_V3)
        with logs() as captured:
            tunnel.data_received(service_ids("ssh"))
        self.assertEqual(local.ready_calls, [{"ssh": "22"}])
        self.assertEqual(tunnel.service_ids, ("ssh",))
        info = texts(captured, LogLevel.info)
        self.assertIn("Updated port mapping for v1 format: ", info)
        self.assertIn("ssh = 22", info)

    def test_v1_format_kept(self) -> None:
        """With zero or several received IDs the V1-format map keeps the empty ID."""
        for ids in ([], ["a", "b"]):
            tunnel, peer, local = make_tunnel(Mode.SOURCE, {"": "5555"})
            tunnel.session_started(SUBPROTOCOL_V3)
            tunnel.data_received(service_ids(*ids))
            self.assertEqual(local.ready_calls, [{"": "5555"}])

    def test_empty_map_source(self) -> None:
        """A source without any mapping listens on any port for every received ID."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, {})
        tunnel.session_started(SUBPROTOCOL_V3)
        with logs() as captured:
            tunnel.data_received(service_ids("a", "b"))
        self.assertEqual(local.ready_calls, [{"a": "0", "b": "0"}])
        self.assertEqual(
            texts(captured, LogLevel.info),
            [
                "Use port mapping:",
                "---------------------------------",
                "a = 0",
                "b = 0",
                "---------------------------------",
            ],
        )

    def test_no_service_ids_source(self) -> None:
        """
        Issue 18: SERVICE_IDS with an empty list (a tunnel opened without
        services) is one service without an ID, as in a V1 session: the
        source listens for it and its connections start streams under "".
        """
        tunnel, peer, local = make_tunnel(Mode.SOURCE, {})
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids())
        self.assertEqual(local.ready_calls, [{"": "0"}])
        self.assertEqual(tunnel.service_ids, ("",))
        self.assertIsNotNone(tunnel.local_connection_accepted("", FakeLocalConnection()))
        self.assertEqual(peer.take(), [("STREAM_START", "", 1, 1)])
        v1, _, v1_local = make_tunnel(Mode.SOURCE, {})
        v1.session_started(SUBPROTOCOL_V1)
        self.assertEqual(v1_local.ready_calls, local.ready_calls)
        # A service that names the one service "" instead of sending no ID: the same.
        blank, _, blank_local = started(Mode.SOURCE, {}, [""])
        self.assertEqual(blank_local.ready_calls, local.ready_calls)
        self.assertEqual(blank.service_ids, ("",))

    def test_no_service_ids_destination(self) -> None:
        """A destination's one endpoint (-d PORT) serves a tunnel without service IDs."""
        tunnel, peer, local = started(Mode.DESTINATION, {"": "22"}, [])
        self.assertEqual(local.ready_calls, [{"": "22"}])
        tunnel.data_received(ctl(Message.STREAM_START, "", 5, 1) + data("", 5, 1, b"hi"))
        self.assertEqual(local.connection("", 1)[1].data, b"hi")

    def test_no_service_ids_destination_lookup(self) -> None:
        """Config files cannot name the unnamed service: fatal, and the log says what to do."""
        with logs() as captured:
            self.assertFatal(
                Mode.DESTINATION,
                {},
                [],
                NOT_ENOUGH_SERVICE_IDS,
                lookup_endpoints=lambda ids: {"a": "22"},
            )
        self.assertIn(NO_SERVICE_IDS_TO_LOOK_UP, texts(captured, LogLevel.error))

    def test_no_service_ids_late_set_up_again(self) -> None:
        """
        A later SERVICE_IDS sets a tunnel without service IDs up again, as it
        does a tunnel with them (its empty service ID is not the unnamed
        service's).
        """
        tunnel, peer, local = started(Mode.SOURCE, {}, [])
        first = FakeLocalConnection()
        tunnel.local_connection_accepted("", first)
        tunnel.data_received(service_ids())
        self.assertTrue(first.closed)
        self.assertEqual(local.ready_calls, [{"": "0"}, {"": "0"}])

    def test_empty_map_destination(self) -> None:
        """A destination without any mapping or config files is fatal, even for no IDs."""
        self.assertFatal(Mode.DESTINATION, {}, ["a"], NO_PORT_MAPPING)
        self.assertFatal(Mode.DESTINATION, {}, [], NO_PORT_MAPPING)
        self.assertEqual(
            NO_PORT_MAPPING,
            "No port mapping exists. Fail to start local proxy in destination mode.",
        )

    def test_lookup_destination(self) -> None:
        """Config files are searched for the received IDs; a missing one is fatal."""
        asked = []

        def lookup(ids):
            asked.append(list(ids))
            return {"a": "22", "b": "host:80"}

        tunnel, peer, local = make_tunnel(Mode.DESTINATION, {}, lookup_endpoints=lookup)
        tunnel.session_started(SUBPROTOCOL_V3)
        with logs() as captured:
            tunnel.data_received(service_ids("a", "b"))
        self.assertEqual(asked, [["a", "b"]])
        self.assertEqual(local.ready_calls, [{"a": "22", "b": "host:80"}])
        self.assertIn("Scan configuration files to find the service ids", texts(captured))
        self.assertFatal(
            Mode.DESTINATION,
            {},
            ["a", "c"],
            NOT_ENOUGH_SERVICE_IDS,
            lookup_endpoints=lookup,
        )
        self.assertEqual(
            NOT_ENOUGH_SERVICE_IDS,
            "Not enough the service ids are found in the configuration files. Fail to start.",
        )

    def test_lookup_source(self) -> None:
        """A source gives IDs missing from the config files port 0."""
        tunnel, peer, local = make_tunnel(
            Mode.SOURCE, {}, lookup_endpoints=lambda ids: {"a": "6000"}
        )
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("a", "b"))
        self.assertEqual(local.ready_calls, [{"a": "6000", "b": "0"}])

    def test_configured_map_ignores_lookup(self) -> None:
        """With a -s/-d map the config files are not searched."""
        tunnel, peer, local = make_tunnel(
            Mode.SOURCE, SSH, lookup_endpoints=lambda ids: self.fail("looked up")
        )
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("ssh"))
        self.assertEqual(local.ready_calls, [SSH])

    def test_late_service_ids_resets(self) -> None:
        """A second SERVICE_IDS (no service ID) sets the session up again, closing connections."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 3, 1))
        _, conn = local.connection("ssh", 1)
        tunnel.data_received(service_ids("ssh"))
        self.assertTrue(conn.closed)
        self.assertEqual(len(local.ready_calls), 2)
        # The old stream is remembered: its data is stale, a new start works.
        tunnel.data_received(data("ssh", 3, 1, b"late"))
        self.assertEqual(conn.written, [])
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 4, 1))
        self.assertEqual(len(local.connections), 2)

    def test_late_service_ids_for_service_ignored(self) -> None:
        """A SERVICE_IDS carrying an active service's ID is ignored with the reference's line."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        with logs() as captured:
            tunnel.data_received(
                control_message(
                    Message.SERVICE_IDS, service_id="ssh", available_service_ids=["other"]
                )
            )
        self.assertIn("Receive service Ids during data transfer. ignore", texts(captured))
        self.assertFalse(local.connections[0][1].closed)
        self.assertEqual(len(local.ready_calls), 1)

    def test_late_service_ids_invalid_fatal(self) -> None:
        """A later SERVICE_IDS that does not match is as fatal as the first."""
        tunnel, peer, local = started(Mode.SOURCE, SSH)
        self.assertRaises(FatalTunnelError, tunnel.data_received, service_ids("other"))


class UnknownServiceTests(SynchronousTestCase):
    """Messages for service IDs this session does not have: warn, drop, never stall."""

    def test_destination_stream_start_answered(self) -> None:
        """
        A V3 StreamStart for an unknown service is answered with a
        ConnectionReset for the connection it names (issue 18: a V3 peer
        takes a StreamReset without a connection ID for a V1/V2 message and
        aws-c-iot drops its WebSocket for it).
        """
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        with logs() as captured:
            tunnel.data_received(
                ctl(Message.STREAM_START, "nope", 7, 1) + ctl(Message.STREAM_START, "ssh", 1, 1)
            )
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "nope", 7, 1)])
        self.assertTrue(texts(captured, LogLevel.warn))
        self.assertEqual(len(local.connections), 1)

    def test_destination_v2_stream_start_answered(self) -> None:
        """A V2 StreamStart (no connection ID) for an unknown service gets a StreamReset."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.STREAM_START, "nope", 7))
        self.assertEqual(peer.take(), [("STREAM_RESET", "nope", 7, 0)])
        tunnel, peer, local = started(Mode.DESTINATION, SSH, peer_version=PeerVersion.V2)
        tunnel.data_received(ctl(Message.STREAM_START, "nope", 7, 1))
        self.assertEqual(peer.take(), [("STREAM_RESET", "nope", 7, 0)])

    def test_destination_connection_start_answered(self) -> None:
        """A ConnectionStart for an unknown service is answered with a ConnectionReset."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.CONNECTION_START, "nope", 7, 3))
        self.assertEqual(peer.take(), [("CONNECTION_RESET", "nope", 7, 3)])

    def test_others_dropped(self) -> None:
        """Other messages for an unknown service are dropped and later ones still handled."""
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        with logs() as captured:
            tunnel.data_received(
                ctl(Message.CONNECTION_RESET, "nope", 1, 1)
                + ctl(Message.STREAM_RESET, "nope", 1)
                + data("nope", 1, 1, b"x")
                + ctl(0, "nope")
                + ctl(99, "nope")
                + ctl(99, "nope", ignorable=True)
                + ctl(Message.STREAM_START, "ssh", 1, 1)
            )
        self.assertEqual(peer.records, [])
        self.assertEqual(len(local.connections), 1)
        self.assertIn(
            "No stream found for service id: nope. Ignore stream id: 1",
            texts(captured, LogLevel.warn),
        )

    def test_connection_start_without_id_answered_with_stream_reset(self) -> None:
        """A ConnectionStart for an unknown service without a connection ID: its stream is reset."""
        tunnel, peer, _ = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.CONNECTION_START, "nope", 7))
        self.assertEqual(peer.take(), [("STREAM_RESET", "nope", 7, 0)])

    def test_reset_answer_named(self) -> None:
        """The answer to a start for an unknown service is one warning naming type and ID."""
        tunnel, _, _ = started(Mode.DESTINATION, SSH)
        with logs() as captured:
            tunnel.data_received(
                ctl(Message.STREAM_START, "nope", 7, 1) + ctl(Message.CONNECTION_START, "nah", 7, 2)
            )
        self.assertEqual(
            texts(captured, LogLevel.warn),
            [
                "Received STREAM_START for unknown service id nope: resetting it",
                "Received CONNECTION_START for unknown service id nah: resetting it",
            ],
        )

    def test_source_does_not_answer_starts(self) -> None:
        """A source never answers starts (it does not take them): it warns and sends nothing."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        with logs() as captured:
            tunnel.data_received(
                ctl(Message.STREAM_START, "nope", 7, 1)
                + ctl(Message.CONNECTION_START, "nope", 7, 2)
            )
        self.assertEqual(peer.records, [])
        self.assertEqual(
            texts(captured, LogLevel.warn),
            [
                "Ignoring STREAM_START for unknown service id nope",
                "Ignoring CONNECTION_START for unknown service id nope",
            ],
        )

    def test_ignorable_only_at_debug(self) -> None:
        """An ignorable message for an unknown service is logged at debug, any other one warns."""
        tunnel, _, _ = started(Mode.DESTINATION, SSH)
        with logs() as captured:
            tunnel.data_received(ctl(99, "nope", ignorable=True))
        self.assertEqual(texts(captured, LogLevel.warn), [])
        self.assertIn(
            "Ignoring TYPE_99 for unknown service id nope", texts(captured, LogLevel.debug)
        )
        with logs() as captured:
            tunnel.data_received(ctl(99, "nope"))
        self.assertEqual(
            texts(captured, LogLevel.warn), ["Ignoring TYPE_99 for unknown service id nope"]
        )

    def test_zero_length_record(self) -> None:
        """A zero-length record (UNKNOWN without service ID) is dropped after set-up."""
        tunnel, peer, local = started(Mode.SOURCE, SSH)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.data_received(b"\x00\x00")
        self.assertTrue(tunnel.ready)


class SessionResetTests(SynchronousTestCase):
    """SESSION_RESET closes everything, with or without a service ID."""

    def test_source(self) -> None:
        """Every connection of every service closes; the next ones start new streams."""
        tunnel, peer, local = started(Mode.SOURCE, TWO)
        a, b = FakeLocalConnection(), FakeLocalConnection()
        tunnel.local_connection_accepted("ssh", a)
        tunnel.local_connection_accepted("web", b)
        peer.records.clear()
        tunnel.data_received(ctl(Message.SESSION_RESET))
        self.assertTrue(a.closed and b.closed)
        self.assertEqual(peer.records, [])
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", 2, 2)])

    def test_destination_with_service_id(self) -> None:
        """A SessionReset naming one service still resets all of them."""
        tunnel, peer, local = started(Mode.DESTINATION, TWO)
        tunnel.data_received(
            ctl(Message.STREAM_START, "ssh", 1, 1) + ctl(Message.STREAM_START, "web", 1, 1)
        )
        tunnel.data_received(ctl(Message.SESSION_RESET, "web"))
        self.assertTrue(all(local.closed for _, local in local.connections))
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 2, 1))
        self.assertEqual(len(local.connections), 3)


class ServiceCounterTests(SynchronousTestCase):
    """The per-service counters (what the metrics export) count each event once."""

    def test_same_counters_across_sessions(self) -> None:
        tunnel, _, _ = started(Mode.SOURCE, SSH)
        counters = tunnel.counters_for("ssh")
        self.assertEqual(counters.service_id, "ssh")
        self.assertIs(tunnel.counters_for("ssh"), counters)
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3, OutboundScheduler(lambda record: None))
        tunnel.data_received(service_ids("ssh"))
        self.assertIs(tunnel.counters_for("ssh"), counters)

    def test_active_connections(self) -> None:
        """The connections open now, per service ID of the session; none between sessions."""
        tunnel, _, _ = make_tunnel(Mode.SOURCE, {"ssh": "0", "rdp": "0"})
        self.assertEqual(tunnel.active_connections, {})
        tunnel.session_started(SUBPROTOCOL_V3)
        tunnel.data_received(service_ids("ssh", "rdp"))
        shown_v3(tunnel)
        first = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(tunnel.active_connections, {"ssh": 2, "rdp": 0})
        assert first is not None
        first.connection_lost()
        self.assertEqual(tunnel.active_connections, {"ssh": 1, "rdp": 0})
        tunnel.session_ended()
        self.assertEqual(tunnel.active_connections, {})

    def test_refusals(self) -> None:
        """A refusal for a known service counts once: not ready, or over the limit."""
        tunnel, _, _ = started(Mode.SOURCE, SSH, max_active_connections=1)
        counters = tunnel.counters_for("ssh")
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual((counters.connections_opened, counters.connections_refused), (1, 1))
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3, OutboundScheduler(lambda record: None))
        self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual(counters.connections_refused, 2)
        # A service ID this tunnel never had gets no counters.
        self.assertIsNone(tunnel.local_connection_accepted("rdp", FakeLocalConnection()))
        self.assertNotIn("rdp", tunnel.counters)

    def test_received_and_closed(self) -> None:
        tunnel, _, _ = started(Mode.SOURCE, SSH)
        counters = tunnel.counters_for("ssh")
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        tunnel.data_received(data("ssh", 1, 1, b"abc") + data("ssh", 1, 1, b"defg"))
        self.assertEqual((counters.messages_received, counters.bytes_received), (2, 7))
        connection.connection_lost()
        connection.connection_lost()
        self.assertEqual(counters.connections_closed, 1)

    def test_failed_connect_counted(self) -> None:
        tunnel, peer, local = started(Mode.DESTINATION, SSH)
        tunnel.data_received(ctl(Message.STREAM_START, "ssh", 1, 1))
        connection, _ = local.connection("ssh", 1)
        with logs() as captured:
            connection.connect_failed("Connection refused")
            connection.connect_failed("Connection refused")
        self.assertEqual(tunnel.counters_for("ssh").connections_refused, 1)
        self.assertIn(
            "Could not connect service id ssh connection id 1: Connection refused",
            texts(captured, LogLevel.debug),
        )

    def test_local_close_after_peer_reset(self) -> None:
        """The local socket closing after the peer reset it sends nothing more, counts nothing."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        tunnel.data_received(ctl(Message.CONNECTION_RESET, "ssh", 1, 1))
        peer.take()
        connection.connection_lost()
        self.assertEqual(peer.records, [])
        self.assertEqual(tunnel.counters_for("ssh").connections_closed, 0)

    def test_local_close_sends_queued_bytes_first(self) -> None:
        """A local close with bytes still queued: the bytes go out, then the reset."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH)
        scheduler = OutboundScheduler(peer.send_record)
        tunnel.session_started(SUBPROTOCOL_V3, scheduler)
        tunnel.data_received(service_ids("ssh"))
        shown_v3(tunnel)
        connection = tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        assert connection is not None
        peer.take()
        scheduler.pauseProducing()
        connection.data_received(b"last words")
        connection.connection_lost()
        scheduler.resumeProducing()
        self.assertEqual(
            peer.take(),
            [("DATA", "ssh", 1, 1, b"last words"), ("CONNECTION_RESET", "ssh", 1, 1)],
        )


class RenumberingTests(SynchronousTestCase):
    def test_totals(self) -> None:
        """The tunnel's own totals count every payload byte and message from the service."""
        tunnel, _, _ = started(Mode.SOURCE, SSH)
        before = (tunnel.bytes_received, tunnel.messages_received)
        records = data("ssh", 1, 1, b"x") + ctl(Message.STREAM_RESET, "ssh", 1)
        tunnel.data_received(records)
        self.assertEqual(
            (tunnel.bytes_received, tunnel.messages_received),
            (before[0] + len(records), before[1] + 2),
        )

    def test_service_ids_again_keep_numbering(self) -> None:
        """SERVICE_IDS again in a session: stream and connection IDs go on where they were."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.data_received(ctl(Message.STREAM_RESET, "ssh", 1))
        tunnel.data_received(service_ids("ssh"))
        peer.take()
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", 2, 3)])


class PlainAttributesTests(SynchronousTestCase):
    def test_no_setattr_hooks_on_the_data_path(self) -> None:
        """
        The tunnel and its session are attrs classes; their attributes are
        assigned on every message, so attrs' per-assignment hooks are off.
        """
        from aws_localproxy.protocol.tunnel_session import TunnelSession

        self.assertIs(Tunnel.__setattr__, object.__setattr__)
        self.assertIs(TunnelSession.__setattr__, object.__setattr__)


# One DATA message: service ID, stream ID, connection ID, payload.
_DATA_FIELDS = st.tuples(
    st.sampled_from(["ssh", "web", "other", ""]),
    st.sampled_from([0, 4, 5, 7]),
    st.sampled_from([0, 1, 2, 3]),
    st.sampled_from([b"", b"x", b"yy"]),
)


class DataFastPathTests(SynchronousTestCase):
    """
    L{Tunnel.data_received} delivers the common DATA itself, without
    C{_dispatch}: whatever DATA comes, in whatever order, it must do exactly
    what C{_dispatch} does with it.  Two twin tunnels take the same
    messages, one through C{data_received}, the other each decoded message
    through C{_dispatch}, and must agree on everything after each one: the
    bytes and closes of every local connection, what was sent to the peer,
    the counters, the peer's format, the log.
    """

    def twin(self, mode: Mode, shown: bool) -> tuple[PeerTunnel, FakePeer, FakeLocalSide]:
        tunnel, peer, local = started(mode, TWO, peer_shown=shown)
        if mode is Mode.DESTINATION:
            tunnel.data_received(
                ctl(Message.STREAM_START, "ssh", 4, 1)
                + ctl(Message.CONNECTION_START, "ssh", 4, 2)
                + ctl(Message.STREAM_START, "web", 7, 1)
            )
        else:
            for service_id in ("ssh", "ssh", "web"):
                tunnel.local_connection_accepted(service_id, FakeLocalConnection(service_id))
        return tunnel, peer, local

    def state(
        self, tunnel: PeerTunnel, peer: FakePeer, local: FakeLocalSide, lines: List[str]
    ) -> tuple:
        session = tunnel._session
        assert session is not None
        connections = [
            (service.service_id, c.connection_id, c.open, getattr(c.local, "written", None))
            for service in session.services.values()
            for c in service
        ]
        counters = [
            (c.service_id, c.bytes_received, c.messages_received, c.connections_reset)
            for c in tunnel.counters.values()
        ]
        return (
            connections,
            [(pair[1].written, pair[1].close_calls) for pair in local.connections],
            list(peer.records),
            counters,
            (session.format.version, session.format.known),
            list(lines),
        )

    @settings(max_examples=300, deadline=None)
    @given(
        mode=st.sampled_from([Mode.SOURCE, Mode.DESTINATION]),
        shown=st.booleans(),
        messages=st.lists(_DATA_FIELDS, min_size=1, max_size=6),
    )
    def test_same_as_dispatch(
        self, mode: Mode, shown: bool, messages: List[tuple[str, int, int, bytes]]
    ) -> None:
        fast, fast_peer, fast_local = self.twin(mode, shown)
        slow, slow_peer, slow_local = self.twin(mode, shown)
        if mode is Mode.SOURCE:
            # The source's connections: numbered 1, 2 (ssh) and 1 (web), stream 1 each.
            messages = [(s, 1 if stream else 0, c, p) for s, stream, c, p in messages]
        for service_id, stream_id, connection_id, payload in messages:
            record = data(service_id, stream_id, connection_id, payload)
            with logs() as fast_lines:
                fast.data_received(record)
            with logs() as slow_lines:
                slow_session = slow._session
                assert slow_session is not None
                for message in decode_all(record):
                    slow._dispatch(slow_session, message)
            self.assertEqual(
                self.state(fast, fast_peer, fast_local, texts(fast_lines)),
                self.state(slow, slow_peer, slow_local, texts(slow_lines)),
                (service_id, stream_id, connection_id, payload),
            )
