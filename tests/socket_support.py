"""What tests ask of a real socket on 127.0.0.1."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios


def readable_bytes(sock: socket.socket) -> int:
    """
    Bytes waiting in C{sock}'s receive queue (FIONREAD).  On loopback a
    C{send()} is in the peer's queue when it returns, so this tells whether
    a transport sent at once or left the bytes for a later reactor turn.
    """
    answer = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    count: int = struct.unpack("i", answer)[0]
    return count
