"""
The client side of every measurement: bulk transfers, echo round trips, a stalled push.

They speak the header protocol of L{_tcpservice} and work the same against
the TCP service directly (the loopback ceiling) and through any source
proxy.  ``python bench/_clients.py upload PORT SIZE [TIMEOUT]`` runs one upload in
its own process (so that a bulk transfer never competes for a GIL with the
echo being timed) and prints ``START`` when connected, then ``DONE
<seconds>``; it fails if the path makes no progress for TIMEOUT seconds
(default 60).
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _tcpservice import CHUNK, HEADER, NANOS, drain, recv_exact, send  # noqa: E402

ECHO_PAYLOAD = b"p" * 64


def connect(port: int, mode: bytes, arg: int, timeout: Optional[float] = 60.0) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(HEADER.pack(mode, arg))
    return conn


def upload(port: int, size: int) -> float:
    """Seconds to push C{size} bytes until the far end confirms it read them all."""
    with connect(port, b"U", size) as conn:
        started = time.perf_counter()
        send(conn, size)
        if recv_exact(conn, 1) != b"K":
            raise RuntimeError("upload not confirmed")
        return time.perf_counter() - started


def download(port: int, size: int) -> float:
    with connect(port, b"D", size) as conn:
        started = time.perf_counter()
        drain(conn, size)
        return time.perf_counter() - started


def _noted(port: int, token: int) -> int:
    """The monotonic nanoseconds the TCP service noted for C{token} (0: nothing noted)."""
    with connect(port, b"Q", token, timeout=15) as conn:
        answer = recv_exact(conn, NANOS.size)
    return int(NANOS.unpack(answer)[0]) if len(answer) == NANOS.size else 0


def close_latency(port: int, token: int, by_client: bool) -> float:
    """
    Seconds from one side's close to the other side's EOF, through C{port}.

    C{by_client}: the client sends 1 KiB and closes; the time is until the
    application behind the destination reads EOF.  Otherwise the application
    sends 1 KiB and closes; the time is until the client reads EOF.
    """
    if by_client:
        with connect(port, b"C", token, timeout=15) as conn:
            conn.sendall(CHUNK[:1024])
            closed = time.monotonic_ns()
        eof = _noted(port, token)
    else:
        with connect(port, b"R", token, timeout=15) as conn:
            drain(conn, -1)
            eof = time.monotonic_ns()
        closed = _noted(port, token)
    if not eof or not closed:
        raise RuntimeError("the TCP service noted no close")
    return (eof - closed) / 1e9


class Echo:
    """One open connection in echo mode; each L{once} is one 64-byte round trip."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.conn = connect(port, b"E", 0, timeout=timeout)
        for _ in range(5):  # warm up: the stream is open end to end
            self.once()

    def once(self) -> float:
        started = time.perf_counter()
        self.conn.sendall(ECHO_PAYLOAD)
        if len(recv_exact(self.conn, len(ECHO_PAYLOAD))) != len(ECHO_PAYLOAD):
            raise RuntimeError("echo connection closed")
        return time.perf_counter() - started

    def samples(self, count: int) -> List[float]:
        return [self.once() for _ in range(count)]

    def close(self) -> None:
        self.conn.close()


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def stalled_push(port: int, echo_port: int, stall: float, cap: int) -> Tuple[int, List[float], bool]:
    """
    Connection A pushes as fast as the path accepts while the application
    behind the destination reads nothing for C{stall} seconds; meanwhile a
    second connection (on C{echo_port}) echoes 64 bytes again and again.

    Returns the bytes A's path accepted during the stall (at most C{cap}),
    every echo's round trip (one started during the stall waits for as long as
    the tunnel holds it back; C{inf} if it never came back within the stall
    and 5 s more), and whether the path drained within 10 s of the stall's end.
    """
    echo = Echo(echo_port, timeout=stall + 5)
    conn = connect(port, b"S", int(stall * 1000))
    conn.setblocking(False)
    accepted = 0
    stall_end = time.perf_counter() + stall
    stop = threading.Event()

    def push() -> None:
        nonlocal accepted
        view = memoryview(CHUNK)
        while not stop.is_set() and accepted < cap and time.perf_counter() < stall_end:
            try:
                accepted += conn.send(view[: min(len(view), cap - accepted)])
            except BlockingIOError:
                select.select([], [conn], [], 0.01)

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    times: List[float] = []
    try:
        while time.perf_counter() < stall_end + 0.3:
            try:
                times.append(echo.once())
            except (socket.timeout, RuntimeError):
                times.append(float("inf"))  # held back longer than the echo's timeout, or broken
                break
            time.sleep(0.005)
    finally:
        stop.set()
        pusher.join()
        echo.close()
    conn.setblocking(True)
    conn.settimeout(stall + 10)
    drained = False
    try:
        conn.shutdown(socket.SHUT_WR)
        drained = conn.recv(1) == b""  # the service closes once it read everything
    except OSError:
        pass
    conn.close()
    return accepted, times, drained


def main() -> None:
    command, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    if command != "upload":
        raise SystemExit(f"unknown command {command!r}")
    with connect(port, b"U", size, timeout=timeout) as conn:
        print("START", flush=True)
        started = time.perf_counter()
        send(conn, size)
        if recv_exact(conn, 1) != b"K":
            raise SystemExit("upload not confirmed")
        print(f"DONE {time.perf_counter() - started:.6f}", flush=True)


if __name__ == "__main__":
    main()
