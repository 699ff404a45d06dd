#!/usr/bin/env python
"""
Where this project's proxies spend their time: py-spy on the source and destination.

Run from the project root, with py-spy installed (``pip install py-spy``):

    python bench/profile_tunnel.py [--out DIR] [--seconds S] [--only up,down,echo]

It starts the local tunnel service, the bench's TCP service and a source
and destination proxy (``python -m aws_localproxy``, default verbosity), all
on 127.0.0.1, then for each load (uploads at full speed, downloads at full
speed, 64-byte echoes back to back) records both proxy processes and the
local tunnel service with
``py-spy record --format raw -F -r 200`` into ``DIR/prof-<load>-<side>.txt`` (side: source, destination, service)
(collapsed stacks, one line per distinct stack and its sample count) and
prints, per file, how busy the process was, its self time by category
(logging, socket syscalls, TLS, Autobahn, protobuf, this package, the rest
of Twisted), the callers of twisted.logger, and the functions with the most
samples on the stack (inclusive) and at the top of it (self).
``--summarize RAW...`` prints that again for files already recorded.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _clients  # noqa: E402
from _procs import BENCH_DIR, Implementation, Process, ProxyPair, TunnelServiceProcess  # noqa: E402

RATE = 200
MIB = 1 << 20

#: A sample whose top frame is one of these is waiting, not working (py-spy's own
#: idle detection misses epoll_wait and the thread pool's condition wait here).
WAITING = ("EPollReactor.doPoll ", "Condition.wait ", "Event.wait ", "Queue.get ")

#: category -> substrings of a frame ("function (file:line)") that put it there;
#: the first match wins, in this order.
CATEGORIES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("logging (twisted.logger, our observer)", ("twisted/logger/", "log_setup.py")),
    ("socket syscalls (send, recv)", ("untilConcludes ", "Connection.doRead (twisted/internet/tcp.py")),
    ("TLS (pyOpenSSL, twisted.protocols.tls)", ("OpenSSL/", "twisted/protocols/tls.py", "_sslverify")),
    ("Autobahn (framing, masking, messages)", ("autobahn/", "txaio/")),
    ("protobuf", ("google/protobuf", "_pb2.py")),
    ("aws_localproxy", ("aws_localproxy/",)),
    ("reactor, transports, Deferreds (Twisted)", ("twisted/",)),
)

#: Frames on (nearly) every stack: not worth listing as "inclusive".
BASE = ("<frozen runpy>", "__main__.py", "aws_localproxy/cli/localproxy.py", "task.py", "ReactorBase.",
        "EPollReactor.doPoll", "callWithLogger", "callWithContext", "_doReadOrWrite")


def parse(path: str) -> List[Tuple[List[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            frames, _, count = line.rpartition(" ")
            stacks.append((frames.split(";"), int(count)))
    return stacks


def category(frame: str) -> str:
    for name, needles in CATEGORIES:
        if any(needle in frame for needle in needles):
            return name
    return "other"


def summarize(path: str, seconds: float, top: int = 15) -> str:
    """Busy share, self time by category, inclusive shares, top functions, log calls by caller."""
    stacks = parse(path)
    total = sum(count for _, count in stacks)
    busy_stacks = [(f, c) for f, c in stacks if not f[-1].startswith(WAITING)]
    busy = sum(count for _, count in busy_stacks)
    if not busy:
        return f"{path}: no busy samples (idle, or py-spy could not attach)\n"
    own: Dict[str, int] = collections.Counter()
    anywhere: Dict[str, int] = collections.Counter()
    inclusive: Dict[str, int] = collections.Counter()
    leaf: Dict[str, int] = collections.Counter()
    log_calls: Dict[str, int] = collections.Counter()
    for frames, count in busy_stacks:
        own[category(frames[-1])] += count
        for name in {category(frame) for frame in frames}:
            anywhere[name] += count
        for frame in set(frames):
            if not any(b in frame for b in BASE):
                inclusive[frame] += count
        leaf[frames[-1]] += count
        for i, frame in enumerate(frames):
            if "twisted/logger/" in frame:
                log_calls[frames[i - 1] if i else "?"] += count
                break

    def pct(n: int) -> str:
        return f"{100 * n / busy:5.1f}%"

    lines = [f"{os.path.basename(path)}: {total} samples in {seconds:.0f} s at {RATE}/s; busy "
             f"{busy} ({100 * busy / (seconds * RATE):.0f}% of one core); shares below are of busy samples"]
    lines.append("  self time by category (sums to 100%)   | on the stack anywhere:")
    for name, _ in (*CATEGORIES, ("other", ())):
        lines.append(f"    {pct(own[name])}  {name:42} | {pct(anywhere[name])}")
    lines.append("  calls into twisted.logger, by caller (inclusive):")
    for frame, count in sorted(log_calls.items(), key=lambda kv: -kv[1])[:6]:
        lines.append(f"    {pct(count)}  {frame}")
    lines.append("  top functions, inclusive:")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {pct(count)}  {frame}")
    lines.append("  top functions, self:")
    for frame, count in sorted(leaf.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {pct(count)}  {frame}")
    return "\n".join(lines) + "\n"


def load_for(
    name: str, pair: ProxyPair, stop: threading.Event, done: List[int]
) -> Callable[[], None]:
    """The load; it adds what it moved (bytes, or echoes) to C{done[0]}."""
    port = pair.ports["bulk"]

    def up() -> None:
        while not stop.is_set():
            _clients.upload(port, 32 * MIB)
            done[0] += 32 * MIB

    def down() -> None:
        while not stop.is_set():
            _clients.download(port, 32 * MIB)
            done[0] += 32 * MIB

    def echo() -> None:
        probe = _clients.Echo(port)
        while not stop.is_set():
            probe.once()
            done[0] += 1
        probe.close()

    return {"up": up, "down": down, "echo": echo}[name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".", help="where the prof-*.txt files go (default: here)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds recorded per load")
    parser.add_argument("--only", default="up,down,echo", help="loads: up,down,echo")
    parser.add_argument("--summarize", nargs="+", metavar="RAW",
                        help="only summarize existing py-spy raw files (recorded for --seconds)")
    args = parser.parse_args()
    if args.summarize:
        for path in args.summarize:
            print(summarize(path, args.seconds))
        return 0
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.access(py_spy, os.X_OK):
        parser.error("py-spy not found: pip install py-spy")
    processes: List[Process] = []
    with tempfile.TemporaryDirectory(prefix="localproxy-profile-") as workdir:
        service = TunnelServiceProcess("localtunnel", workdir)
        tcp = Process("tcpservice", [sys.executable, os.path.join(BENCH_DIR, "_tcpservice.py")])
        processes.append(tcp)
        pair = None
        try:
            tcp_port = int(tcp.wait_for_line("PORT").split()[1])
            py = Implementation("py")
            pair = ProxyPair("py", py, py, service, ["bulk"], tcp_port)
            for load in args.only.split(","):
                stop = threading.Event()
                done = [0]
                worker = threading.Thread(target=load_for(load, pair, stop, done), daemon=True)
                worker.start()
                time.sleep(1.0)  # past start-up and slow start
                spies = []
                outputs = []
                sides = {**pair.processes(), "service": service.process}
                before = done[0]
                started = time.monotonic()
                for side, process in sides.items():
                    output = os.path.join(args.out, f"prof-{load}-{side}.txt")
                    outputs.append(output)
                    spies.append(subprocess.Popen(
                        [py_spy, "record", "--pid", str(process.pid), "--format", "raw", "-F",
                         "-r", str(RATE), "-d", str(int(args.seconds)), "-o", output],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
                for spy in spies:
                    _, err = spy.communicate(timeout=args.seconds + 60)
                    if spy.returncode:
                        print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)
                elapsed = time.monotonic() - started
                moved = done[0] - before
                stop.set()
                worker.join(60)
                if load == "echo":
                    print(f"load {load}: {moved / elapsed:.0f} round trips/s while recorded", flush=True)
                else:
                    print(f"load {load}: about {moved / elapsed / 1e6:.0f} MB/s while recorded "
                          "(whole 32 MiB transfers only)", flush=True)
                for output in outputs:
                    if os.path.exists(output):
                        print(summarize(output, args.seconds), flush=True)
        finally:
            if pair is not None:
                pair.stop()
            service.stop()
            for process in processes:
                process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
