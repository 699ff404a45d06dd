"""
The processes a benchmark runs, and what /proc says about them.

Everything here is driven as a user drives it: the local tunnel service is
the ``localtunnel`` console script (``python -m
aws_localproxy.tunnelservice.cli``), this project's proxies are ``python -m
aws_localproxy``, the reference is its own binary.  Tokens travel in
``AWSIOT_TUNNEL_ACCESS_TOKEN``, never on a command line; everything listens on
127.0.0.1 with ports the OS picks (or that a free-port probe found).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Mapping, Optional, Sequence

TIMEOUT = 30.0
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, ROOT)

from aws_localproxy import demo  # noqa: E402  (the checkout's, like the children's)

#: Environment variables a child must not inherit: a web proxy would take the
#: loopback traffic off the path being measured.
_DROPPED_ENV = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


def child_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Process(demo.Process):
    """The demo's child process, quiet, with the checkout on its C{PYTHONPATH}."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        keep_lines: int = 200,
    ) -> None:
        super().__init__(
            name, args, echo=False, cwd=cwd, keep_lines=keep_lines, environ=child_env(env)
        )


def compile_tree(python: str, checkout: str = ROOT) -> None:
    """
    Compile the package of C{checkout} with C{python}, as pip leaves an
    install: where the bytecode was never written (or a module changed, or
    the environment says PYTHONDONTWRITEBYTECODE), every start of a proxy
    would compile its modules again, and a start-up figure would measure that.
    """
    subprocess.run([python, "-m", "compileall", "-q", os.path.join(checkout, "aws_localproxy")], check=True)


# -- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of C{pid} so far (all threads, those gone too), in clock ticks (10 ms)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSample:
    """
    What C{pid} has run so far, to the nanosecond where Linux says so.

    C{/proc/PID/stat} counts in clock ticks: over one throughput run (about
    0.3 CPU seconds per proxy) a tick is 3%, as much as the differences being
    measured.  C{/proc/PID/task/*/schedstat} counts nanoseconds, but only for
    threads that are alive; L{used_since} takes it when the same threads ran
    throughout and the ticks otherwise.
    """

    def __init__(self, pid: int) -> None:
        self.ticks = cpu_seconds(pid)
        self.threads: Dict[str, int] = {}
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    self.threads[tid] = int(f.read().split()[0])
        except OSError:  # no schedstat here, or a thread ended while being read
            self.threads = {}

    def used_since(self, before: "CpuSample") -> float:
        """CPU seconds between C{before} and this sample."""
        if self.threads and self.threads.keys() == before.threads.keys():
            return (sum(self.threads.values()) - sum(before.threads.values())) / 1e9
        return self.ticks - before.ticks


def status_kib(pid: int, key: str) -> int:
    """A C{VmRSS}/C{VmHWM}-style line of /proc/PID/status, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -- sockets -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_accepting(port: int, timeout: float = TIMEOUT, process: Optional[Process] = None) -> float:
    """Poll until 127.0.0.1:C{port} accepts a connection; return the perf_counter time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return time.perf_counter()
        except OSError:
            if process is not None and not process.alive():
                raise RuntimeError(f"{process.name} exited:\n" + process.tail()) from None
            time.sleep(0.003)
    raise RuntimeError(f"nothing accepted on port {port}")


# -- the local tunnel service ----------------------------------------------------------------


class TunnelServiceProcess:
    """``localtunnel`` as a process, and the management API calls the bench needs."""

    def __init__(self, name: str, workdir: str, extra_args: Sequence[str] = ()) -> None:
        ready_file = os.path.join(workdir, f"{name}-ready.json")
        self.cert_dir = os.path.join(workdir, f"{name}-certs")
        self.process = Process(
            name,
            [
                sys.executable,
                "-m",
                "aws_localproxy.tunnelservice.cli",
                "--port",
                "0",
                "--cert-dir",
                self.cert_dir,
                "--ready-file",
                ready_file,
                *extra_args,
            ],
        )
        self.ready = _wait_for_json(ready_file, self.process)
        self.endpoint: str = self.ready["endpoint"]
        self.capath: str = self.ready["capath"]
        self.ca_file: str = self.ready["ca_file"]
        self._context = ssl.create_default_context(cafile=self.ca_file)

    @property
    def pid(self) -> int:
        return self.process.pid

    def api_call(self, action: str, body: Dict[str, Any]) -> Dict[str, Any]:
        """One management API call, as botocore sends it (JSON 1.1, X-Amz-Target)."""
        request = urllib.request.Request(
            self.ready["api_url"] + "/",
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"IoTSecuredTunneling.{action}",
            },
        )
        with urllib.request.urlopen(request, context=self._context, timeout=TIMEOUT) as response:
            return dict(json.loads(response.read() or b"{}"))

    def open_tunnel(self, services: Sequence[str]) -> Dict[str, Any]:
        return self.api_call("OpenTunnel", {"destinationConfig": {"services": list(services)}})

    def close_tunnel(self, tunnel_id: str) -> None:
        self.api_call("CloseTunnel", {"tunnelId": tunnel_id})

    def wait_connected(self, tunnel_id: str, side: str, timeout: float = TIMEOUT) -> None:
        """Poll DescribeTunnel until C{side} ("source"/"destination") is CONNECTED."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tunnel = self.api_call("DescribeTunnel", {"tunnelId": tunnel_id})["tunnel"]
            if tunnel[f"{side}ConnectionState"]["status"] == "CONNECTED":
                return
            time.sleep(0.05)
        raise RuntimeError(f"the {side} of {tunnel_id} never connected")

    def stop(self) -> None:
        self.process.stop()


def _wait_for_json(path: str, process: Process, timeout: float = TIMEOUT) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            try:
                with open(path) as f:
                    return dict(json.load(f))
            except ValueError:
                pass  # being written
        if not process.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"{process.name} did not start:\n" + process.tail())


# -- the proxies -----------------------------------------------------------------------------


class Implementation:
    """
    How to start a local proxy of one implementation: this project's from a
    checkout (``python -m aws_localproxy``), a binary that takes the same
    options (the reference, or this project built as one executable).

    @param checkout: the source tree a Python implementation runs from
        (default: this checkout), first on its C{PYTHONPATH}.
    @param python: the interpreter of a Python implementation (default:
        the bench's own), e.g. that of a virtualenv where only the project
        was installed with pip, whose packages it then uses.
    """

    def __init__(
        self,
        name: str,
        binary: Optional[str] = None,
        checkout: Optional[str] = None,
        python: Optional[str] = None,
    ) -> None:
        self.name = name
        self.binary = binary  # None: this project's ``python -m aws_localproxy``
        self.checkout = checkout
        self.python = python or sys.executable
        self._workdir: Optional[str] = None

    def __repr__(self) -> str:
        return f"<Implementation {self.name}>"

    def command(self, service: TunnelServiceProcess, mode_args: Sequence[str], verbosity: int = 4) -> List[str]:
        common = ["-e", service.endpoint, "-c", service.capath, "-v", str(verbosity), *mode_args]
        if self.binary is None:
            return [self.python, "-m", "aws_localproxy", *common]
        return [self.binary, *common]

    def environment(self, extra: Mapping[str, str]) -> Dict[str, str]:
        """The child's whole environment: C{extra} added, the checkout first on C{PYTHONPATH}."""
        env = child_env(extra)
        if self.checkout is not None:
            env["PYTHONPATH"] = self.checkout + os.pathsep + env["PYTHONPATH"]
        return env

    def workdir(self) -> str:
        """
        An empty working directory of its own: a binary reads ./config there,
        and ``python -m``/``-c`` put it first on C{sys.path}, where a
        checkout would shadow the one on C{PYTHONPATH}.
        """
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix=f"localproxy-{self.name}-")
        return self._workdir

    def remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def start(
        self,
        label: str,
        service: TunnelServiceProcess,
        token: str,
        mode_args: Sequence[str],
        verbosity: int = 4,
    ) -> Process:
        env = {"AWSIOT_TUNNEL_ACCESS_TOKEN": token}
        if self.checkout is not None:
            env["PYTHONPATH"] = self.environment({})["PYTHONPATH"]
        return Process(label, self.command(service, mode_args, verbosity), env=env, cwd=self.workdir())


def source_args(ports: Mapping[str, int]) -> List[str]:
    return ["-s", ",".join(f"{sid}={port}" for sid, port in ports.items()), "-b", "127.0.0.1"]


def destination_args(targets: Mapping[str, int]) -> List[str]:
    return ["-d", ",".join(f"{sid}=127.0.0.1:{port}" for sid, port in targets.items())]


class ProxyPair:
    """A destination and a source on one tunnel with the given service IDs, both connected."""

    def __init__(
        self,
        label: str,
        source_impl: Implementation,
        destination_impl: Implementation,
        service: TunnelServiceProcess,
        service_ids: Sequence[str],
        tcp_port: int,
    ) -> None:
        self.label = label
        self.service = service
        opened = service.open_tunnel(service_ids)
        self.tunnel_id = opened["tunnelId"]
        self.ports = {sid: free_port() for sid in service_ids}
        self.destination = destination_impl.start(
            f"{label}/destination",
            service,
            opened["destinationAccessToken"],
            destination_args({sid: tcp_port for sid in service_ids}),
        )
        self.source: Optional[Process] = None
        try:
            service.wait_connected(self.tunnel_id, "destination")
            self.source = source_impl.start(
                f"{label}/source", service, opened["sourceAccessToken"], source_args(self.ports)
            )
            for port in self.ports.values():
                wait_accepting(port, process=self.source)
            service.wait_connected(self.tunnel_id, "source")
        except BaseException:
            self.stop()
            raise

    def processes(self) -> Dict[str, Process]:
        assert self.source is not None
        return {"source": self.source, "destination": self.destination}

    def alive(self) -> bool:
        return all(p.alive() for p in self.processes().values())

    def stop(self) -> None:
        for process in (self.source, self.destination):
            if process is not None:
                process.stop()
