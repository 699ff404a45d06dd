"""
``python -m aws_localproxy.demo``: the whole path on this machine, narrated.

It runs what a user would run, as separate processes: the local tunnel
service (``localtunnel``), a destination local proxy in front of a small
TCP service, and a source local proxy; opens a tunnel through the
management API (the request the AWS CLI and boto3 send), pushes real bytes
through ``client -> source -> service -> destination -> TCP service`` and
back, closes the tunnel, and shows that both proxies exit by themselves.
Everything listens on 127.0.0.1 with ports the OS picks; tokens travel in
the environment (``AWSIOT_TUNNEL_ACCESS_TOKEN``), never on a command line.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, Deque, Dict, List, Mapping, Optional, Sequence

__all__ = ["main"]

TIMEOUT = 30.0


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


class ThreadedTcpService:
    """A TCP service on 127.0.0.1 (port picked by the OS), a thread per connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        """Serve one connection (it is closed afterwards)."""
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class UpperCaseService(ThreadedTcpService):
    """The "device" application: answers everything in upper case."""

    def handle(self, conn: socket.socket) -> None:
        while data := conn.recv(65536):
            conn.sendall(data.upper())


class Process:
    """
    A child process whose output is drained (a full pipe would stall it),
    kept (the last C{keep_lines} lines), optionally echoed with a prefix,
    and can be waited on.  The benchmarks start their processes with it too.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        echo: bool = True,
        cwd: Optional[str] = None,
        keep_lines: int = 1000,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        """C{env} is added to C{environ} (default: this process's environment)."""
        self.name = name
        self.echo = echo
        self.lines: Deque[str] = collections.deque(maxlen=keep_lines)
        self._cond = threading.Condition()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**(os.environ if environ is None else environ), **(env or {})},
            cwd=cwd,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
            if self.echo and _worth_showing(line):
                print(f"    {self.name:>11} | {line}", flush=True)

    def wait_for_line(self, text: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} never printed {text!r}:\n" + self.tail())
                self._cond.wait(min(remaining, 0.2))

    def tail(self, count: int = 15) -> str:
        """The last C{count} lines it printed."""
        with self._cond:
            return "\n".join(list(self.lines)[-count:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _worth_showing(line: str) -> bool:
    """Keep the narration readable: info lines and above, no Twisted chatter."""
    noise = ("#debug]", "Stopping factory", "Starting factory", "Main loop terminated")
    return bool(line.strip()) and not line.startswith("\t") and not any(n in line for n in noise)


def wait_for_file(path: str, process: Process, timeout: float = TIMEOUT) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                return dict(json.load(f))
        if process.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("the local tunnel service did not start")


def api_call(ready: Dict[str, Any], action: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """One management API call, as botocore sends it (JSON 1.1, X-Amz-Target)."""
    request = urllib.request.Request(
        ready["api_url"] + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"IoTSecuredTunneling.{action}",
        },
    )
    context = ssl.create_default_context(cafile=ready["ca_file"])
    with urllib.request.urlopen(request, context=context, timeout=TIMEOUT) as response:
        return dict(json.loads(response.read() or b"{}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    python = sys.executable
    processes: List[Process] = []
    service = UpperCaseService()
    try:
        with tempfile.TemporaryDirectory(prefix="localproxy-demo-") as workdir:
            say(
                "1. Starting the local tunnel service (localtunnel) on 127.0.0.1, port picked by the OS"
            )
            ready_file = os.path.join(workdir, "ready.json")
            tunnel_service = Process(
                "localtunnel",
                [
                    python,
                    "-c",
                    "from aws_localproxy.tunnelservice.cli import main; main()",
                    "--port",
                    "0",
                    "--cert-dir",
                    os.path.join(workdir, "certs"),
                    "--ready-file",
                    ready_file,
                ],
            )
            processes.append(tunnel_service)
            ready = wait_for_file(ready_file, tunnel_service)
            say(f"   data plane wss://{ready['endpoint']}, management API {ready['api_url']}")

            say(
                "2. Opening a tunnel with one service, 'demo' (OpenTunnel, as `aws iotsecuretunneling open-tunnel` does)"
            )
            opened = api_call(ready, "OpenTunnel", {"destinationConfig": {"services": ["demo"]}})
            say(f"   tunnel {opened['tunnelId']} is open; its two access tokens stay in memory")

            say(
                f"3. A small TCP service (answers in upper case) listens on 127.0.0.1:{service.port}"
            )
            common = [
                python,
                "-m",
                "aws_localproxy",
                "-e",
                ready["endpoint"],
                "-c",
                ready["capath"],
            ]
            say("4. Starting the destination local proxy in front of it")
            destination = Process(
                "destination",
                [*common, "-d", f"demo=127.0.0.1:{service.port}"],
                env={"AWSIOT_TUNNEL_ACCESS_TOKEN": opened["destinationAccessToken"]},
            )
            processes.append(destination)
            destination.wait_for_line("Successfully established websocket connection")

            source_port = free_port()
            say(f"5. Starting the source local proxy, listening on 127.0.0.1:{source_port}")
            source = Process(
                "source",
                [*common, "-s", f"demo={source_port}", "-b", "127.0.0.1"],
                env={"AWSIOT_TUNNEL_ACCESS_TOKEN": opened["sourceAccessToken"]},
            )
            processes.append(source)
            source.wait_for_line("Listening for new connection on port")

            described = api_call(ready, "DescribeTunnel", {"tunnelId": opened["tunnelId"]})
            tunnel = described["tunnel"]
            say(
                "   DescribeTunnel: source "
                f"{tunnel['sourceConnectionState']['status']}, destination "
                f"{tunnel['destinationConnectionState']['status']}"
            )

            message = b"hello from the source side, through a secure tunnel\n"
            bulk = os.urandom(4 * 1024 * 1024)
            say(
                f"6. A client connects to 127.0.0.1:{source_port} and sends {len(message)} bytes, then 4 MiB"
            )
            with socket.create_connection(("127.0.0.1", source_port), timeout=TIMEOUT) as client:
                client.sendall(message)
                reply = _receive(client, len(message))
                say(f"   reply: {reply.decode().strip()!r}")
                started = time.monotonic()
                sender = threading.Thread(target=client.sendall, args=(bulk,), daemon=True)
                sender.start()
                echoed = _receive(client, len(bulk))
                elapsed = time.monotonic() - started
                sender.join(TIMEOUT)
            ok = reply == message.upper() and echoed == bulk.upper()
            say(
                f"   4 MiB round trip in {elapsed:.2f} s; sha256 "
                f"{hashlib.sha256(echoed).hexdigest()[:16]}... "
                + ("matches" if ok else "DOES NOT MATCH")
            )

            say("7. Closing the tunnel (CloseTunnel): the service closes both WebSockets")
            api_call(ready, "CloseTunnel", {"tunnelId": opened["tunnelId"]})
            codes = {
                name: p.wait() for name, p in (("source", source), ("destination", destination))
            }
            say(f"   the proxies exited by themselves: {codes}")
            tunnel_service.stop()
            ok = ok and codes == {"source": 0, "destination": 0}
            say("Done: " + ("everything worked." if ok else "SOMETHING WENT WRONG."))
            return 0 if ok else 1
    except Exception as error:
        say(f"FAILED: {error}")
        return 1
    finally:
        for process in processes:
            process.stop()
        service.close()


def _receive(sock: socket.socket, count: int) -> bytes:
    chunks: List[bytes] = []
    received = 0
    while received < count:
        chunk = sock.recv(min(1 << 20, count - received))
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


if __name__ == "__main__":
    sys.exit(main())
