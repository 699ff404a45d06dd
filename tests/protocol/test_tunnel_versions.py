"""
Tests for L{aws_localproxy.protocol.tunnel} across protocol versions:
V1 sessions, the automatic fall-back to V2 format, and a source and a
destination tunnel talking to each other through an in-memory "service".
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.errors import FatalTunnelError
from aws_localproxy.protocol.wire import Message
from tests.fakes.local import FakeLocalConnection, FakeLocalSide
from tests.fakes.peer import ctl, data, service_ids
from tests.fakes.tunnel import SSH, PeerTunnel, make_tunnel, shown_v3, started
from tests.fakes.tunneling_service import MemoryPipe, MemoryTunnelingService, pump


class V1SessionTests(SynchronousTestCase):
    """A session with the 1.0 subprotocol: no SERVICE_IDS, V1 format."""

    def test_set_up_at_once_source(self) -> None:
        """A V1-format source is ready as soon as the session starts."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, {"": "5555"})
        tunnel.session_started(SUBPROTOCOL_V1)
        self.assertTrue(tunnel.ready)
        self.assertEqual(tunnel.peer_version, PeerVersion.V1)
        self.assertEqual(local.ready_calls, [{"": "5555"}])
        connection = tunnel.local_connection_accepted("", FakeLocalConnection())
        assert connection is not None
        connection.data_received(b"x")
        self.assertEqual(peer.take(), [("STREAM_START", "", 1, 0), ("DATA", "", 1, 0, b"x")])

    def test_named_service(self) -> None:
        """A named single service works too, sending no service ID."""
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, SSH)
        tunnel.session_started(SUBPROTOCOL_V1)
        self.assertEqual(local.ready_calls, [SSH])
        tunnel.data_received(ctl(Message.STREAM_START, "", 1, 0))
        connection, _ = local.connection("ssh", 0)
        connection.connection_lost()
        self.assertEqual(peer.take(), [("STREAM_RESET", "", 1, 0)])

    def test_no_mapping_destination(self) -> None:
        """A V1 destination without any mapping cannot start."""
        tunnel, peer, local = make_tunnel(Mode.DESTINATION, {})
        self.assertRaises(FatalTunnelError, tunnel.session_started, SUBPROTOCOL_V1)

    def test_back_to_v3(self) -> None:
        """The next session with 3.0 uses the configured format again."""
        tunnel, peer, local = make_tunnel(Mode.SOURCE, SSH)
        tunnel.session_started(SUBPROTOCOL_V1)
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3)
        self.assertEqual(tunnel.peer_version, PeerVersion.V3)


class FallbackTests(SynchronousTestCase):
    """A V3 proxy meeting a V2 peer."""

    def test_source_data_without_connection_id(self) -> None:
        """D5: the V2 destination's replies (no connection ID) reach the first connection."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        local = FakeLocalConnection()
        connection = tunnel.local_connection_accepted("ssh", local)
        assert connection is not None
        connection.data_received(b"before")
        tunnel.data_received(data("ssh", 1, 0, b"reply"))
        self.assertEqual(tunnel.peer_version, PeerVersion.V2)
        self.assertEqual(local.data, b"reply")
        connection.data_received(b"after")
        connection.connection_lost()
        self.assertEqual(
            peer.take(),
            [
                ("STREAM_START", "ssh", 1, 1),
                ("DATA", "ssh", 1, 1, b"before"),
                ("DATA", "ssh", 1, 0, b"after"),
                ("STREAM_RESET", "ssh", 1, 0),
            ],
        )
        # From now on: one connection at a time, a stream each.
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertIsNone(tunnel.local_connection_accepted("ssh", FakeLocalConnection()))
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", 2, 0)])

    def test_fallback_lasts_for_the_session(self) -> None:
        """The fall-back ends with the session."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.data_received(data("ssh", 1, 0, b"x"))
        self.assertEqual(tunnel.peer_version, PeerVersion.V2)
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3)
        self.assertEqual(tunnel.peer_version, PeerVersion.V3)

    def test_stale_data_does_not_fall_back(self) -> None:
        """Stale DATA is filtered before it can switch the format."""
        tunnel, peer, _ = started(Mode.SOURCE, SSH)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.data_received(data("ssh", 7, 0, b"x"))
        self.assertEqual(tunnel.peer_version, PeerVersion.V3)


class ConversationTests(SynchronousTestCase):
    """A source and a destination tunnel relaying local connections to each other."""

    def pair(self, source_version: PeerVersion, destination_version: PeerVersion):
        service = MemoryTunnelingService()
        source_local, destination_local = FakeLocalSide(), FakeLocalSide()
        source = PeerTunnel(
            Mode.SOURCE,
            MemoryPipe(service.source_out),  # type: ignore[arg-type]
            source_local,
            service_map={"ssh": "5555", "web": "8080"},
            peer_version=source_version,
        )
        destination = PeerTunnel(
            Mode.DESTINATION,
            MemoryPipe(service.destination_out),  # type: ignore[arg-type]
            destination_local,
            service_map={"ssh": "22", "web": "80"},
            peer_version=destination_version,
        )
        for tunnel in (source, destination):
            tunnel.session_started(SUBPROTOCOL_V3)
            tunnel.data_received(service_ids("ssh", "web"))
        return source, destination, service, destination_local

    def relay(self, source_version: PeerVersion, destination_version: PeerVersion) -> None:
        source, destination, service, dlocal = self.pair(source_version, destination_version)
        clients = []
        for service_id in ("ssh", "web"):
            local = FakeLocalConnection()
            connection = source.local_connection_accepted(service_id, local)
            assert connection is not None
            connection.data_received(b"hello " + service_id.encode())
            clients.append((connection, local))
        pump(source, destination, service)
        self.assertEqual(len(dlocal.connections), 2)
        for (server, server_local), (client, _) in zip(dlocal.connections, clients, strict=True):
            self.assertEqual(server.service_id, client.service_id)
            self.assertEqual(server_local.data, b"hello " + client.service_id.encode())
            server.data_received(b"big" * 30000)
        pump(source, destination, service)
        for _, client_local in clients:
            self.assertEqual(client_local.data, b"big" * 30000)
        # The client hangs up: the server side is closed, nothing is left open.
        clients[0][0].connection_lost()
        pump(source, destination, service)
        self.assertTrue(dlocal.connections[0][1].closed)
        self.assertFalse(dlocal.connections[1][1].closed)
        # A new client of the same service works.
        local = FakeLocalConnection()
        connection = source.local_connection_accepted("ssh", local)
        assert connection is not None
        connection.data_received(b"again")
        pump(source, destination, service)
        self.assertEqual(dlocal.connections[-1][1].data, b"again")
        self.assertEqual(dlocal.connections[-1][0].service_id, "ssh")

    def test_v3_v3(self) -> None:
        """V3 to V3."""
        self.relay(PeerVersion.V3, PeerVersion.V3)

    def test_v2_source_v3_destination(self) -> None:
        """A -y V2 source with a V3 destination (which falls back)."""
        self.relay(PeerVersion.V2, PeerVersion.V3)

    def test_v3_source_v2_destination(self) -> None:
        """A V3 source with a V2-format destination (the source falls back)."""
        self.relay(PeerVersion.V3, PeerVersion.V2)

    def test_v3_simultaneous(self) -> None:
        """Several simultaneous V3 connections of one service, interleaved."""
        source, destination, service, dlocal = self.pair(PeerVersion.V3, PeerVersion.V3)
        # A peer that has shown it speaks V3 (the first connections of a session
        # wait for that: tests.protocol.test_tunnel_peers.SecondConnectionTests).
        shown_v3(source)
        clients = []
        for _ in range(20):
            local = FakeLocalConnection()
            connection = source.local_connection_accepted("ssh", local)
            assert connection is not None
            clients.append((connection, local))
        for round in range(3):
            for i, (connection, _) in enumerate(clients):
                connection.data_received(b"%d:%d;" % (i, round))
        pump(source, destination, service)
        for i, (_, server_local) in enumerate(dlocal.connections):
            self.assertEqual(server_local.data, b"%d:0;%d:1;%d:2;" % (i, i, i))
        for server, _ in dlocal.connections:
            server.data_received(b"echo %d" % (server.connection_id,))
        pump(source, destination, service)
        for connection, local in clients:
            self.assertEqual(local.data, b"echo %d" % (connection.connection_id,))
