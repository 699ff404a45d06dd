"""
A proxy's WebSocket as our local tunnel service's registry and relay see it
(a L{PeerLink<aws_localproxy.tunnelservice.model.PeerLink>}).
"""

from __future__ import annotations

from typing import List, Set, Tuple

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3
from aws_localproxy.protocol.wire import Message, decode_all


class FakePeerLink:
    """A L{PeerLink} that records what the registry and the relay do to it."""

    def __init__(self, subprotocol: str = SUBPROTOCOL_V3) -> None:
        self.subprotocol = subprotocol
        self.sent: List[bytes] = []
        self.closed: List[Tuple[int, str]] = []
        self.aborted = False
        self.paused: Set[str] = set()

    def send_frames(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self, reason: str) -> None:
        self.paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        self.paused.discard(reason)

    def messages(self) -> List[Message]:
        return decode_all(b"".join(self.sent))
