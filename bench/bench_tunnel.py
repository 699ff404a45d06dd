#!/usr/bin/env python
"""
End-to-end benchmark: this project's proxies against the ceiling and the C++ reference.

Run from the project root:

    python bench/bench_tunnel.py [--reference PATH] [--executable PATH] [--quick] [--only NAMES] [--json FILE]

Everything runs on 127.0.0.1, as separate processes started here: the
local tunnel service (``localtunnel``; a second one with
``--bandwidth-limit 800000`` for the capped figures), a TCP service (the
application behind the destination, ``_tcpservice.py``), this project's
proxies (``python -m aws_localproxy``, TLS verified with ``-c``) and, with
``--reference``, the reference binary, as source and destination through
the same local tunnel service, and in the mixed pairs.  With
``--executable``, this project built as one executable is measured too, in
the start-up figures only.  The ceiling is raw loopback TCP and a bare
Autobahn TLS WebSocket pipe (``_wspipe.py``).

Each measurement is repeated for ``--rounds`` rounds (3; 1 with
``--quick``, which also uses smaller sizes), the implementations
interleaved within each round in a rotating order, because this machine is
shared and noisy.  What each figure means is in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _clients  # noqa: E402
from _clients import Echo, percentile  # noqa: E402
from _procs import (  # noqa: E402
    BENCH_DIR,
    CpuSample,
    Implementation,
    Process,
    ProxyPair,
    TunnelServiceProcess,
    compile_tree,
    reset_peak_rss,
    rss_kib,
    status_kib,
)
from _report import Metric, Results, summary, table  # noqa: E402
from _startup import measure_listening, start_destination  # noqa: E402

MB = 1_000_000
MIB = 1 << 20
GB = 1_000_000_000
BANDWIDTH_LIMIT = 800_000
GROUPS = ("throughput", "rtt", "closes", "fairness", "capped", "stall", "memory", "startup")

UP = Metric("up", "throughput upload (client -> source -> destination)", "MB/s", True)
DOWN = Metric("down", "throughput download", "MB/s", True)
CPU_SOURCE = Metric("cpu_source", "CPU per GB moved, source", "s/GB", False, "{:.2f}")
CPU_DEST = Metric("cpu_destination", "CPU per GB moved, destination", "s/GB", False, "{:.2f}")
CPU_SERVICE = Metric("cpu_service", "CPU per GB moved, local tunnel service", "s/GB", False, "{:.2f}")
RTT50 = Metric("rtt_p50", "64-byte echo RTT p50", "us", False, "{:.0f}")
RTT99 = Metric("rtt_p99", "64-byte echo RTT p99", "us", False, "{:.0f}")
ECHO_CPU = {
    side: Metric(f"echo_cpu_{side}", f"CPU per 64-byte echo, {side}", "us", False, "{:.0f}")
    for side in ("source", "destination", "service")
}

CLOSE_BY_CLIENT = {
    stat: Metric(f"close_client_{stat}", f"close: client closes -> application reads EOF, {stat}", "ms", False, "{:.1f}")
    for stat in ("p50", "max")
}
CLOSE_BY_APP = {
    stat: Metric(f"close_app_{stat}", f"close: application closes -> client reads EOF, {stat}", "ms", False, "{:.1f}")
    for stat in ("p50", "max")
}


def fairness_metrics(kind: str) -> Dict[str, Metric]:
    """The figures of one fairness case; C{kind} is e.g. "same ID" or "two IDs, capped"."""
    key = kind.replace(" ", "_").replace(",", "")
    return {
        "idle50": Metric(f"fair_{key}_idle50", f"fairness [{kind}] echo p50 idle", "us", False, "{:.0f}"),
        "idle99": Metric(f"fair_{key}_idle99", f"fairness [{kind}] echo p99 idle", "us", False, "{:.0f}"),
        "busy50": Metric(f"fair_{key}_busy50", f"fairness [{kind}] echo p50 during bulk", "us", False, "{:.0f}"),
        "busy99": Metric(f"fair_{key}_busy99", f"fairness [{kind}] echo p99 during bulk", "us", False, "{:.0f}"),
        "solo": Metric(f"fair_{key}_solo", f"fairness [{kind}] bulk alone", "MB/s", True, "{:.2f}"),
        "shared": Metric(f"fair_{key}_shared", f"fairness [{kind}] bulk beside echoes", "MB/s", True, "{:.2f}"),
        "share": Metric(f"fair_{key}_share", f"fairness [{kind}] bulk beside echoes / alone", "ratio", True, "{:.2f}"),
    }


STALL_BYTES = Metric("stall_bytes", "stalled reader: bytes the path accepted", "MB", False)
STALL_WAIT = Metric("stall_wait", "stalled reader: longest echo wait, other connection", "ms", False, "{:.0f}")
STALL_P50 = Metric("stall_p50", "stalled reader: echo p50, other connection", "us", False, "{:.0f}")
STALL_PEAK = {
    side: Metric(f"stall_peak_{side}", f"stalled reader: peak RSS growth, {side}", "MiB", False)
    for side in ("source", "destination", "service")
}
MEM_TUNNEL_SRC = Metric("mem_tunnel_source", "memory per extra tunnel, source LocalProxyService", "KiB", False, "{:.0f}")
MEM_TUNNEL_DST = Metric("mem_tunnel_destination", "memory per extra tunnel, destination LocalProxyService", "KiB", False, "{:.0f}")
RSS_SRC_ONE = Metric("rss_source_one", "RSS of a source process, one connection open", "MiB", False)
RSS_DST_ONE = Metric("rss_destination_one", "RSS of a destination process, one connection open", "MiB", False)
IDLE_SRC = Metric("idle_rss_source", "idle RSS once connected, source CLI", "MiB", False)
IDLE_DST = Metric("idle_rss_destination", "idle RSS once connected, destination CLI", "MiB", False)
START_LISTEN = Metric("startup_listen", "start-up: spawn -> listening port accepting", "ms", False, "{:.0f}")
START_ECHO = Metric("startup_echo", "start-up: spawn -> first echo through the tunnel", "ms", False, "{:.0f}")


def say(text: str) -> None:
    print(text, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args = args
        self.workdir = workdir
        self.quick = args.quick
        self.groups = set(args.only.split(",")) if args.only else set(GROUPS)
        unknown = self.groups - set(GROUPS)
        if unknown:
            raise SystemExit(f"--only: unknown names {sorted(unknown)}; known: {', '.join(GROUPS)}")
        self.size = (24 if self.quick else 96) * MIB
        self.rtt_count = 300 if self.quick else 1000
        self.rounds = args.rounds or (1 if self.quick else 3)
        self.results = Results()
        self.processes: List[Process] = []
        self.cleanups: List[Callable[[], None]] = []
        self.py = Implementation("py")
        self.ref = Implementation("ref", args.reference) if args.reference else None
        self.exe = Implementation("exe", args.executable) if args.executable else None
        #: label -> (source implementation, destination implementation)
        self.kinds: Dict[str, Tuple[Implementation, Implementation]] = {"py": (self.py, self.py)}
        if self.ref is not None:
            self.kinds["ref"] = (self.ref, self.ref)
            if not args.no_mixed:
                self.kinds["py>ref"] = (self.py, self.ref)
                self.kinds["ref>py"] = (self.ref, self.py)
        #: label -> (source, destination) of the start-up figures: the main pairs and the executable.
        self.startup_kinds = {label: self.kinds[label] for label in ("py", "ref") if label in self.kinds}
        if self.exe is not None:
            self.startup_kinds["exe"] = (self.exe, self.exe)
        self.pairs: Dict[Tuple[str, str], ProxyPair] = {}
        self.idle_rss: Dict[str, Tuple[int, int]] = {}
        self.notes: List[str] = []
        self.timings: Dict[str, float] = {}
        self.round_no = 0

    # -- set-up ---------------------------------------------------------------------------

    def spawn(self, name: str, args: Sequence[str]) -> Process:
        process = Process(name, args)
        self.processes.append(process)
        return process

    def start(self) -> None:
        compile_tree(sys.executable)
        self.tcp = self.spawn("tcpservice", [sys.executable, os.path.join(BENCH_DIR, "_tcpservice.py")])
        self.tcp_port = int(self.tcp.wait_for_line("PORT").split()[1])
        self.services: Dict[str, TunnelServiceProcess] = {}
        self.services["open"] = TunnelServiceProcess("localtunnel", self.workdir)
        self.cleanups.append(self.services["open"].stop)
        if "capped" in self.groups:
            try:
                capped = TunnelServiceProcess(
                    "localtunnel-capped", self.workdir,
                    ["--bandwidth-limit", str(BANDWIDTH_LIMIT)],
                )
            except RuntimeError as error:
                lines = str(error).splitlines()
                why = next((line for line in lines if line.startswith("localtunnel:")), lines[-1])
                say(f"(capped figures skipped: localtunnel --bandwidth-limit did not start: {why})")
                self.groups.discard("capped")
            else:
                self.services["capped"] = capped
                self.cleanups.append(capped.stop)
        self.ws_server = self.spawn(
            "wspipe-server",
            [sys.executable, os.path.join(BENCH_DIR, "_wspipe.py"), "server",
             self.services["open"].cert_dir],
        )
        self.ws_port = int(self.ws_server.wait_for_line("PORT").split()[1])
        for label, (src, dst) in self.kinds.items():
            kinds = ["open"]
            if "capped" in self.groups and label in ("py", "ref"):
                kinds.append("capped")
            if "fairness" in self.groups and label in ("py", "ref"):
                kinds.append("other")
            for kind in kinds:
                pair = ProxyPair(label, src, dst, self.service_of(kind), ["bulk", "echo"], self.tcp_port)
                self.cleanups.append(pair.stop)
                self.pairs[(label, kind)] = pair
                if kind == "open":
                    time.sleep(0.3)
                    self.idle_rss[label] = (rss_kib(pair.processes()["source"].pid),
                                            rss_kib(pair.processes()["destination"].pid))

    @staticmethod
    def healthy(pair: ProxyPair) -> bool:
        """Does a new connection through C{pair} echo within 5 s?"""
        try:
            Echo(pair.ports["echo"], timeout=5).close()
            return True
        except OSError:
            return False
        except RuntimeError:
            return False

    def service_of(self, kind: str) -> TunnelServiceProcess:
        """The local tunnel service of a pair: "open" and "other" (a second tunnel) share one."""
        return self.services["capped" if kind == "capped" else "open"]

    def restart_pair(self, label: str, kind: str) -> None:
        self.pairs[(label, kind)].stop()
        src, dst = self.kinds[label]
        pair = ProxyPair(label, src, dst, self.service_of(kind), ["bulk", "echo"], self.tcp_port)
        self.cleanups.append(pair.stop)
        self.pairs[(label, kind)] = pair

    def stop(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as error:  # noqa: BLE001 - best effort at exit
                say(f"(clean-up: {error})")
        for process in self.processes:
            process.stop()
        for impl in (self.py, self.ref, self.exe):
            if impl is not None:
                impl.remove_workdir()

    def order(self, labels: Sequence[str], round_no: int) -> List[str]:
        labels = list(labels)
        shift = round_no % len(labels)
        return labels[shift:] + labels[:shift]

    def check(self, pair: ProxyPair) -> None:
        if not pair.alive():
            dead = [p for p in pair.processes().values() if not p.alive()]
            raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].tail()}")

    # -- the ceiling --------------------------------------------------------------------------

    def ceiling(self) -> None:
        size = self.size
        if "throughput" in self.groups:
            up = _clients.upload(self.tcp_port, size)
            down = _clients.download(self.tcp_port, size)
            self.results.add(UP, "tcp", size / up / MB)
            self.results.add(DOWN, "tcp", size / down / MB)
        if "rtt" in self.groups:
            echo = Echo(self.tcp_port)
            rtts = echo.samples(self.rtt_count)
            echo.close()
            self.results.add(RTT50, "tcp", percentile(rtts, 0.5) * 1e6)
            self.results.add(RTT99, "tcp", percentile(rtts, 0.99) * 1e6)
        ops = []
        if "throughput" in self.groups:
            ops += [f"up:{size}", f"down:{size}"]
        if "rtt" in self.groups:
            ops.append(f"echo:{self.rtt_count}")
        if not ops:
            return
        client = Process(
            "wspipe-client",
            [sys.executable, os.path.join(BENCH_DIR, "_wspipe.py"), "client", str(self.ws_port),
             self.services["open"].ca_file, str(self.ws_server.pid), *ops],
        )
        client.proc.wait(120)
        line = client.tail(1)
        try:
            data = json.loads(line)
        except ValueError:
            raise RuntimeError("the WebSocket pipe client failed:\n" + client.tail()) from None
        if not data["nvx"]:
            say("(warning: Autobahn's NVX masking is not active; the WebSocket ceiling is far too low)")
        if "throughput" in self.groups:
            up, down = data[f"up:{size}"], data[f"down:{size}"]
            self.results.add(UP, "ws", size / up["value"] / MB)
            self.results.add(DOWN, "ws", size / down["value"] / MB)
            moved = 2 * size / GB
            self.results.add(CPU_SOURCE, "ws", (up["client_cpu"] + down["client_cpu"]) / moved)
            self.results.add(CPU_DEST, "ws", (up["client_cpu"] + down["client_cpu"]) / moved)
            self.results.add(CPU_SERVICE, "ws", (up["server_cpu"] + down["server_cpu"]) / moved)
        if "rtt" in self.groups:
            rtts = data[f"echo:{self.rtt_count}"]["value"]
            self.results.add(RTT50, "ws", percentile(rtts, 0.5) * 1e6)
            self.results.add(RTT99, "ws", percentile(rtts, 0.99) * 1e6)

    # -- the proxies ----------------------------------------------------------------------------

    def throughput(self, label: str) -> None:
        pair = self.pairs[(label, "open")]
        procs = {**pair.processes(), "service": self.services["open"].process}
        before = {name: CpuSample(p.pid) for name, p in procs.items()}
        up = _clients.upload(pair.ports["bulk"], self.size)
        down = _clients.download(pair.ports["bulk"], self.size)
        used = {name: CpuSample(p.pid).used_since(before[name]) for name, p in procs.items()}
        self.check(pair)
        self.results.add(UP, label, self.size / up / MB)
        self.results.add(DOWN, label, self.size / down / MB)
        moved = 2 * self.size / GB
        self.results.add(CPU_SOURCE, label, used["source"] / moved)
        self.results.add(CPU_DEST, label, used["destination"] / moved)
        self.results.add(CPU_SERVICE, label, used["service"] / moved)
        say(f"  {label:7} up {self.size / up / MB:6.1f} MB/s, down {self.size / down / MB:6.1f} MB/s; "
            f"CPU s/GB source {used['source'] / moved:.2f}, destination "
            f"{used['destination'] / moved:.2f}, service {used['service'] / moved:.2f}")

    def rtt(self, label: str) -> None:
        pair = self.pairs[(label, "open")]
        echo = Echo(pair.ports["echo"])
        # The service is the same for every implementation: its row says
        # whether it costs them the same.
        procs = {**pair.processes(), "service": self.services["open"].process}
        before = {side: CpuSample(procs[side].pid) for side in ECHO_CPU}
        rtts = echo.samples(self.rtt_count)
        for side, metric in ECHO_CPU.items():
            used = CpuSample(procs[side].pid).used_since(before[side])
            self.results.add(metric, label, used / len(rtts) * 1e6)
        echo.close()
        self.results.add(RTT50, label, percentile(rtts, 0.5) * 1e6)
        self.results.add(RTT99, label, percentile(rtts, 0.99) * 1e6)
        say(f"  {label:7} echo RTT p50 {percentile(rtts, 0.5) * 1e6:.0f} us, "
            f"p99 {percentile(rtts, 0.99) * 1e6:.0f} us")

    def closes(self, label: str) -> None:
        """How long a close takes to arrive, each way: 1 KiB, then close, on a fresh connection each time."""
        port = self.pairs[(label, "open")].ports["echo"]
        count = 5 if self.quick else 20
        for by_client, metrics, what in ((True, CLOSE_BY_CLIENT, "client"), (False, CLOSE_BY_APP, "application")):
            times = sorted(_clients.close_latency(port, random.getrandbits(63), by_client) * 1e3
                           for _ in range(count))
            self.results.add(metrics["p50"], label, percentile(times, 0.5))
            self.results.add(metrics["max"], label, times[-1])
            say(f"  {label:7} close by the {what}: EOF after p50 {percentile(times, 0.5):.1f} ms, "
                f"max {times[-1]:.1f} ms ({count} closes)")

    def _bulk(self, port: int, size: int, timeout: float) -> Process:
        worker = Process("bulk", [sys.executable, os.path.join(BENCH_DIR, "_clients.py"),
                                  "upload", str(port), str(size), str(timeout)])
        worker.wait_for_line("START")
        return worker

    @staticmethod
    def _bulk_seconds(worker: Process) -> Optional[float]:
        """The worker's transfer time, or None if it failed (the path stalled)."""
        worker.proc.wait(600)
        done = [line for line in worker.lines if line.startswith("DONE")]
        return float(done[0].split()[1]) if done else None

    def fairness(self, label: str, kind: str) -> None:
        """
        Bulk on service ID "bulk", echoes on a second connection: same ID, then
        the other ID; uncapped, also with the bulk in another tunnel (through
        the same service), which shares the machine's cores with the echoes
        but none of their queues: the floor that queueing adds to.
        """
        pair = self.pairs[(label, kind)]
        capped = kind == "capped"
        suffix = ", capped" if capped else ""
        seconds = (1.5 if self.quick else 3.0) if capped else (1.0 if self.quick else 2.0)
        if capped:
            size = int(BANDWIDTH_LIMIT * seconds)
        else:
            rate = self.results.median(UP.key, label) or 50.0
            size = int(rate * MB * seconds)
        timeout = 3 * seconds + 5  # no progress for this long: the path stalled
        idle_count = 100 if self.quick or capped else 300
        solo_seconds = self._bulk_seconds(self._bulk(pair.ports["bulk"], size, timeout))
        solo = size / solo_seconds / MB if solo_seconds else float("nan")
        if solo_seconds is None:
            self.notes.append(f"{label}: bulk upload alone [{kind}] STALLED: no progress for "
                              f"{timeout:.0f} s (round {self.round_no + 1})")
        cases = [("same ID", "bulk", pair), ("two IDs", "echo", pair)]
        if not capped:
            cases.append(("other tunnel", "echo", self.pairs[(label, "other")]))
        for ids, echo_sid, bulk_pair in cases:
            metrics = fairness_metrics(ids + suffix)
            echo = Echo(pair.ports[echo_sid], timeout=timeout)
            idle = echo.samples(idle_count)
            worker = self._bulk(bulk_pair.ports["bulk"], size, timeout)
            busy: List[float] = []
            while worker.proc.poll() is None:
                busy.append(echo.once())
            shared_seconds = self._bulk_seconds(worker)
            echo.close()
            for checked in {pair, bulk_pair}:
                self.check(checked)
            if shared_seconds is None:
                self.notes.append(f"{label}: bulk upload beside echoes [{ids}{suffix}] STALLED: no "
                                  f"progress for {timeout:.0f} s (round {self.round_no + 1})")
            shared = size / shared_seconds / MB if shared_seconds else float("nan")
            add = self.results.add
            add(metrics["idle50"], label, percentile(idle, 0.5) * 1e6)
            add(metrics["idle99"], label, percentile(idle, 0.99) * 1e6)
            add(metrics["busy50"], label, percentile(busy, 0.5) * 1e6)
            add(metrics["busy99"], label, percentile(busy, 0.99) * 1e6)
            add(metrics["solo"], label, solo)
            add(metrics["shared"], label, shared)
            add(metrics["share"], label, shared / solo)
            say(f"  {label:7} [{ids}{suffix}] echo p50/p99 idle "
                f"{percentile(idle, 0.5) * 1e6:.0f}/{percentile(idle, 0.99) * 1e6:.0f} us, during bulk "
                f"{percentile(busy, 0.5) * 1e6:.0f}/{percentile(busy, 0.99) * 1e6:.0f} us "
                f"({len(busy)} echoes); bulk {shared:.2f} MB/s vs {solo:.2f} alone")

    def stall(self, label: str) -> None:
        pair = self.pairs[(label, "open")]
        procs = {**pair.processes(), "service": self.services["open"].process}
        stall = 2.0 if self.quick else 3.0
        cap = (64 if self.quick else 256) * MB
        before = {}
        for name, p in procs.items():
            reset_peak_rss(p.pid)
            before[name] = rss_kib(p.pid)
        accepted, times, drained = _clients.stalled_push(pair.ports["bulk"], pair.ports["bulk"], stall, cap)
        dead = [name for name, p in procs.items() if not p.alive()]
        if dead:
            process = procs[dead[0]]
            why = process.tail(1)
            self.notes.append(f"{label}: the {dead[0]} exited in the stalled-reader test "
                              f"(round {self.round_no + 1}): {why}")
            say(f"  {label:7} accepted {accepted / MB:.1f} MB, then the {dead[0]} EXITED: {why}")
            self.results.add(STALL_BYTES, label, accepted / MB)
            self.restart_pair(label, "open")
            return
        peaks = {name: status_kib(p.pid, "VmHWM") - before[name] for name, p in procs.items()}
        if not drained or max(times) == float("inf"):
            healthy = self.healthy(pair)
            self.notes.append(
                f"{label}: stalled-reader test (round {self.round_no + 1}): "
                + ("the other connection's echo never came back; " if max(times) == float("inf") else "")
                + ("the stalled connection never drained; " if not drained else "")
                + ("a new connection works afterwards" if healthy else
                   "the tunnel stayed wedged (a new connection's echo fails): pair restarted"))
            if not healthy:
                self.restart_pair(label, "open")
        self.results.add(STALL_BYTES, label, accepted / MB)
        self.results.add(STALL_WAIT, label, max(times) * 1000)
        self.results.add(STALL_P50, label, percentile(times, 0.5) * 1e6)
        for name, grown in peaks.items():
            self.results.add(STALL_PEAK[name], label, grown / 1024)
        capped = " (the cap: the path took all the client pushed)" if accepted >= cap else ""
        say(f"  {label:7} accepted {accepted / MB:.1f} MB in {stall:.0f} s{capped}; other connection: "
            f"longest echo {max(times) * 1000:.0f} ms, p50 {percentile(times, 0.5) * 1e6:.0f} us, "
            f"{len(times)} echoes; peak RSS growth MiB "
            + ", ".join(f"{n} {g / 1024:.1f}" for n, g in peaks.items())
            + ("" if drained else "; NOT DRAINED afterwards"))

    def startup(self, label: str) -> None:
        """Spawn a source on a tunnel whose destination is connected; time until it serves (bench/_startup.py)."""
        src_impl, dst_impl = self.startup_kinds[label]
        service = self.services["open"]
        opened, destination = start_destination(dst_impl, service, self.tcp_port, f"{label}/startup")
        self.processes.append(destination)
        try:
            times = measure_listening(src_impl, service, opened["sourceAccessToken"], f"{label}/startup")
        finally:
            destination.stop()
            service.close_tunnel(opened["tunnelId"])
        assert times.listening is not None
        self.results.add(START_LISTEN, label, times.listening * 1000)
        self.results.add(START_ECHO, label, times.echoed * 1000)
        say(f"  {label:7} start-up: listening after {times.listening * 1000:.0f} ms, "
            f"first echo after {times.echoed * 1000:.0f} ms")

    # -- memory -------------------------------------------------------------------------------

    def memory(self) -> None:
        """N LocalProxyServices in one process (N=1, N=50); and RSS per process of each CLI."""
        service = self.services["open"]
        counts = (1, 10) if self.quick else (1, 50)
        rss: Dict[int, Tuple[int, int]] = {}
        for n in counts:
            tunnels = [service.open_tunnel(["bench"]) for _ in range(n)]
            spec_dir = tempfile.mkdtemp(dir=self.workdir)
            procs = {}
            for mode, token_key in (("destination", "destinationAccessToken"),
                                    ("source", "sourceAccessToken")):
                spec = {"mode": mode, "endpoint": service.endpoint, "capath": service.capath,
                        "tunnels": [{"token": t[token_key], "target": self.tcp_port} for t in tunnels]}
                spec_file = os.path.join(spec_dir, f"{mode}.json")
                with open(os.open(spec_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                    json.dump(spec, f)
                procs[mode] = self.spawn(f"many-{mode}-{n}",
                                         [sys.executable, os.path.join(BENCH_DIR, "_many.py"), spec_file])
                ready = procs[mode].wait_for_line("READY", timeout=120)
                if mode == "destination":
                    for tunnel in tunnels:
                        service.wait_connected(tunnel["tunnelId"], "destination", timeout=120)
            ports = json.loads(ready.split(" ", 1)[1])
            echoes = [Echo(port) for port in ports]
            time.sleep(0.5)
            rss[n] = (rss_kib(procs["source"].pid), rss_kib(procs["destination"].pid))
            for echo in echoes:
                echo.close()
            for process in procs.values():
                process.stop()
            for tunnel in tunnels:
                service.close_tunnel(tunnel["tunnelId"])
        low, high = counts
        per_src = (rss[high][0] - rss[low][0]) / (high - low)
        per_dst = (rss[high][1] - rss[low][1]) / (high - low)
        self.results.add(MEM_TUNNEL_SRC, "py", per_src)
        self.results.add(MEM_TUNNEL_DST, "py", per_dst)
        say(f"  py      memory per extra tunnel (N={low} -> N={high} in one process): source "
            f"{per_src:.0f} KiB, destination {per_dst:.0f} KiB (source RSS {rss[low][0] / 1024:.1f} -> "
            f"{rss[high][0] / 1024:.1f} MiB)")
        for label in ("py", "ref"):
            if label not in self.kinds:
                continue
            pair = self.pairs[(label, "open")]
            echo = Echo(pair.ports["bulk"])
            time.sleep(0.3)
            src, dst = (rss_kib(p.pid) for p in pair.processes().values())
            echo.close()
            self.results.add(RSS_SRC_ONE, label, src / 1024)
            self.results.add(RSS_DST_ONE, label, dst / 1024)
            say(f"  {label:7} RSS per process, one connection open: source {src / 1024:.1f} MiB, "
                f"destination {dst / 1024:.1f} MiB")

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        for label, (src, dst) in self.idle_rss.items():
            if label in ("py", "ref"):
                self.results.add(IDLE_SRC, label, src / 1024)
                self.results.add(IDLE_DST, label, dst / 1024)
        main_labels = [label for label in ("py", "ref") if label in self.kinds]
        for round_no in range(self.rounds):
            self.round_no = round_no
            say(f"\n== round {round_no + 1} of {self.rounds}")
            if self.groups & {"throughput", "rtt"}:
                self.ceiling()
                for label in ("tcp", "ws"):
                    say(f"  {label:7} " + ", ".join(
                        f"{m.key} {self.results.values[m.key][label][-1]:.1f} {m.unit}"
                        for m in (UP, DOWN, RTT50, RTT99) if label in self.results.values.get(m.key, {})))
            for group, labels, fn in (
                ("throughput", list(self.kinds), self.throughput),
                ("rtt", list(self.kinds), self.rtt),
                ("closes", main_labels, self.closes),
                ("fairness", main_labels, lambda label: self.fairness(label, "open")),
                ("capped", main_labels, lambda label: self.fairness(label, "capped")),
                ("stall", main_labels, self.stall),
                ("startup", list(self.startup_kinds), self.startup),
            ):
                if group not in self.groups:
                    continue
                started = time.monotonic()
                for label in self.order(labels, round_no):
                    try:
                        fn(label)
                    except Exception as error:  # noqa: BLE001 - noted, the run goes on
                        lines = str(error).splitlines() or [repr(error)]
                        self.notes.append(f"{label}: {group} failed in round {round_no + 1}: "
                                          + " / ".join(lines[:1] + lines[-1:]))
                        say(f"  {label:7} {group} FAILED: {lines[0]}")
                self.timings[group] = self.timings.get(group, 0.0) + time.monotonic() - started
            if round_no == 0 and "memory" in self.groups:
                started = time.monotonic()
                try:
                    self.memory()
                except Exception as error:  # noqa: BLE001 - noted, the run goes on
                    self.notes.append(f"memory failed: {str(error).splitlines()[:1]}")
                self.timings["memory"] = time.monotonic() - started

    def report(self) -> None:
        labels = ["tcp", "ws", "py"] + (["ref"] if self.ref else []) + (["exe"] if self.exe else [])
        say("\n== summary: median (min-max) over %d round(s); taken on a shared machine" % self.rounds)
        say("   tcp = raw loopback TCP, ws = one bare Autobahn TLS WebSocket hop (the ceiling), "
            "py = this project, ref = the C++ reference")
        say(summary(self.results, labels, "ws", "ref" if self.ref else None, "py"))
        mixed = [label for label in self.kinds if ">" in label]
        if mixed and any(label in self.results.values.get(UP.key, {}) or
                         label in self.results.values.get(RTT50.key, {}) for label in mixed):
            say("\n== mixed pairs (source>destination)")
            rows = []
            for metric in (UP, DOWN, RTT50, RTT99):
                rows.append([f"{metric.title}, {metric.unit}",
                             *[self.results.cell(metric.key, label) for label in ["py", "ref", *mixed]]])
            say(table(rows, ["figure", "py", "ref", *mixed]))
        say("\n(seconds per group: " + ", ".join(f"{g} {t:.0f}" for g, t in self.timings.items()) + ")")
        if self.notes:
            say("\n== notes")
            for note in self.notes:
                say("  " + note)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", metavar="PATH", help="the C++ reference localproxy binary")
    parser.add_argument("--executable", metavar="PATH",
                        help="this project built as one executable (start-up figures only)")
    parser.add_argument("--quick", action="store_true", help="one round, small sizes")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated: " + ",".join(GROUPS))
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--no-mixed", action="store_true", help="skip the mixed py/ref pairs")
    parser.add_argument("--json", metavar="FILE", help="also write every per-round value here")
    args = parser.parse_args()
    for option, path in (("--reference", args.reference), ("--executable", args.executable)):
        if path and not os.access(path, os.X_OK):
            parser.error(f"{option} {path}: not an executable file")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="localproxy-bench-") as workdir:
        bench = Bench(args, workdir)
        failed = False
        try:
            say("Starting the local tunnel service(s), the TCP service and the proxies ...")
            bench.start()
            bench.run()
        except Exception:
            failed = True
            traceback.print_exc()
        finally:
            bench.stop()
        bench.report()
        if args.json:
            bench.results.dump(args.json)
    say(f"\n(took {time.monotonic() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
