#!/usr/bin/env python
"""
Python function calls per MiB moved and per 64-byte echo, in each proxy (cProfile).

Run from the project root:

    python bench/count_calls.py [--mib 256] [--echoes 3000]

On this machine the time a proxy spends per byte is mostly the
interpreter's, and timings are noisy; the number of Python calls a load
costs is not.  For each load (none, an upload, a download, echoes back to
back) it starts the local tunnel service, the bench's TCP service and a
pair of this project's proxies with each proxy under cProfile, puts the
load through, stops the proxies (their profiles are written as they
exit), and prints the calls per MiB (per echo) in the source and the
destination, less the calls of the run without load (start-up, the
handshake).  ``--top N`` lists the functions called most per MiB.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import runpy
import signal
import sys
import tempfile
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _clients  # noqa: E402
import _procs  # noqa: E402
from _procs import BENCH_DIR, Implementation, Process, ProxyPair, TunnelServiceProcess  # noqa: E402

MIB = 1 << 20
LOADS = ("none", "up", "down", "echo")
Key = Tuple[str, int, str]


def child(out: str, argv: List[str]) -> None:
    """Run ``python -m aws_localproxy ARGV`` under cProfile; write the profile to C{out} on SIGTERM."""
    profile = cProfile.Profile()

    def stop(*_: object) -> None:
        profile.disable()
        profile.dump_stats(out)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    sys.argv = ["aws_localproxy", *argv]
    profile.enable()
    try:
        runpy.run_module("aws_localproxy", run_name="__main__", alter_sys=True)
    finally:
        stop()


def run_load(load: str, workdir: str, mib: int, echoes: int) -> Dict[str, Dict[Key, int]]:
    """The calls per function in each proxy for one load."""
    outputs: Dict[str, str] = {}
    original = _procs.Process.__init__

    def profiled(
        self: Process, label: str, argv: List[str], *args: object, **kwargs: object
    ) -> None:
        if argv[:3] == [sys.executable, "-m", "aws_localproxy"]:
            side = label.rsplit("/", 1)[-1]
            outputs[side] = os.path.join(workdir, f"calls-{load}-{side}")
            argv = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                outputs[side],
                "--",
                *argv[3:],
            ]
        original(self, label, argv, *args, **kwargs)  # type: ignore[arg-type]

    _procs.Process.__init__ = profiled  # type: ignore[method-assign]
    service = TunnelServiceProcess("localtunnel", workdir)
    tcp = Process("tcpservice", [sys.executable, os.path.join(BENCH_DIR, "_tcpservice.py")])
    pair = None
    try:
        tcp_port = int(tcp.wait_for_line("PORT").split()[1])
        py = Implementation("py")
        pair = ProxyPair("py", py, py, service, ["bulk"], tcp_port)
        port = pair.ports["bulk"]
        if load == "up":
            _clients.upload(port, mib * MIB)
        elif load == "down":
            _clients.download(port, mib * MIB)
        elif load == "echo":
            probe = _clients.Echo(port)
            for _ in range(echoes):
                probe.once()
            probe.close()
    finally:
        _procs.Process.__init__ = original  # type: ignore[method-assign]
        if pair is not None:
            pair.stop()
        service.stop()
        tcp.stop()
    counts = {}
    for side, path in outputs.items():
        stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
        counts[side] = {key: value[1] for key, value in stats.items()}
    return counts


def name(key: Key) -> str:
    path, line, function = key
    for marker in ("site-packages/", os.path.dirname(BENCH_DIR) + "/"):
        path = path.split(marker)[-1]
    return f"{path}:{line} {function}" if path != "~" else function


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB per transfer (default 256)")
    parser.add_argument("--echoes", type=int, default=3000, help="echoes (default 3000)")
    parser.add_argument("--top", type=int, default=0, help="list the N functions called most")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="localproxy-calls-") as workdir:
        runs = {}
        for load in LOADS:
            os.mkdir(os.path.join(workdir, load))
            runs[load] = run_load(load, os.path.join(workdir, load), args.mib, args.echoes)
    for load in LOADS[1:]:
        unit, amount = ("echo", args.echoes) if load == "echo" else ("MiB", args.mib)
        for side in ("source", "destination"):
            baseline = runs["none"][side]
            extra = {k: n - baseline.get(k, 0) for k, n in runs[load][side].items()}
            total = sum(n for n in extra.values() if n > 0)
            print(f"{load:5} {side:12} {total / amount:8.0f} Python calls per {unit}")
            for key, n in sorted(extra.items(), key=lambda kv: -kv[1])[: args.top]:
                print(f"      {n / amount:8.1f}  {name(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
