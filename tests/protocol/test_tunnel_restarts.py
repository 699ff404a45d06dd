"""
Issue 18, restarts rejoin: a source's stream IDs do not repeat across its
restarts and reconnects, and a destination takes a StreamStart for its
current stream ID (a restarted source that does repeat them, like the
reference) as a new stream.

Scripted at the L{Tunnel} level: a source process is a L{Tunnel} that is
dropped and replaced by a new one, while the destination's session goes on
(a tunneling service that does not reset the other side's streams when a
peer re-attaches).
"""

from __future__ import annotations

from typing import Callable, List

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol import service_state
from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.service_state import INT32_MAX
from aws_localproxy.protocol.tunnel import Tunnel
from aws_localproxy.protocol.wire import Message
from tests.fakes.local import FakeLocalConnection, FakeLocalSide
from tests.fakes.peer import FakePeer, ctl, data, service_ids
from tests.fakes.tunnel import SSH, TWO, PeerTunnel
from tests.fakes.tunneling_service import (
    MemoryPipe,
    MemoryTunnelingService,
    join_destination,
    join_source,
    pump,
)


def real_source(service_map=SSH) -> tuple[Tunnel, FakePeer]:
    """A source L{Tunnel} as the proxy builds it (default stream numbering), in a V3 session."""
    peer = FakePeer()
    tunnel = Tunnel(Mode.SOURCE, FakeLocalSide(), service_map=service_map)
    tunnel.session_started(SUBPROTOCOL_V3, OutboundScheduler(peer.send_record))
    tunnel.data_received(service_ids(*service_map))
    return tunnel, peer


class SourceStreamIdTests(SynchronousTestCase):
    """Where a source's stream IDs start, and that they go on across sessions."""

    def draws(self, *values: int) -> List[int]:
        """Make L{secrets.randbelow} return C{values} in turn; returns the bounds it was asked for."""
        asked: List[int] = []
        returned = list(values)

        def randbelow(bound: int) -> int:
            asked.append(bound)
            return returned.pop(0)

        self.patch(service_state.secrets, "randbelow", randbelow)
        return asked

    def test_first_stream_id_is_random(self) -> None:
        """The first stream ID follows a point drawn from [0, INT32_MAX): 1 to INT32_MAX."""
        asked = self.draws(41)
        tunnel, peer = real_source()
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", 42, 1)])
        self.assertEqual(asked, [INT32_MAX])

    def test_wraps_within_int32(self) -> None:
        """From the top of the range the IDs wrap to 1 (the existing rule), never 0 or negative."""
        self.draws(INT32_MAX - 1)
        tunnel, peer = real_source()
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", INT32_MAX, 1)])
        tunnel.data_received(ctl(Message.STREAM_RESET, "ssh", INT32_MAX))
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", 1, 2)])

    def test_two_processes_do_not_repeat(self) -> None:
        """Two source processes of one tunnel (no patching: the real draw) start apart."""
        firsts = []
        for _ in range(2):
            tunnel, peer = real_source()
            tunnel.local_connection_accepted("ssh", FakeLocalConnection())
            (start,) = peer.take()
            self.assertTrue(1 <= start[2] <= INT32_MAX)
            firsts.append(start[2])
        self.assertNotEqual(firsts[0], firsts[1])

    def test_each_service_draws_once_per_tunnel(self) -> None:
        """One draw per service for the tunnel's life; a reconnect goes on counting."""
        asked = self.draws(100, 500)
        tunnel, peer = real_source(TWO)
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        tunnel.local_connection_accepted("web", FakeLocalConnection())
        self.assertEqual(
            peer.take(), [("STREAM_START", "ssh", 101, 1), ("STREAM_START", "web", 501, 1)]
        )
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3, OutboundScheduler(peer.send_record))
        tunnel.data_received(service_ids("ssh", "web"))
        tunnel.local_connection_accepted("web", FakeLocalConnection())
        self.assertEqual(peer.take(), [("STREAM_START", "web", 502, 1)])
        self.assertEqual(len(asked), 2)

    def test_reconnect_before_any_stream(self) -> None:
        """A session that started no stream leaves the start where it was."""
        self.draws(7)
        tunnel, peer = real_source()
        tunnel.session_ended()
        tunnel.session_started(SUBPROTOCOL_V3, OutboundScheduler(peer.send_record))
        tunnel.data_received(service_ids("ssh"))
        tunnel.local_connection_accepted("ssh", FakeLocalConnection())
        self.assertEqual(peer.take(), [("STREAM_START", "ssh", 8, 1)])


class RestartTests(SynchronousTestCase):
    """
    A source process stops and a new one starts while the destination's
    session goes on: the new process's first client reaches the application
    through a new connection, and the old one is closed.
    """

    def setUp(self) -> None:
        self.service = MemoryTunnelingService()
        self.destination, self.destination_local = join_destination(self.service)

    def echo_through(self, source: PeerTunnel, text: bytes) -> FakeLocalConnection:
        """A client of C{source} sends C{text}; the application answers; returns the client."""
        client = FakeLocalConnection()
        connection = source.local_connection_accepted("ssh", client)
        assert connection is not None
        connection.data_received(text)
        pump(source, self.destination, self.service)
        server, server_local = self.destination_local.connections[-1]
        self.assertEqual(server_local.data, text)
        server.data_received(b"echo " + text)
        pump(source, self.destination, self.service)
        self.assertEqual(client.data, b"echo " + text)
        return client

    def restart(self, first: Callable[[], int], second: Callable[[], int], **kwargs) -> None:
        old = join_source(self.service, first, **kwargs)
        self.echo_through(old, b"one")
        old_server = self.destination_local.connections[-1][1]
        old.session_ended()  # SIGTERM: nothing reaches the destination
        new = join_source(self.service, second, **kwargs)
        self.echo_through(new, b"two")
        self.assertEqual(old_server.data, b"one")
        self.assertTrue(old_server.closed)
        self.assertEqual(len(self.destination_local.connections), 2)

    def test_reference_source_repeats_stream_ids(self) -> None:
        """
        A source that numbers from 1 in every process (the reference, aws-c-iot,
        this proxy before issue 18): the destination takes the repeated
        StreamStart as a new stream.  Failed before: the second client hung.
        """
        self.restart(lambda: 0, lambda: 0)

    def test_reference_source_v2(self) -> None:
        """The same with a V2 source (every connection a stream of its own)."""
        self.restart(lambda: 0, lambda: 0, version=PeerVersion.V2)

    def test_reference_source_v1(self) -> None:
        """The same with a V1 source (no service ID; the destination's V1 mapping)."""
        self.destination = PeerTunnel(
            Mode.DESTINATION,
            MemoryPipe(self.service.destination_out),  # type: ignore[arg-type]
            self.destination_local,
            service_map={"": "22"},
        )
        self.destination.session_started(SUBPROTOCOL_V1)
        self.restart(lambda: 0, lambda: 0, version=PeerVersion.V1, subprotocol=SUBPROTOCOL_V1)

    def test_our_source_new_stream_ids(self) -> None:
        """Our source: the new process's stream ID differs, a plain new stream."""
        self.restart(lambda: 0, lambda: 1000)

    def test_stale_bytes_of_the_old_stream_are_dropped(self) -> None:
        """
        Bytes the old connection sent just before the restart reach the new
        source process after its StreamStart; under a new stream ID they are
        stale and dropped instead of reaching the new client.
        """
        old = join_source(self.service, lambda: 0)
        self.echo_through(old, b"one")
        old_server = self.destination_local.connections[-1][0]
        old.session_ended()
        old_server.data_received(b"late bytes for the old client")
        in_flight = list(self.service.destination_out)
        self.service.destination_out.clear()
        new = join_source(self.service, lambda: 1000)
        client = FakeLocalConnection()
        new.local_connection_accepted("ssh", client)
        for record in in_flight:
            new.data_received(record)
        pump(new, self.destination, self.service)
        self.assertEqual(client.data, b"")
        # The new stream works.
        server = self.destination_local.connections[-1][0]
        server.data_received(b"fresh")
        pump(new, self.destination, self.service)
        self.assertEqual(client.data, b"fresh")

    def test_data_of_the_new_stream_before_the_old_closes(self) -> None:
        """The new client's bytes, in the same payload as its StreamStart, reach only the new connection."""
        old = join_source(self.service, lambda: 0)
        self.echo_through(old, b"one")
        old.session_ended()
        new = join_source(self.service, lambda: 0)
        client = FakeLocalConnection()
        connection = new.local_connection_accepted("ssh", client)
        assert connection is not None
        connection.data_received(b"first bytes")
        payload = b"".join(self.service.source_out)
        self.service.source_out.clear()
        self.destination.data_received(payload)
        old_server, new_server = [local for _, local in self.destination_local.connections]
        self.assertEqual(old_server.data, b"one")
        self.assertEqual(new_server.data, b"first bytes")
        self.assertIn(data("ssh", 1, 1, b"first bytes"), payload)
