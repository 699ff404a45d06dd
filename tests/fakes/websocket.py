"""
The boundary between the connector and the WebSocket to the tunneling
service, from either side: L{FakeProtocol} is the WebSocket protocol as the
connector sees it (it records what it is asked to do), L{RecordingEvents}
the connector as the WebSocket protocol sees it (it records what it is
told); L{closed} says how a session ended.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet.testing import StringTransport

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3
from aws_localproxy.upstream.websocket import CloseOutcome, TunnelClientProtocol


class FakeProtocol:
    """The WebSocket protocol as the connector sees it: records what it is asked to do."""

    STATE_OPEN = 3
    STATE_CLOSED = 4

    def __init__(self) -> None:
        self.state = 1
        self.transport = StringTransport()
        self.dropped: List[bool] = []
        self.closed_with: List[tuple] = []
        self.sent: List[bytes] = []
        self.websocket_protocol_in_use = SUBPROTOCOL_V3
        #: What inbound flow control told it (True: the WebSocket is no longer read).
        self.reading_paused_calls: List[bool] = []

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


class RecordingEvents:
    """A L{SessionEvents} that keeps what it is told."""

    def __init__(self) -> None:
        self.opened: List[Tuple[TunnelClientProtocol, str]] = []
        self.messages: List[bytes] = []
        self.closed: List[CloseOutcome] = []

    def session_opened(self, protocol: TunnelClientProtocol, subprotocol: str) -> None:
        self.opened.append((protocol, subprotocol))

    def session_message(self, protocol: TunnelClientProtocol, payload: bytes) -> None:
        self.messages.append(payload)

    def session_closed(self, protocol: TunnelClientProtocol, outcome: CloseOutcome) -> None:
        self.closed.append(outcome)

    def session_pong(self, protocol: TunnelClientProtocol, payload: bytes) -> bool:
        return False  # no pacer here: every pong is the keep-alive's
