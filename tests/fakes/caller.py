"""
The caller of an endpoint under test: its protocol records what it was
given, what arrived and how the connection ended (L{Recorder}, built by
L{RecorderFactory}); L{ProducingRecorder} also registers a paused producer,
as a relay does when its peer is slow.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer


class Recorder(Protocol):
    """The caller's protocol: remembers what it was given, what arrived and how it ended."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: list[Failure] = []
        self.made_with: object = None

    def makeConnection(self, transport: object) -> None:
        self.made_with = transport
        Protocol.makeConnection(self, transport)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost.append(reason)


class RecorderFactory(Factory):
    """Builds L{Recorder}s and keeps the address of each."""

    protocol = Recorder

    def __init__(self) -> None:
        self.addresses: list[object] = []

    def buildProtocol(self, addr: object) -> Protocol | None:  # type: ignore[override]
        self.addresses.append(addr)
        return Factory.buildProtocol(self, addr)  # type: ignore[arg-type]


@implementer(IPushProducer)
class PausedProducer:
    """A streaming producer that the caller's protocol registered and paused."""

    def __init__(self) -> None:
        self.paused = True

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


class ProducingRecorder(Protocol):
    """
    A caller's protocol without half-close that registers a streaming
    producer on its transport and pauses it, as a relay does when its peer
    is slow.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.producer = PausedProducer()
        self.transport.registerProducer(self.producer, True)  # type: ignore[attr-defined]
