"""
Tests for L{aws_localproxy.protocol.service_state}: how stream and
connection IDs count (L{next_id}, L{random_stream_start}), a service's
stream and connections (L{Service}), and the tunnel's end of one connection
(L{Connection}).  How the tunnel uses them is tested through the tunnel
(L{tests.protocol.test_tunnel_restarts} for the stream IDs of a restarted
source).
"""

from __future__ import annotations

from typing import List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol import service_state
from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.service_state import (
    INT32_MAX,
    UINT32_MAX,
    Connection,
    Service,
    ServiceCounters,
    next_id,
    random_stream_start,
)
from tests.fakes.local import FakeLocalConnection
from tests.fakes.tunnel import SSH, started


class Reports:
    """A L{ConnectionEvents}: what the connections reported, in order."""

    def __init__(self) -> None:
        self.reported: List[Tuple[str, Connection, str]] = []

    def local_lost(self, connection: Connection) -> None:
        self.reported.append(("lost", connection, ""))

    def local_connect_failed(self, connection: Connection, reason: str) -> None:
        self.reported.append(("failed", connection, reason))


class NextIdTests(SynchronousTestCase):
    """IDs count up by one and start again at 1 after the largest, never at 0."""

    def test_counts_up(self) -> None:
        self.assertEqual([next_id(n, 10) for n in (0, 1, 9)], [1, 2, 10])

    def test_wraps_to_one(self) -> None:
        self.assertEqual(next_id(10, 10), 1)
        self.assertEqual(next_id(INT32_MAX, INT32_MAX), 1)
        self.assertEqual(next_id(UINT32_MAX, UINT32_MAX), 1)
        self.assertEqual(next_id(UINT32_MAX - 1, UINT32_MAX), UINT32_MAX)

    def test_past_the_largest_wraps_too(self) -> None:
        """A current ID above the maximum (a limit lowered under it) still gives 1."""
        self.assertEqual(next_id(11, 10), 1)


class RandomStreamStartTests(SynchronousTestCase):
    """Where a source's stream IDs count from: a draw in [0, INT32_MAX)."""

    def test_one_draw_below_int32_max(self) -> None:
        asked: List[int] = []

        def randbelow(bound: int) -> int:
            asked.append(bound)
            return 12345

        self.patch(service_state.secrets, "randbelow", randbelow)
        self.assertEqual(random_stream_start(), 12345)
        self.assertEqual(asked, [INT32_MAX])

    def test_first_stream_id_in_range(self) -> None:
        """The stream after the start is a valid int32 stream ID, whatever was drawn."""
        for _ in range(100):
            first = next_id(random_stream_start(), INT32_MAX)
            self.assertTrue(1 <= first <= INT32_MAX, first)


class ServiceTests(SynchronousTestCase):
    def test_starts_without_stream_or_connections(self) -> None:
        service = Service("ssh", "22")
        self.assertEqual(
            (service.service_id, service.endpoint, service.stream_id, service.active),
            ("ssh", "22", 0, False),
        )
        self.assertEqual((service.last_connection_id, service.connections), (0, {}))
        self.assertEqual(service.counters.service_id, "ssh")

    def test_counters_kept(self) -> None:
        """Counters given to a new session's service are the tunnel's, not new ones."""
        counters = ServiceCounters("ssh")
        self.assertIs(Service("ssh", "22", counters).counters, counters)

    def test_take_connections(self) -> None:
        """Every connection, oldest first, and the service forgets them."""
        service = Service("ssh", "22")
        events = Reports()
        first, second = Connection(events, service, 1, 5), Connection(events, service, 2, 5)
        service.connections[1] = first
        service.connections[2] = second
        self.assertEqual(list(service), [first, second])
        self.assertEqual(service.take_connections(), [first, second])
        self.assertEqual((service.connections, list(service)), ({}, []))

    def test_iterating_while_connections_close(self) -> None:
        """Iteration goes over the connections as they were: closing one on the way is safe."""
        service = Service("ssh", "22")
        events = Reports()
        for connection_id in (1, 2, 3):
            service.connections[connection_id] = Connection(events, service, connection_id, 5)
        seen = []
        for connection in service:
            seen.append(connection.connection_id)
            del service.connections[connection.connection_id]
        self.assertEqual(seen, [1, 2, 3])


class ConnectionTests(SynchronousTestCase):
    """The tunnel's end of one local connection."""

    def test_read_control_reaches_the_local_connection(self) -> None:
        """The lane's pause and resume reach the local socket, and nothing once it is gone."""
        tunnel, peer, local = started(Mode.SOURCE, SSH)
        socket = FakeLocalConnection()
        connection = tunnel.local_connection_accepted("ssh", socket)
        assert isinstance(connection, Connection)
        connection.pause_reading()
        self.assertTrue(socket.reading_paused)
        connection.resume_reading()
        self.assertFalse(socket.reading_paused)
        connection.local = None
        connection.pause_reading()
        self.assertFalse(socket.reading_paused)

    def test_reports_until_closed(self) -> None:
        """The local socket's end is reported while open, then never again."""
        events = Reports()
        service = Service("ssh", "22")
        connection = Connection(events, service, 3, 7)
        self.assertEqual(
            (connection.service_id, connection.connection_id, connection.stream_id),
            ("ssh", 3, 7),
        )
        connection.connect_failed("refused")
        connection.connection_lost()
        self.assertEqual(
            events.reported, [("failed", connection, "refused"), ("lost", connection, "")]
        )
        local = FakeLocalConnection()
        connection.local = local
        connection.close_local()
        self.assertEqual((connection.open, local.close_calls), (False, 1))
        connection.connect_failed("late")
        connection.connection_lost()
        self.assertEqual(len(events.reported), 2)
