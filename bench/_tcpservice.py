"""
The application behind the destination: a TCP service in its own process.

Its own process, so that its reads and writes never compete for a GIL with
the client measuring latency.  ``python bench/_tcpservice.py`` prints
``PORT <n>`` once it listens on 127.0.0.1 and serves each connection in a
thread.  A connection starts with a 9-byte header, a mode letter and a
big-endian 64-bit argument:

 - ``U n``: read n bytes, then answer ``K``;
 - ``D n``: send n bytes;
 - ``E 0``: echo everything until EOF;
 - ``S ms``: read nothing for ms milliseconds (a stalled reader), then drain until EOF;
 - ``C token``: read until EOF and note when it came (the client's close arriving);
 - ``R token``: send 1 KiB, close, and note when (the application's close);
 - ``Q token``: answer, as 8 bytes, the monotonic nanoseconds noted for C{token}.
The clocks compared are CLOCK_MONOTONIC, one clock for every process of the machine.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time

CHUNK = bytes(range(256)) * 1024  # 256 KiB
HEADER = struct.Struct(">cQ")
NANOS = struct.Struct(">Q")
#: token -> time.monotonic_ns() of the close noted for it (modes C and R)
_noted: dict[int, int] = {}
_noted_changed = threading.Condition()


def _note(token: int) -> None:
    with _noted_changed:
        _noted[token] = time.monotonic_ns()
        _noted_changed.notify_all()


def _noted_time(token: int, timeout: float = 10.0) -> int:
    with _noted_changed:
        _noted_changed.wait_for(lambda: token in _noted, timeout)
        return _noted.pop(token, 0)


def recv_exact(conn: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def drain(conn: socket.socket, size: int) -> None:
    """Read exactly C{size} bytes (or until EOF when C{size} is -1)."""
    buf = bytearray(1 << 20)
    left = size
    while left:
        n = conn.recv_into(buf, len(buf) if left < 0 else min(len(buf), left))
        if not n:
            if size < 0:
                return
            raise RuntimeError("connection closed early")
        left -= n


def send(conn: socket.socket, size: int) -> None:
    view = memoryview(CHUNK)
    left = size
    while left:
        n = min(len(view), left)
        conn.sendall(view[:n])
        left -= n


def handle(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        header = recv_exact(conn, HEADER.size)
        if len(header) < HEADER.size:
            return
        mode, arg = HEADER.unpack(header)
        try:
            if mode == b"U":
                drain(conn, arg)
                conn.sendall(b"K")
            elif mode == b"D":
                send(conn, arg)
            elif mode == b"E":
                while data := conn.recv(1 << 16):
                    conn.sendall(data)
            elif mode == b"S":
                time.sleep(arg / 1000)
                drain(conn, -1)
            elif mode == b"C":
                try:
                    drain(conn, -1)
                finally:  # an EOF or a reset: either way the close arrived
                    _note(arg)
            elif mode == b"R":
                conn.sendall(CHUNK[:1024])
                conn.close()
                _note(arg)
            elif mode == b"Q":
                conn.sendall(NANOS.pack(_noted_time(arg)))
        except OSError:
            pass


def main() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    print(f"PORT {server.getsockname()[1]}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
