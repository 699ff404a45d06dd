#!/usr/bin/env python
"""
Memory of many destinations: the agent's one process against one reference process per tunnel.

Run from the project root:

    python bench/bench_agent.py                                  # about 15 s
    python bench/bench_agent.py --reference /path/to/localproxy  # + the reference, about 25 s

It starts mosquitto and ``localtunnel --mqtt-broker`` on 127.0.0.1, then
``localproxy-agent`` for thing ``bench``, and opens N tunnels (default 20)
for that thing: the agent starts a destination for each, in its one
process.  Sources run in this process (one L{LocalProxyService} per
tunnel), each with one open TCP connection that echoed 64 KiB through the
tunnel to an echo service here.  Printed: the agent's RSS idle and with N
tunnels and N connections, and per tunnel.  With ``--reference``, N
reference destination processes (one per tunnel, as every existing device
agent runs them) on N more tunnels, each with a connection the same way:
their summed RSS.  RSS is read from ``/proc/PID/status`` (``VmRSS``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import Deferred, inlineCallbacks  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.internet.threads import deferToThread  # noqa: E402

from aws_localproxy.config.proxy_config import ProxyConfig  # noqa: E402
from aws_localproxy.protocol.constants import Mode  # noqa: E402
from aws_localproxy.proxy.service import LocalProxyService  # noqa: E402

BIN = os.path.dirname(sys.executable)
PAYLOAD = os.urandom(64 * 1024)


def command(name: str) -> str:
    found = os.path.join(BIN, name)
    return found if os.path.exists(found) else (shutil.which(name) or name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sleep(reactor: Any, seconds: float) -> Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@inlineCallbacks
def wait_for(reactor: Any, predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        yield sleep(reactor, 0.05)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Client(Protocol):
    def __init__(self) -> None:
        self.received = 0
        self.done: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= len(PAYLOAD) and not self.done.called:
            self.done.callback(None)


class Bench:
    def __init__(self, reactor: Any, args: Any) -> None:
        self.reactor = reactor
        self.args = args
        self.directory = tempfile.mkdtemp(prefix="bench-agent-")
        self.processes: List[subprocess.Popen[bytes]] = []
        self.sources: List[LocalProxyService] = []
        self.clients: List[Client] = []

    def spawn(self, name: str, argv: List[str], env: Any = None) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.directory, f"{name}.log"), "wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env or dict(os.environ))
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        with open(os.path.join(self.directory, f"{name}.log"), errors="replace") as f:
            return f.read()

    @inlineCallbacks
    def run(self) -> Any:
        reactor = self.reactor
        broker_port = free_port()
        config = os.path.join(self.directory, "mosquitto.conf")
        with open(config, "w") as f:
            f.write(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            if os.geteuid() == 0:
                f.write("user root\n")
        self.spawn("mosquitto", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", config])
        broker = f"mqtt://127.0.0.1:{broker_port}"
        ready = os.path.join(self.directory, "ready.json")
        self.spawn(
            "localtunnel",
            [command("localtunnel"), "--cert-dir", os.path.join(self.directory, "certs"), "--ready-file", ready,
             "--mqtt-broker", broker, "--max-connections", "5000"],
        )  # fmt: skip
        yield wait_for(reactor, lambda: os.path.exists(ready), "localtunnel")
        with open(ready) as f:
            self.service = json.load(f)
        listening = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Echo))
        self.echo_port = listening.getHost().port

        import boto3

        self.api = boto3.client(
            "iotsecuretunneling", endpoint_url=self.service["api_url"], region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench", verify=self.service["ca_file"],
        )  # fmt: skip

        n = self.args.tunnels
        agent = self.spawn(
            "agent",
            [command("localproxy-agent"), "--thing-name", "bench", "--mqtt-broker", broker,
             "-d", f"ECHO=127.0.0.1:{self.echo_port}", "-e", self.service["endpoint"], "-c", self.service["capath"],
             "--max-tunnels", str(n), "-v", "3"],
        )  # fmt: skip
        yield wait_for(reactor, lambda: vm_rss_kib(agent.pid) > 0, "the agent")
        yield sleep(reactor, 2.0)  # imported, connected, subscribed
        idle = vm_rss_kib(agent.pid)
        for _ in range(n):
            yield self.tunnel_with_connection(thing_name="bench")
        yield sleep(reactor, 1.0)
        loaded = vm_rss_kib(agent.pid)
        print(f"agent (one process, {n} destinations, {n} connections)")
        print(f"  idle RSS                 {idle / 1024:7.1f} MiB")
        print(f"  with {n} tunnels RSS      {loaded / 1024:7.1f} MiB")
        print(f"  per tunnel               {(loaded - idle) / n / 1024:7.2f} MiB")

        if self.args.reference:
            pids = []
            for i in range(n):
                token = yield self.tunnel_with_connection(reference=i)
                pids.append(token)
            yield sleep(reactor, 1.0)
            rss = [vm_rss_kib(pid) for pid in pids]
            print(f"reference ({n} destination processes, {n} connections)")
            print(f"  total RSS                {sum(rss) / 1024:7.1f} MiB")
            print(f"  per process              {sum(rss) / n / 1024:7.2f} MiB (min {min(rss) / 1024:.1f}, max {max(rss) / 1024:.1f})")
            print(f"  agent / reference        {loaded / sum(rss):7.2f}")
        return 0

    @inlineCallbacks
    def tunnel_with_connection(self, thing_name: str = "", reference: int = -1) -> Any:
        """Open a tunnel, get its destination up, a source, one connection echoing 64 KiB."""
        reactor = self.reactor
        config = {"services": ["ECHO"]}
        if thing_name:
            config["thingName"] = thing_name
        opened = yield deferToThread(self.api.open_tunnel, destinationConfig=config)
        tunnel_id = opened["tunnelId"]
        result: Any = None
        if reference >= 0:
            env = dict(os.environ, AWSIOT_TUNNEL_ACCESS_TOKEN=opened["destinationAccessToken"])
            process = self.spawn(
                f"reference-{reference}",
                [self.args.reference, "-e", self.service["endpoint"], "-c", self.service["capath"],
                 "-d", f"ECHO=127.0.0.1:{self.echo_port}", "-v", "3"],
                env=env,
            )  # fmt: skip
            result = process.pid

        def connected() -> Any:
            return self.api.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["destinationConnectionState"]["status"]

        for _ in range(300):
            state = yield deferToThread(connected)
            if state == "CONNECTED":
                break
            yield sleep(reactor, 0.05)
        else:
            raise RuntimeError(f"the destination of tunnel {tunnel_id} never connected")
        host, _, port = self.service["endpoint"].rpartition(":")
        source = LocalProxyService(
            ProxyConfig(
                mode=Mode.SOURCE, access_token=opened["sourceAccessToken"], endpoint_host=host,
                endpoint_port=int(port), capath=self.service["capath"], service_map={}, bind_address="127.0.0.1",
                verbosity=2,
            ),
            reactor,
        )  # fmt: skip
        source.startService()
        self.sources.append(source)
        yield source.connected
        listen_port = yield source.listening_port("ECHO")
        client = Client()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", listen_port).connect(Factory.forProtocol(lambda: client))
        client.transport.write(PAYLOAD)
        yield client.done
        self.clients.append(client)
        return result

    @inlineCallbacks
    def stop(self) -> Any:
        for client in self.clients:
            client.transport.loseConnection()
        for source in self.sources:
            yield source.stopService()
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tunnels", type=int, default=20)
    parser.add_argument("--reference", help="the reference localproxy binary, for its RSS per process")
    args = parser.parse_args()

    @inlineCallbacks
    def run(reactor: Any) -> Any:
        bench = Bench(reactor, args)
        try:
            yield bench.run()
        finally:
            yield bench.stop()

    task.react(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
