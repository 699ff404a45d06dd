#!/usr/bin/env python
"""
Start-up benchmark: how long a new local proxy takes to serve.

Run from the project root:

    python bench/bench_startup.py [--runs 15] [--python PATH] [--executable PATH]
                                  [--reference PATH] [--compare LABEL=CHECKOUT ...]
                                  [--trace [--trace-imports FILE]] [--json FILE]

A source is started for every ssh command when the proxy is an ssh
``ProxyCommand``, so its start-up is paid each time.  For each
implementation, every run spawns a new source on a fresh tunnel whose
destination (this checkout's) is already connected, through the local
tunnel service, and times from the spawn to its port accepting and to the
first echo through the tunnel (bench/_startup.py); this project's CLIs also
run as ``--stdio`` sources, timed to the first echo on standard output.
Beside each wall-clock figure, the CPU time the source had used by then:
on a shared machine the first moves with the load, the second far less.
The columns:

 - ``py``: this checkout, ``python -m aws_localproxy``, with the
   dependencies of ``--python`` (default: the bench's interpreter; give a
   virtualenv's where only the project was installed with pip for the
   pip-install figure, without the test and lint tools);
 - one column per ``--compare LABEL=CHECKOUT``: another source tree of this
   project (e.g. ``before=/tmp/main`` from ``git archive``), for a
   before/after in one run;
 - ``exe``: this project as one executable (``--executable``, e.g. the
   PyInstaller build of scripts/build-executable; its ``localproxy`` link);
 - ``ref``: the C++ reference (``--reference``).

The floors, spawn to the end of the imports (``os._exit`` then, so no
tear-down) with the same interpreter: ``python -c pass``; the imports every
run needs and nothing of this project can avoid (Twisted's reactor,
pyOpenSSL with Twisted's TLS and endpoints, Autobahn's WebSocket, the
protobuf runtime), as they are and trimmed as the console script trims them
(aws_localproxy/adapters/startup.py); ``import aws_localproxy.cli.localproxy``
(what ``--help`` costs).  ``--trace`` runs one more source at ``-v 6`` under
Python's ``-X importtime`` and prints when each log line came (ms after the
spawn) and the costliest imports.

Every Python tree measured is compiled first, as pip leaves an install.
The implementations take turns within each run in a rotating order (the
machine is shared and its speed drifts); one warm-up run first fills the
page cache.  Printed: median (min-max) in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _procs import (  # noqa: E402
    BENCH_DIR,
    ROOT,
    Implementation,
    Process,
    TunnelServiceProcess,
    compile_tree,
    free_port,
    source_args,
)
from _report import table  # noqa: E402
from _startup import (  # noqa: E402
    StartupTimes,
    echo_once,
    first_connection,
    measure_listening,
    measure_stdio,
    median_and_spread,
    spawn_to_exit,
    start_destination,
)

#: What every run of this project imports, whatever it does: Twisted's reactor,
#: pyOpenSSL with Twisted's TLS and endpoints, Autobahn's WebSocket, the protobuf
#: runtime.  Nothing of this project's own.
FLOOR_IMPORTS = (
    "from twisted.internet import reactor\n"
    "import twisted.internet.ssl, twisted.internet.endpoints, twisted.protocols.tls, autobahn.twisted.websocket\n"
    "from google.protobuf import descriptor_pool, symbol_database\n"
    "from google.protobuf.internal import builder\n"
)
#: The same, trimmed as the console script trims it (aws_localproxy/adapters/startup.py,
#: written out here so that every checkout compared runs the same code): http.cookiejar
#: lazy, Autobahn without its own NVX classes, the garbage collector paused.
TRIMMED_FLOOR_IMPORTS = (
    "import gc, http, importlib.util, os, sys\n"
    "gc.disable()\n"
    "spec = importlib.util.find_spec('http.cookiejar')\n"
    "spec.loader = importlib.util.LazyLoader(spec.loader)\n"
    "sys.modules[spec.name] = http.cookiejar = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(http.cookiejar)\n"
    "os.environ.setdefault('AUTOBAHN_USE_NVX', '0')\n"
) + FLOOR_IMPORTS


def say(text: str) -> None:
    print(text, flush=True)


class StartupBench:
    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.args = args
        self.workdir = workdir
        self.impls: Dict[str, Implementation] = {"py": Implementation("py", python=args.python)}
        for spec in args.compare:
            label, _, checkout = spec.partition("=")
            self.impls[label] = Implementation(label, checkout=os.path.abspath(checkout), python=args.python)
        if args.executable:
            self.impls["exe"] = Implementation("exe", args.executable)
        if args.reference:
            self.impls["ref"] = Implementation("ref", args.reference)
        #: The destination of every run: this checkout, with the bench's interpreter.
        self.destination = Implementation("destination")
        #: figure -> label -> seconds, one per run
        self.values: Dict[str, Dict[str, List[float]]] = {}
        self.notes: List[str] = []

    def add(self, figure: str, label: str, seconds: float) -> None:
        self.values.setdefault(figure, {}).setdefault(label, []).append(seconds)

    def start(self) -> None:
        for impl in [*self.impls.values(), self.destination]:
            if impl.binary is None:
                compile_tree(impl.python, impl.checkout or ROOT)
        self.tcp = Process("tcpservice", [sys.executable, os.path.join(BENCH_DIR, "_tcpservice.py")])
        self.tcp_port = int(self.tcp.wait_for_line("PORT").split()[1])
        self.service = TunnelServiceProcess("localtunnel", self.workdir)

    def stop(self) -> None:
        self.service.stop()
        self.tcp.stop()
        for impl in [*self.impls.values(), self.destination]:
            impl.remove_workdir()

    # -- one measurement ----------------------------------------------------------------------

    def listening(self, label: str, record: bool = True) -> None:
        opened, destination = start_destination(self.destination, self.service, self.tcp_port, label)
        try:
            times = measure_listening(self.impls[label], self.service, opened["sourceAccessToken"], label)
        finally:
            destination.stop()
            self.service.close_tunnel(opened["tunnelId"])
        if record:
            assert times.listening is not None
            self.add("spawn -> listening", label, times.listening)
            self.add("spawn -> first echo", label, times.echoed)
            if times.cpu_listening is not None and times.cpu_echoed is not None:
                self.add("CPU to listening", label, times.cpu_listening)
                self.add("CPU to first echo", label, times.cpu_echoed)

    def stdio(self, label: str, record: bool = True) -> None:
        opened, destination = start_destination(self.destination, self.service, self.tcp_port, label)
        try:
            times: StartupTimes = measure_stdio(self.impls[label], self.service, opened["sourceAccessToken"])
        finally:
            destination.stop()
            self.service.close_tunnel(opened["tunnelId"])
        if record:
            self.add("--stdio: spawn -> first echo", label, times.echoed)
            if times.cpu_echoed is not None:
                self.add("--stdio: CPU to first echo", label, times.cpu_echoed)

    def floors(self, label: str, record: bool = True) -> None:
        impl = self.impls[label]
        env = impl.environment({})
        # Each ends with os._exit: the figure is the imports, not the interpreter's tear-down.
        for figure, code in (
            ("python -c pass", "pass"),
            ("floor: reactor, TLS, WebSocket, protobuf imports", FLOOR_IMPORTS),
            ("floor, trimmed as the console script trims it", TRIMMED_FLOOR_IMPORTS),
            ("import aws_localproxy.cli.localproxy", "import aws_localproxy.cli.localproxy"),
        ):
            code += "\nimport os; os._exit(0)"
            seconds, cpu = spawn_to_exit([impl.python, "-c", code], env, impl.workdir())
            if record:
                self.add(f"spawn -> exit: {figure}", label, seconds)
                self.add(f"CPU: {figure}", label, cpu)

    def steps(self) -> List[Tuple[str, Callable[[str, bool], None]]]:
        """(label, measurement) for every pair measured in one run."""
        steps: List[Tuple[str, Callable[[str, bool], None]]] = []
        for label, impl in self.impls.items():
            steps.append((label, self.listening))
            if impl.name != "ref":  # the reference has no --stdio
                steps.append((label, self.stdio))
            if impl.binary is None:
                steps.append((label, self.floors))
        return steps

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> None:
        steps = self.steps()
        say(f"warm-up run ({len(steps)} measurements) ...")
        for label, step in steps:
            step(label, False)
        for run in range(self.args.runs):
            shift = run % len(steps)
            for label, step in steps[shift:] + steps[:shift]:
                try:
                    step(label, True)
                except Exception as error:  # noqa: BLE001 - noted, the run goes on
                    lines = str(error).splitlines() or [repr(error)]
                    self.notes.append(f"{label}: {step.__name__} failed in run {run + 1}: {lines[0]}")
            listening = self.values.get("spawn -> listening", {})
            say(f"run {run + 1:2} of {self.args.runs}: listening after "
                + ", ".join(f"{label} {values[-1] * 1000:.0f} ms" for label, values in listening.items()))

    def report(self) -> None:
        labels = list(self.impls)
        labels += [absent for absent in ("exe", "ref") if absent not in labels]
        rows = []
        for figure, by_label in self.values.items():
            rows.append([f"{figure}, ms", *[self.cell(by_label, label, figure) for label in labels]])
        say(f"\n== start-up, median (min-max) of {self.args.runs} runs, ms; a shared machine")
        say(table(rows, ["figure", *labels]))
        for absent, option in (("exe", "--executable"), ("ref", "--reference")):
            if absent not in self.impls:
                say(f"   {absent}: not given ({option} PATH)")
        if self.notes:
            say("\n== notes")
            for note in self.notes:
                say("  " + note)

    def cell(self, by_label: Dict[str, List[float]], label: str, figure: str) -> str:
        if label not in self.impls:
            return "not given"
        values = by_label.get(label)
        if values:
            return median_and_spread(values)
        return "-"

    # -- the trace ----------------------------------------------------------------------------

    def trace(self) -> None:
        """One ``-v 6`` source under ``-X importtime``: when each log line came, the costliest imports."""
        opened, destination = start_destination(self.destination, self.service, self.tcp_port, "trace")
        port = free_port()
        impl = self.impls["py"]
        args = impl.command(self.service, [*source_args({"bulk": port})], verbosity=6)
        args.insert(1, "-X")
        args.insert(2, "importtime")
        wall = time.time()
        try:
            source = Process("trace/source", args, env={"AWSIOT_TUNNEL_ACCESS_TOKEN": opened["sourceAccessToken"]},
                             cwd=impl.workdir(), keep_lines=5000)
            started = source.started
            conn, listening = first_connection(port, source)
            with conn:
                echo_once(conn)
                echoed = time.perf_counter()
            time.sleep(0.2)
            source.stop()
        finally:
            destination.stop()
            self.service.close_tunnel(opened["tunnelId"])
        say(f"\n== trace: one source at -v 6 under -X importtime (which slows imports): listening "
            f"{(listening - started) * 1000:.0f} ms, first echo {(echoed - started) * 1000:.0f} ms")
        stamp = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})\] \([^)]*\) \[(\w+)\] (.*)$")
        imports: List[Tuple[int, str]] = []
        if self.args.trace_imports:
            with open(self.args.trace_imports, "w") as f:
                f.writelines(line + "\n" for line in source.lines if line.startswith("import time:"))
        for line in source.lines:
            if line.startswith("import time:"):
                _, cumulative, name = line[len("import time:"):].split("|", 2)
                if cumulative.strip().isdigit():
                    imports.append((int(cumulative), name.rstrip()))
                continue
            match = stamp.match(line)
            if match:
                at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() - wall
                say(f"  {at * 1000:7.1f} ms  [{match.group(2)}] {match.group(3)[:110]}")
        total = sum(c for c, name in imports if not name.startswith("  "))
        say(f"\n  imports: {total / 1000:.0f} ms cumulative at the top level; the costliest (cumulative ms):")
        for cumulative, name in sorted(imports, reverse=True)[: self.args.top]:
            say(f"  {cumulative / 1000:7.1f}  {name.strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs (default 15)")
    parser.add_argument("--python", metavar="PATH",
                        help="the interpreter of the Python rows (default: this one), e.g. a virtualenv's "
                        "where the project was installed with pip")
    parser.add_argument("--executable", metavar="PATH", help="this project built as one executable")
    parser.add_argument("--reference", metavar="PATH", help="the C++ reference localproxy binary")
    parser.add_argument("--compare", metavar="LABEL=CHECKOUT", action="append", default=[],
                        help="another source tree of this project, measured in the same run")
    parser.add_argument("--trace", action="store_true", help="also trace one source's start-up")
    parser.add_argument("--trace-imports", metavar="FILE", help="with --trace: write -X importtime's lines here")
    parser.add_argument("--top", type=int, default=30, help="imports shown by --trace (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write every value (seconds) here")
    args = parser.parse_args()
    # Each child runs in a directory of its own: a relative path would name nothing there.
    args.executable = args.executable and os.path.abspath(args.executable)
    args.reference = args.reference and os.path.abspath(args.reference)
    for option, path in (("--executable", args.executable), ("--reference", args.reference)):
        if path and not os.access(path, os.X_OK):
            parser.error(f"{option} {path}: not an executable file")
    for spec in args.compare:
        label, equals, checkout = spec.partition("=")
        if not equals or label in ("py", "exe", "ref") or not os.path.isdir(os.path.join(checkout, "aws_localproxy")):
            parser.error(f"--compare {spec}: want LABEL=CHECKOUT, a new label and a tree with aws_localproxy/")
    say(f"python {sys.version.split()[0]} ({args.python or sys.executable}), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"this checkout: {ROOT}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="localproxy-bench-") as workdir:
        bench = StartupBench(args, workdir)
        try:
            bench.start()
            bench.run()
            if args.trace:
                bench.trace()
        finally:
            bench.stop()
        bench.report()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(bench.values, f, indent=1)
    say(f"\n(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
