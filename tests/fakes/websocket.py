"""
The boundary between the connector (and the tunnel) and the WebSocket to the
tunneling service, from either side: L{FakeProtocol} is the WebSocket
protocol as the connector and the tunnel see it (it records what it is asked
to do), L{RecordingEvents} the connector and the tunnel as the WebSocket
protocol sees them (it records what it is told, and starts each session with
a L{NoPacer} outbound); L{closed} says how a session ended.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.testing import StringTransport

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3
from aws_localproxy.protocol.errors import TunnelError
from aws_localproxy.protocol.inbound_flow import InboundFlow
from aws_localproxy.upstream.websocket import CloseOutcome, TunnelClientProtocol


class FakeProtocol:
    """
    The WebSocket protocol as the connector and the tunnel see it: records
    what it is asked to do; the test hands the session its messages with
    L{deliver}, as the real protocol would.
    """

    STATE_OPEN = 3
    STATE_CLOSED = 4

    #: The connector's factory (its C{events}), set by L{FakeEndpoint
    #: <tests.fakes.endpoints.FakeEndpoint>}.
    factory: Any = None

    def __init__(self) -> None:
        self.state = 1
        self.transport = StringTransport()
        self.dropped: List[bool] = []
        self.closed_with: List[tuple] = []
        self.sent: List[bytes] = []
        self.websocket_protocol_in_use = SUBPROTOCOL_V3
        #: What inbound flow control told it (True: the WebSocket is no longer read).
        self.reading_paused_calls: List[bool] = []
        #: Where the session takes messages (the tunnel's), once it started.
        self.receive: Optional[Callable[[bytes], None]] = None
        #: The session's outbound scheduler, once it started.
        self.outbound: Any = None

    def start_session(self, receive: Callable[[bytes], None], outbound: Any, inbound: Any) -> None:
        self.receive = receive
        self.outbound = outbound
        self.transport.registerProducer(outbound, True)
        inbound.attach(self.transport, outbound, self)

    def deliver(self, payload: bytes) -> None:
        """
        One message from the service, handed over as the real protocol does:
        to the session's receiver; a L{TunnelError} is reported to the
        connector and nothing more is handed over.
        """
        receive = self.receive
        if receive is None:
            return
        try:
            receive(payload)
        except TunnelError as error:
            self.receive = None
            self.factory.events.session_failed(self, error)

    def dropConnection(self, abort: bool = False) -> None:
        self.dropped.append(abort)

    def sendClose(self, code: int, reason: str) -> None:
        self.closed_with.append((code, reason))

    def send_record(self, record: bytes) -> None:
        self.sent.append(record)

    def send_ping(self, payload: bytes) -> None:
        pass

    def reading_paused(self, paused: bool) -> None:
        self.reading_paused_calls.append(paused)


def closed(**kwargs: Any) -> CloseOutcome:
    """How a session ended: an unclean drop of an open WebSocket unless C{kwargs} say otherwise."""
    values = dict(was_open=True, was_clean=False, code=1006, reason="", closed_by_service=False)
    values.update(kwargs)
    return CloseOutcome(**values)


class NoPacer:
    """
    The outbound of a session in the WebSocket's tests: no pacer (every pong
    is the keep-alive's), and nothing to produce.
    """

    def pong(self, payload: bytes) -> bool:
        return False

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass

    def reading_paused(self, paused: bool) -> None:
        pass


class RecordingEvents:
    """
    A L{SessionEvents} that keeps what it is told, and starts each session
    as the tunnel does (L{TunnelClientProtocol.start_session}), with a
    receiver that keeps every message.
    """

    def __init__(self) -> None:
        self.opened: List[Tuple[TunnelClientProtocol, str]] = []
        self.messages: List[bytes] = []
        self.failed: List[TunnelError] = []
        self.closed: List[CloseOutcome] = []
        #: What the next session is started with (a test may replace them).
        self.receive: Callable[[bytes], None] = self.message_received
        self.outbound: NoPacer = NoPacer()

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        self.opened.append((protocol, subprotocol))
        protocol.start_session(self.receive, self.outbound, InboundFlow())  # type: ignore[arg-type]

    def message_received(self, payload: bytes) -> None:
        self.messages.append(payload)

    def session_failed(self, protocol: TunnelClientProtocol, error: TunnelError) -> None:
        self.failed.append(error)

    def session_closed(self, protocol: TunnelClientProtocol, outcome: CloseOutcome) -> None:
        self.closed.append(outcome)
