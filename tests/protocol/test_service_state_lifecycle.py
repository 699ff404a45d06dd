"""
L{aws_localproxy.protocol.service_state}: a connection before its lane and
after its local socket is gone, and what a service and a connection look
like in a log line or a traceback.
"""

from __future__ import annotations

from typing import List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.service_state import Connection, Service
from tests.fakes.local import FakeLocalConnection


class Reports:
    """A L{ConnectionEvents}: what the connections reported, in order."""

    def __init__(self) -> None:
        self.reported: List[Tuple[str, Connection]] = []

    def local_lost(self, connection: Connection) -> None:
        self.reported.append(("lost", connection))

    def local_connect_failed(self, connection: Connection, reason: str) -> None:
        self.reported.append(("failed", connection))


class LifecycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = Reports()
        self.service = Service("ssh", "22")
        self.connection = Connection(self.events, self.service, 3, 7)

    def test_bytes_before_a_lane_are_dropped(self) -> None:
        """Bytes read before the connection has a lane go nowhere, and it has no lane to give back."""
        self.connection.data_received(b"early")
        self.assertIsNone(self.connection.detach_lane())

    def test_nothing_reported_after_the_local_socket_is_gone(self) -> None:
        """
        Once the tunnel took the local socket's end, a late report (a
        stand-in's failure, a second loss) is ignored, and closing does not
        touch the socket that is gone: the connection is reset once.
        """
        local = FakeLocalConnection()
        self.connection.local = local
        self.connection.local_gone()
        self.connection.connection_lost()
        self.connection.connect_failed("late")
        self.connection.close_local()
        self.assertEqual(self.events.reported, [])
        self.assertEqual(local.close_calls, 0)
        self.assertIsNone(self.connection.local)


class ReprTests(SynchronousTestCase):
    """What a debug line or a traceback shows of the session's state."""

    def test_service(self) -> None:
        service = Service("ssh", "22")
        service.stream_id = 5
        service.active = True
        events = Reports()
        for connection_id in (4, 2):
            service.connections[connection_id] = Connection(events, service, connection_id, 5)
        self.assertEqual(repr(service), "<Service 'ssh' stream=5 active=True connections=[2, 4]>")

    def test_connection(self) -> None:
        connection = Connection(Reports(), Service("ssh", "22"), 3, 7)
        self.assertEqual(repr(connection), "<Connection 'ssh' stream=7 id=3>")
        connection.close_local()
        self.assertEqual(repr(connection), "<Connection 'ssh' stream=7 id=3 closed>")
