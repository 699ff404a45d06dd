# -*- test-case-name: tests.test_embedding -*-
"""
What an embedding application hears about the proxy's sessions: the values
L{aws_localproxy.proxy.service.LocalProxyService}'s C{on_connected} and
C{on_closed} hooks (and its C{connected} Deferred) are called with.

Plain values with no behaviour, so an application can keep, compare and log
them without holding on to the proxy's internals.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

import attrs

__all__ = ["ConnectedTunnel", "ClosedTunnel"]


def _copy(endpoints: Mapping[str, str]) -> dict[str, str]:
    """A dict of the application's own, whatever mapping the session held."""
    return dict(endpoints)


@attrs.define(eq=False)
class ConnectedTunnel:
    """
    A session that has its service IDs: what L{LocalProxyService.connected}
    fires with and C{on_connected} is called with.

    @ivar subprotocol: the WebSocket subprotocol the service picked
        (``aws.iot.securetunneling-3.0``, ...).
    @ivar service_ids: the tunnel's service IDs, in the service's order.
    @ivar endpoints: service ID -> the local endpoint text it uses.
    @ivar session: 1 for the first session, 2 after the first reconnect, ...
    """

    subprotocol: str
    service_ids: Tuple[str, ...]
    endpoints: dict[str, str] = attrs.field(converter=_copy)
    session: int = 1

    def __repr__(self) -> str:
        return (
            f"<ConnectedTunnel {self.subprotocol} {list(self.service_ids)} session={self.session}>"
        )


@attrs.define(eq=False)
class ClosedTunnel:
    """
    How an open session ended: what C{on_closed} is called with (the proxy
    then reconnects, or ends; L{LocalProxyService.when_finished} says which).

    @ivar subprotocol: the session's WebSocket subprotocol.
    @ivar service_ids: its service IDs (empty if it closed before SERVICE_IDS).
    @ivar reason: the close reason (the service's, for a close frame).
    @ivar code: the WebSocket close code, if any.
    @ivar closed_by_service: the service sent a close frame first
        (CloseTunnel, expiry, replaced by another peer).
    @ivar session: which session it was (1, 2, ...).
    """

    subprotocol: str
    service_ids: Tuple[str, ...]
    reason: str
    code: Optional[int]
    closed_by_service: bool
    session: int

    def __repr__(self) -> str:
        return (
            f"<ClosedTunnel {self.subprotocol} {list(self.service_ids)} code={self.code} "
            f"reason={self.reason!r} by_service={self.closed_by_service}>"
        )
