"""
Tests for L{aws_localproxy.protocol.service_state}: a service's stream and
connections, and the tunnel's end of one connection (L{Connection}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.protocol.service_state import Connection
from tests.fakes.local import FakeLocalConnection
from tests.fakes.tunnel import SSH, started


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
