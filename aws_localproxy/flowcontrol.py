# -*- test-case-name: tests.test_flowcontrol -*-
"""
Back-pressure between the one WebSocket and the many local connections.

The reference has none (behaviour.md §4: F1 crashes on a slow local reader,
F2 grows without bound under a slow tunnel).  Here both directions use
Twisted's producer/consumer interfaces, so memory stays bounded whatever the
speeds:

 - *local -> tunnel*: the WebSocket transport accepts exactly one producer,
   so L{FlowControl} registers one aggregate producer on it.  When the
   WebSocket's send buffer fills, every local transport stops reading; when
   it drains, they all resume.  A local connection accepted while paused
   starts paused.
 - *tunnel -> local*: each local connection registers itself as a producer
   on its own transport.  When a local socket's send buffer fills, Twisted
   pauses it, and L{FlowControl} stops reading the WebSocket until every
   blocked local connection has drained.  Head-of-line blocking across
   connections is inherent to one ordered WebSocket.
"""

from __future__ import annotations

from typing import Optional, Set

from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["FlowControl"]


@implementer(IPushProducer)
class _OutboundProducer:
    """The aggregate producer registered on one WebSocket transport (one per session)."""

    def __init__(self, flow: FlowControl) -> None:
        self._flow = flow
        self.active = True

    def pauseProducing(self) -> None:
        if self.active:
            self._flow._pause_locals()

    def resumeProducing(self) -> None:
        if self.active:
            self._flow._resume_locals()

    def stopProducing(self) -> None:
        self.active = False


class FlowControl:
    """The meeting point of both directions of back-pressure; one per local proxy."""

    log = Logger()

    def __init__(self) -> None:
        self._local_transports: Set[ITransport] = set()
        self._locals_paused = False
        self._blocked: Set[object] = set()
        self._websocket: Optional[ITransport] = None
        self._producer: Optional[_OutboundProducer] = None
        self._websocket_paused = False

    # -- the WebSocket ------------------------------------------------------------

    def attach_websocket(self, transport: ITransport) -> None:
        """A new session's WebSocket transport: register the aggregate producer on it."""
        self.detach_websocket()
        self._websocket = transport
        self._producer = _OutboundProducer(self)
        transport.registerProducer(self._producer, True)  # type: ignore[attr-defined]
        self._websocket_paused = False
        if self._blocked:
            self._pause_websocket()

    def detach_websocket(self) -> None:
        """The session is over: forget its transport, let local reads go."""
        if self._producer is not None:
            self._producer.active = False
            self._producer = None
        self._websocket = None
        self._websocket_paused = False
        if self._locals_paused:
            self._resume_locals()

    def _pause_websocket(self) -> None:
        if self._websocket is not None and not self._websocket_paused:
            self._websocket_paused = True
            self.log.debug("A local connection is full: pausing the WebSocket")
            self._websocket.pauseProducing()  # type: ignore[attr-defined]

    def _resume_websocket(self) -> None:
        if self._websocket is not None and self._websocket_paused:
            self._websocket_paused = False
            self.log.debug("Local connections drained: resuming the WebSocket")
            self._websocket.resumeProducing()  # type: ignore[attr-defined]

    @property
    def websocket_paused(self) -> bool:
        """Whether WebSocket reading is paused for a full local connection."""
        return self._websocket_paused

    # -- local connections ----------------------------------------------------------

    def add_local(self, transport: ITransport) -> None:
        """A local connection can be read: pause it at once if the WebSocket is full."""
        self._local_transports.add(transport)
        if self._locals_paused:
            transport.pauseProducing()  # type: ignore[attr-defined]

    def remove_local(self, transport: ITransport, owner: object) -> None:
        """A local connection is gone: it can neither be paused nor block anything."""
        self._local_transports.discard(transport)
        self.unblocked(owner)

    @property
    def locals_paused(self) -> bool:
        """Whether local reads are paused for a full WebSocket."""
        return self._locals_paused

    def _pause_locals(self) -> None:
        if self._locals_paused:
            return
        self._locals_paused = True
        self.log.debug("The WebSocket is full: pausing local reads")
        for transport in list(self._local_transports):
            transport.pauseProducing()  # type: ignore[attr-defined]

    def _resume_locals(self) -> None:
        if not self._locals_paused:
            return
        self._locals_paused = False
        self.log.debug("The WebSocket drained: resuming local reads")
        for transport in list(self._local_transports):
            transport.resumeProducing()  # type: ignore[attr-defined]

    def blocked(self, owner: object) -> None:
        """C{owner} (a local connection) cannot take more: stop reading the WebSocket."""
        self._blocked.add(owner)
        self._pause_websocket()

    def unblocked(self, owner: object) -> None:
        """C{owner} can take more again; resume the WebSocket when nobody is blocked."""
        self._blocked.discard(owner)
        if not self._blocked:
            self._resume_websocket()
