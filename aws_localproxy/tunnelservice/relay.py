# -*- test-case-name: tests.tunnelservice.test_relay -*-
"""
The relay: pairs a tunnel's two live connections and carries records between them.

The data plane hands every accepted WebSocket to the relay (L{Relay.attach})
and every checked message to it (L{Relay.relay}); the relay sends them to
the other peer in order, tracks the source's active streams so that a
replaced peer's streams are reset, and applies back-pressure: when a peer's
send buffer is full (L{Relay.send_buffer_full}), the other peer is not read
until it drains, so a stalled reader stops the writer instead of making the
service buffer without bound.  Only a slot's current peer counts: a peer
that was replaced or disconnected neither receives records nor pauses
anyone.  No I/O of its own: peers are L{PeerLink}s.

Two of its choices are options, because the AWS service may choose
otherwise and a local proxy must not depend on ours (L{RelayOptions}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Set, Tuple

from twisted.logger import Logger

from aws_localproxy.protocol.constants import SUBPROTOCOL_V1, Mode
from aws_localproxy.protocol.wire import Message, control_message
from aws_localproxy.tunnelservice.handshake import Grant
from aws_localproxy.tunnelservice.model import CLOSE_NORMAL, ManagedTunnel, PeerLink, Slot

#: Values of L{RelayOptions.service_ids_without_services}.
SERVICE_IDS_EMPTY = "empty"
SERVICE_IDS_BLANK = "blank"
SERVICE_IDS_CHOICES = (SERVICE_IDS_EMPTY, SERVICE_IDS_BLANK)


@dataclass(frozen=True)
class RelayOptions:
    """
    The relay's choices that the AWS service may make differently.

    @ivar reset_on_reattach: when a peer (re)connects, send the other peer
        a StreamReset for every stream the source started before.  The V1,
        V2 and V3 guides allow it ("the proxy server may generate
        StreamReset messages [when] the tunnel peer is replaced"), none
        promises it, so a local proxy must also work with C{False}.
    @ivar service_ids_without_services: the SERVICE_IDS of a tunnel opened
        without services: C{"empty"} sends the message with no IDs,
        C{"blank"} with one empty ID (the guides do not say which).
    """

    reset_on_reattach: bool = True
    service_ids_without_services: str = SERVICE_IDS_EMPTY

    def __post_init__(self) -> None:
        if self.service_ids_without_services not in SERVICE_IDS_CHOICES:
            raise ValueError(
                "service_ids_without_services must be one of %s" % (", ".join(SERVICE_IDS_CHOICES),)
            )


def _back_pressure(peer: PeerLink) -> str:
    """The read-pause reason one full peer puts on the other."""
    return "back-pressure from %x" % (id(peer),)


class Relay:
    """
    The live connections of every tunnel.

    @ivar violations: (tunnel ID, mode, reason) of every connection closed
        for breaking a rule; tests read it.
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        on_state_changed: Callable[[], None] = lambda: None,
        options: RelayOptions = RelayOptions(),
    ) -> None:
        self._clock = clock
        self.options = options
        self._state_changed = on_state_changed
        self._full: Set[PeerLink] = set()
        self.violations: List[Tuple[str, str, str]] = []

    # -- pairing ---------------------------------------------------------

    def attach(self, grant: Grant, peer: PeerLink) -> bool:
        """
        Make C{peer} the live connection of its slot: a previous connection
        is replaced, the other side gets StreamReset for the open streams
        (unless L{RelayOptions.reset_on_reattach} is off), and a V2/V3
        client gets SERVICE_IDS.  False if the tunnel closed or
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
            self._forget_full(tunnel, slot.mode, old)
            old.close(CLOSE_NORMAL, "Replaced by a new connection")
        other = tunnel.other(slot.mode).peer
        if other is not None and other in self._full:
            peer.pause_reading(_back_pressure(other))
        if self.options.reset_on_reattach:
            self._reset_streams(tunnel, slot)
        self._state_changed()
        if peer.subprotocol != SUBPROTOCOL_V1:
            services = tunnel.services
            if not services and self.options.service_ids_without_services == SERVICE_IDS_BLANK:
                services = [""]
            peer.send_frames(control_message(Message.SERVICE_IDS, available_service_ids=services))
        self.log.info(
            "{mode} connected to tunnel {tunnel_id}",
            mode=slot.mode.value,
            tunnel_id=tunnel.tunnel_id,
        )
        return True

    def detach(self, grant: Grant, peer: PeerLink) -> None:
        """C{peer}'s WebSocket is gone; the slot is free if it was still its."""
        slot = grant.slot
        self._forget_full(grant.tunnel, slot.mode, peer)
        if slot.peer is peer:
            slot.peer = None
            slot.last_updated_at = grant.tunnel.last_updated_at = self._clock.seconds()
            self._state_changed()
            self.log.info(
                "{mode} disconnected from tunnel {tunnel_id}",
                mode=slot.mode.value,
                tunnel_id=grant.tunnel.tunnel_id,
            )

    def other_peer(self, grant: Grant, peer: PeerLink) -> Optional[PeerLink]:
        """The live connection at the other end of C{peer}'s tunnel, if C{peer} is current."""
        if grant.slot.peer is not peer:
            return None
        return grant.tunnel.other(grant.slot.mode).peer

    # -- records ---------------------------------------------------------

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
        if other is not None:
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
        self.detach(grant, peer)
        peer.close(code, reason)

    # -- back-pressure ---------------------------------------------------

    def send_buffer_full(self, grant: Grant, peer: PeerLink) -> None:
        """C{peer} cannot take more for now: stop reading the other peer."""
        if grant.slot.peer is not peer or peer in self._full:
            return
        self._full.add(peer)
        other = grant.tunnel.other(grant.slot.mode).peer
        if other is not None:
            other.pause_reading(_back_pressure(peer))

    def send_buffer_drained(self, grant: Grant, peer: PeerLink) -> None:
        """C{peer} takes data again: read the other peer again."""
        self._forget_full(grant.tunnel, grant.slot.mode, peer)

    def _forget_full(self, tunnel: ManagedTunnel, mode: Mode, peer: PeerLink) -> None:
        if peer in self._full:
            self._full.discard(peer)
            other = tunnel.other(mode).peer
            if other is not None:
                other.resume_reading(_back_pressure(peer))

    def _reset_streams(self, tunnel: ManagedTunnel, new: Slot) -> None:
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
