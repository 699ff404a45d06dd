"""
A fault-injecting TCP relay for end-to-end tests, on 127.0.0.1.

It sits between a local proxy and the local tunnel service (TLS passes
through untouched) and, on command, breaks what it carries the ways
networks do: L{drop} aborts every relayed connection at once (a WebSocket
dropped mid-transfer), L{stall} stops moving bytes while keeping the
connections open (a frozen peer), L{blackhole} keeps accepting but never
connects or answers.  L{heal} undoes stall and blackhole.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol


class _Side(Protocol):
    def __init__(self, relay: "FaultRelay") -> None:
        self.relay = relay
        self.other: Optional[_Side] = None
        self.pending: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        if self.other is None or self.other.transport is None or self.relay.stalled:
            self.pending.append(data)
            return
        self.other.transport.write(data)

    def flush(self) -> None:
        if self.other is not None and self.other.transport is not None:
            for data in self.pending:
                self.other.transport.write(data)
            self.pending = []

    def connectionLost(self, reason: Any = None) -> None:
        self.relay.sides.discard(self)
        other, self.other = self.other, None
        if other is not None and other.transport is not None:
            other.other = None
            other.transport.loseConnection()


class FaultRelay:
    """Listens on 127.0.0.1 (a free port) and relays to C{target_port}."""

    def __init__(self, reactor: Any, target_port: int) -> None:
        self.reactor = reactor
        self.target_port = target_port
        self.sides: set = set()
        self.stalled = False
        self.blackholed = False
        self.accepted = 0
        self.port: Any = None

    def listen(self) -> Any:
        relay = self

        class Front(_Side):
            def connectionMade(self) -> None:
                relay.accepted += 1
                relay.sides.add(self)
                if relay.blackholed:
                    return
                self.transport.pauseProducing()
                d = TCP4ClientEndpoint(relay.reactor, "127.0.0.1", relay.target_port).connect(
                    Factory.forProtocol(lambda: _Side(relay))
                )
                d.addCallbacks(self._connected, lambda _: self.transport.abortConnection())

            def _connected(self, back: _Side) -> None:
                if self.transport is None or not self.transport.connected:
                    back.transport.loseConnection()
                    return
                relay.sides.add(back)
                self.other, back.other = back, self
                self.flush()
                self.transport.resumeProducing()

        d = TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: Front(relay))
        )

        def listening(port: Any) -> int:
            self.port = port
            return int(port.getHost().port)

        return d.addCallback(listening)

    def drop(self) -> None:
        """Abort every relayed connection now (both ends see a reset)."""
        for side in list(self.sides):
            if side.transport is not None:
                side.transport.abortConnection()

    def stall(self) -> None:
        """Stop relaying bytes; connections stay open."""
        self.stalled = True

    def blackhole(self) -> None:
        """New connections are accepted and never answered."""
        self.blackholed = True

    def heal(self) -> None:
        self.stalled = False
        self.blackholed = False
        for side in list(self.sides):
            side.flush()

    def stop(self) -> Any:
        self.drop()
        return self.port.stopListening() if self.port is not None else None
