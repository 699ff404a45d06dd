"""
The tunneling service in memory, between two real L{Tunnel}s: what one
side's scheduler sends (through a L{MemoryPipe}) the other receives, cut by
L{pump} into odd-sized payloads to exercise reassembly; L{join_source} and
L{join_destination} bring the two sides of ssh into its session.
"""

from __future__ import annotations

from typing import Callable, List, Tuple

from aws_localproxy.protocol.constants import SUBPROTOCOL_V3, Mode, PeerVersion
from aws_localproxy.protocol.tunnel import Tunnel
from tests.fakes.local import FakeLocalSide
from tests.fakes.peer import service_ids
from tests.fakes.tunnel import PeerTunnel


class MemoryTunnelingService:
    """
    The tunneling service in memory: what one side sends, the other receives,
    cut into odd-sized payloads to exercise reassembly.
    """

    def __init__(self) -> None:
        self.source_out: List[bytes] = []
        self.destination_out: List[bytes] = []


class MemoryPipe:
    """One way through the service: a scheduler's records land in C{out}."""

    def __init__(self, out: List[bytes]) -> None:
        self.out = out

    def send_record(self, record: bytes) -> None:
        self.out.append(record)


def pump(source: Tunnel, destination: Tunnel, service: MemoryTunnelingService) -> None:
    """Deliver everything sent so far, in 7-byte payloads, until both sides are quiet."""
    while service.source_out or service.destination_out:
        for out, target in (
            (service.source_out, destination),
            (service.destination_out, source),
        ):
            stream = b"".join(out)
            out.clear()
            for i in range(0, len(stream), 7):
                target.data_received(stream[i : i + 7])


def join_source(
    service: MemoryTunnelingService,
    start: Callable[[], int],
    version: PeerVersion = PeerVersion.V3,
    subprotocol: str = SUBPROTOCOL_V3,
) -> PeerTunnel:
    """
    A new source process (ssh on 5555, its stream IDs following C{start()})
    joining C{service}'s session: what an earlier source sent is dropped.
    """
    service.source_out.clear()
    source = PeerTunnel(
        Mode.SOURCE,
        MemoryPipe(service.source_out),  # type: ignore[arg-type]
        FakeLocalSide(),
        service_map={"ssh": "5555"},
        peer_version=version,
        stream_id_start=start,
    )
    source.session_started(subprotocol)
    source.data_received(service_ids("ssh"))
    return source


def join_destination(service: MemoryTunnelingService) -> Tuple[PeerTunnel, FakeLocalSide]:
    """
    A new destination process (ssh to port 22) joining C{service}'s V3
    session, and its local side: what an earlier destination sent is dropped.
    """
    service.destination_out.clear()
    local = FakeLocalSide()
    destination = PeerTunnel(
        Mode.DESTINATION,
        MemoryPipe(service.destination_out),  # type: ignore[arg-type]
        local,
        service_map={"ssh": "22"},
    )
    destination.session_started(SUBPROTOCOL_V3)
    destination.data_received(service_ids("ssh"))
    return destination, local
