"""
The whole device flow on one machine, with real processes and real bytes.

    python examples/agent_demo.py

1. mosquitto on 127.0.0.1 (a port the OS picked),
2. ``localtunnel --mqtt-broker mqtt://127.0.0.1:PORT`` (the local tunnel service),
3. ``localproxy-agent --thing-name dev1 ... -d ECHO=127.0.0.1:PORT`` (the device),
4. OpenTunnel for thing dev1 with the AWS CLI (the agent starts the destination),
5. ``localproxy -s ECHO=PORT`` with the source token (the operator's side),
6. bytes through the tunnel to a local echo service and back.

Prints each step and exits 0 when the bytes came back.  Needs mosquitto
(``apt-get install mosquitto``) and this package installed (``pip install -e '.[test]'``,
for the AWS CLI).  Everything it starts is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List

BIN = os.path.dirname(sys.executable)


def command(name: str) -> str:
    found = os.path.join(BIN, name)
    return found if os.path.exists(found) else (shutil.which(name) or name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise SystemExit(f"demo: timed out waiting for {what}")


def echo_server() -> int:
    """A TCP echo service on 127.0.0.1 (a thread per connection)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


class Processes:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.started: List[subprocess.Popen[bytes]] = []
        self.logs: Dict[str, str] = {}

    def start(
        self, name: str, args: List[str], env: Dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = os.path.join(self.directory, f"{name}.log")
        self.logs[name] = log
        print(f"$ {' '.join(args)}", flush=True)
        process = subprocess.Popen(
            args, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env or dict(os.environ)
        )
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        with open(self.logs[name], errors="replace") as f:
            return f.read()

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    directory = os.environ.get("AGENT_DEMO_DIR") or tempfile.mkdtemp(prefix="agent-demo-")
    os.makedirs(directory, exist_ok=True)
    procs = Processes(directory)
    try:
        return run(directory, procs)
    finally:
        procs.stop_all()
        print(f"demo: logs in {directory}", flush=True)


def run(directory: str, procs: Processes) -> int:
    broker_port = free_port()
    config = os.path.join(directory, "mosquitto.conf")
    with open(config, "w") as f:
        f.write(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        if os.geteuid() == 0:
            f.write("user root\n")
    procs.start("mosquitto", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", config])
    broker = f"mqtt://127.0.0.1:{broker_port}"

    ready = os.path.join(directory, "ready.json")
    procs.start(
        "localtunnel",
        [
            command("localtunnel"),
            "--cert-dir",
            os.path.join(directory, "certs"),
            "--ready-file",
            ready,
            "--mqtt-broker",
            broker,
        ],
    )
    wait_for(lambda: os.path.exists(ready), "the local tunnel service")
    with open(ready) as f:
        service = json.load(f)

    echo_port = echo_server()
    procs.start(
        "agent",
        [
            command("localproxy-agent"),
            "--thing-name",
            "dev1",
            "--mqtt-broker",
            broker,
            "-d",
            f"ECHO=127.0.0.1:{echo_port}",
            "-e",
            service["endpoint"],
            "-c",
            service["capath"],
            "-v",
            os.environ.get("AGENT_DEMO_VERBOSITY", "4"),
        ],
    )
    wait_for(
        lambda: "Subscribed to $aws/things/dev1/tunnels/notify" in procs.log("agent"), "the agent"
    )

    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CA_BUNDLE=service["ca_file"],
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    args = [
        sys.executable, "-m", "awscli", "iotsecuretunneling", "open-tunnel",
        "--destination-config", "thingName=dev1,services=ECHO",
        "--endpoint-url", service["api_url"], "--output", "json",
    ]  # fmt: skip
    print(
        "$ aws iotsecuretunneling open-tunnel --destination-config thingName=dev1,services=ECHO",
        flush=True,
    )
    output = subprocess.run(args, env=env, check=True, capture_output=True).stdout
    opened = json.loads(output)
    fd = os.open(
        os.path.join(directory, "opened.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
    )
    with os.fdopen(fd, "wb") as f:
        f.write(output)
    wait_for(
        lambda: "Successfully established websocket connection" in procs.log("agent"),
        "the agent's destination",
    )
    print("demo: the agent started a destination for the tunnel", flush=True)

    source_env = dict(os.environ, AWSIOT_TUNNEL_ACCESS_TOKEN=opened["sourceAccessToken"])
    port = free_port()
    procs.start(
        "source",
        [
            command("localproxy"),
            "-e",
            service["endpoint"],
            "-c",
            service["capath"],
            "-s",
            f"ECHO={port}",
        ],
        env=source_env,
    )
    wait_for(
        lambda: f"Listening for new connection on port {port}" in procs.log("source"),
        "the source's listener",
    )
    payload = os.urandom(100_000)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    if received != payload:
        print(f"demo: FAILED, {len(received)} of {len(payload)} bytes came back", flush=True)
        return 1
    print(f"demo: OK, {len(payload)} bytes went through the tunnel and back", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
