# -*- test-case-name: tests.tunnelservice.test_registry -*-
"""
The tunnels of the local tunnel service: opening, lookup, rotation, expiry.

The management API (L{api}) opens, describes, rotates and closes tunnels
through the registry; the data plane (L{dataplane}) asks it whether a
handshake may have a slot (L{TunnelRegistry.authorize}, with the rules of
L{handshake}).  It does no I/O of its own: time comes from an injected
clock, persistence from an optional L{store.TunnelStore}, and live
connections are closed through L{model.PeerLink}.

Tunnels are indexed by a SHA-256 digest of each access token
(L{model.token_digest}), never by the token itself; the token found is
then confirmed with C{hmac.compare_digest}.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from aws_localproxy.protocol.constants import Mode
from aws_localproxy.tunnelservice.handshake import Grant, grant_slot
from aws_localproxy.tunnelservice.model import (
    CLOSE_NORMAL,
    CLOSED,
    DEFAULT_LIFETIME_MINUTES,
    InvalidTunnel,
    ManagedTunnel,
    Slot,
    TunnelNotFound,
    new_access_token,
    token_digest,
)
from aws_localproxy.tunnelservice.store import TunnelStore, tunnel_from_record, tunnel_record


class TunnelRegistry:
    """Every tunnel of one local tunnel service, by ID and by access-token digest."""

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
        self._tunnels: Dict[str, ManagedTunnel] = {}
        self._by_token: Dict[bytes, Tuple[ManagedTunnel, Mode]] = {}
        self._state_waiters: List[Tuple[Slot, str, Deferred[None]]] = []

    # -- lifecycle -----------------------------------------------------

    def load(self) -> None:
        """Restore the tunnels of the store; expire those whose lifetime ended meanwhile."""
        if self._store is None:
            return
        now = self._clock.seconds()
        for record in self._store.load():
            tunnel = tunnel_from_record(record, now)
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

    def state_changed(self) -> None:
        """A slot was connected or disconnected: fire the waiters that wait for it."""
        ready = [w for w in self._state_waiters if w[0].state == w[1]]
        if ready:
            self._state_waiters = [w for w in self._state_waiters if w not in ready]
            for _, _, d in ready:
                d.callback(None)

    # -- management ----------------------------------------------------

    def open_tunnel(
        self,
        services: Sequence[str] = (),
        max_lifetime_minutes: int = DEFAULT_LIFETIME_MINUTES,
        description: Optional[str] = None,
        thing_name: Optional[str] = None,
        tags: Iterable[Dict[str, str]] = (),
        has_destination_config: Optional[bool] = None,
    ) -> ManagedTunnel:
        """Open a tunnel with fresh tokens and start its lifetime."""
        if not 1 <= max_lifetime_minutes <= DEFAULT_LIFETIME_MINUTES:
            raise InvalidTunnel("maxLifetimeTimeoutMinutes must be between 1 and 720")
        now = self._clock.seconds()
        tunnel_id = str(uuid.uuid4())
        tunnel = ManagedTunnel(
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

    def get(self, tunnel_id: str) -> ManagedTunnel:
        try:
            return self._tunnels[tunnel_id]
        except KeyError:
            raise TunnelNotFound("Tunnel %s not found" % (tunnel_id,)) from None

    def by_arn(self, arn: str) -> ManagedTunnel:
        for tunnel in self._tunnels.values():
            if tunnel.tunnel_arn == arn:
                return tunnel
        raise TunnelNotFound("Resource %s not found" % (arn,))

    def list_tunnels(self, thing_name: Optional[str] = None) -> List[ManagedTunnel]:
        """Newest first, as the real ListTunnels."""
        tunnels = [
            t for t in self._tunnels.values() if thing_name is None or t.thing_name == thing_name
        ]
        tunnels.sort(key=lambda t: (t.created_at, t.tunnel_id), reverse=True)
        return tunnels

    def close_tunnel(
        self, tunnel_id: str, delete: bool = False, reason: str = "Tunnel closed"
    ) -> None:
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
            self.state_changed()
            self.log.info("Closed tunnel {tunnel_id}: {reason}", tunnel_id=tunnel_id, reason=reason)
        if delete:
            del self._tunnels[tunnel_id]
            for slot in tunnel.slots.values():
                self._by_token.pop(token_digest(slot.access_token), None)
            if self._store is not None:
                self._store.delete(tunnel_id)
        else:
            self._save(tunnel)

    def rotate(
        self,
        tunnel_id: str,
        modes: Sequence[Mode],
        services: Optional[Sequence[str]] = None,
        thing_name: Optional[str] = None,
    ) -> ManagedTunnel:
        """
        Give the slots of C{modes} new access tokens; their current peers are
        disconnected.  The lifetime is not extended.
        """
        tunnel = self.get(tunnel_id)
        if not tunnel.is_open:
            raise TunnelNotFound("Tunnel %s is closed" % (tunnel_id,))
        now = self._clock.seconds()
        if services is not None:
            tunnel.services = list(services)
            tunnel.has_destination_config = True
            tunnel.thing_name = thing_name
        for mode in modes:
            slot = tunnel.slots[mode]
            self._by_token.pop(token_digest(slot.access_token), None)
            slot.access_token = new_access_token()
            slot.client_token = None
            slot.spent = False
            self._by_token[token_digest(slot.access_token)] = (tunnel, mode)
            peer, slot.peer = slot.peer, None
            if peer is not None:
                slot.last_updated_at = now
                peer.close(CLOSE_NORMAL, "Access token rotated")
        self.state_changed()
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

    def find_token(self, access_token: str) -> Optional[Tuple[ManagedTunnel, Mode]]:
        """The tunnel and mode of C{access_token}, or C{None}."""
        found = self._by_token.get(token_digest(access_token))
        if found is None:
            return None
        tunnel, mode = found
        real = tunnel.slots[mode].access_token
        if not hmac.compare_digest(real.encode(), access_token.encode("utf-8", "surrogateescape")):
            return None
        return found

    def authorize(
        self, mode_value: str, access_tokens: Sequence[str], client_tokens: Sequence[str]
    ) -> Grant:
        """
        Decide a handshake (L{handshake.grant_slot}) and save what it changed.

        @raise handshake.HandshakeRejected: with the HTTP status to answer.
        """
        grant, changed = grant_slot(
            mode_value, access_tokens, client_tokens, self.find_token, self._client_token_in_use
        )
        if changed:
            self._save(grant.tunnel)
        return grant

    # -- internals -----------------------------------------------------

    def _client_token_in_use(self, client_token: str) -> bool:
        presented = client_token.encode()
        return any(
            slot.client_token is not None
            and hmac.compare_digest(slot.client_token.encode(), presented)
            for tunnel in self._tunnels.values()
            if tunnel.is_open
            for slot in tunnel.slots.values()
        )

    def _index(self, tunnel: ManagedTunnel) -> None:
        for mode, slot in tunnel.slots.items():
            self._by_token[token_digest(slot.access_token)] = (tunnel, mode)

    def _schedule_expiry(self, tunnel: ManagedTunnel) -> None:
        delay = max(0.0, tunnel.expires_at - self._clock.seconds())
        tunnel.expiry = self._clock.callLater(delay, self._expire, tunnel.tunnel_id)

    def _expire(self, tunnel_id: str) -> None:
        tunnel = self._tunnels.get(tunnel_id)
        if tunnel is not None:
            tunnel.expiry = None
            self.close_tunnel(tunnel_id, reason="Tunnel lifetime expired")

    def _save(self, tunnel: ManagedTunnel) -> None:
        if self._store is not None and tunnel.tunnel_id in self._tunnels:
            self._store.save(tunnel_record(tunnel))
