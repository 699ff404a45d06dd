"""
How long a new source takes to serve: the measurement ``bench_startup.py`` and
``bench_tunnel.py --only startup`` share.

A run opens a fresh tunnel (the service takes a token once, as AWS does),
starts a destination in front of the TCP service and waits until the service
sees it connected, then spawns the source being measured and, from the
moment before it is spawned:

 - *listening*: the first TCP connect to its port that succeeds;
 - *first echo*: on that same connection, the TCP service's echo header and
   64 bytes, until the 64 bytes come back through the tunnel.

One connection for both, so the probe is the user's first connection and no
extra connection is opened and dropped during start-up.  At each of those
moments the source's CPU time so far is read too (every thread's, in
nanoseconds, from ``/proc/PID/task/*/schedstat``): on a shared machine the
wall-clock figures move with the load, the CPU a start-up costs far less.  With ``--stdio``
there is no port: the same header and 64 bytes go to the source's standard
input at once and the time is until they come back on its standard output
(what ``ssh -o ProxyCommand='localproxy --stdio ...'`` waits for).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from _clients import ECHO_PAYLOAD
from _procs import (
    Implementation,
    Process,
    TunnelServiceProcess,
    destination_args,
    free_port,
    source_args,
)
from _tcpservice import HEADER

TIMEOUT = 30.0
_REQUEST = HEADER.pack(b"E", 0) + ECHO_PAYLOAD


@dataclass
class StartupTimes:
    """
    Seconds from spawning the source, and the CPU seconds it had used by
    then; C{listening} is C{None} for a stdio source.
    """

    listening: Optional[float]
    echoed: float
    cpu_listening: Optional[float] = None
    cpu_echoed: Optional[float] = None


def cpu_so_far(pid: int) -> float:
    """
    The CPU seconds of every live thread of C{pid} and of its live
    descendants (a one-file executable runs the program in a child of its
    unpacking process); what has ended is not counted.
    """
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue  # ended
        for tid in tids:
            try:
                with open(f"/proc/{current}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
            except (OSError, ValueError, IndexError):
                pass  # the thread ended while being read
    return total / 1e9


def first_connection(port: int, source: Process) -> Tuple[socket.socket, float]:
    """Poll until 127.0.0.1:C{port} accepts; the connection and the perf_counter time it was made."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            return conn, time.perf_counter()
        except OSError:
            if not source.alive():
                raise RuntimeError(f"{source.name} exited:\n" + source.tail()) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{source.name}: nothing accepted on port {port}") from None
            time.sleep(0.002)


def echo_once(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(_REQUEST)
    received = b""
    while len(received) < len(ECHO_PAYLOAD):
        chunk = conn.recv(len(ECHO_PAYLOAD) - len(received))
        if not chunk:
            raise RuntimeError("the first connection closed before its echo came back")
        received += chunk
    if received != ECHO_PAYLOAD:
        raise RuntimeError("the first echo came back different")


def start_destination(
    impl: Implementation, service: TunnelServiceProcess, tcp_port: int, label: str = "startup"
) -> Tuple[Dict[str, str], Process]:
    """A fresh tunnel with one service ID (``bulk``) and a destination of C{impl}, connected."""
    opened = service.open_tunnel(["bulk"])
    destination = impl.start(
        f"{label}/destination", service, opened["destinationAccessToken"],
        destination_args({"bulk": tcp_port}),
    )
    try:
        service.wait_connected(opened["tunnelId"], "destination")
    except BaseException:
        destination.stop()
        service.close_tunnel(opened["tunnelId"])
        raise
    return opened, destination


def measure_listening(
    impl: Implementation, service: TunnelServiceProcess, token: str, label: str,
    extra_args: Sequence[str] = (),
) -> StartupTimes:
    """Spawn a source with ``-s bulk=PORT`` and time it to listening and to the first echo."""
    port = free_port()
    source = impl.start(f"{label}/source", service, token, [*source_args({"bulk": port}), *extra_args])
    try:
        conn, listening = first_connection(port, source)
        cpu_listening = cpu_so_far(source.pid)
        with conn:
            echo_once(conn)
            echoed = time.perf_counter()
            cpu_echoed = cpu_so_far(source.pid)
    finally:
        source.stop()
    return StartupTimes(listening - source.started, echoed - source.started, cpu_listening, cpu_echoed)


def measure_stdio(impl: Implementation, service: TunnelServiceProcess, token: str) -> StartupTimes:
    """Spawn a ``--stdio`` source, write the echo request at once, time until the echo is on its stdout."""
    args = impl.command(service, ["--stdio"])
    env = impl.environment({"AWSIOT_TUNNEL_ACCESS_TOKEN": token})
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=impl.workdir())
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(_REQUEST)
        proc.stdin.flush()
        received = b""
        deadline = time.monotonic() + TIMEOUT
        fd = proc.stdout.fileno()
        while len(received) < len(ECHO_PAYLOAD):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError("the --stdio source never echoed")
            chunk = os.read(fd, len(ECHO_PAYLOAD) - len(received))
            if not chunk:
                raise RuntimeError(f"the --stdio source ended before its echo (exit code {proc.poll()})")
            received += chunk
        echoed = time.perf_counter()
        cpu_echoed = cpu_so_far(proc.pid)
    finally:
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
    if received != ECHO_PAYLOAD:
        raise RuntimeError("the --stdio source's echo came back different")
    return StartupTimes(None, echoed - started, None, cpu_echoed)


def spawn_to_exit(args: Sequence[str], env: Dict[str, str], cwd: str) -> Tuple[float, float]:
    """Seconds from spawning C{args} in C{cwd} to its exit (it must exit 0), and the CPU seconds it used."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(args), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime


def median_and_spread(values: List[float]) -> str:
    """``median (min-max)`` in milliseconds."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return f"{median * 1000:.0f} ({ordered[0] * 1000:.0f}-{ordered[-1] * 1000:.0f})"
