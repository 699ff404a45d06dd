"""
A real L{Tunnel} on the fakes: its sessions send to a L{FakePeer} through a
real, unpaced scheduler, its local side is a L{FakeLocalSide}; and the
shortcuts that script a conversation with it (L{make_tunnel}, L{started},
L{shown_v3}, the service maps L{SSH} and L{TWO}).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.interfaces import LocalSide, Outbound
from aws_localproxy.protocol.scheduler import OutboundScheduler
from aws_localproxy.protocol.tunnel import Tunnel
from tests.fakes.local import FakeLocalSide
from tests.fakes.peer import FakePeer, service_ids

SSH = {"ssh": "5555"}
TWO = {"ssh": "5555", "web": "8080"}


class PeerTunnel(Tunnel):
    """
    A L{Tunnel} whose sessions send to a L{FakePeer} through a real scheduler
    (unpaced and never paused, so every record goes out at once, in order).
    """

    def __init__(self, mode: Mode, peer: FakePeer, local: LocalSide, **kwargs) -> None:
        # A source's streams are numbered 1, 2, ... here, unless a test says otherwise.
        kwargs.setdefault("stream_id_start", lambda: 0)
        super().__init__(mode, local, **kwargs)
        self.peer = peer

    def session_started(self, subprotocol: str, outbound: Outbound | None = None) -> None:
        super().session_started(
            subprotocol,
            outbound
            or OutboundScheduler(self.peer.send_record, max_payload=self.limits.max_payload_size),
        )


def make_tunnel(
    mode: Mode,
    service_map: Mapping[str, str],
    peer_version: PeerVersion = PeerVersion.V3,
    **kwargs,
) -> tuple[PeerTunnel, FakePeer, FakeLocalSide]:
    peer = FakePeer()
    local = FakeLocalSide()
    # Scripted conversations check what the rules send; the destination's
    # announcement of its version is tested on its own (tests.protocol.test_tunnel_peers).
    kwargs.setdefault("announce_version", False)
    tunnel = PeerTunnel(
        mode, peer, local, service_map=service_map, peer_version=peer_version, **kwargs
    )
    return tunnel, peer, local


def started(
    mode: Mode,
    service_map: Mapping[str, str],
    ids: Sequence[str] | None = None,
    peer_version: PeerVersion = PeerVersion.V3,
    *,
    peer_shown: bool = True,
    **kwargs,
) -> tuple[PeerTunnel, FakePeer, FakeLocalSide]:
    """
    A tunnel in a V3 session that has received SERVICE_IDS C{ids} (default: the map's keys).

    With C{peer_shown} (the default) a source's peer has already shown that it
    speaks V3, as the tests of V3 rules assume; without, its V3 is only presumed
    (what a session starts with: see L{shown_v3}).
    """
    tunnel, peer, local = make_tunnel(mode, service_map, peer_version, **kwargs)
    tunnel.session_started(SUBPROTOCOL_V3)
    tunnel.data_received(service_ids(*(list(service_map) if ids is None else ids)))
    if peer_shown:
        shown_v3(tunnel)
    return tunnel, peer, local


def shown_v3(tunnel: Tunnel) -> None:
    """
    The session's peer has shown that it speaks V3 (in a real session: a DATA
    or ConnectionReset of the current stream with a connection ID).
    """
    session = tunnel._session
    assert session is not None
    if session.format.version is PeerVersion.V3:
        session.format.known = True
