# -*- test-case-name: tests.adapters.test_sockets -*-
"""Small socket settings shared by every relay in the project."""

from __future__ import annotations

import ipaddress
import socket
import sys

__all__ = [
    "set_no_delay",
    "ip_address_of",
    "set_not_sent_low_water",
    "set_socket_buffers",
    "tcp_transport_of",
    "TCP_NOTSENT_LOWAT",
]

#: Linux's TCP_NOTSENT_LOWAT socket option (25); C{None} where it does not exist.
TCP_NOTSENT_LOWAT = getattr(
    socket, "TCP_NOTSENT_LOWAT", 25 if sys.platform.startswith("linux") else None
)


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


def set_not_sent_low_water(transport: object, size: int = 32 * 1024) -> bool:
    """
    Keep at most about C{size} unsent bytes in the kernel for C{transport}
    (TCP_NOTSENT_LOWAT), if it is TCP on a system that has the option.

    Without it the kernel accepts writes until the (autotuned, megabytes
    large) send buffer is full, so a relay's back-pressure only starts
    after that much is queued and round trips measured through the relay
    grow with it.  With it the socket reports writable only below C{size}
    unsent bytes, and the rest waits in the transport's own buffer, where
    back-pressure sees it.  Returns whether the option was set.
    """
    if TCP_NOTSENT_LOWAT is None:
        return False
    handle = _socket_of(transport)
    if handle is None:
        return False
    try:
        handle.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, size)
    except OSError:
        return False
    return True


def _socket_of(transport: object) -> socket.socket | None:
    """The TCP socket under C{transport}: through TLS, C{getHandle} is the TLS connection."""
    for _ in range(4):
        get_handle = getattr(transport, "getHandle", None)
        if get_handle is None:
            return None
        handle = get_handle()
        if isinstance(handle, socket.socket):
            return handle if handle.type == socket.SOCK_STREAM else None
        transport = getattr(transport, "transport", None)
    return None


def tcp_transport_of(transport: object) -> object | None:
    """The TCP transport under C{transport} (through TLS), or C{None}."""
    from twisted.internet.abstract import FileDescriptor

    layer: object = transport
    for _ in range(4):
        if isinstance(layer, FileDescriptor):
            return layer
        layer = getattr(layer, "transport", None)
        if layer is None:
            return None
    return None


def set_socket_buffers(transport: object, size: int) -> bool:
    """C{SO_RCVBUF} and C{SO_SNDBUF} of C{transport}'s TCP socket; C{True} if set."""
    handle = _socket_of(transport)
    if handle is None:
        return False
    try:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:
        return False
    return True
