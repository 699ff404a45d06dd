"""Small socket settings shared by every relay in the project."""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["set_no_delay", "set_notsent_lowat", "ip_address_of"]

#: Linux's TCP_NOTSENT_LOWAT (not in every Python's socket module).
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


def ip_address_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address C{host} is a literal of (brackets and a zone ID allowed), or C{None} for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def set_no_delay(transport: object) -> None:
    """
    Turn Nagle's algorithm off on C{transport}, if it is TCP (through TLS too).

    A relay must not add delays of its own: the applications at both ends
    chose how to batch their writes, and a small message held back by Nagle
    waits for the peer's delayed ACK, about 40 ms on loopback.  Transports
    that are not TCP (Unix sockets, memory) are left alone.
    """
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is None:
        return
    try:
        setter(True)
    except OSError:
        pass


def set_notsent_lowat(transport: object, limit: int) -> bool:
    """
    Keep at most about C{limit} unsent bytes in the kernel's send buffer of
    C{transport}'s TCP socket (through TLS too); C{True} if it was set.

    Loopback and LAN send buffers grow to megabytes: whatever sits there
    was already chosen to go next, so an interactive byte queued behind it
    waits for all of it.  With the option the socket reports itself full
    early, the bytes wait in the proxy instead, where the scheduler can
    still put an interactive byte first.  Linux only; elsewhere a no-op.
    """
    layer: object = transport
    for _ in range(4):
        sock = getattr(layer, "socket", None)
        if isinstance(sock, socket.socket):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, limit)
            except OSError:
                return False
            return True
        layer = getattr(layer, "transport", None)
        if layer is None:
            break
    return False
