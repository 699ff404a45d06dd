"""
The local side as the protocol core sees it: L{FakeLocalSide} (a
L{LocalSide}: the source's listeners, the destination's connector) and
L{FakeLocalConnection} (a L{LocalConnection}: one local socket), both
recording what the tunnel does to them; L{Reader}, the reading of one
local socket as an outbound lane pauses and resumes it;
L{RecordingTunnelConnection}, the tunnel's end of a connection as a local
side sees it; L{refuse_every_connection} and L{ignore_given_up}, the
tunnel's entry points of a local side whose test never reaches the tunnel.
"""

from __future__ import annotations

from typing import Any, List, Mapping

from aws_localproxy.protocol.interfaces import LocalConnection, TunnelConnection


class FakeLocalConnection:
    """A L{LocalConnection} that records what the tunnel wrote and whether it closed it."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.written: List[bytes] = []
        self.close_calls = 0

    @property
    def data(self) -> bytes:
        return b"".join(self.written)

    @property
    def closed(self) -> bool:
        return self.close_calls > 0

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(data)

    def close(self) -> None:
        self.close_calls += 1

    reading_paused = False

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False


class FakeLocalSide:
    """
    A L{LocalSide}: records C{services_ready} calls and the destination's
    connections (as (tunnel connection, local connection) pairs).
    """

    def __init__(self) -> None:
        self.ready_calls: List[dict] = []
        self.connections: List[tuple[TunnelConnection, FakeLocalConnection]] = []
        self.fail_synchronously = False

    def services_ready(self, endpoints: Mapping[str, str]) -> None:
        self.ready_calls.append(dict(endpoints))

    def connect(self, connection: TunnelConnection) -> LocalConnection:
        local = FakeLocalConnection("%s/%d" % (connection.service_id, connection.connection_id))
        self.connections.append((connection, local))
        if self.fail_synchronously:
            connection.connect_failed("refused")
        return local

    def connection(self, service_id: str, connection_id: int, index: int = -1):
        """The latest (tunnel connection, local) pair for this service and id."""
        matches = [
            pair
            for pair in self.connections
            if pair[0].service_id == service_id and pair[0].connection_id == connection_id
        ]
        assert matches, "no connection %r/%d" % (service_id, connection_id)
        return matches[index]


class Reader:
    """A L{ReadControl} (a local socket's reading): paused or not, and how often paused."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False


class RecordingTunnelConnection:
    """
    A L{TunnelConnection} that records what the local side reports: the
    bytes read, how many times the socket was lost and, for a destination,
    why connecting failed (a source's connection never connects: a report
    of a failed connect fails the test).
    """

    connection_id = 1

    def __init__(self, service_id: str = "ssh", *, destination: bool = False) -> None:
        self.service_id = service_id
        self.data: List[bytes] = []
        self.lost = 0
        self.failed: List[str] = []
        #: (stand-in, connected) local connections the destination side swapped.
        self.replaced: List[tuple] = []
        self._destination = destination

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def connection_lost(self) -> None:
        self.lost += 1

    def connect_failed(self, reason: str) -> None:
        if not self._destination:
            raise AssertionError("a source's connection does not connect: " + reason)
        self.failed.append(reason)

    def replace_local(self, stand_in: Any, local: Any) -> None:
        if not self._destination:
            raise AssertionError("a source's connection does not connect")
        self.replaced.append((stand_in, local))


def refuse_every_connection(service_id: str, local: object) -> None:
    """
    The C{accept} of a local side whose test never reaches the tunnel: the
    tunnel's answer C{None} refuses the connection.
    """
    return None


def ignore_given_up(service_id: str, wait: object) -> None:
    """The C{given_up} of a source side whose test does not look at refusals."""
