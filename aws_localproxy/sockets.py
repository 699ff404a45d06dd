"""Small socket settings shared by every relay in the project."""

from __future__ import annotations

import ipaddress

__all__ = ["set_no_delay", "ip_address_of"]


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
