# -*- test-case-name: tests.protocol.test_peer_format,tests.protocol.test_tunnel_versions -*-
"""
The peer's message format: how V1, V2 and V3 peers number things.

 - V3: service IDs and connection IDs; many connections per stream.
 - V2: service IDs, no connection IDs (0, never sent); one connection per
   stream.  A V3 proxy falls back to it when the peer sends a connection ID
   of 0 (the peer is a V2 proxy).
 - V1: neither; a single service, and messages carry no service ID.

Everything that depends on the version lives here, so the tunnel's rules
are written once, in the protocol's own terms.

The version is found, not asked for (docs/compatibility.md, "How the
peer's version is found").  Unless ``-y`` forces a format, a source starts
a session with the V3 format I{presumed}: what it sends is understood by
every version as long as a stream carries one connection, so it holds a
second connection until the peer has I{shown} its version -- a message of
the current stream with a connection ID (V3) or without one (V1/V2).  A
message without a service ID on a tunnel with one service comes from a V1
peer and is meant for that service (the V2 guide).
"""

from __future__ import annotations

from typing import Sequence

from twisted.logger import Logger

from aws_localproxy.protocol.constants import PeerVersion
from aws_localproxy.protocol.wire import DataFields, control_message

__all__ = ["PeerFormat"]


class PeerFormat:
    """The message format spoken towards the peer in one session."""

    log = Logger()

    def __init__(self, version: PeerVersion, *, known: bool = True) -> None:
        """
        @param known: C{False} when C{version} is only presumed (a source's V3
            without ``-y``): the peer has yet to show whether it takes
            connection IDs.
        """
        self.version = version
        self.known = known

    @property
    def multiplexed(self) -> bool:
        """Whether the format numbers connections (V3, presumed or shown)."""
        return self.version is PeerVersion.V3

    @property
    def several_connections(self) -> bool:
        """Whether a stream may carry several connections now: the peer showed it speaks V3."""
        return self.known and self.version is PeerVersion.V3

    def shown_v3(self) -> bool:
        """The peer sent a connection ID: it speaks V3; C{True} if that was news."""
        if self.known:
            return False
        self.log.info("The peer sent a connection id: it speaks V3 (several connections a stream)")
        self.known = True
        return True

    def fall_back_to_v2(self) -> bool:
        """The peer showed it is a V1 or V2 peer; C{True} if that changed the format."""
        self.known = True
        if self.version is PeerVersion.V3:
            self.log.debug("reverting to v2 message format")
            self.version = PeerVersion.V2
            return True
        return False

    def speak_v1(self) -> None:
        """A V1 peer started a stream without a service ID: send none either (the V2 guide)."""
        if self.version is not PeerVersion.V1:
            self.log.info("The peer sent no service id: it speaks V1; sending none either")
            self.version = PeerVersion.V1
        self.known = True

    def wire_service_id(self, service_id: str) -> str:
        return "" if self.version is PeerVersion.V1 else service_id

    def wire_connection_id(self, connection_id: int) -> int:
        return connection_id if self.version is PeerVersion.V3 else 0

    def route(
        self, wire_service_id: str, service_ids: Sequence[str], *, stream_message: bool
    ) -> str:
        """
        The service a message is for: a V1 peer sends no service ID, so it is
        the only one -- in V1 format, and for a stream's message (DATA, a start
        or a reset, not the service's SERVICE_IDS or SESSION_RESET) without a
        service ID on a tunnel with exactly one service, whatever the format:
        the V2 guide says such a message comes from a V1 peer.
        """
        if service_ids and (
            self.version is PeerVersion.V1
            or (stream_message and not wire_service_id and len(service_ids) == 1)
        ):
            return service_ids[0]
        return wire_service_id

    def control(
        self, message_type: int, service_id: str, stream_id: int, connection_id: int = 0
    ) -> bytes:
        """A control record for C{service_id}, in this format."""
        return control_message(
            message_type,
            stream_id=stream_id,
            service_id=self.wire_service_id(service_id),
            connection_id=self.wire_connection_id(connection_id),
        )

    def data_fields(self, service_id: str, stream_id: int, connection_id: int) -> DataFields:
        """The fixed fields of one connection's DATA records, in this format."""
        return DataFields(
            self.wire_service_id(service_id), stream_id, self.wire_connection_id(connection_id)
        )
