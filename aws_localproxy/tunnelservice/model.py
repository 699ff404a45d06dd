# -*- test-case-name: tests.tunnelservice.test_registry -*-
"""
The local tunnel service's model: a managed tunnel, its two slots, tokens.

Plain values and their invariants only: the registry (L{registry}) changes
them, the management API (L{apishapes}) and the state file (L{store}) shape
them, the relay (L{relay}) reaches live connections through L{PeerLink}.
Named I{managed} tunnels to keep them apart from the local proxy's
L{aws_localproxy.protocol.tunnel.Tunnel}, the protocol object of one proxy.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol

from aws_localproxy.protocol.constants import Mode

DEFAULT_LIFETIME_MINUTES = 720

#: WebSocket close codes the service uses.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008

CONNECTED = "CONNECTED"
DISCONNECTED = "DISCONNECTED"
OPEN = "OPEN"
CLOSED = "CLOSED"


class TunnelNotFound(Exception):
    """No (open, where that matters) tunnel has this ID or ARN."""


class InvalidTunnel(ValueError):
    """A tunnel cannot be opened with these values."""


class PeerLink(Protocol):
    """A live data-plane WebSocket, as the registry and the relay drive it."""

    #: The selected ``Sec-WebSocket-Protocol``.
    subprotocol: str

    def send_frames(self, data: bytes) -> None:
        """Send bytes of the tunnel's record stream to the client, in order."""

    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket with a close frame."""

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network failure)."""

    def pause_reading(self, reason: str) -> None:
        """Stop reading this client until L{resume_reading} with the same reason."""

    def resume_reading(self, reason: str) -> None:
        """Lift one reason of L{pause_reading}."""


def new_access_token() -> str:
    """An unguessable access token (URL-safe, no commas: a comma separates header values)."""
    return secrets.token_urlsafe(48)


def token_digest(token: str) -> bytes:
    """
    What tunnels are indexed by: a SHA-256 digest of the access token, so
    that looking a presented token up does not compare it with the real
    ones byte by byte (see L{registry.TunnelRegistry.find_token}).
    """
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(eq=False)
class Slot:
    """One end (source or destination) of a tunnel."""

    mode: Mode
    access_token: str
    client_token: Optional[str] = None
    spent: bool = False
    peer: Optional[PeerLink] = None
    last_updated_at: float = 0.0

    @property
    def state(self) -> str:
        return CONNECTED if self.peer is not None else DISCONNECTED


@dataclass(eq=False)
class ManagedTunnel:
    """A tunnel of the local tunnel service, with the fields of the API's C{Tunnel} shape."""

    tunnel_id: str
    tunnel_arn: str
    created_at: float
    last_updated_at: float
    max_lifetime_minutes: int
    slots: Dict[Mode, Slot]
    description: Optional[str] = None
    thing_name: Optional[str] = None
    services: List[str] = field(default_factory=list)
    has_destination_config: bool = False
    tags: List[Dict[str, str]] = field(default_factory=list)
    status: str = OPEN
    #: The stream ID of each service's active stream, learnt from the
    #: source's StreamStart and forgotten on StreamReset: what the service
    #: resets when a peer is replaced.
    active_streams: Dict[str, int] = field(default_factory=dict)
    #: The IDelayedCall that closes the tunnel at the end of its lifetime.
    expiry: Optional[Any] = None

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    @property
    def expires_at(self) -> float:
        return self.created_at + self.max_lifetime_minutes * 60

    def slot(self, mode: Mode) -> Slot:
        return self.slots[mode]

    def other(self, mode: Mode) -> Slot:
        return self.slots[Mode.DESTINATION if mode is Mode.SOURCE else Mode.SOURCE]
