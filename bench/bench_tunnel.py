#!/usr/bin/env python
"""
End-to-end benchmark: bytes through a real tunnel, against direct TCP in the same run.

Run from the project root:

    python bench/bench_tunnel.py            # about 30 s
    python bench/bench_tunnel.py --quick    # about 10 s, rougher figures

It starts what a user runs, as separate processes: the local tunnel service
(``localtunnel``), a destination and a source local proxy (``localproxy``,
TLS verified with ``-c``), all on 127.0.0.1, and a TCP service in this
process.  Each case runs twice: straight to the TCP service (the baseline:
what loopback TCP and this client can do on this machine) and through
``client -> source -> service -> destination -> TCP service``.  Printed:

 - throughput up and down (MB/s, 10^6 bytes) and the ratio tunnel/direct;
 - 64 connections at once, each echoing 1 MiB: aggregate MB/s;
 - connection set-up: connect, one byte each way, close (ms per connection);
 - back-pressure: the TCP service stops reading for a few seconds while the
   client pushes as fast as it can; the bytes the whole path accepted, and the
   peak memory (VmHWM) of each proxy process before and after: with flow
   control both stay bounded instead of growing with the data (the
   reference's F2).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aws_localproxy.demo import (  # noqa: E402
    Process,
    ThreadedTcpService,
    api_call,
    free_port,
    wait_for_file,
)

MB = 1_000_000
MIB = 1 << 20
CHUNK = bytes(range(256)) * 1024  # 256 KiB


class TcpService(ThreadedTcpService):
    """U: read N bytes then answer b"K"; D: send N bytes; E: echo; S: stall, then read N."""

    def __init__(self) -> None:
        self.stall = threading.Event()
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        header = _recv_exact(conn, 9)
        if len(header) < 9:
            return
        mode, size = header[:1], struct.unpack(">Q", header[1:])[0]
        if mode == b"U":
            _drain(conn, size)
            conn.sendall(b"K")
        elif mode == b"D":
            _send(conn, size)
        elif mode == b"E":
            while data := conn.recv(1 << 20):
                conn.sendall(data)
        elif mode == b"S":
            self.stall.wait()
            _drain(conn, size)
            conn.sendall(b"K")


def _recv_exact(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _drain(conn: socket.socket, size: int) -> None:
    buf = bytearray(1 << 20)
    left = size
    while left:
        n = conn.recv_into(buf, min(len(buf), left))
        if not n:
            raise RuntimeError("connection closed early")
        left -= n


def _send(conn: socket.socket, size: int) -> None:
    view = memoryview(CHUNK)
    left = size
    while left:
        n = min(len(view), left)
        conn.sendall(view[:n])
        left -= n


def upload(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        started = time.perf_counter()
        conn.sendall(b"U" + struct.pack(">Q", size))
        _send(conn, size)
        if _recv_exact(conn, 1) != b"K":
            raise RuntimeError("upload not confirmed")
        return time.perf_counter() - started


def download(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        started = time.perf_counter()
        conn.sendall(b"D" + struct.pack(">Q", size))
        _drain(conn, size)
        return time.perf_counter() - started


def parallel_echo(port: int, connections: int, each: int) -> float:
    errors: List[BaseException] = []

    def one() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(b"E" + struct.pack(">Q", 0))
                sender = threading.Thread(target=_send, args=(conn, each))
                sender.start()
                _drain(conn, each)
                sender.join()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} connections failed: {errors[0]!r}")
    return time.perf_counter() - started


def setup_rate(port: int, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"E" + struct.pack(">Q", 0) + b"x")
            if _recv_exact(conn, 1) != b"x":
                raise RuntimeError("no echo")
    return (time.perf_counter() - started) / count


def stalled_push(service: TcpService, port: int, seconds: float) -> int:
    """Push for C{seconds} while the service does not read; return the bytes the path accepted."""
    service.stall.clear()
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(b"S" + struct.pack(">Q", 0))
    conn.setblocking(False)
    accepted = 0
    deadline = time.monotonic() + seconds
    view = memoryview(CHUNK)
    while time.monotonic() < deadline:
        try:
            accepted += conn.send(view)
        except BlockingIOError:
            time.sleep(0.01)
    conn.close()
    service.stall.set()
    return accepted


def round_trips(port: int, count: int) -> float:
    """Mean time of a 64-byte ping-pong on one open connection (seconds)."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"E" + struct.pack(">Q", 0))
        payload = b"p" * 64
        conn.sendall(payload)
        _recv_exact(conn, 64)
        started = time.perf_counter()
        for _ in range(count):
            conn.sendall(payload)
            _recv_exact(conn, 64)
        return (time.perf_counter() - started) / count


def fairness(port: int, size: int) -> float:
    """
    Two uploads at once, the second starting while the first runs: the ratio
    of their throughputs (1.0 = the tunnel is shared evenly).
    """
    times: Dict[str, float] = {}

    def run(name: str) -> None:
        times[name] = upload(port, size)

    first = threading.Thread(target=run, args=("first",))
    second = threading.Thread(target=run, args=("second",))
    first.start()
    time.sleep(0.05)
    second.start()
    first.join()
    second.join()
    return min(times.values()) / max(times.values())


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paced_upload(port: int, rate: int, seconds: float) -> None:
    """Send at C{rate} bytes/s for C{seconds}, as the service's bandwidth cap would allow."""
    size = int(rate * seconds)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"U" + struct.pack(">Q", size))
        step = rate // 50
        started = time.monotonic()
        sent = 0
        while sent < size:
            n = min(step, size - sent)
            conn.sendall(CHUNK[:n])
            sent += n
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if _recv_exact(conn, 1) != b"K":
            raise RuntimeError("paced upload not confirmed")


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def best(runs: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller transfers, one run each")
    args = parser.parse_args()
    size = (32 if args.quick else 128) * MIB
    runs = 1 if args.quick else 3
    python = sys.executable
    service = TcpService()
    processes: List[Process] = []
    try:
        with tempfile.TemporaryDirectory(prefix="localproxy-bench-") as workdir:
            ready_file = os.path.join(workdir, "ready.json")
            tunnel_service = Process(
                "localtunnel",
                [python, "-c", "from aws_localproxy.tunnelservice.cli import main; main()",
                 "--port", "0", "--cert-dir", os.path.join(workdir, "certs"),
                 "--ready-file", ready_file],
                echo=False,
            )
            processes.append(tunnel_service)
            ready = wait_for_file(ready_file, tunnel_service)
            opened = api_call(ready, "OpenTunnel", {"destinationConfig": {"services": ["bench"]}})
            common = [python, "-m", "aws_localproxy", "-e", ready["endpoint"], "-c", ready["capath"]]
            destination = Process(
                "destination", [*common, "-v", "3", "-d", f"bench=127.0.0.1:{service.port}"],
                env={"AWSIOT_TUNNEL_ACCESS_TOKEN": opened["destinationAccessToken"]},
                echo=False,
            )
            processes.append(destination)
            source_port = free_port()
            source = Process(
                "source", [*common, "-v", "4", "-s", f"bench={source_port}", "-b", "127.0.0.1"],
                env={"AWSIOT_TUNNEL_ACCESS_TOKEN": opened["sourceAccessToken"]},
                echo=False,
            )
            processes.append(source)
            source.wait_for_line("Listening for new connection on port")
            time.sleep(0.5)  # let the destination finish its own set-up

            results: Dict[str, tuple[float, float]] = {}
            print(f"\nSizes: {size // MIB} MiB per transfer, best of {runs}\n", flush=True)
            print(f"{'case':44} {'direct':>12} {'tunnel':>12} {'ratio':>7}")

            def row(name: str, direct: float, tunnel: float, unit: str, higher_is_better: bool) -> None:
                ratio = tunnel / direct if higher_is_better else direct / tunnel
                results[name] = (direct, tunnel)
                print(f"{name:44} {direct:>9.1f} {unit:2} {tunnel:>9.1f} {unit:2} {ratio:>6.2f}x", flush=True)

            for name, fn in (("upload (client -> TCP service)", upload),
                             ("download (TCP service -> client)", download)):
                direct = size / best(runs, lambda fn=fn: fn(service.port, size)) / MB
                tunnel = size / best(runs, lambda fn=fn: fn(source_port, size)) / MB
                row(name + ", MB/s", direct, tunnel, "", True)

            each = (1 if args.quick else 4) * MIB
            direct = 64 * each / best(1, lambda: parallel_echo(service.port, 64, each)) / MB
            tunnel = 64 * each / best(1, lambda: parallel_echo(source_port, 64, each)) / MB
            row(f"64 connections echoing {each // MIB} MiB each, MB/s", direct, tunnel, "", True)

            count = 50 if args.quick else 200
            direct = setup_rate(service.port, count) * 1000
            tunnel = setup_rate(source_port, count) * 1000
            row("connection set-up + 1-byte echo, ms", direct, tunnel, "", False)

            share = fairness(source_port, size // 2)
            print(f"{'two uploads at once: slower/faster throughput':44} {'':>12} {share:>12.2f}", flush=True)

            count = 200 if args.quick else 1000
            direct = round_trips(service.port, count) * 1e6
            tunnel = round_trips(source_port, count) * 1e6
            row("round trip of 64 bytes on an open connection, us", direct, tunnel, "", False)

            proxies = (source, destination)
            print("\nAt the service's bandwidth cap (800 KB/s per tunnel), 5 s of upload:", flush=True)
            before_cpu = {p.name: cpu_seconds(p.proc.pid) for p in proxies}
            paced_upload(source_port, 800_000, 5.0)
            for p in proxies:
                used = cpu_seconds(p.proc.pid) - before_cpu[p.name]
                print(f"  {p.name:11} CPU {100 * used / 5.0:5.1f}% of one core")

            idle_connections = 200
            before_rss = {p.name: vm_rss_kib(p.proc.pid) for p in proxies}
            held = []
            for _ in range(idle_connections):
                conn = socket.create_connection(("127.0.0.1", source_port))
                conn.sendall(b"E" + struct.pack(">Q", 0) + b"x")
                _recv_exact(conn, 1)
                held.append(conn)
            print(f"\nMemory per open connection ({idle_connections} connections held open):")
            for p in proxies:
                grown = vm_rss_kib(p.proc.pid) - before_rss[p.name]
                print(f"  {p.name:11} RSS {vm_rss_kib(p.proc.pid) / 1024:.1f} MiB, "
                      f"{grown / idle_connections:.1f} KiB per connection")
            for conn in held:
                conn.close()

            print("\nBack-pressure: the TCP service stops reading; the client pushes for 3 s", flush=True)
            before = {p.name: vm_hwm_kib(p.proc.pid) for p in (source, destination, tunnel_service)}
            accepted_direct = stalled_push(service, service.port, 3.0)
            accepted_tunnel = stalled_push(service, source_port, 3.0)
            time.sleep(0.5)
            after = {p.name: vm_hwm_kib(p.proc.pid) for p in (source, destination, tunnel_service)}
            print(f"  bytes accepted by the path: direct {accepted_direct / MB:.1f} MB, "
                  f"tunnel {accepted_tunnel / MB:.1f} MB")
            for name in before:
                print(f"  {name:11} peak memory (VmHWM): {before[name] / 1024:.1f} MiB before, "
                      f"{after[name] / 1024:.1f} MiB after")
            print("  (without flow control, the tunnel would accept everything the client can push in "
                  "3 s and the proxies would grow by as much)")
            return 0
    finally:
        for process in processes:
            process.stop()


if __name__ == "__main__":
    sys.exit(main())
