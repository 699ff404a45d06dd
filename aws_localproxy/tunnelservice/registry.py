# -*- test-case-name: tests.test_tunnelservice_registry -*-
"""
The tunnels of the local tunnel service: tokens, slots, lifetimes.

This is the service's model, shared by the management API (which opens,
describes, rotates and closes tunnels) and the data plane (which asks it
whether a handshake may proceed and hands it the live WebSockets).  It does
no I/O of its own: live connections are reached through L{PeerLink}, time
through an injected clock, persistence through an optional L{TunnelStore}.

The token rules are the real service's:

 - a tunnel has one *source* and one *destination* slot, each with its own
   access token;
 - a handshake without a client token spends the access token: it cannot
   be used again;
 - a handshake with a client token binds the slot to that client token;
   later handshakes with the same pair replace the slot's connection (a
   local proxy that reconnects), other client tokens are refused;
 - rotating a slot's token frees it again and disconnects its peer.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from aws_localproxy.constants import SUBPROTOCOL_V1, Mode
from aws_localproxy.wire import Message, control_message

#: The real service's rules for a client token (V3 protocol guide).
CLIENT_TOKEN_RE = re.compile(r"^[a-zA-Z0-9-]{32,128}$")

DEFAULT_LIFETIME_MINUTES = 720

#: WebSocket close codes the service uses.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008

CONNECTED = "CONNECTED"
DISCONNECTED = "DISCONNECTED"
OPEN = "OPEN"
CLOSED = "CLOSED"


class HandshakeRejected(Exception):
    """A data-plane handshake is refused with this HTTP status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


class ApiError(Exception):
    """A management API error: C{error_type} becomes the JSON C{__type}."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(error_type, message)
        self.error_type = error_type
        self.message = message


def resource_not_found(what: str) -> ApiError:
    return ApiError("ResourceNotFoundException", what)


class PeerLink(Protocol):
    """A live data-plane WebSocket, as the registry drives it."""

    #: The selected ``Sec-WebSocket-Protocol``.
    subprotocol: str

    def send_frames(self, data: bytes) -> None:
        """Send bytes of the tunnel's record stream to the client, in order."""

    def close(self, code: int, reason: str) -> None:
        """Close the WebSocket with a close frame."""

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network failure)."""


class TunnelStore(Protocol):
    """Where tunnels survive a restart (see L{aws_localproxy.tunnelservice.store})."""

    def load(self) -> List[dict]:
        """Every saved tunnel record."""

    def save(self, record: dict) -> None:
        """Insert or replace one tunnel's record."""

    def delete(self, tunnel_id: str) -> None:
        """Forget a tunnel."""


def new_access_token() -> str:
    """An unguessable access token (URL-safe, no commas: a comma separates header values)."""
    return secrets.token_urlsafe(48)


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

    def to_record(self) -> dict:
        return {
            "access_token": self.access_token,
            "client_token": self.client_token,
            "spent": self.spent,
        }


@dataclass(eq=False)
class Tunnel:
    """A tunnel, with the fields of the API's C{Tunnel} shape."""

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

    def describe(self) -> dict:
        """The C{Tunnel} shape of DescribeTunnel."""
        result: dict = {
            "tunnelId": self.tunnel_id,
            "tunnelArn": self.tunnel_arn,
            "status": self.status,
            "sourceConnectionState": _connection_state(self.slots[Mode.SOURCE]),
            "destinationConnectionState": _connection_state(self.slots[Mode.DESTINATION]),
            "timeoutConfig": {"maxLifetimeTimeoutMinutes": self.max_lifetime_minutes},
            "tags": [dict(tag) for tag in self.tags],
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
        }
        if self.description is not None:
            result["description"] = self.description
        if self.has_destination_config:
            config: dict = {"services": list(self.services)}
            if self.thing_name is not None:
                config["thingName"] = self.thing_name
            result["destinationConfig"] = config
        return result

    def summary(self) -> dict:
        """The C{TunnelSummary} shape of ListTunnels."""
        result: dict = {
            "tunnelId": self.tunnel_id,
            "tunnelArn": self.tunnel_arn,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
        }
        if self.description is not None:
            result["description"] = self.description
        return result

    def to_record(self) -> dict:
        """What L{TunnelStore} keeps: everything but live connections and streams."""
        return {
            "tunnel_id": self.tunnel_id,
            "tunnel_arn": self.tunnel_arn,
            "created_at": self.created_at,
            "last_updated_at": self.last_updated_at,
            "max_lifetime_minutes": self.max_lifetime_minutes,
            "description": self.description,
            "thing_name": self.thing_name,
            "services": list(self.services),
            "has_destination_config": self.has_destination_config,
            "tags": [dict(tag) for tag in self.tags],
            "status": self.status,
            "slots": {mode.value: slot.to_record() for mode, slot in self.slots.items()},
        }

    @classmethod
    def from_record(cls, record: dict, now: float) -> "Tunnel":
        slots = {}
        for mode in Mode:
            saved = record["slots"][mode.value]
            slots[mode] = Slot(
                mode=mode,
                access_token=saved["access_token"],
                client_token=saved["client_token"],
                spent=saved["spent"],
                last_updated_at=now,
            )
        return cls(
            tunnel_id=record["tunnel_id"],
            tunnel_arn=record["tunnel_arn"],
            created_at=record["created_at"],
            last_updated_at=record["last_updated_at"],
            max_lifetime_minutes=record["max_lifetime_minutes"],
            slots=slots,
            description=record["description"],
            thing_name=record["thing_name"],
            services=list(record["services"]),
            has_destination_config=record["has_destination_config"],
            tags=[dict(tag) for tag in record["tags"]],
            status=record["status"],
        )


def _connection_state(slot: Slot) -> dict:
    return {"status": slot.state, "lastUpdatedAt": slot.last_updated_at}


@dataclass(frozen=True)
class Grant:
    """A handshake the registry accepted: which slot, with which client token."""

    tunnel: Tunnel
    slot: Slot
    access_token: str
    client_token: Optional[str]


class TunnelRegistry:
    """
    Every tunnel of one service, by ID and by access token.

    @ivar on_violation: called with (tunnel_id, mode, reason) whenever a
        peer is disconnected for breaking the protocol; tests read it.
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        store: Optional[TunnelStore] = None,
    ) -> None:
        self._clock = clock
        self.region = region
        self.account_id = account_id
        self._store = store
        self._tunnels: Dict[str, Tunnel] = {}
        self._by_token: Dict[str, tuple[Tunnel, Mode]] = {}
        self.violations: List[tuple[str, str, str]] = []
        self.on_violation: Optional[Callable[[str, str, str], None]] = None
        self.frames_relayed = 0
        self.frames_dropped = 0
        self._state_waiters: List[tuple[Slot, str, Deferred[None]]] = []

    # -- lifecycle -----------------------------------------------------

    def load(self) -> None:
        """Restore the tunnels of the store; expire those whose lifetime ended meanwhile."""
        if self._store is None:
            return
        now = self._clock.seconds()
        for record in self._store.load():
            tunnel = Tunnel.from_record(record, now)
            self._tunnels[tunnel.tunnel_id] = tunnel
            # Closed tunnels keep answering "closed" rather than "unknown token".
            self._index(tunnel)
            if tunnel.is_open:
                self._schedule_expiry(tunnel)
        self.log.info("Restored {count} tunnels from the state file", count=len(self._tunnels))

    def stop(self) -> None:
        """Cancel the expiry timers (the tunnels stay open in the store)."""
        for tunnel in self._tunnels.values():
            if tunnel.expiry is not None and tunnel.expiry.active():
                tunnel.expiry.cancel()
            tunnel.expiry = None

    def wait_for_state(self, tunnel_id: str, mode: Mode, state: str) -> Deferred[None]:
        """Fires once the C{mode} slot of the tunnel is in C{state} (CONNECTED/DISCONNECTED)."""
        slot = self.get(tunnel_id).slot(mode)
        if slot.state == state:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._state_waiters.append((slot, state, d))
        return d

    def _state_changed(self) -> None:
        ready = [w for w in self._state_waiters if w[0].state == w[1]]
        if ready:
            self._state_waiters = [w for w in self._state_waiters if w not in ready]
            for _, _, d in ready:
                d.callback(None)

    def peers(self) -> List[PeerLink]:
        """Every live WebSocket."""
        return [
            slot.peer
            for tunnel in self._tunnels.values()
            for slot in tunnel.slots.values()
            if slot.peer is not None
        ]

    # -- management ----------------------------------------------------

    def open_tunnel(
        self,
        services: Sequence[str] = (),
        max_lifetime_minutes: int = DEFAULT_LIFETIME_MINUTES,
        description: Optional[str] = None,
        thing_name: Optional[str] = None,
        tags: Iterable[Dict[str, str]] = (),
        has_destination_config: Optional[bool] = None,
    ) -> Tunnel:
        """Open a tunnel with fresh tokens and start its lifetime."""
        if not 1 <= max_lifetime_minutes <= DEFAULT_LIFETIME_MINUTES:
            raise ApiError(
                "ValidationException", "maxLifetimeTimeoutMinutes must be between 1 and 720"
            )
        now = self._clock.seconds()
        tunnel_id = str(uuid.uuid4())
        tunnel = Tunnel(
            tunnel_id=tunnel_id,
            tunnel_arn="arn:aws:iot:%s:%s:tunnel/%s" % (self.region, self.account_id, tunnel_id),
            created_at=now,
            last_updated_at=now,
            max_lifetime_minutes=max_lifetime_minutes,
            slots={
                mode: Slot(mode=mode, access_token=new_access_token(), last_updated_at=now)
                for mode in Mode
            },
            description=description,
            thing_name=thing_name,
            services=list(services),
            has_destination_config=(
                bool(services) if has_destination_config is None else has_destination_config
            ),
            tags=[dict(tag) for tag in tags],
        )
        self._tunnels[tunnel_id] = tunnel
        self._index(tunnel)
        self._schedule_expiry(tunnel)
        self._save(tunnel)
        self.log.info(
            "Opened tunnel {tunnel_id} for services {services}, lifetime {minutes} minutes",
            tunnel_id=tunnel_id,
            services=list(services),
            minutes=max_lifetime_minutes,
        )
        return tunnel

    def get(self, tunnel_id: str) -> Tunnel:
        try:
            return self._tunnels[tunnel_id]
        except KeyError:
            raise resource_not_found("Tunnel %s not found" % (tunnel_id,)) from None

    def by_arn(self, arn: str) -> Tunnel:
        for tunnel in self._tunnels.values():
            if tunnel.tunnel_arn == arn:
                return tunnel
        raise resource_not_found("Resource %s not found" % (arn,))

    def list_tunnels(self, thing_name: Optional[str] = None) -> List[Tunnel]:
        """Newest first, as the real ListTunnels."""
        tunnels = [
            t for t in self._tunnels.values() if thing_name is None or t.thing_name == thing_name
        ]
        tunnels.sort(key=lambda t: (t.created_at, t.tunnel_id), reverse=True)
        return tunnels

    def close_tunnel(self, tunnel_id: str, delete: bool = False, reason: str = "Tunnel closed") -> None:
        """Close a tunnel: its tokens stop working and both WebSockets are closed."""
        tunnel = self.get(tunnel_id)
        if tunnel.is_open:
            now = self._clock.seconds()
            tunnel.status = CLOSED
            tunnel.last_updated_at = now
            if tunnel.expiry is not None and tunnel.expiry.active():
                tunnel.expiry.cancel()
            tunnel.expiry = None
            tunnel.active_streams.clear()
            for slot in tunnel.slots.values():
                peer, slot.peer = slot.peer, None
                if peer is not None:
                    slot.last_updated_at = now
                    peer.close(CLOSE_NORMAL, reason)
            self._state_changed()
            self.log.info("Closed tunnel {tunnel_id}: {reason}", tunnel_id=tunnel_id, reason=reason)
        if delete:
            del self._tunnels[tunnel_id]
            for slot in tunnel.slots.values():
                self._by_token.pop(slot.access_token, None)
            if self._store is not None:
                self._store.delete(tunnel_id)
        else:
            self._save(tunnel)

    def rotate(
        self, tunnel_id: str, modes: Sequence[Mode], services: Optional[Sequence[str]] = None,
        thing_name: Optional[str] = None,
    ) -> Tunnel:
        """
        Give the slots of C{modes} new access tokens; their current peers are
        disconnected.  The lifetime is not extended.
        """
        tunnel = self.get(tunnel_id)
        if not tunnel.is_open:
            raise resource_not_found("Tunnel %s is closed" % (tunnel_id,))
        now = self._clock.seconds()
        if services is not None:
            tunnel.services = list(services)
            tunnel.has_destination_config = True
            tunnel.thing_name = thing_name
        for mode in modes:
            slot = tunnel.slots[mode]
            self._by_token.pop(slot.access_token, None)
            slot.access_token = new_access_token()
            slot.client_token = None
            slot.spent = False
            self._by_token[slot.access_token] = (tunnel, mode)
            peer, slot.peer = slot.peer, None
            if peer is not None:
                slot.last_updated_at = now
                peer.close(CLOSE_NORMAL, "Access token rotated")
        self._state_changed()
        tunnel.last_updated_at = now
        self._save(tunnel)
        self.log.info(
            "Rotated the {modes} access tokens of tunnel {tunnel_id}",
            modes=[m.value for m in modes],
            tunnel_id=tunnel_id,
        )
        return tunnel

    def tag(self, arn: str, tags: Iterable[Dict[str, str]]) -> None:
        tunnel = self.by_arn(arn)
        existing = {tag["key"]: tag for tag in tunnel.tags}
        for tag in tags:
            if tag["key"] in existing:
                existing[tag["key"]]["value"] = tag["value"]
            else:
                new = {"key": tag["key"], "value": tag["value"]}
                tunnel.tags.append(new)
                existing[tag["key"]] = new
        self._save(tunnel)

    def untag(self, arn: str, keys: Iterable[str]) -> None:
        tunnel = self.by_arn(arn)
        drop = set(keys)
        tunnel.tags = [tag for tag in tunnel.tags if tag["key"] not in drop]
        self._save(tunnel)

    # -- data plane ----------------------------------------------------

    def authorize(
        self, mode_value: str, access_tokens: Sequence[str], client_tokens: Sequence[str]
    ) -> Grant:
        """
        Decide a handshake, as the real service does; on success the access
        token is spent (no client token) or bound to the client token.

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
        if client_token is not None and not CLIENT_TOKEN_RE.match(client_token):
            raise HandshakeRejected(400, "Invalid client token")
        found = self._by_token.get(access_tokens[0])
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
        if slot.client_token is not None:
            if client_token != slot.client_token:
                raise HandshakeRejected(403, "Client token does not match")
        elif client_token is not None:
            if self._client_token_in_use(client_token):
                raise HandshakeRejected(409, "Client token already in use")
            slot.client_token = client_token
            self._save(tunnel)
        else:
            slot.spent = True
            self._save(tunnel)
        return Grant(tunnel=tunnel, slot=slot, access_token=slot.access_token, client_token=client_token)

    def attach(self, grant: Grant, peer: PeerLink) -> bool:
        """
        Make C{peer} the live connection of its slot: a previous connection
        is replaced, the other side gets StreamReset for the open streams,
        and a V2/V3 client gets SERVICE_IDS.  False if the tunnel closed or
        the token was rotated since the handshake (the peer is then closed).
        """
        tunnel, slot = grant.tunnel, grant.slot
        if not tunnel.is_open or slot.access_token != grant.access_token:
            peer.close(CLOSE_NORMAL, "Tunnel is closed")
            return False
        old = slot.peer
        slot.peer = peer
        slot.last_updated_at = tunnel.last_updated_at = self._clock.seconds()
        if old is not None:
            self.log.info(
                "Replacing the {mode} connection of tunnel {tunnel_id}",
                mode=slot.mode.value,
                tunnel_id=tunnel.tunnel_id,
            )
            old.close(CLOSE_NORMAL, "Replaced by a new connection")
        self._reset_streams(tunnel, slot)
        self._state_changed()
        if peer.subprotocol != SUBPROTOCOL_V1:
            peer.send_frames(
                control_message(Message.SERVICE_IDS, available_service_ids=tunnel.services)
            )
        self.log.info(
            "{mode} connected to tunnel {tunnel_id}",
            mode=slot.mode.value,
            tunnel_id=tunnel.tunnel_id,
        )
        return True

    def detach(self, grant: Grant, peer: PeerLink) -> None:
        """C{peer}'s WebSocket is gone; the slot is free if it was still its."""
        slot = grant.slot
        if slot.peer is peer:
            slot.peer = None
            slot.last_updated_at = grant.tunnel.last_updated_at = self._clock.seconds()
            self._state_changed()
            self.log.info(
                "{mode} disconnected from tunnel {tunnel_id}",
                mode=slot.mode.value,
                tunnel_id=grant.tunnel.tunnel_id,
            )

    def relay(self, grant: Grant, data: bytes, messages: Sequence[Message]) -> None:
        """Track the streams of C{messages} and pass C{data} to the other peer."""
        tunnel, mode = grant.tunnel, grant.slot.mode
        streams = tunnel.active_streams
        for message in messages:
            if message.type == Message.STREAM_START and mode is Mode.SOURCE:
                streams[message.serviceId] = message.streamId
            elif message.type == Message.STREAM_RESET:
                if streams.get(message.serviceId) == message.streamId:
                    del streams[message.serviceId]
        other = tunnel.other(mode).peer
        if other is None:
            self.frames_dropped += 1
            return
        self.frames_relayed += 1
        other.send_frames(data)

    def violation(self, grant: Grant, peer: PeerLink, code: int, reason: str) -> None:
        """C{peer} broke a rule: log why and close its WebSocket."""
        tunnel_id, mode = grant.tunnel.tunnel_id, grant.slot.mode.value
        self.log.warn(
            "Closing the {mode} connection of tunnel {tunnel_id}: {reason}",
            mode=mode,
            tunnel_id=tunnel_id,
            reason=reason,
        )
        self.violations.append((tunnel_id, mode, reason))
        if self.on_violation is not None:
            self.on_violation(tunnel_id, mode, reason)
        self.detach(grant, peer)
        peer.close(code, reason)

    # -- internals -----------------------------------------------------

    def _reset_streams(self, tunnel: Tunnel, new: Slot) -> None:
        """
        A peer (re)connected to C{new}: the streams started before are dead
        (the peer that had them is gone); reset them towards the other side.
        """
        if not tunnel.active_streams:
            return
        streams, tunnel.active_streams = tunnel.active_streams, {}
        other = tunnel.other(new.mode).peer
        if other is not None:
            other.send_frames(
                b"".join(
                    control_message(Message.STREAM_RESET, stream_id=stream_id, service_id=sid)
                    for sid, stream_id in streams.items()
                )
            )

    def _client_token_in_use(self, client_token: str) -> bool:
        return any(
            slot.client_token == client_token
            for tunnel in self._tunnels.values()
            if tunnel.is_open
            for slot in tunnel.slots.values()
        )

    def _index(self, tunnel: Tunnel) -> None:
        for mode, slot in tunnel.slots.items():
            self._by_token[slot.access_token] = (tunnel, mode)

    def _schedule_expiry(self, tunnel: Tunnel) -> None:
        delay = max(0.0, tunnel.expires_at - self._clock.seconds())
        tunnel.expiry = self._clock.callLater(delay, self._expire, tunnel.tunnel_id)

    def _expire(self, tunnel_id: str) -> None:
        tunnel = self._tunnels.get(tunnel_id)
        if tunnel is not None:
            tunnel.expiry = None
            self.close_tunnel(tunnel_id, reason="Tunnel lifetime expired")

    def _save(self, tunnel: Tunnel) -> None:
        if self._store is not None and tunnel.tunnel_id in self._tunnels:
            self._store.save(tunnel.to_record())

