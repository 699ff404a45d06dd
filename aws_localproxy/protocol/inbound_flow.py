# -*- test-case-name: tests.protocol.test_inbound_flow -*-
"""
Back-pressure from the local connections to the WebSocket (tunnel -> local).

One WebSocket carries every connection of the tunnel, and the protocol has
no per-connection flow control: while one local application does not read,
its bytes have nowhere to go but memory.  Each local connection therefore
has a bound (``tcp.write_buffer_size``, the reference's per-connection
write buffer): it takes whatever the tunnel sends until Twisted's own write
buffer is full *and* that many more bytes are waiting; only then is the
WebSocket no longer read, and it is read again as soon as every blocked
connection has drained.  A slow reader so stalls the others only after its
own bounded buffer is full, never sooner; the stall that follows is
inherent to one ordered WebSocket.

The other direction (local -> tunnel) is the scheduler's: each connection's
lane is bounded and pauses only its own socket (L{aws_localproxy.protocol.scheduler}).
The session's scheduler and WebSocket protocol are told whenever reading
stops and starts again: the pacer and the keep-alive wait for pongs, and
none can arrive while the WebSocket is not read.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, Set, Tuple

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger

__all__ = ["InboundFlow", "ReadingListener"]


class ReadingListener(Protocol):
    """Told when the WebSocket stops (C{True}) and starts again (C{False}) being read."""

    def reading_paused(self, paused: bool) -> None: ...


class InboundFlow:
    """Pauses reading the WebSocket while any local connection is over its bound."""

    log = Logger()

    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self._clock = clock
        self._blocked: Set[object] = set()
        self._websocket: Optional[IPushProducer] = None
        self._listeners: Tuple[ReadingListener, ...] = ()
        self._paused_at: Optional[float] = None
        #: Seconds the WebSocket was not read because a local connection was full.
        self.paused_seconds = 0.0

    def attach(self, transport: IPushProducer, *listeners: ReadingListener) -> None:
        """
        A new session's WebSocket transport (paused at once if a connection
        is still full), and who is told when its reading stops and starts.
        """
        self.detach()
        self._websocket = transport
        self._listeners = listeners
        if self._blocked:
            self._pause()

    def detach(self) -> None:
        """The session is over; its transport is gone."""
        self._account()
        self._websocket = None
        self._listeners = ()
        self._paused_at = None

    def paused_seconds_now(self) -> float:
        """L{paused_seconds}, with a pause still under way counted up to now."""
        total = self.paused_seconds
        if self._paused_at is not None:
            total += max(0.0, self._clock() - self._paused_at)
        return total

    @property
    def websocket_paused(self) -> bool:
        """Whether WebSocket reading is paused for a full local connection."""
        return self._paused_at is not None

    def blocked(self, owner: object) -> None:
        """C{owner} (a local connection) is over its bound: stop reading the WebSocket."""
        self._blocked.add(owner)
        self._pause()

    def unblocked(self, owner: object) -> None:
        """C{owner} drained (or is gone); resume the WebSocket when nobody is blocked."""
        self._blocked.discard(owner)
        if not self._blocked and self._paused_at is not None:
            self._account()
            self._paused_at = None
            self.log.debug("Local connections drained: resuming the WebSocket")
            if self._websocket is not None:
                self._websocket.resumeProducing()
            for listener in self._listeners:
                listener.reading_paused(False)

    def _pause(self) -> None:
        if self._websocket is not None and self._paused_at is None:
            self._paused_at = self._clock()
            self.log.debug("A local connection is full: pausing the WebSocket")
            self._websocket.pauseProducing()
            for listener in self._listeners:
                listener.reading_paused(True)

    def _account(self) -> None:
        if self._paused_at is not None:
            now = self._clock()
            self.paused_seconds += now - self._paused_at
            self._paused_at = now
