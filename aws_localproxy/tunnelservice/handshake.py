# -*- test-case-name: tests.tunnelservice.test_rules -*-
"""
The data plane's handshake rules: which upgrade requests get a slot.

Pure decisions over the request's parts and the model (no sockets, no
Autobahn): the data plane (L{dataplane}) answers a L{HandshakeRejected}
with its HTTP status before the upgrade, as the AWS tunneling service
does.  The token rules, from the V3 protocol guide:

 - a tunnel has one I{source} and one I{destination} slot, each with its
   own access token;
 - a handshake without a client token spends the access token: it cannot
   be used again;
 - a handshake with a client token binds the slot to that client token;
   later handshakes with the same pair replace the slot's connection (a
   local proxy that reconnects), other client tokens are refused;
 - rotating a slot's token frees it again (L{registry}).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from aws_localproxy.protocol.constants import (
    ACCESS_TOKEN_COOKIE,
    ACCESS_TOKEN_HEADER,
    CLIENT_TOKEN_HEADER,
    SUBPROTOCOLS,
    Mode,
)
from aws_localproxy.tunnelservice.model import ManagedTunnel, Slot

#: The only path of the data plane.
TUNNEL_PATH = "/tunnel"
MODE_PARAMETER = "local-proxy-mode"

#: The real service's rules for a client token (V3 protocol guide); used
#: with C{fullmatch} (C{$} would let a trailing newline through).
CLIENT_TOKEN_RE = re.compile(r"[a-zA-Z0-9-]{32,128}")


class HandshakeRejected(Exception):
    """A data-plane handshake is refused with this HTTP status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


def select_subprotocol(offered: Sequence[str]) -> Optional[str]:
    """The newest tunneling subprotocol the client offers, or C{None}."""
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return None


def header_values(headers: Mapping[str, str], name: str) -> List[str]:
    """
    Every value of a request header.  Repeated headers arrive joined with
    commas (Autobahn and twisted.web both join them), and no token may
    contain a comma, so a comma separates values.
    """
    raw = headers.get(name)
    if raw is None:
        return []
    return [value.strip() for value in raw.split(",")]


def cookie_values(headers: Mapping[str, str], name: str) -> List[str]:
    """Every value of cookie C{name} in the request's C{Cookie} header(s)."""
    raw = headers.get("cookie")
    if not raw:
        return []
    values = []
    for part in raw.replace(",", ";").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            values.append(value.strip().strip('"'))
    return values


@dataclass(frozen=True)
class UpgradeRequest:
    """What a well-formed upgrade request asks for."""

    mode_value: str
    subprotocol: str
    access_tokens: List[str]
    client_tokens: List[str]


def read_upgrade(
    path: str,
    params: Mapping[str, Sequence[str]],
    protocols: Sequence[str],
    headers: Mapping[str, str],
) -> UpgradeRequest:
    """
    The parts of an upgrade request (C{headers} with lower-case names).

    @raise HandshakeRejected: 400 for a bad path, mode or subprotocol.
    """
    if path != TUNNEL_PATH:
        raise HandshakeRejected(400, "Invalid path")
    modes = params.get(MODE_PARAMETER, [])
    if len(modes) != 1:
        raise HandshakeRejected(400, "Missing or repeated local-proxy-mode")
    subprotocol = select_subprotocol(protocols)
    if subprotocol is None:
        raise HandshakeRejected(400, "No supported Sec-WebSocket-Protocol")
    return UpgradeRequest(
        mode_value=modes[0],
        subprotocol=subprotocol,
        access_tokens=header_values(headers, ACCESS_TOKEN_HEADER)
        + cookie_values(headers, ACCESS_TOKEN_COOKIE),
        client_tokens=header_values(headers, CLIENT_TOKEN_HEADER),
    )


@dataclass(frozen=True)
class Grant:
    """A handshake that was accepted: which slot, with which client token."""

    tunnel: ManagedTunnel
    slot: Slot
    access_token: str
    client_token: Optional[str]


#: Finds the tunnel and mode an access token belongs to.
TokenLookup = Callable[[str], Optional[Tuple[ManagedTunnel, Mode]]]


def grant_slot(
    mode_value: str,
    access_tokens: Sequence[str],
    client_tokens: Sequence[str],
    find: TokenLookup,
    client_token_in_use: Callable[[str], bool],
) -> Tuple[Grant, bool]:
    """
    Decide a handshake; on success the slot's access token is spent (no
    client token) or bound to the client token.

    @return: the grant, and whether the slot changed (to be saved).
    @raise HandshakeRejected: with the HTTP status to answer.
    """
    try:
        mode = Mode(mode_value)
    except ValueError:
        raise HandshakeRejected(400, "Invalid local-proxy-mode") from None
    if not access_tokens:
        raise HandshakeRejected(401, "Missing access token")
    if len(access_tokens) > 1:
        raise HandshakeRejected(400, "Multiple access tokens")
    if len(client_tokens) > 1:
        raise HandshakeRejected(400, "Multiple client tokens")
    client_token = client_tokens[0] if client_tokens else None
    if client_token is not None and not CLIENT_TOKEN_RE.fullmatch(client_token):
        raise HandshakeRejected(400, "Invalid client token")
    found = find(access_tokens[0])
    if found is None:
        raise HandshakeRejected(401, "Invalid access token")
    tunnel, token_mode = found
    if not tunnel.is_open:
        raise HandshakeRejected(403, "Tunnel is closed")
    if token_mode is not mode:
        raise HandshakeRejected(403, "Access token does not match local-proxy-mode")
    slot = tunnel.slots[mode]
    if slot.spent:
        raise HandshakeRejected(403, "Access token already used")
    changed = False
    if slot.client_token is not None:
        if client_token is None or not hmac.compare_digest(
            client_token.encode(), slot.client_token.encode()
        ):
            raise HandshakeRejected(403, "Client token does not match")
    elif client_token is not None:
        if client_token_in_use(client_token):
            raise HandshakeRejected(409, "Client token already in use")
        slot.client_token = client_token
        changed = True
    else:
        slot.spent = True
        changed = True
    grant = Grant(
        tunnel=tunnel, slot=slot, access_token=slot.access_token, client_token=client_token
    )
    return grant, changed
