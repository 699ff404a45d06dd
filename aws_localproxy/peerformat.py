# -*- test-case-name: tests.test_tunnel_versions -*-
"""
The peer's message format: how V1, V2 and V3 peers number things.

 - V3: service IDs and connection IDs; many connections per stream.
 - V2: service IDs, no connection IDs (0, never sent); one connection per
   stream.  A V3 proxy falls back to it when the peer sends a connection ID
   of 0 (the peer is a V2 proxy).
 - V1: neither; a single service, and messages carry no service ID.

Everything that depends on the version lives here, so the tunnel's rules
are written once, in the protocol's own terms.
"""

from __future__ import annotations

from typing import Sequence

from twisted.logger import Logger

from aws_localproxy.constants import PeerVersion
from aws_localproxy.wire import DataFields, control_message

__all__ = ["PeerFormat"]


class PeerFormat:
    """The message format spoken towards the peer in one session."""

    log = Logger()

    def __init__(self, version: PeerVersion) -> None:
        self.version = version

    @property
    def multiplexed(self) -> bool:
        """Whether a stream may carry several connections (V3)."""
        return self.version is PeerVersion.V3

    def fall_back_to_v2(self) -> bool:
        """The peer showed it is a V2 peer; C{True} if that changed the format."""
        if self.version is PeerVersion.V3:
            self.log.debug("reverting to v2 message format")
            self.version = PeerVersion.V2
            return True
        return False

    def wire_service_id(self, service_id: str) -> str:
        return "" if self.version is PeerVersion.V1 else service_id

    def wire_connection_id(self, connection_id: int) -> int:
        return connection_id if self.version is PeerVersion.V3 else 0

    def route(self, wire_service_id: str, service_ids: Sequence[str]) -> str:
        """The service a message is for: a V1 peer sends no service ID, so it is the only one."""
        if self.version is PeerVersion.V1 and service_ids:
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
