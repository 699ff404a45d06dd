"""
The tunneling service in memory, between two real L{Tunnel}s: what one
side's scheduler sends (through a L{MemoryPipe}) the other receives, cut by
L{pump} into odd-sized payloads to exercise reassembly.
"""

from __future__ import annotations

from typing import List

from aws_localproxy.protocol.tunnel import Tunnel


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
